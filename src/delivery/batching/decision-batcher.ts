import { CorruptChunkError, type ChunkMeta, type DecisionBuffer, type SealedBatch } from '../../buffer/types.js';
import { lineLengths } from '../encode.js';
import { BatchStates } from './lifecycle.js';
import { OpenBatches, type BatchLimits, type OpenBatch } from './open-batches.js';

/** Decisions of one stream (partition, hour, and instance for some layouts) waiting for their batch to close. */
interface OpenDecisionBatch extends OpenBatch, Omit<SealedBatch, 'output'> {}

/** Streams (partition, hour, instance) with an open batch at most; well above 100 partitions x a few hours. */
export const MAX_OPEN_BATCHES = 1000;

/** Chunk metadata read from the buffer at a time. */
const READ_CHUNKS = 256;

export interface DecisionBatcherOptions {
  output: string;
  limits: BatchLimits;
  /** Batches are cut per OPA instance (labels.id) as well as per partition and hour. */
  byInstance: boolean;
  /**
   * Objects are the stored chunks concatenated (gzip members): a batch closes on a chunk boundary rather than
   * split a chunk, so that its chunks are whole (max_events and max_bytes are "at most").
   */
  wholeChunks: boolean;
  /** Batches closed, sealed or in flight at most before reading further: keeps memory flat under a backlog. */
  readAhead: number;
}

/**
 * The batching core of a decision output, over the buffer: stream key -> open batch -> limits -> durable
 * seal. The batch lifecycle (lifecycle.ts) is tracked here; uploading is the caller's (OutputWorker).
 *
 * Chunk metadata is read in position order; a chunk's decisions go to its stream's open batch, whole when
 * they fit, else decision by decision (its line lengths say where). A batch closes when it reaches
 * max_events or max_bytes, or is max_age old, and is recorded in the buffer (sealed) BEFORE its upload: its
 * name derives from its first and last positions, so a retry, or the upload after a crash, writes the same
 * key with the same bytes. Per stream, `sealedUpto` remembers the last position already in a sealed or
 * delivered batch (known from before a restart), so nothing is batched twice. The cursor (all positions
 * <= it delivered) is the lowest position still open, closed, sealed or in flight, minus one, and never
 * past readPos; the buffer drops what every output's cursor has passed.
 */
export class DecisionBatcher {
  private readPosition: number;
  private cursorPosition: number;
  private readonly open: OpenBatches<OpenDecisionBatch>;
  private readonly sealedUpto = new Map<string, number>();
  readonly batches = new BatchStates<SealedBatch>();
  /** Batches sealed before the restart (in `sealed`, first in line for an upload). */
  readonly restored: readonly SealedBatch[];
  /** Line lengths of the chunk read last: a large chunk is split over many passes, and read once. */
  private lengthsCache: { pos: number; lengths: number[] | 'corrupt' } | undefined;

  constructor(
    private readonly buffer: DecisionBuffer,
    private readonly opts: DecisionBatcherOptions,
  ) {
    this.open = new OpenBatches(opts.limits);
    this.cursorPosition = buffer.cursor(opts.output);
    this.readPosition = this.cursorPosition;
    for (const b of buffer.deliveredBatches(opts.output)) this.noteSealed(b);
    const restored = buffer.sealedBatches(opts.output);
    for (const b of restored) {
      this.noteSealed(b);
      this.batches.enter(b, 'sealed');
    }
    this.restored = restored;
  }

  get cursor(): number {
    return this.cursorPosition;
  }

  get readPos(): number {
    return this.readPosition;
  }

  /** Batches sealed and waiting for an upload, or in flight. */
  get pending(): number {
    return this.batches.count('sealed', 'in_flight');
  }

  /** Nothing open, closed, sealed or in flight. */
  idle(): boolean {
    return this.open.size === 0 && this.batches.count('closed', 'sealed', 'in_flight') === 0;
  }

