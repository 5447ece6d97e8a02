/**
 * A bounded, time-ordered set of digest keys in typed arrays: what RecentlyAccepted remembers.
 *
 * A JS Map of 500,000 short strings costs ~150 MiB of heap; here a key is 61 bits of its digest in two 32-bit
 * words, kept in a ring in insertion (time) order, with an open-addressing index over the ring: 500,000 keys
 * take ~10 MiB whatever their text, and nothing here is seen by the garbage collector. Collisions of 61-bit
 * digests among 500,000 keys: ~1e-7.
 *
 * Keys come from `digestWords`: the 11-character base64url digests RecentlyAccepted makes, prefixed by
 * their kind (`r` request, `d` decision).
 */
export class KeyMemory {
  private readonly hi: Uint32Array;
  private readonly lo: Uint32Array;
  /** When each ring slot was remembered (seconds on the caller's clock); -1: forgotten (replaced or evicted). */
  private readonly at: Int32Array;
  /** Open addressing, linear probing: ring slot + 1, 0 = empty. At most half full. */
  private readonly index: Int32Array;
  private readonly mask: number;
  private head = 0;
  /** Ring slots in use (live or forgotten), from head. */
  private used = 0;
  /** Live keys. */
  size = 0;

  constructor(readonly capacity: number) {
    this.hi = new Uint32Array(capacity);
    this.lo = new Uint32Array(capacity);
    this.at = new Int32Array(capacity);
    let slots = 2;
    while (slots < capacity * 2) slots *= 2;
    this.index = new Int32Array(slots);
    this.mask = slots - 1;
  }

  /** When the key was remembered, or undefined. */
  get(hi: number, lo: number): number | undefined {
    const i = this.find(hi, lo);
    return i < 0 ? undefined : this.at[this.index[i]! - 1];
  }

  /** Remembers the key as the newest one (forgetting an older copy); the oldest goes when the ring is full. */
  set(hi: number, lo: number, at: number): void {
    const existing = this.find(hi, lo);
    if (existing >= 0) this.forgetAt(existing);
    if (this.used === this.capacity) this.dropOldest();
    const slot = (this.head + this.used) % this.capacity;
    this.used++;
    this.hi[slot] = hi;
    this.lo[slot] = lo;
    this.at[slot] = at;
    let i = lo & this.mask;
    while (this.index[i] !== 0) i = (i + 1) & this.mask;
    this.index[i] = slot + 1;
    this.size++;
  }

  /** When the oldest live key was remembered, or undefined when none is. */
  oldest(): number | undefined {
    this.skipForgotten();
    return this.used === 0 ? undefined : this.at[this.head];
  }

  /** Forgets the oldest keys while there are more than `max` or they were remembered before `before`. */
  evict(max: number, before: number): void {
    for (;;) {
      this.skipForgotten();
      if (this.used === 0) return;
      if (this.size <= max && this.at[this.head]! >= before) return;
      this.dropOldest();
    }
  }

  private skipForgotten(): void {
    while (this.used > 0 && this.at[this.head] === -1) {
      this.head = (this.head + 1) % this.capacity;
      this.used--;
    }
  }

  private dropOldest(): void {
    const slot = this.head;
    if (this.at[slot] !== -1) {
      const i = this.find(this.hi[slot]!, this.lo[slot]!);
      if (i >= 0) this.forgetAt(i);
    }
    this.head = (this.head + 1) % this.capacity;
    this.used--;
  }

  /** The index position of the key, or -1. */
  private find(hi: number, lo: number): number {
    for (let i = lo & this.mask; ; i = (i + 1) & this.mask) {
      const entry = this.index[i]!;
      if (entry === 0) return -1;
      const slot = entry - 1;
      if (this.lo[slot] === lo && this.hi[slot] === hi) return i;
    }
  }

  /** Removes index entry `i` (its ring slot becomes forgotten), shifting later entries of its run back. */
  private forgetAt(i: number): void {
    this.at[this.index[i]! - 1] = -1;
    this.size--;
    let hole = i;
    for (let j = (i + 1) & this.mask; this.index[j] !== 0; j = (j + 1) & this.mask) {
      const slot = this.index[j]! - 1;
      const home = this.lo[slot]! & this.mask;
      // an entry may move into the hole only if its home is not between the hole and itself (cyclically)
      const between = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!between) {
        this.index[hole] = this.index[j]!;
        hole = j;
      }
    }
    this.index[hole] = 0;
  }
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const SIXBITS = new Int8Array(128).fill(-1);
for (let i = 0; i < BASE64URL.length; i++) SIXBITS[BASE64URL.charCodeAt(i)] = i;

/**
 * A key `<kind><base64url digest>` as two words: 30 bits of digest each, the kind in bit 30 of `hi`.
 * Returns undefined for a key not in that form (it is then simply not remembered).
 */
export function digestWords(key: string): [hi: number, lo: number] | undefined {
  if (key.length < 11) return undefined;
  let hi = 0;
  let lo = 0;
  for (let i = 1; i <= 10; i++) {
    const bits = SIXBITS[key.charCodeAt(i)] ?? -1;
    if (bits < 0) return undefined;
    if (i <= 5) hi = hi * 64 + bits;
    else lo = lo * 64 + bits;
  }
  return [(hi | (key.charCodeAt(0) === 0x72 /* r */ ? 1 << 30 : 0)) >>> 0, lo >>> 0];
}
