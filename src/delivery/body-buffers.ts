/**
 * Memory for object bodies, used again from one upload to the next.
 *
 * Why: a body (a Parquet file, gzip NDJSON members put together) is a few MiB outside V8's heap, held for the
 * seconds of its upload, so it outlives two scavenges and is freed only by a full collection of the event
 * loop's heap. V8 runs one when the heap grows or when memory outside it has grown by 64 MiB since the last:
 * after a burst, when the event loop allocates little but uploads the backlog, dead bodies pile up to that much
 * before anything frees them. In 20 s steady runs of a Parquet output, reusing the bodies' memory took the
 * process's peak RSS from 354-360 MiB to 334-346, and NDJSON's from 221-227 to 215-225 (README "Performance"),
 * with no collection's pause on the event loop.
 *
 * A buffer goes out with `take` (or `largest`, for the Parquet encoder thread, which does not know the size of
 * the file before it is written), and comes back with `give` once nothing will read the body again. Kept are
 * at most KEPT buffers of at most KEPT_MAX_BYTES each, and one unused for IDLE_MS goes at the next sweep (every
 * IDLE_MS, so within twice that): an idle service holds no bodies, and a body larger than that (a batch of
 * hundreds of MiB) is left to the collector as before. Buffers are always whole ArrayBuffers of their own (never Node's shared pool), so that they can be
 * moved to a worker thread.
 */

/** Free buffers kept: the uploads in flight of the default `upload_concurrency` (4), and the file being encoded. */
const KEPT = 6;
/** Larger buffers are not kept. A 64 MiB batch (the default max_bytes) is a body of 6-10 MiB compressed. */
const KEPT_MAX_BYTES = 32 * 1024 * 1024;
/** A kept buffer not taken again within this long is dropped (the sweep runs this often). */
const IDLE_MS = 30_000;
/** New buffers are rounded up to this, so that the next body, a little larger, still fits. */
const GRAIN = 1024 * 1024;

export class BodyBuffers {
  private free: Array<{ buffer: ArrayBuffer; since: number }> = [];
  private sweeper: NodeJS.Timeout | undefined;

  /** A buffer of at least `bytes`: the smallest free one that fits, else a new one. */
  take(bytes: number): ArrayBuffer {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const size = this.free[i]!.buffer.byteLength;
      if (size >= bytes && (best === -1 || size < this.free[best]!.buffer.byteLength)) best = i;
    }
    if (best !== -1) return this.free.splice(best, 1)[0]!.buffer;
    return new ArrayBuffer(bodyBufferSize(bytes));
  }

  /** The largest free buffer, or none (for a writer that allocates its own when none fits). */
  largest(): ArrayBuffer | undefined {
    let best = -1;
    for (let i = 0; i < this.free.length; i++)
      if (best === -1 || this.free[i]!.buffer.byteLength > this.free[best]!.buffer.byteLength) best = i;
    return best === -1 ? undefined : this.free.splice(best, 1)[0]!.buffer;
  }

  /**
   * Takes a buffer back. Nothing may read or write it afterwards (a body over it reads other bytes once it is
   * taken again). A buffer moved away meanwhile (length 0) or too large is not kept.
   */
  give(buffer: ArrayBuffer): void {
    if (buffer.byteLength === 0 || buffer.byteLength > KEPT_MAX_BYTES) return;
    if (this.free.some((f) => f.buffer === buffer)) return;
    this.free.push({ buffer, since: Date.now() });
    // beyond KEPT, the smallest goes: the large ones are what new bodies would have to allocate again
    if (this.free.length > KEPT) {
      let smallest = 0;
      for (let i = 1; i < this.free.length; i++)
        if (this.free[i]!.buffer.byteLength < this.free[smallest]!.buffer.byteLength) smallest = i;
      this.free.splice(smallest, 1);
    }
    this.sweeper ??= setInterval(() => this.sweep(), IDLE_MS).unref();
  }

  /**
   * A body's `releaseBody`: gives `buffer` back the first time it is called, and does nothing after, so that a
   * second call cannot give back a buffer that a later body has taken meanwhile.
   */
  releaser(buffer: ArrayBufferLike): () => void {
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.give(buffer as ArrayBuffer);
    };
  }

  /** Bytes held in free buffers. */
  get keptBytes(): number {
    return this.free.reduce((sum, f) => sum + f.buffer.byteLength, 0);
  }

  /** `parts` one after the other in a body over a buffer of this pool (give it back with `give`). */
  concat(parts: readonly Uint8Array[]): Buffer {
    const length = parts.reduce((sum, p) => sum + p.length, 0);
    const body = Buffer.from(this.take(length), 0, length);
    let offset = 0;
    for (const p of parts) {
      body.set(p, offset);
      offset += p.length;
    }
    return body;
  }

  private sweep(): void {
    const cutoff = Date.now() - IDLE_MS;
    this.free = this.free.filter((f) => f.since > cutoff);
    if (this.free.length === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }
}

/** The size of a new buffer for a body of `bytes`: rounded up, so that the next body, a little larger, fits. */
export function bodyBufferSize(bytes: number): number {
  return Math.ceil(Math.max(bytes, 1) / GRAIN) * GRAIN;
}

/** The process's bodies: outputs and destinations alike. */
export const bodyBuffers = new BodyBuffers();
