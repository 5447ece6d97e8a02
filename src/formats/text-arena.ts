/**
 * The text values of the rows of a Parquet row group being filled, as UTF-8, one after another in one
 * buffer that is used again row group after row group (parquet-writer.ts says why).
 *
 * Values are added as strings and read back as views (`view`), valid until `clear`. When the buffer runs
 * out it is replaced by one twice as large with the bytes so far copied in; a view made before that keeps
 * the old buffer, whose bytes never change, so every view stays right until `clear`.
 */

/** Values longer than this (in UTF-16 code units) have their UTF-8 length measured before they are added. */
const MEASURED_FROM_CHARS = 64 * 1024;

export class TextArena {
  private bytes: Buffer;
  private used = 0;

  constructor(capacity: number) {
    // allocUnsafeSlow: an ArrayBuffer of its own (never a slice of Node's pool), every byte written before read
    this.bytes = Buffer.allocUnsafeSlow(capacity);
  }

  get capacity(): number {
    return this.bytes.length;
  }

  /** Appends `s` as UTF-8 (a lone surrogate as U+FFFD, as TextEncoder writes it); returns where it starts. */
  add(s: string): number {
    // at most three bytes of UTF-8 per UTF-16 code unit; a long value is measured instead, so that a decision
    // of 100 MB does not make room for 300
    const room = s.length <= MEASURED_FROM_CHARS ? s.length * 3 : Buffer.byteLength(s, 'utf8');
    if (this.bytes.length - this.used < room) this.grow(room);
    const start = this.used;
    this.used += this.bytes.write(s, start, 'utf8');
    return start;
  }

  /** The end of what has been added (the end of the last value). */
  get end(): number {
    return this.used;
  }

  /** The bytes from `start` to `end`, without a copy. */
  view(start: number, end: number): Uint8Array {
    return new Uint8Array(this.bytes.buffer, this.bytes.byteOffset + start, end - start);
  }

  /** Forgets every value: the views made so far must no longer be used. */
  clear(): void {
    this.used = 0;
  }

  private grow(room: number): void {
    const grown = Buffer.allocUnsafeSlow(Math.max(this.bytes.length * 2, this.used + room));
    this.bytes.copy(grown, 0, 0, this.used);
    this.bytes = grown;
  }
}

/** An arena given back by a finished writer, for the next one on this thread (one file at a time per thread). */
let spare: TextArena | undefined;

/** An arena of at least `capacity` bytes: the spare one if it is large enough, else a new one. */
export function takeTextArena(capacity: number): TextArena {
  const arena = spare !== undefined && spare.capacity >= capacity ? spare : new TextArena(capacity);
  if (arena === spare) spare = undefined;
  return arena;
}

/**
 * Gives an arena back, cleared, to be taken again; not kept when it is larger than `keepUpTo` bytes (one
 * grown by an outsized decision would otherwise hold its memory for the thread's life).
 */
export function giveTextArena(arena: TextArena, keepUpTo: number): void {
  arena.clear();
  if (arena.capacity <= keepUpTo && (spare === undefined || spare.capacity < arena.capacity)) spare = arena;
}
