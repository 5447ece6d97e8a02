/**
 * Parquet objects of sealed batches (decision outputs and batched destinations with `format: parquet`),
 * encoded in a worker thread: a 64 MiB batch takes about two CPU-seconds to split into rows and compress,
 * which the event loop (ingest, the API) must not wait for. Encoding is synchronous row group by row group
 * (src/formats/parquet-writer.ts), so the worker asks for the batch piece by piece over a MessagePort and the
 * event loop reads the buffer only as fast as the worker encodes: neither holds the batch's text at once,
 * only a few pieces of about PIECE_BYTES, the rows of the row group being filled, and the compressed file.
 *
 * The bytes depend only on the batch's decisions (or events) and the encoding, never on how they were cut
 * into pieces nor on which thread ran: a batch uploaded again after a crash is the same file.
 */
import { availableParallelism } from 'node:os';
import { MessageChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { ParquetEvent } from '../formats/parquet-events.js';
import { DEFAULT_ROW_GROUP_BYTES, type ParquetCompression } from '../formats/parquet-options.js';
import { linesInRange } from '../formats/ndjson-lines.js';
import { md5, type StoredObject } from '../sinks/types.js';
import { batchChunks, PARQUET_CONTENT_TYPE, type Encoding } from './encode.js';
import type { ChunkMeta, CorruptChunkError, DecisionBuffer, SealedBatch } from '../buffer/types.js';
import type { EncodeResult, EncodeTask, Piece, Start } from './parquet-encode-worker.js';
import { UNREADABLE_CHUNK, type StoredChunk } from './stored-chunk.js';
import { bodyBuffers } from './body-buffers.js';

/** About this much of a batch goes to the worker per message (NDJSON text, or events' fields). */
const PIECE_BYTES = 1024 * 1024;
/** Events per message at most, whatever their size. */
const PIECE_EVENTS = 2000;

/**
 * Threads that encode Parquet: half the cores (one on two), so that ingest's decoding keeps the rest. Batches
 * beyond them wait their turn without being read.
 */
const THREADS = Math.max(1, Math.floor(availableParallelism() / 2));

/**
 * Each encoder thread's V8 old generation. Measured over a 64 MiB batch (docs/parquet-writers.md), the
 * writer's live data is a few times one row group, but V8 collects it late: with its default heap a thread's
 * peak was 135-175 MiB for 8 MiB row groups, with a 96 MiB limit ~115 MiB at the same CPU. The limit makes it
 * collect sooner; it is well above what the largest row groups allowed (config: 32 MiB) need.
 */
const OLD_GENERATION_MB = 128;

/**
 * Each encoder thread's V8 young generation (its semi-spaces). Every row's column values are short-lived, so
 * V8's default lets the young generation grow to tens of MiB of garbage between scavenges. Measured over three
 * 64 MiB batches through this pool, peak RSS above the process's start was +178 MiB with the default, +122 with
 * 8 MiB, +108 with 2 MiB (~40 of each is the caller making the decisions), at 11.8 / 12.2 / 13.8 CPU-seconds.
 * Since row groups are 4 MiB and their text sits outside the heap (text-arena.ts), little of it lives long:
 * at full load (bench steady, one sitting) 4 MiB took the process's peak from 278-283 MiB to 263-278 at the
 * same rate. V8 would take node's `--max-semi-space-size` (which `npm start` gives the event loop) over it:
 * heap-policy.ts clears that flag once the event loop's heap is made.
 */
const YOUNG_GENERATION_MB = 4;

let pool: Piscina<EncodeTask, EncodeResult> | undefined;

function encoderPool(): Piscina<EncodeTask, EncodeResult> {
  // under tsx (tests, the benchmark) the worker is the TypeScript source; in dist/ it is compiled
  const worker = import.meta.url.endsWith('.ts') ? './parquet-encode-worker.ts' : './parquet-encode-worker.js';
  pool ??= new Piscina({
    filename: new URL(worker, import.meta.url).href,
    // The threads start with the first Parquet file and stay: one that ended when idle left most of its
    // memory with malloc, and its successor (the next batch, or the flush at shutdown) took as much again.
    // A process with no Parquet output never starts them.
    minThreads: THREADS,
    maxThreads: THREADS,
    // one file at a time per thread: two would hold two row groups
    concurrentTasksPerWorker: 1,
    resourceLimits: { maxOldGenerationSizeMb: OLD_GENERATION_MB, maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
  });
  return pool;
}

/** Ends the encoder threads (at shutdown); a later encoding starts them again. */
export async function closeParquetEncoder(): Promise<void> {
  const closing = pool;
  pool = undefined;
  await closing?.destroy();
}

export type ParquetObject = StoredObject & {
  count: number;
  /** Decisions that are not JSON, left out of the file (never from the buffer, which holds JSON only). */
  unprocessable: Array<{ line: string; error: string }>;
};

/**
 * A Parquet object of decisions: NDJSON line groups as bufferLines (or transformLines) yields them, or the
 * batch's chunks as storedChunks yields them.
 */
export async function parquetDecisionsObject(
  groups: Iterable<Buffer | StoredChunk>,
  encoding: Encoding,
  key: string,
): Promise<ParquetObject> {
  return objectOf(await encodeOnWorker('decisions', encoding, decisionPieces(groups)), key);
}

/** A Parquet object of a batched destination's events (id, topic, time, metadata, data). */
export async function parquetEventsObject(
  events: Iterable<ParquetEvent>,
  encoding: Encoding,
  key: string,
): Promise<ParquetObject> {
  return objectOf(await encodeOnWorker('events', encoding, eventPieces(events)), key);
}

function objectOf(result: EncodeResult, key: string): ParquetObject {
  const { buffer } = result.body;
  const body = Buffer.from(buffer, result.body.byteOffset, result.body.byteLength);
  // the compression is inside the file: no Content-Encoding, or a client would try to gunzip a Parquet file
  return {
    key,
    body,
    contentType: PARQUET_CONTENT_TYPE,
    contentMD5: md5(body),
    count: result.count,
    unprocessable: result.unprocessable,
    releaseBody: bodyBuffers.releaser(buffer),
  };
}

/**
 * Runs one file's task, answering each `more` of the worker with the next piece (moved, not copied), `null`
 * at the end. If reading a piece throws (the buffer), the worker is told to give up and that error is thrown.
 */
async function encodeOnWorker(
  kind: EncodeTask['kind'],
  encoding: Encoding,
  pieces: Iterator<Uint8Array | StoredChunk | ParquetEvent[]>,
): Promise<EncodeResult> {
  if (encoding.format !== 'parquet') throw new Error(`not a Parquet encoding: ${encoding.format}`);
  const { port1, port2 } = new MessageChannel();
  let ended = false;
  let failure: unknown;
  const send = (piece: Piece) =>
    port1.postMessage(
      piece,
      piece instanceof Uint8Array
        ? [piece.buffer as ArrayBuffer]
        : piece !== null && 'gzip' in piece
          ? [piece.gzip.buffer as ArrayBuffer]
          : [],
    );
  port1.on('message', (ask: 'start' | 'more') => {
    if (ask === 'start') {
      // the file is written into the largest body buffer free (when it fits), so that the memory of bodies
      // already uploaded is used again rather than left to the collector; taken only now that the task runs,
      // so that batches queued behind the thread hold none (each would hold a body's worth)
      const into = bodyBuffers.largest();
      const start: Start = { into: into ?? null };
      port1.postMessage(start, into ? [into] : []);
      return;
    }
    if (ended) return;
    let next: IteratorResult<Uint8Array | StoredChunk | ParquetEvent[]>;
    try {
      next = pieces.next();
    } catch (err) {
      failure = err;
      ended = true;
      send({ abort: `reading the batch failed: ${(err as Error).message}` });
      return;
    }
    if (next.done) ended = true;
    send(next.done ? null : next.value);
  });
  try {
    const result = await encoderPool().run(
      {
        kind,
        compression: encoding.compression as ParquetCompression,
        rowGroupBytes: encoding.parquet?.row_group_bytes ?? DEFAULT_ROW_GROUP_BYTES,
        port: port2,
      },
      { transferList: [port2] },
    );
    if (result.spare) bodyBuffers.give(result.spare);
    return result;
  } catch (err) {
    throw failure ?? err;
  } finally {
    port1.close();
    pieces.return?.();
  }
}

/**
 * Line groups cut at line ends into pieces of about PIECE_BYTES, and stored chunks as they are, each in an
 * ArrayBuffer of its own (to be moved).
 */
function* decisionPieces(groups: Iterable<Buffer | StoredChunk>): Generator<Uint8Array | StoredChunk> {
  for (const group of groups) {
    if (!(group instanceof Uint8Array)) {
      const { gzip } = group;
      // moved when it is the whole of its memory (as SQLite's blobs are read), else copied
      const own = gzip.byteOffset === 0 && gzip.byteLength === gzip.buffer.byteLength;
      yield { ...group, gzip: own ? gzip : new Uint8Array(gzip) };
      continue;
    }
    let start = 0;
    while (start < group.length) {
      let end = group.length;
      if (end - start > PIECE_BYTES) {
        const newline = group.indexOf(0x0a, start + PIECE_BYTES);
        end = newline === -1 ? group.length : newline + 1;
      }
      // a copy: the group's memory may be shared (a slice of a chunk, Node's buffer pool)
      yield new Uint8Array(group.subarray(start, end));
      start = end;
    }
  }
}

/** Events in slices of about PIECE_BYTES (at most PIECE_EVENTS), with only the fields the file holds. */
function* eventPieces(events: Iterable<ParquetEvent>): Generator<ParquetEvent[]> {
  let piece: ParquetEvent[] = [];
  let bytes = 0;
  for (const e of events) {
    piece.push({ id: e.id, topic: e.topic, time: e.time, metadata: e.metadata, data: e.data });
    bytes += e.data.length + e.id.length + e.topic.length + 64;
    if (bytes >= PIECE_BYTES || piece.length >= PIECE_EVENTS) {
      yield piece;
      piece = [];
      bytes = 0;
    }
  }
  if (piece.length > 0) yield piece;
}

/**
 * The batch's chunks for parquetDecisionsObject: each gzip chunk as it is stored (its checksum checked here),
 * to be gunzipped in the encoder thread, and an uncompressed one as its lines. Gunzipping on the event loop
 * made every decision's NDJSON a buffer there, off the V8 heap and so freed only at the next collection: at
 * full load tens of MiB of them waited for it. A chunk whose checksum fails is skipped and handed to
 * `onCorrupt`, as bufferLines does.
 */
export function* storedChunks(
  buffer: DecisionBuffer,
  batch: SealedBatch,
  onCorrupt?: (err: CorruptChunkError) => void,
): Generator<Buffer | StoredChunk> {
  const read = (meta: ChunkMeta) =>
    meta.compressed ? buffer.readStoredPayload(meta.pos) : buffer.readChunk(meta.pos)?.payload;
  for (const [meta, payload] of batchChunks(buffer, batch, read, onCorrupt)) {
    if (meta.compressed) {
      yield { gzip: payload, pos: meta.pos, first: batch.first, last: batch.last };
    } else {
      const lines = linesInRange(payload, meta.pos, batch.first, batch.last);
      if (lines.length > 0) yield lines;
    }
  }
}

/**
 * Whether the encoding failed on a stored chunk that passed its checksum but does not gunzip (one stored
 * before checksums, damaged): reading the batch with bufferLines sets such a chunk aside.
 */
export function unreadableChunk(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith(UNREADABLE_CHUNK);
}
