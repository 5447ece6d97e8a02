/**
 * Which attempts ended while a read of the store was on its way. A read of what is due (deliveries, batches)
 * answers as the store was when it ran; an attempt that ended and was recorded meanwhile may still be in that
 * answer, as it was before (pending, due, its old attempt count, no object key yet), and, no longer in flight,
 * would be started again at once with stale state. The store answers asynchronously (a network store takes a
 * round trip), so such an answer is the rule there, not a rarity: whatever ended during a read is left out of
 * its answer, and the next read sees it as recorded.
 */
export class EndedWhileReading<K> {
  private readonly reads = new Set<Set<K>>();

  /** Runs a read; resolves with its answer and the keys whose attempts ended while it ran. */
  async during<T>(read: () => Promise<T>): Promise<{ answer: T; ended: ReadonlySet<K> }> {
    const ended = new Set<K>();
    this.reads.add(ended);
    try {
      return { answer: await read(), ended };
    } finally {
      this.reads.delete(ended);
    }
  }

  /** An attempt of `key` ended (recorded, or not): called before it is no longer in flight. */
  end(key: K): void {
    for (const ended of this.reads) ended.add(key);
  }
}
