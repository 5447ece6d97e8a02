/**
 * Parquet files of rows, row group by row group, with deterministic bytes: the same rows and options always
 * give the same file (no creation time, no random id, a fixed `created_by`), so an object uploaded again
 * after a crash is byte-identical under its key. The schemas are in parquet-decisions.ts and parquet-events.ts.
 *
 * The writer is hyparquet-writer (pure JavaScript, no native code, nothing downloaded at install), chosen by
 * measurement over parquet-wasm + apache-arrow, @dsnp/parquetjs and DuckDB: docs/parquet-writers.md. Its
 * codecs: snappy (its own), gzip (node:zlib) and zstd from @bokuweb/zstd-wasm (Node 20 has no zstd), always
 * the WebAssembly build even where node:zlib has zstd, so the bytes do not change with the Node version.
 * (@hpcc-js/wasm-zstd writes the same bytes, but copies its output out of WebAssembly memory through a JS
 * array: zstd took 2.7 times the CPU, a quarter of the whole encoding.)
 *
 * Memory: rows are held until they make a row group of `rowGroupBytes` (by their JSON text's length, about
 * their uncompressed size in the file, plus a fixed cost per row), then encoded and dropped; the file so far
 * is written, compressed, into one buffer (memory the caller gives, used again file after file). A pending
 * row does not keep its strings: each text value is written as UTF-8 into a TextArena as the row is added,
 * and the row group is encoded from views of it. Kept as strings, every row held its
 * decision's whole text (a slice of a string keeps the string) until its row group was written, by then in
 * V8's old generation, and hyparquet-writer made an ArrayBuffer of each value's UTF-8 to write it: tens of
 * MiB of the encoder thread's heap and of dead ArrayBuffers that only a full collection frees. The bytes
 * written are the same (hyparquet-writer orders strings by their UTF-8 bytes too).
 */

import { gzipSync } from 'node:zlib';
import { ByteWriter, ParquetWriter } from 'hyparquet-writer';
import { giveTextArena, takeTextArena, type TextArena } from './text-arena.js';
import { DEFAULT_ROW_GROUP_BYTES, type ParquetCompression, type ParquetOptions } from './parquet-options.js';

/**
 * What a row costs the writer beyond its text, counted towards `rowGroupBytes`: its object, a slot in each
 * column's values, the writer's work buffers. Without it a row group of tiny decisions (`{}`, three bytes a
 * line) would hold millions of rows, and need gigabytes, before its text reached 4 MiB.
 */
export const ROW_OVERHEAD_BYTES = 256;

/** What every file says wrote it: a constant, so that it never makes two encodings of the same rows differ. */
const CREATED_BY = 'sluice';

type SchemaElement = ConstructorParameters<typeof ParquetWriter>[0]['schema'][number];
type Compressor = (input: Uint8Array) => Uint8Array;

/** One top-level column: its schema elements (a group's children after it) and its value in a row. */
export interface ParquetColumn<Row> {
  schema: SchemaElement[];
  value: (row: Row) => unknown;
  /** Min/max statistics in the footer; off for JSON text, where they only cost space (default on). */
  statistics?: boolean;
}

// ---------------------------------------------------------------------------------------------------------
// Column kinds

const utf8 = (name: string, required = false): SchemaElement => ({
  name,
  type: 'BYTE_ARRAY',
  repetition_type: required ? 'REQUIRED' : 'OPTIONAL',
  converted_type: 'UTF8',
  logical_type: { type: 'STRING' },
});

/** A STRING column (UTF-8). */
export function stringColumn<Row>(name: string, value: (row: Row) => string | null): ParquetColumn<Row> {
  return { schema: [utf8(name)], value };
}

/**
 * JSON text with Parquet's JSON logical type: DuckDB reads it as JSON, Athena as a string for json_extract.
 * The values are the texts themselves, written byte for byte.
 */
