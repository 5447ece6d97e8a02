/**
 * Decisions read back from a Parquet file of the decision schema (parquet-decisions.ts), each as its JSON
 * text (decision-text.ts), with hyparquet (pure JavaScript; the reader hyparquet-writer is built on).
 *
 * Memory stays bounded whatever the file's size: the file is read through ranged reads (the footer, then
 * the column chunks asked for), one row group at a time, and a lookup by decision_id first reads only that
 * column, skipping row groups whose min/max statistics exclude the id, then the other columns of the matching
 * rows' group only. A row group is what the writer holds in memory too (4 MiB of decisions by default).
 */

import { gunzipSync } from 'node:zlib';
import { parquetMetadataAsync, parquetReadObjects, rowIndex } from 'hyparquet';
import type { AsyncBuffer, Compressors, FileMetaData } from 'hyparquet';
import type { DecisionRow } from './decision-row.js';
import { decisionText } from './decision-text.js';

/** Where a Parquet file's bytes come from: its length and ranged reads (end exclusive). */
export interface ByteSource {
  byteLength: number;
  read(start: number, end: number): Promise<Buffer>;
}

interface Zstd {
  init(): Promise<void>;
  decompress(data: Uint8Array, opts?: { defaultHeapSize?: number }): Uint8Array;
}
let zstdLoading: Promise<Zstd> | undefined;

/** The codecs the writer uses (snappy is hyparquet's own). zstd's WebAssembly is compiled once, on first use. */
async function compressors(): Promise<Compressors> {
  zstdLoading ??= (async () => {
    const imported = (await import('@bokuweb/zstd-wasm')) as unknown as { default?: Zstd } & Zstd;
    const zstd = imported.default ?? imported;
    await zstd.init();
    return zstd;
  })().catch((err: unknown) => {
    zstdLoading = undefined;
    throw err;
  });
  const zstd = await zstdLoading;
  return {
    ZSTD: (input, outputLength) => {
      const out = zstd.decompress(input, { defaultHeapSize: outputLength });
      if (out.length !== outputLength)
        throw new Error(`zstd page of ${out.length} bytes, the footer says ${outputLength}`);
      return out;
    },
    GZIP: (input) => new Uint8Array(gunzipSync(input)),
  };
}

/** Text, not values: JSON columns as their exact bytes, timestamps as their microseconds. */
const PARSERS = {
  jsonFromBytes: (bytes: Uint8Array) => (bytes === undefined ? bytes : Buffer.from(bytes).toString('utf8')),
  timestampFromMicroseconds: (micros: bigint) => micros,
};

function asyncBuffer(source: ByteSource): AsyncBuffer {
  return {
    byteLength: source.byteLength,
    slice: async (start, end) => {
      const b = await source.read(start, end ?? source.byteLength);
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
    },
  };
}

/**
 * The footer, with MAP columns read as plain groups: hyparquet makes a MAP a JS object, which moves
 * integer-like keys (`"2"`) before the others; as a group its entries stay a list in the file's order.
 */
async function metadataOf(file: AsyncBuffer): Promise<FileMetaData> {
  // 64 KiB: a footer of a few row groups fits, and a small object is not read twice
  const metadata = await parquetMetadataAsync(file, { initialFetchSize: 64 * 1024 });
  return {
    ...metadata,
    schema: metadata.schema.map((e) =>
      e.converted_type === 'MAP' ? { ...e, converted_type: undefined, logical_type: undefined } : e,
    ),
  };
}

/**
 * The largest row group read (uncompressed bytes, as the footer says): Sluice writes 4 MiB ones (8 MiB
 * before); a file of other origin with larger ones is refused rather than decoded into a process that has to
 * stay small.
 */
export const MAX_ROW_GROUP_BYTES = 256 * 1024 * 1024;

type ParquetRow = Record<string, unknown>;

/** A row as hyparquet reads it, as the DecisionRow it was written from. */
function decisionRowOf(r: ParquetRow): DecisionRow {
  const str = (name: string) => (typeof r[name] === 'string' ? (r[name] as string) : null);
  const big = (name: string) => (typeof r[name] === 'bigint' ? (r[name] as bigint) : null);
  const list = (name: string) => (Array.isArray(r[name]) ? (r[name] as string[]) : null);
  const entries = (r.labels as { key_value?: Array<{ key: string; value: string }> } | null | undefined)?.key_value;
  return {
    decision_id: str('decision_id'),
    path: str('path'),
    timestamp: big('timestamp'),
    labels: entries ? entries.map(({ key, value }) => [key, value]) : r.labels ? [] : null,
    requested_by: str('requested_by'),
    req_id: big('req_id'),
    revision: str('revision'),
    bundles: str('bundles'),
    input: str('input'),
    result: str('result'),
    metrics: str('metrics'),
    nd_builtin_cache: str('nd_builtin_cache'),
    erased: list('erased'),
    masked: list('masked'),
    extra: str('extra'),
  };
}

/**
 * The decisions of a Parquet decision file as JSON text, in file order; with `decisionId`, only those with
 * that decision_id (read as described above).
 */
export async function* parquetDecisionTexts(
  source: ByteSource,
  opts: { decisionId?: string } = {},
): AsyncGenerator<string> {
  const file = asyncBuffer(source);
  const metadata = await metadataOf(file);
  const common = { file, metadata, compressors: await compressors(), parsers: PARSERS };
  let groupStart = 0;
  for (const group of metadata.row_groups) {
    if (Number(group.total_byte_size) > MAX_ROW_GROUP_BYTES)
      throw new Error(
        `a row group of ${group.total_byte_size} bytes, more than the ${MAX_ROW_GROUP_BYTES} this reader decodes at once`,
      );
    const groupEnd = groupStart + Number(group.num_rows);
    let rowStart = groupStart;
    let rowEnd = groupEnd;
    if (opts.decisionId !== undefined) {
      const ids = await parquetReadObjects({
        ...common,
        columns: ['decision_id'],
        rowStart,
        rowEnd,
        rowFormat: 'object',
        filter: { decision_id: { $eq: opts.decisionId } },
        includeRowIndex: true,
      });
      const positions = ids.map((row) => row[rowIndex]!);
      rowStart = Math.min(groupEnd, ...positions);
      rowEnd = Math.max(rowStart, ...positions.map((p) => p + 1));
    }
    if (rowEnd > rowStart) {
      const rows = await parquetReadObjects({ ...common, rowStart, rowEnd, rowFormat: 'object' });
      for (const row of rows) {
        if (opts.decisionId !== undefined && row.decision_id !== opts.decisionId) continue;
        yield decisionText(decisionRowOf(row));
      }
    }
    groupStart = groupEnd;
  }
}
