/** The wait before a delivery whose attempt could not be recorded is attempted again: doubled each time, up to the max. */
const RECORD_RETRY_MS = 1_000;
const RECORD_RETRY_MAX_MS = 60_000;

/**
 * Deliveries (or batches) whose last attempt could not be recorded (a full disk): they are still pending in
 * the store, due at once, and would be attempted again at once, round and round. Each waits instead, longer
 * after every failure in a row, until an attempt of it is recorded. Entries long past their wait are
 * forgotten (one whose delivery went away is never released), so the map stays small.
 */
export class RecordHolds<K> {
  private readonly holds = new Map<K, { until: number; failures: number }>();

  /** Holds `key` after a failure to record its attempt; returns the wait. */
  hold(key: K, now: number): number {
    const failures = (this.holds.get(key)?.failures ?? 0) + 1;
    const wait = Math.min(RECORD_RETRY_MAX_MS, RECORD_RETRY_MS * 2 ** Math.min(failures - 1, 16));
    this.holds.set(key, { until: now + wait, failures });
    return wait;
  }

  held(key: K, now: number): boolean {
    const hold = this.holds.get(key);
    return hold !== undefined && hold.until > now;
  }

  /** An attempt of `key` was recorded. */
  release(key: K): void {
    this.holds.delete(key);
  }

  get size(): number {
    return this.holds.size;
  }

  forget(now: number): void {
    if (this.holds.size === 0) return;
    for (const [key, hold] of this.holds) if (hold.until + RECORD_RETRY_MAX_MS < now) this.holds.delete(key);
  }
}