export function jsonColumn<Row>(name: string, value: (row: Row) => string | null): ParquetColumn<Row> {
  return {
    schema: [{ name, type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL', logical_type: { type: 'JSON' } }],
    value,
    statistics: false,
  };
}

/** TIMESTAMP(MICROS, UTC) from microseconds since the epoch: the unit Athena and Spark read. */
export function timestampColumn<Row>(name: string, value: (row: Row) => bigint | null): ParquetColumn<Row> {
  return {
    schema: [
      {
        name,
        type: 'INT64',
        repetition_type: 'OPTIONAL',
        converted_type: 'TIMESTAMP_MICROS',
        logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: true, unit: 'MICROS' },
      },
    ],
    value,
  };
}

export function int64Column<Row>(name: string, value: (row: Row) => bigint | null): ParquetColumn<Row> {
  return { schema: [{ name, type: 'INT64', repetition_type: 'OPTIONAL' }], value };
}

/** MAP<STRING, STRING>, entries in the order given. */
export function stringMapColumn<Row>(
  name: string,
  value: (row: Row) => Array<[string, string]> | null,
): ParquetColumn<Row> {
  return {
    schema: [
      { name, repetition_type: 'OPTIONAL', converted_type: 'MAP', logical_type: { type: 'MAP' }, num_children: 1 },
      { name: 'key_value', repetition_type: 'REPEATED', num_children: 2 },
      utf8('key', true),
      utf8('value'),
    ],
    value,
  };
}

/** LIST<STRING> (the three-level list of the Parquet spec). */
export function stringListColumn<Row>(name: string, value: (row: Row) => string[] | null): ParquetColumn<Row> {
  return {
    schema: [
      { name, repetition_type: 'OPTIONAL', converted_type: 'LIST', logical_type: { type: 'LIST' }, num_children: 1 },
      { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
      utf8('element', true),
    ],
    value,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Codecs

interface Zstd {
  init(): Promise<void>;
  compress(data: Uint8Array, level?: number): Uint8Array;
}
let zstdLoading: Promise<Zstd> | undefined;

/** The zstd module, its WebAssembly compiled (once per process: the package keeps one instance). */
async function loadZstd(): Promise<Zstd> {
  // a CommonJS package: its functions are on the default export
  const imported = (await import('@bokuweb/zstd-wasm')) as unknown as { default?: Zstd } & Zstd;
  const zstd = imported.default ?? imported;
  await zstd.init();
  return zstd;
}

/** The compressor of a codec; zstd's WebAssembly is compiled once per process, on first use. */
async function compressorOf(compression: ParquetCompression): Promise<Compressor | undefined> {
  switch (compression) {
    case 'zstd': {
      // a failed load is not kept: the next file tries again
      zstdLoading ??= loadZstd().catch((err: unknown) => {
        zstdLoading = undefined;
        throw err;
      });
      const zstd = await zstdLoading;
      // level 3: zstd's own default, and a constant, since the level is part of what the bytes depend on
      return (data) => zstd.compress(data, 3);
    }
    case 'gzip':
      return (data) => gzipSync(data, { level: 6 });
    default:
      return undefined;
  }
}

const CODEC = { zstd: 'ZSTD', snappy: 'SNAPPY', gzip: 'GZIP', none: 'UNCOMPRESSED' } as const;

// ---------------------------------------------------------------------------------------------------------
// The writer

/**
 * The file's bytes, written straight into the memory given for them (a body buffer the encoder thread was
 * handed: body-buffers.ts), which doubles as ByteWriter does when the file outgrows it. The file is never
 * held twice: no chunk per row group to be joined at the end.
 */
class FileWriter extends ByteWriter {
  constructor(into: ArrayBuffer | undefined) {
    super(0);
    this.buffer = into ?? new ArrayBuffer(FIRST_FILE_BYTES);
    this.view = new DataView(this.buffer);
  }
}

/** The memory a file starts in when none is given: grown by doubling from there. */
const FIRST_FILE_BYTES = 1024 * 1024;

/**
 * How a column's values wait in the pending rows: a STRING or JSON column as where its UTF-8 is in the arena
 * (`text`), a MAP or LIST with its strings as views of the arena (`nested`), a number as it is (`scalar`).
 */
type PendingKind = 'text' | 'nested' | 'scalar';

function pendingKindOf(column: ParquetColumn<unknown>): PendingKind {
  if (column.schema.length > 1) return 'nested';
  return column.schema[0]!.type === 'BYTE_ARRAY' ? 'text' : 'scalar';
}

/** Rows into one Parquet file. Make one with `parquetTableWriter`; not reusable after `finish`. */
export class ParquetTableWriter<Row> {
  private readonly writer: FileWriter;
  private readonly parquet: ParquetWriter;
  private readonly kinds: PendingKind[];
  private readonly arena: TextArena;
  /**
   * Per column, the pending rows' values: for a `text` column two numbers a row (where its UTF-8 starts
   * and ends in the arena, -1 for null), for the others the values themselves.
   */
  private pending: unknown[][];
  private pendingRows = 0;
  private pendingBytes = 0;
  private finished = false;
  /** Rows added so far. */
  count = 0;

  constructor(
    private readonly columns: ReadonlyArray<ParquetColumn<Row>>,
    codec: ParquetCompression,
    compressor: Compressor | undefined,
    private readonly rowGroupBytes: number,
    into: ArrayBuffer | undefined,
  ) {
    this.writer = new FileWriter(into);
    this.parquet = new ParquetWriter({
      writer: this.writer,
      schema: [{ name: 'root', num_children: columns.length }, ...columns.flatMap((c) => c.schema)],
      codec: CODEC[codec],
      compressors: compressor === undefined ? {} : { [CODEC[codec]]: compressor },
      createdBy: CREATED_BY,
    });
    this.kinds = columns.map((c) => pendingKindOf(c as ParquetColumn<unknown>));
    this.pending = columns.map(() => []);
    // a row group's text is at most rowGroupBytes and its last row: room for that row unless it is large
    this.arena = takeTextArena(rowGroupBytes + ARENA_SLACK_BYTES);
  }

  /**
   * Adds a row of about `size` uncompressed bytes (its JSON text's length will do); writes a row group when
   * the pending rows (their sizes and ROW_OVERHEAD_BYTES each) reach `rowGroupBytes`. The row is not kept.
   */
  add(row: Row, size: number): void {
    if (this.finished) throw new Error('Parquet file already finished');
    const { arena } = this;
    for (let c = 0; c < this.columns.length; c++) {
      const value = this.columns[c]!.value(row);
      const kept = this.pending[c]!;
      switch (this.kinds[c]) {
        case 'text':
          if (value === null || value === undefined) kept.push(-1, -1);
          else kept.push(arena.add(value as string), arena.end);
          break;
        case 'nested':
          kept.push(viewsOf(value, arena));
          break;
        default:
          kept.push(value);
      }
    }
    this.pendingRows++;
    this.pendingBytes += size + ROW_OVERHEAD_BYTES;
    this.count++;
    if (this.pendingBytes >= this.rowGroupBytes) this.writeRowGroup();
  }

  /**
   * Writes the last row group and the footer; returns the file, a view of the start of the memory it was
   * written in (`into` when it fitted, else memory of its own).
   */
  finish(): Buffer {
    if (this.finished) throw new Error('Parquet file already finished');
    this.finished = true;
    this.writeRowGroup();
    giveTextArena(this.arena, 2 * (this.rowGroupBytes + ARENA_SLACK_BYTES));
    // hyparquet-writer JSON.stringify()s the values of a column annotated with the JSON converted type, so
    // the annotation (which DuckDB needs to read the column as JSON rather than BLOB) goes into the footer's
    // schema only, after every exact text is written; the footer is the only place the schema is written
    this.parquet.schema = this.parquet.schema.map((e) =>
      e.logical_type?.type === 'JSON' ? { ...e, converted_type: 'JSON' } : e,
    );
    void this.parquet.finish();
    return Buffer.from(this.writer.buffer, 0, this.writer.index);
  }

  private writeRowGroup(): void {
    const rows = this.pendingRows;
    if (rows === 0) return;
    const { arena } = this;
    const columnData = this.columns.map((c, i) => {
      const kept = this.pending[i]!;
      let data = kept;
      if (this.kinds[i] === 'text') {
        data = new Array<Uint8Array | null>(rows);
        for (let r = 0; r < rows; r++) {
          const start = kept[2 * r] as number;
          data[r] = start < 0 ? null : arena.view(start, kept[2 * r + 1] as number);
        }
      }
      return { name: c.schema[0]!.name, data, statistics: c.statistics ?? true };
    });
    this.pending = this.columns.map(() => []);
    this.pendingRows = 0;
    this.pendingBytes = 0;
    void this.parquet.write({ columnData: columnData as never, rowGroupSize: rows });
    ownStatistics(this.parquet.row_groups.at(-1)!);
    arena.clear();
  }
}

/** Room in a new arena beyond rowGroupBytes, for the row that takes a row group past it. */
const ARENA_SLACK_BYTES = 1024 * 1024;

/** A MAP's or LIST's value with each string a view of its UTF-8 in the arena. */
function viewsOf(value: unknown, arena: TextArena): unknown {
  if (typeof value === 'string') {
    const start = arena.add(value);
    return arena.view(start, arena.end);
  }
  return Array.isArray(value) ? value.map((v) => viewsOf(v, arena)) : value;
}

type RowGroup = ParquetWriter['row_groups'][number];

/**
 * The footer is written at `finish` from what ParquetWriter keeps of each row group, whose min/max
 * statistics of a STRING column are values it was given, views of the arena that the next row group
 * overwrites: copies of them are put in their place.
 */
function ownStatistics(group: RowGroup): void {
  for (const { meta_data } of group.columns) {
    const statistics = meta_data?.statistics as Record<string, unknown> | undefined;
    if (statistics === undefined) continue;
    for (const bound of ['min_value', 'max_value']) {
      const value = statistics[bound];
      if (value instanceof Uint8Array) statistics[bound] = new Uint8Array(value);
    }
  }
}

/** A writer of one file; async only to load the zstd codec on first use (the writer itself is synchronous). */
export async function parquetTableWriter<Row>(
  columns: ReadonlyArray<ParquetColumn<Row>>,
  options: ParquetOptions,
): Promise<ParquetTableWriter<Row>> {
  const rowGroupBytes = options.rowGroupBytes ?? DEFAULT_ROW_GROUP_BYTES;
  if (!(rowGroupBytes > 0)) throw new RangeError(`rowGroupBytes must be positive, got ${rowGroupBytes}`);
  const compressor = await compressorOf(options.compression);
  return new ParquetTableWriter(columns, options.compression, compressor, rowGroupBytes, options.into);
}
