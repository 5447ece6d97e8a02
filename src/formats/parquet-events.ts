/**
 * Destination events as a Parquet file, for batched destinations:
 *
 * | column | Parquet type | from the event |
 * | --- | --- | --- |
 * | id, topic | STRING | as stored |
 * | time | TIMESTAMP(MICROS, UTC) | its RFC 3339 time (null if the text is not one) |
 * | metadata | MAP<STRING, STRING> | its metadata, in key order as stored |
 * | data | JSON | its data's exact text |
 *
 * A lone UTF-16 surrogate in any of them becomes U+FFFD (src/formats/well-formed.ts).
 */

import { rfc3339Micros } from './rfc3339.js';
import { wellFormed, wellFormedJson } from './well-formed.js';
import {
  jsonColumn,
  parquetTableWriter,
  stringColumn,
  stringMapColumn,
  timestampColumn,
  type ParquetColumn,
  type ParquetTableWriter,
} from './parquet-writer.js';
import type { ParquetOptions } from './parquet-options.js';

/** What the file holds of an event (a stored event has these fields, and more). */
export interface ParquetEvent {
  id: string;
  topic: string;
  /** RFC 3339, as the store keeps it. */
  time: string;
  metadata: Readonly<Record<string, string>>;
  /** JSON text. */
  data: string;
}

interface EventRow {
  id: string;
  topic: string;
  time: bigint | null;
  metadata: Array<[string, string]>;
  data: string;
}

export const EVENT_COLUMNS: ReadonlyArray<ParquetColumn<EventRow>> = [
  stringColumn('id', (r) => r.id),
  stringColumn('topic', (r) => r.topic),
  timestampColumn('time', (r) => r.time),
  stringMapColumn('metadata', (r) => r.metadata),
  jsonColumn('data', (r) => r.data),
];

/** Events into one Parquet file, a row group at a time (see ParquetTableWriter for its memory). */
export class EventParquetWriter {
  constructor(private readonly table: ParquetTableWriter<EventRow>) {}

  get count(): number {
    return this.table.count;
  }

  add(event: ParquetEvent): void {
    const metadata = Object.entries(event.metadata).map(([k, v]): [string, string] => [wellFormed(k), wellFormed(v)]);
    let size = event.id.length + event.topic.length + event.time.length + event.data.length;
    for (const [k, v] of metadata) size += k.length + v.length;
    const row = {
      id: wellFormed(event.id),
      topic: wellFormed(event.topic),
      time: rfc3339Micros(event.time) ?? null,
      metadata,
      data: wellFormedJson(event.data),
    };
    this.table.add(row, size);
  }

  /** See ParquetTableWriter.finish. */
  finish(): Buffer {
    return this.table.finish();
  }
}

export async function eventParquetWriter(options: ParquetOptions): Promise<EventParquetWriter> {
  return new EventParquetWriter(await parquetTableWriter(EVENT_COLUMNS, options));
}

/** A Parquet file of events, and how many it holds. The same events and options always give the same bytes. */
export async function encodeEventsParquet(
  events: Iterable<ParquetEvent>,
  options: ParquetOptions,
): Promise<{ body: Buffer; count: number }> {
  const writer = await eventParquetWriter(options);
  for (const event of events) writer.add(event);
  const body = writer.finish();
  return { body, count: writer.count };
}
