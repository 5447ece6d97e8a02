/**
 * The durable buffer: every acknowledged decision lives here until every output has delivered it.
 *
 * Decisions are stored in chunks: NDJSON lines of one request that share a partition and a UTC hour
 * (a "stream"). Each decision has a position, a sequence number that never repeats in this buffer;
 * a chunk at position `pos` holds the decisions `pos .. pos + count - 1`.
 */
export interface NewChunk {
  partition: string;
  /** UTC hour of the decisions' own timestamps, `YYYY-MM-DDTHH`. */
  hour: string;
  /** labels.id of the OPA that made the decisions ('' when it has none). */
  instance: string;
  count: number;
  /**
   * NDJSON (`count` lines, each ending in `\n`) as stored: one gzip member when `compressed`. Compressed once,
   * in the decode threads, an output writing gzip NDJSON concatenates stored members into its objects.
   */
  payload: Buffer;
  compressed: boolean;
  /** Bytes of the NDJSON uncompressed: what batches' max_bytes count. */
  bytes: number;
  /** The NDJSON uncompressed, kept only for decisions that become a tenant's events (see `events`). */
  text?: Buffer;
  /** A digest of the decision_id of each line ('' when it has none), to recognise re-sends; not stored with the chunk. */
  decisionKeys?: string[];
  /** Per line, what a decision that becomes a tenant's event needs; only when asked for. Not stored with the chunk. */
  events?: DecisionEventFields[];
}

export interface DecisionEventFields {
  id: string | undefined;
  timestamp: string | undefined;
}

export interface ChunkMeta {
  pos: number;
  partition: string;
  hour: string;
  instance: string;
  count: number;
  /** Bytes of its NDJSON, uncompressed. */
  bytes: number;
  /** Bytes as stored (compressed, when `compressed`): what counts against buffer.max_bytes. */
  storedBytes: number;
  compressed: boolean;
  receivedAt: number;
}

/** A chunk read back: `payload` is always the NDJSON uncompressed. */
export interface Chunk extends ChunkMeta {
  payload: Buffer;
}

/** A batch an output has fixed before uploading it: the decisions of one stream in [first, last]. */
export interface SealedBatch {
  output: string;
  partition: string;
  hour: string;
  /** For outputs that batch per OPA instance: its labels.id; null: every instance. */
  instance: string | null;
  first: number;
  last: number;
  count: number;
  bytes: number;
}

export interface BufferStats {
  bytes: number;
  chunks: number;
  /** Decisions in the buffer (not yet delivered by every output). */
  events: number;
  maxBytes: number;
  oldestReceivedAt: number | null;
  /** Chunks found corrupt (payload and stored checksum differ) since this process started, each counted once. */
  corruptChunks: number;
  /** 1 when this process started a new, empty buffer because the old one was lost (--accept-buffer-loss), else 0. */
  resets: number;
}

export interface DecisionBuffer {
  /** A stable id of this buffer, part of every batch name, so a wiped data_dir never overwrites old objects. */
  readonly id: string;
  /**
   * Resolves once the chunks are durable on disk; many concurrent appends share one fsync. `accepted` are keys
   * of what was accepted (request digests, decision ids), stored in the same transaction: see RecentlyAccepted.
   */
  append(chunks: NewChunk[], accepted?: string[]): Promise<void>;
  /** The newest accepted keys stored since `since` (ms), about `maxKeys` of them, oldest first. */
  acceptedSince(since: number, maxKeys: number): Array<{ at: number; keys: string[] }>;
  /** Forgets accepted keys stored before `before` (ms). */
  forgetAccepted(before: number): void;
  /** Whether `bytes` more fit under the bound (counting appends not yet committed). */
  hasRoom(bytes: number): boolean;
  readChunkMetas(afterPos: number, limit: number): ChunkMeta[];
  /** The chunks of one stream (an instance of null: all) that hold any decision in [first, last], in position order. */
  streamChunks(partition: string, hour: string, instance: string | null, first: number, last: number): ChunkMeta[];
  /** The chunk at `pos`; throws CorruptChunkError when its payload does not match the checksum stored at append. */
  readChunk(pos: number): Chunk | undefined;
  /** The chunk's payload exactly as stored (a gzip member when `compressed`), checksum verified. */
  readStoredPayload(pos: number): Buffer | undefined;
  /** Called when new chunks are durable. */
  onAppend(listener: () => void): void;

  // output positions
  cursor(output: string): number;
  /** Batches fixed but not yet delivered, to upload again after a restart. */
  sealedBatches(output: string): SealedBatch[];
  /** Delivered batches beyond the output's cursor: their decisions must not be batched again. */
  deliveredBatches(output: string): SealedBatch[];
  /** Records batches durably before they are uploaded. */
  seal(batches: SealedBatch[]): void;
  /** Marks a batch delivered and moves the output's cursor (every position <= cursor is delivered). */
  complete(batch: SealedBatch, cursor: number): void;
  setCursor(output: string, cursor: number): void;
  /** The key, format and compression an output's batches were sealed under (an opaque string), if recorded. */
  outputShape(output: string): string | undefined;
  setOutputShape(output: string, shape: string): void;
  /** Forgets outputs that are no longer configured, so they do not hold data forever. */
  retainOutputs(outputs: string[]): string[];
  /** Removes chunks every output has delivered. Returns the number of chunks removed. */
  trim(): number;

  /** The position of the newest decision (0 when none was ever stored). */
  lastPosition(): number;
  stats(): BufferStats;
  writable(): boolean;
  close(): void;
}

/**
 * A chunk whose payload does not match the checksum stored with it: its bytes are not what was acknowledged.
 * Thrown by readChunk; the delivery code sets such a chunk aside (never uploads it) and moves on.
 */
export class CorruptChunkError extends Error {
  constructor(
    readonly pos: number,
    readonly lastPos: number,
    readonly payload: Buffer,
  ) {
    super(`buffer chunk of positions ${pos}-${lastPos} is corrupt: its checksum does not match its bytes`);
    this.name = 'CorruptChunkError';
    // Up to 1 MiB of bytes that are not data: kept for whoever sets them aside, but out of `{ err }` in a log line.
    Object.defineProperty(this, 'payload', { enumerable: false });
  }
}
