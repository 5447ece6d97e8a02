/**
 * A chunk of decisions as the buffer stores it (one gzip member), sent to the Parquet encoder thread with the
 * positions of the batch it is read for, and gunzipped there (parquet-encoder.ts storedChunks says why). Its
 * own module: the event loop and the encoder thread both use it, and the event loop must not load the encoder.
 */
import { gunzipSync } from 'node:zlib';
import { linesInRange } from '../formats/ndjson-lines.js';

export interface StoredChunk {
  gzip: Uint8Array;
  /** The position of its first decision. */
  pos: number;
  /** The batch's first and last positions (the chunk's lines outside them are left out). */
  first: number;
  last: number;
}

/** How the error of a stored chunk that does not gunzip begins (the event loop then reads the batch itself). */
export const UNREADABLE_CHUNK = 'a stored chunk does not gunzip:';

/** The chunk's NDJSON lines within its batch; throws an UNREADABLE_CHUNK error when it does not gunzip. */
export function storedChunkLines(chunk: StoredChunk): Buffer {
  let ndjson: Buffer;
  try {
    ndjson = gunzipSync(chunk.gzip);
  } catch (err) {
    throw new Error(`${UNREADABLE_CHUNK} position ${chunk.pos}: ${(err as Error).message}`);
  }
  return linesInRange(ndjson, chunk.pos, chunk.first, chunk.last);
}
