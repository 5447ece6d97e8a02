/** A batch's limits: it closes at max_events or max_bytes, or once max_age has passed since its first item arrived. */
export interface BatchLimits {
  maxEvents: number;
  maxBytes: number;
  maxAge: number;
}

/** What every open batch counts, whatever it holds. */
export interface OpenBatch {
  count: number;
  bytes: number;
  /** Arrival time of its first item: max_age counts from here. */
  openedAt: number;
}

/**
 * Open batches by stream key (the items one batch may hold together: a partition and hour for decisions, a
 * topic and hour for events), in the order they were opened, and the limits that close them. What a stream
 * key is and what a batch holds beyond its counts are the caller's; closing is the caller's call, asked here.
 */
export class OpenBatches<B extends OpenBatch> {
  private readonly batches = new Map<string, B>();

  /** Not fixed: a destination's batching may be changed while its batches are open. */
  constructor(public limits: BatchLimits) {}

  get size(): number {
    return this.batches.size;
  }

  get(stream: string): B | undefined {
    return this.batches.get(stream);
  }

  open(stream: string, batch: B): B {
    if (this.batches.has(stream)) throw new Error(`stream ${JSON.stringify(stream)} already has an open batch`);
    this.batches.set(stream, batch);
    return batch;
  }

  /** Removes the stream's open batch (closed by the caller) and returns it. */
  close(stream: string): B {
    const batch = this.batches.get(stream);
    if (!batch) throw new Error(`stream ${JSON.stringify(stream)} has no open batch`);
    this.batches.delete(stream);
    return batch;
  }

  /** The batch opened first, with its stream key. */
  oldest(): [string, B] | undefined {
    for (const entry of this.batches) return entry;
    return undefined;
  }

  /** Whether `count` more items of `bytes` fit under the limits. */
  fits(batch: OpenBatch, count: number, bytes: number): boolean {
    return batch.count + count <= this.limits.maxEvents && batch.bytes + bytes <= this.limits.maxBytes;
  }

  /** Whether `count` items of `bytes` would fit in an empty batch. */
  fitsAlone(count: number, bytes: number): boolean {
    return count <= this.limits.maxEvents && bytes <= this.limits.maxBytes;
  }

  /** Whether the batch reached a limit of events or bytes. */
  full(batch: OpenBatch): boolean {
    return batch.count >= this.limits.maxEvents || batch.bytes >= this.limits.maxBytes;
  }

  /** Whether the batch is max_age old. */
  due(batch: OpenBatch, now: number): boolean {
    return now - batch.openedAt >= this.limits.maxAge;
  }

  entries(): IterableIterator<[string, B]> {
    return this.batches.entries();
  }

  values(): IterableIterator<B> {
    return this.batches.values();
  }
}
