import { createGzip } from 'node:zlib';
import { once } from 'node:events';
import { CorruptChunkError, type ChunkMeta, type DecisionBuffer, type SealedBatch } from '../buffer/types.js';
import { md5, type StoredObject } from '../sinks/types.js';
import { bodyBuffers } from './body-buffers.js';
import { keyOf, parseJson, toText, visitMembers } from '../json/source-tree.js';
import { linesInRange } from '../formats/ndjson-lines.js';
import type { DecisionTransform } from '../transforms/decision-transform.js';

export type Format = 'ndjson' | 'json_array' | 'parquet';
/** gzip and none for every format; zstd and snappy only inside Parquet files (config/schema.ts checks it). */
export type Compression = 'gzip' | 'none' | 'zstd' | 'snappy';

export interface Encoding {
  format: Format;
  compression: Compression;
  compression_level?: number;
  /** Parquet's row groups (format parquet only; unset: DEFAULT_ROW_GROUP_BYTES). */
  parquet?: { row_group_bytes: number };
}

/** The file extension of an encoding; a Parquet file's compression is inside it, so it never adds `.gz`. */
export function extension({ format, compression }: Encoding): string {
  if (format === 'parquet') return 'parquet';
  return (format === 'ndjson' ? 'ndjson' : 'json') + (compression === 'gzip' ? '.gz' : '');
}

export function contentType(format: Format): string {
  if (format === 'parquet') return PARQUET_CONTENT_TYPE;
  return format === 'ndjson' ? 'application/x-ndjson' : 'application/json';
}

/** The media type IANA registered for Parquet files. */
export const PARQUET_CONTENT_TYPE = 'application/vnd.apache.parquet';

/** Told about a decision that could not be parsed or transformed: it is not written. */
export type Unprocessable = (line: string, err: Error) => void;

/**
 * An object of NDJSON line groups (each a buffer of whole lines ending in a newline) in the given encoding,
 * with the number of lines it holds. Read group by group: with gzip only the compressed bytes are held in
 * memory. The same lines always encode to the same bytes, so a re-upload is identical.
 */
export async function encodeLines(
  lines: Iterable<Buffer>,
  encoding: Encoding,
  key: string,
): Promise<StoredObject & { count: number }> {
  // Parquet is encoded in a worker thread from rows, not from lines: parquet-encoder.ts
  if (encoding.format === 'parquet') throw new Error('encodeLines writes NDJSON and JSON arrays, not Parquet');
  let count = 0;
  const counted = function* () {
    for (const group of lines) {
      for (let i = group.indexOf(0x0a); i !== -1; i = group.indexOf(0x0a, i + 1)) count++;
      yield group;
    }
  };
  const pieces = formatPieces(counted(), encoding.format);
  let body: Buffer;
  if (encoding.compression === 'gzip') {
    const gzip = createGzip({ level: encoding.compression_level ?? 6 });
    const out: Buffer[] = [];
    gzip.on('data', (b: Buffer) => out.push(b));
    const ended = once(gzip, 'end');
    for (const piece of pieces) {
      if (!gzip.write(piece)) await once(gzip, 'drain');
    }
    gzip.end();
    await ended;
    body = bodyBuffers.concat(out);
  } else {
    body = bodyBuffers.concat([...pieces]);
  }
  return {
    key,
    body,
    contentType: contentType(encoding.format),
    contentEncoding: encoding.compression === 'gzip' ? 'gzip' : undefined,
    contentMD5: md5(body),
    count,
    releaseBody: bodyBuffers.releaser(body.buffer),
  };
}

/**
 * The batch's decisions as NDJSON, one buffer chunk at a time, as they were received. A chunk whose checksum
 * fails is skipped (never yielded as data) and handed to `onCorrupt`.
 */
export function* bufferLines(
  buffer: DecisionBuffer,
  batch: SealedBatch,
  onCorrupt?: (err: CorruptChunkError) => void,
): Generator<Buffer> {
  for (const [meta, payload] of batchChunks(buffer, batch, (m) => buffer.readChunk(m.pos)?.payload, onCorrupt)) {
    const lines = linesInRange(payload, meta.pos, batch.first, batch.last);
    if (lines.length > 0) yield lines;
  }
}

/**
 * Each chunk of the batch with what `read` gives of it: a chunk whose checksum fails is skipped and handed to
 * `onCorrupt` (without one, its error is thrown); a chunk that is not there is an error.
 */
