/**
 * Runs in a worker thread (parquet-encoder.ts): one Parquet file per task, from decisions (NDJSON line groups,
 * or chunks as the buffer stores them, gunzipped here) or destination events that the event loop sends over the
 * task's MessagePort as this worker asks for them.
 * Only what has not made a row group yet, and the compressed row groups so far, are held here.
 */
import type { MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { decisionParquetWriter } from '../formats/parquet-decisions.js';
import { eventParquetWriter, type ParquetEvent } from '../formats/parquet-events.js';
import type { ParquetCompression } from '../formats/parquet-options.js';
import { storedChunkLines, type StoredChunk } from './stored-chunk.js';

export interface EncodeTask {
  kind: 'decisions' | 'events';
  compression: ParquetCompression;
  rowGroupBytes: number;
  /**
   * Receives `start` once, then `more` for each piece, from here; sends the file's memory (`Start`), then a
   * piece for each `more`, `null` at the end, or `{ abort }` when the reading failed.
   */
  port: MessagePort;
}

/**
 * The answer to `start`: memory the file is written into (moved here, body-buffers.ts says why), or none.
 * Asked for only when the task runs: a task queued behind another file holds no memory of a body.
 */
export interface Start {
  into: ArrayBuffer | null;
}

/** What the event loop sends: NDJSON lines or a stored chunk (decisions), or a slice of events. */
export type Piece = Uint8Array | StoredChunk | ParquetEvent[] | null | { abort: string };

/** Pieces asked for ahead of the one being encoded: the next is there when this one is done. */
export const PIECES_AHEAD = 2;

export interface EncodeResult {
  /** The file, a view of the start of an ArrayBuffer of its own (`into`, or one it grew into), moved back. */
  body: Uint8Array;
  /** `into` when the file outgrew it, moved back to be used again. */
  spare?: ArrayBuffer;
  count: number;
  /** Decisions that are not JSON (left out of the file), each with why. */
  unprocessable: Array<{ line: string; error: string }>;
}

/** A file being written, fed the pieces of its kind. */
interface PieceWriter {
  readonly count: number;
  add(piece: Uint8Array | StoredChunk | ParquetEvent[]): void;
  finish(): Buffer;
}

async function writerOf(
  kind: EncodeTask['kind'],
  options: { compression: ParquetCompression; rowGroupBytes: number; into?: ArrayBuffer },
  onUnprocessable: (line: string, err: Error) => void,
): Promise<PieceWriter> {
  if (kind === 'decisions') {
    const writer = await decisionParquetWriter({ ...options, onUnprocessable });
    return {
      get count() {
        return writer.count;
      },
      add: (piece) => writer.add(decisionLines(piece as Uint8Array | StoredChunk)),
      finish: () => writer.finish(),
    };
  }
  const writer = await eventParquetWriter(options);
  return {
    get count() {
      return writer.count;
    },
    add: (piece) => {
      for (const event of piece as ParquetEvent[]) writer.add(event);
    },
    finish: () => writer.finish(),
  };
}

/** A piece's NDJSON lines: as sent, or gunzipped from a stored chunk and cut to its batch. */
function decisionLines(piece: Uint8Array | StoredChunk): Buffer {
  return piece instanceof Uint8Array
    ? Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength)
    : storedChunkLines(piece);
}

export default async function encode(task: EncodeTask): Promise<EncodeResult> {
  const { port } = task;
  // one listener for the whole task: a message that came while none was attached would be lost
  const queue: Array<Piece | Start> = [];
  let waiting: (() => void) | undefined;
  port.on('message', (message: Piece | Start) => {
    queue.push(message);
    waiting?.();
  });
  const next = async (): Promise<Piece | Start> => {
    while (queue.length === 0) await new Promise<void>((resolve) => (waiting = resolve));
    waiting = undefined;
    return queue.shift()!;
  };
  try {
    const unprocessable: EncodeResult['unprocessable'] = [];
    port.postMessage('start');
    const into = ((await next()) as Start).into ?? undefined;
    const options = { compression: task.compression, rowGroupBytes: task.rowGroupBytes, into };
    const writer = await writerOf(task.kind, options, (line, err) => unprocessable.push({ line, error: err.message }));
    for (let i = 0; i < PIECES_AHEAD; i++) port.postMessage('more');
    for (;;) {
      const piece = (await next()) as Piece;
      if (piece === null) break;
      if ('abort' in piece) throw new Error(piece.abort);
      port.postMessage('more');
      writer.add(piece);
    }
    const file = writer.finish();
    // the file's ArrayBuffer is its own (into, or the one it grew into): it moves to the event loop without a copy
    const body = new Uint8Array(file.buffer, file.byteOffset, file.byteLength);
    const spare = into !== undefined && file.buffer !== into ? into : undefined;
    const result: EncodeResult = { body, count: writer.count, unprocessable, ...(spare ? { spare } : {}) };
    const transfer = spare ? [body.buffer, spare] : [body.buffer];
    const movable = { [Piscina.transferableSymbol]: transfer, [Piscina.valueSymbol]: result };
    return Piscina.move(movable as unknown as Parameters<typeof Piscina.move>[0]) as unknown as EncodeResult;
  } finally {
    port.close();
  }
}