  /**
   * Reads what is new, closes what is due (every open batch when `closeAll`: a drain) and seals what closed,
   * while the read-ahead bound allows. Throws when the seal fails (a full disk): the batches stay closed, and
   * hold the cursor, until a later call seals them.
   */
  fill(now: number, closeAll: boolean): void {
    // Reads ahead only until enough batches wait for an upload slot: a chunk of 100,000 decisions in a layout
    // of one object per decision is closed a few batches per pass, not all at once.
    const room = () => this.opts.readAhead - this.batches.count('closed', 'sealed', 'in_flight');
    while (room() > 0) {
      const metas = this.buffer.readChunkMetas(this.readPosition, READ_CHUNKS);
      if (metas.length === 0) break;
      for (const meta of metas) {
        // Decisions spread over thousands of hours or instances would open a batch each: past
        // MAX_OPEN_BATCHES the oldest open batch is closed early, which also takes room.
        if (this.open.size >= MAX_OPEN_BATCHES) {
          this.closeBatch(this.open.oldest()![0]);
          if (room() <= 0) break;
        }
        this.assign(meta, room);
        if (room() <= 0) break;
      }
    }
    // Open batches are closed when due, while there is room for them to wait (the rest at a later pass).
    for (const [stream, batch] of this.open.entries()) {
      if (room() <= 0) break;
      if (closeAll || this.open.due(batch, now)) this.closeBatch(stream);
    }
    const closed = [...this.batches.in('closed')];
    if (closed.length > 0) {
      this.buffer.seal(closed);
      for (const batch of closed) this.batches.move(batch, 'sealed');
    }
  }

  /** Sealed batches, oldest first, moved in flight while fewer than `maxInFlight` are. */
  takeReady(maxInFlight: number): SealedBatch[] {
    const taken: SealedBatch[] = [];
    while (this.batches.count('in_flight') < maxInFlight) {
      const batch = this.batches.first('sealed');
      if (!batch) break;
      this.batches.move(batch, 'in_flight');
      taken.push(batch);
    }
    return taken;
  }

  /**
   * Records an in-flight batch delivered, with the cursor it lets the output move to. Throws when the
   * record fails (a full disk): the batch stays in flight, holding the cursor, until a later call records it;
   * were it forgotten, the cursor could pass a batch the buffer still lists as sealed.
   */
  complete(batch: SealedBatch): void {
    if (this.batches.state(batch) !== 'in_flight')
      throw new Error(`batch lifecycle: cannot complete a batch that is ${this.batches.state(batch) ?? 'untracked'}`);
    this.buffer.complete(batch, this.lowWatermark(batch));
    this.batches.move(batch, 'done');
    this.cursorPosition = Math.max(this.cursorPosition, this.lowWatermark());
  }

  /** Moves the cursor past decisions no batch holds (e.g. skipped after a restart), when nothing is in flight. */
  moveCursor(): void {
    const next = this.lowWatermark();
    // Persisted here only when nothing is in flight; completed uploads persist it otherwise.
    if (next > this.cursorPosition && this.batches.count('in_flight') === 0) {
      this.buffer.setCursor(this.opts.output, next);
      this.cursorPosition = next;
      this.buffer.trim();
    }
  }

  /**
   * The highest position with everything at or below it delivered: below the first decision of every batch
   * not yet done (but `except`), and never past readPos (decisions beyond it are not in any batch yet, even
   * when batches sealed before a restart, further on, are already queued).
   */
  private lowWatermark(except?: SealedBatch): number {
    let lowest = this.readPosition + 1;
    for (const b of this.open.values()) lowest = Math.min(lowest, b.first);
    for (const b of this.batches.all()) if (b !== except) lowest = Math.min(lowest, b.first);
    return lowest - 1;
  }