export function* batchChunks<T>(
  buffer: DecisionBuffer,
  batch: SealedBatch,
  read: (meta: ChunkMeta) => T | undefined,
  onCorrupt?: (err: CorruptChunkError) => void,
): Generator<[ChunkMeta, T]> {
  for (const meta of buffer.streamChunks(batch.partition, batch.hour, batch.instance, batch.first, batch.last)) {
    let chunk: T | undefined;
    try {
      chunk = read(meta);
    } catch (err) {
      if (!(err instanceof CorruptChunkError) || !onCorrupt) throw err;
      onCorrupt(err);
      continue;
    }
    if (chunk === undefined)
      throw new Error(`buffer chunk ${meta.pos} of batch ${batch.first}-${batch.last} is missing`);
    yield [meta, chunk];
  }
}

/**
 * NDJSON line groups with each decision dropped or rewritten by the transform. Decisions are parsed into
 * source trees, not JS values, so a rewritten decision differs from the received one only where the rules
 * changed it (number text, key order and the rest are kept); an untouched one is its line as it is.
 * A decision the parser or the transform throws on is handed to `onUnprocessable` and left out (without a
 * callback the error propagates), as is one with more than RULES_MAX_VALUES values within the depth the rules
 * read (deeper ones stay text, never nodes): its tree would not fit in memory, and written without the rules
 * it would store what they remove.
 */
export function* transformLines(
  groups: Iterable<Buffer>,
  transform: DecisionTransform,
  onUnprocessable?: Unprocessable,
): Generator<Buffer> {
  for (const group of groups) {
    const out: string[] = [];
    for (const line of group.toString('utf8').split('\n')) {
      if (line === '') continue;
      let text: string | undefined;
      try {
        const decision = parseJson(line, Infinity, transform.depth, RULES_MAX_VALUES);
        const result = transform(decision);
        text = result === undefined ? undefined : result === decision ? line : toText(result);
      } catch (err) {
        // one decision the rules cannot process must not stop the output: it is handed over, not written
        if (!onUnprocessable) throw err;
        onUnprocessable(line, err instanceof Error ? err : new Error(String(err)));
        continue;
      }
      if (text !== undefined) out.push(text);
    }
    if (out.length > 0) yield Buffer.from(`${out.join('\n')}\n`);
  }
}

/**
 * Values a decision may have within the depth the rules read (transformLines): about 80 MB of tree. A decision
 * of OPA's has tens to thousands; one past this is set aside (the output's dead letter), not masked.
 */
export const RULES_MAX_VALUES = 1_000_000;

/** What a key layout reads of a decision: these two members' strings (null: present, not a string). */
type KeyFieldsText = { decision_id?: string | null; timestamp?: string | null };

/**
 * The `decision_id` and `timestamp` of each decision of NDJSON line groups (for key layouts that name objects
 * by them), each the string it is (the last of a repeated key, as JSON.parse takes), any other value null.
 * Only those two members are decoded: the rest of a decision is scanned, never made into values, so a decision
 * of millions of elements costs no memory here. A line that is not JSON is handed to `onUnprocessable` and
 * skipped (without a callback the error propagates).
 */
export function* keyFieldsOf(groups: Iterable<Buffer>, onUnprocessable?: Unprocessable): Generator<KeyFieldsText> {
  for (const group of groups) {
    for (const line of group.toString('utf8').split('\n')) {
      if (line === '') continue;
      const fields: KeyFieldsText = {};
      try {
        visitMembers(line, (m) => {
          const key = keyOf(m);
          if (key !== 'decision_id' && key !== 'timestamp') return;
          const { value } = m;
          fields[key] =
            value.type === 'string' ? (JSON.parse(value.src.slice(value.start, value.end)) as string) : null;
        });
      } catch (err) {
        if (!onUnprocessable) throw err;
        onUnprocessable(line, err as Error);
        continue;
      }
      yield fields;
    }
  }
}

/** NDJSON line groups as byte pieces in the output format. */
function* formatPieces(groups: Iterable<Buffer>, format: Format): Generator<Buffer> {
  if (format === 'json_array') yield Buffer.from('[');
  let first = true;
  for (const lines of groups) {
    if (format === 'ndjson') {
      yield lines;
    } else {
      // NDJSON lines hold no raw newline, so every newline is a separator: it becomes a comma.
      const piece = Buffer.from(lines.subarray(0, lines.length - 1));
      for (let i = piece.indexOf(0x0a); i !== -1; i = piece.indexOf(0x0a, i + 1)) piece[i] = 0x2c;
      if (!first) yield Buffer.from(',');
      yield piece;
    }
    first = false;
  }
  if (format === 'json_array') yield Buffer.from(']');
}

/** Byte length (with newline) of each NDJSON line of a payload. */
export function lineLengths(payload: Buffer): number[] {
  const lengths: number[] = [];
  let start = 0;
  while (start < payload.length) {
    const end = payload.indexOf(0x0a, start) + 1;
    lengths.push(end - start);
    start = end;
  }
  return lengths;
}
