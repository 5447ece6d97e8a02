/**
 * OPA decisions as a Parquet file, in the schema made for them (issue 16):
 *
 * | column | Parquet type | from the decision |
 * | --- | --- | --- |
 * | decision_id, path, requested_by, revision | STRING | the string |
 * | timestamp | TIMESTAMP(MICROS, UTC) | an RFC 3339 string, cut to microseconds |
 * | labels | MAP<STRING, STRING> | an object of strings |
 * | req_id | INT64 | an integer |
 * | bundles, input, result, metrics, nd_builtin_cache | JSON | the value's exact text |
 * | erased, masked | LIST<STRING> | an array of strings |
 * | extra | JSON | an object of every other member, and of any of the above that did not fit its type |
 *
 * A missing member is a null column. A member that does not fit its column (a `timestamp` that is not RFC
 * 3339, a `req_id` that is not an int64, ...) is never an error: its column is null and the member is kept,
 * as sent, in `extra` (src/formats/decision-row.ts).
 */

import { decisionRow, type DecisionRow } from './decision-row.js';
import { ndjsonLines } from './ndjson-lines.js';
import {
  int64Column,
  jsonColumn,
  parquetTableWriter,
  stringColumn,
  stringListColumn,
  stringMapColumn,
  timestampColumn,
  type ParquetColumn,
  type ParquetTableWriter,
} from './parquet-writer.js';
import type { ParquetOptions } from './parquet-options.js';

export const DECISION_COLUMNS: ReadonlyArray<ParquetColumn<DecisionRow>> = [
  stringColumn('decision_id', (r) => r.decision_id),
  stringColumn('path', (r) => r.path),
  timestampColumn('timestamp', (r) => r.timestamp),
  stringMapColumn('labels', (r) => r.labels),
  stringColumn('requested_by', (r) => r.requested_by),
  int64Column('req_id', (r) => r.req_id),
  stringColumn('revision', (r) => r.revision),
  jsonColumn('bundles', (r) => r.bundles),
  jsonColumn('input', (r) => r.input),
  jsonColumn('result', (r) => r.result),
  jsonColumn('metrics', (r) => r.metrics),
  jsonColumn('nd_builtin_cache', (r) => r.nd_builtin_cache),
  stringListColumn('erased', (r) => r.erased),
  stringListColumn('masked', (r) => r.masked),
  jsonColumn('extra', (r) => r.extra),
];

export interface DecisionParquetOptions extends ParquetOptions {
  /** Told about a line that is not JSON: it is left out of the file. Without it, such a line throws. */
  onUnprocessable?: (line: string, err: Error) => void;
}

/** Decisions into one Parquet file, a row group at a time (see ParquetTableWriter for its memory). */
export class DecisionParquetWriter {
  constructor(
    private readonly table: ParquetTableWriter<DecisionRow>,
    private readonly onUnprocessable?: (line: string, err: Error) => void,
  ) {}

  /** Decisions written so far. */
  get count(): number {
    return this.table.count;
  }

  /** Adds NDJSON decisions: a buffer of whole lines (the last newline may be missing); blank lines are skipped. */
  add(lines: Buffer): void {
    for (const line of ndjsonLines(lines)) {
      let row: DecisionRow;
      try {
        row = decisionRow(line);
      } catch (err) {
        if (this.onUnprocessable === undefined) throw err;
        this.onUnprocessable(line, err as Error);
        continue;
      }
      this.table.add(row, line.length);
    }
  }

  /** See ParquetTableWriter.finish. */
  finish(): Buffer {
    return this.table.finish();
  }
}

export async function decisionParquetWriter(options: DecisionParquetOptions): Promise<DecisionParquetWriter> {
  return new DecisionParquetWriter(await parquetTableWriter(DECISION_COLUMNS, options), options.onUnprocessable);
}

/**
 * A Parquet file of NDJSON decisions (buffers of whole lines, as the decision buffer yields them), and how
 * many it holds. The same lines and options always give the same bytes.
 */
export async function encodeDecisionsParquet(
  lines: Iterable<Buffer>,
  options: DecisionParquetOptions,
): Promise<{ body: Buffer; count: number }> {
  const writer = await decisionParquetWriter(options);
  for (const group of lines) writer.add(group);
  const body = writer.finish();
  return { body, count: writer.count };
}