  /**
   * Adds the decisions of a chunk beyond readPos to its stream's open batch, closing batches that fill up,
   * while `room()` allows more closed batches; readPos then names the last decision assigned, so the next
   * pass goes on inside the same chunk.
   */
  private assign(meta: ChunkMeta, room: () => number): void {
    const last = meta.pos + meta.count - 1;
    const instance = this.opts.byInstance ? meta.instance : null;
    const stream = streamKey(meta.partition, meta.hour, instance);
    // Already in a batch: up to what batches of this partition and hour sealed, for every instance ('*') or
    // for this chunk's own (batches of both kinds exist when the layout changed across a restart)
    const covered = Math.max(
      this.sealedUpto.get(streamKey(meta.partition, meta.hour, null)) ?? 0,
      this.sealedUpto.get(streamKey(meta.partition, meta.hour, meta.instance)) ?? 0,
    );
    let from = Math.max(this.readPosition + 1, meta.pos, covered + 1);
    const { open } = this;
    while (from <= last && room() > 0) {
      const batch =
        open.get(stream) ??
        open.open(stream, {
          partition: meta.partition,
          hour: meta.hour,
          instance,
          first: from,
          last: from - 1,
          count: 0,
          bytes: 0,
          openedAt: meta.receivedAt,
        });
      const whole = from === meta.pos;
      const fitsWhole = whole && open.fits(batch, meta.count, meta.bytes);
      if (!fitsWhole && this.opts.wholeChunks && whole && batch.count > 0 && open.fitsAlone(meta.count, meta.bytes)) {
        // Objects made of stored chunks close on chunk boundaries: the batch closes and the chunk opens the
        // next one, whole.
        this.closeBatch(stream);
        continue;
      }
      const lengths = fitsWhole ? undefined : this.lineLengthsOf(meta);
      if (lengths === undefined || lengths === 'corrupt') {
        // The chunk fits whole, or its bytes cannot be trusted to split: it goes into the batch as one piece
        // (delivery then sets a corrupt chunk aside as a whole).
        if (lengths === 'corrupt' && batch.count > 0) {
          this.closeBatch(stream);
          continue;
        }
        batch.count += last - from + 1;
        batch.bytes += meta.bytes;
        batch.last = last;
        from = last + 1;
      } else {
        // The chunk does not fit whole: add decision by decision.
        while (from <= last) {
          const size = lengths[from - meta.pos]!;
          if (batch.count > 0 && !open.fits(batch, 1, size)) break;
          batch.count++;
          batch.bytes += size;
          batch.last = from;
          from++;
        }
      }
      if (open.full(batch) || from <= last) this.closeBatch(stream);
    }
    // `from` may have jumped past the chunk (its decisions were in batches sealed before a restart): readPos
    // must not follow it there, over chunks of other streams not read yet
    this.readPosition = Math.max(this.readPosition, Math.min(from - 1, last));
  }

  private lineLengthsOf(meta: ChunkMeta): number[] | 'corrupt' {
    if (this.lengthsCache?.pos !== meta.pos) {
      let lengths: number[] | 'corrupt';
      try {
        lengths = lineLengths(this.buffer.readChunk(meta.pos)!.payload);
      } catch (err) {
        if (!(err instanceof CorruptChunkError)) throw err;
        lengths = 'corrupt';
      }
      this.lengthsCache = { pos: meta.pos, lengths };
    }
    return this.lengthsCache.lengths;
  }

  /** open -> closed: the stream's batch takes nothing more and waits for its seal. */
  private closeBatch(stream: string): void {
    const batch = this.open.close(stream);
    const closed: SealedBatch = {
      output: this.opts.output,
      partition: batch.partition,
      hour: batch.hour,
      instance: batch.instance,
      first: batch.first,
      last: batch.last,
      count: batch.count,
      bytes: batch.bytes,
    };
    this.noteSealed(closed);
    this.batches.enter(closed, 'closed');
  }

  private noteSealed(batch: SealedBatch): void {
    const key = streamKey(batch.partition, batch.hour, batch.instance);
    this.sealedUpto.set(key, Math.max(this.sealedUpto.get(key) ?? 0, batch.last));
  }
}

/** A stream: the decisions one batch may hold (per partition and hour, and per OPA instance for some layouts). */
function streamKey(partition: string, hour: string, instance: string | null): string {
  return `${partition}\u0000${hour}\u0000${instance ?? '*'}`;
}
