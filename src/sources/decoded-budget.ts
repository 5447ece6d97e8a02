/**
 * A bound on the decoded bytes that all requests together hold between decoding and their durable commit.
 *
 * Without it memory grows with the number of clients: 32 OPAs each sending 1 MiB of gzip hold ~300 MiB of
 * decisions at once. A request reserves an estimate before it is decoded (its compressed size times a typical
 * JSON ratio, at most ingest.max_decoded_bytes), the reservation is corrected to the real size once decoded,
 * and released when the request ends. Requests that do not fit wait in arrival order; one that waits longer
 * than `maxWaitMs` gets a 429 (OPA retries). A single reservation larger than the whole bound is granted
 * when nothing else is held, so no request size can wait forever.
 */
export class DecodedBudget {
  private held = 0;
  private readonly waiting: Array<{ bytes: number; grant: () => void }> = [];

  constructor(
    readonly capacity: number,
    private readonly maxWaitMs: number,
  ) {}

  /** Bytes held right now (for metrics). */
  get inUse(): number {
    return this.held;
  }

  /** Resolves with a reservation once `bytes` fit, or with undefined after maxWaitMs. */
  async reserve(bytes: number): Promise<Reservation | undefined> {
    const want = Math.min(bytes, this.capacity);
    if (this.waiting.length === 0 && this.fits(want)) return this.grant(want);
    return new Promise<Reservation | undefined>((resolve) => {
      const entry = {
        bytes: want,
        grant: () => {
          clearTimeout(timer);
          resolve(this.grant(want));
        },
      };
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        resolve(undefined);
        // the head may have been the one that did not fit: those behind it may fit now
        this.wake();
      }, this.maxWaitMs);
      this.waiting.push(entry);
    });
  }

  private fits(bytes: number): boolean {
    return this.held === 0 || this.held + bytes <= this.capacity;
  }

  private grant(bytes: number): Reservation {
    this.held += bytes;
    let current = bytes;
    let released = false;
    return {
      resize: (actual: number) => {
        if (released) return;
        this.held += actual - current;
        current = actual;
        if (actual < bytes) this.wake();
      },
      release: () => {
        if (released) return;
        released = true;
        this.held -= current;
        this.wake();
      },
    };
  }

  private wake(): void {
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.bytes)) this.waiting.shift()!.grant();
  }
}

export interface Reservation {
  /** The real size, once known (decoded). */
  resize(bytes: number): void;
  release(): void;
}
