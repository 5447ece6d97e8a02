import { createHash, hash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import type { DecisionBuffer, NewChunk } from '../buffer/types.js';
import { digestWords, KeyMemory } from './key-memory.js';

/**
 * What ingest accepted recently, so that OPA's re-sends are acknowledged without being stored twice.
 *
 * OPA re-sends a chunk whose response it did not get, usually byte for byte; a decision may also come again
 * inside a different chunk. Both are remembered: a digest of each accepted request body and each accepted
 * decision_id, for `window` ms and at most `maxEntries` of them (oldest forgotten first), so memory is
 * bounded. Keys are short digests (held as 61-bit words, see KeyMemory). They are stored in the buffer in the
 * same transaction as the decisions, and read back at start, so the memory survives a restart.
 */
export class RecentlyAccepted {
  /** Key digests -> when each was accepted, in seconds since `base`, in time order, in typed arrays. */
  private readonly keys: KeyMemory;
  private readonly base: number;
  /** Keys of requests being stored right now, and when that ends. */
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(
    private readonly buffer: DecisionBuffer,
    private readonly window: number,
    private readonly maxEntries: number,
  ) {
    this.base = Date.now() - window;
    this.keys = new KeyMemory(this.enabled ? maxEntries : 1);
    if (!this.enabled) return;
    for (const row of buffer.acceptedSince(this.base, maxEntries))
      for (const key of row.keys) this.remember(key, row.at);
    this.evict(Date.now());
  }

  get enabled(): boolean {
    return this.window > 0 && this.maxEntries > 0;
  }

  static requestKey(partition: string, contentEncoding: string | undefined, body: Buffer): string {
    return `r${digest(`${partition}\u0000${contentEncoding ?? ''}\u0000`, body)}`;
  }

  has(key: string, now = Date.now()): boolean {
    const words = digestWords(key);
    const at = words && this.keys.get(words[0], words[1]);
    return at !== undefined && at >= this.seconds(now - this.window);
  }

  /** Called once the keys are durable with their decisions. */
  add(keys: string[], at = Date.now()): void {
    for (const key of keys) this.remember(key, at);
    this.evict(at);
  }

  /**
   * A promise that ends when the requests being stored that carry any of these keys end, or undefined when
   * none does. OPA may re-send a chunk while the first request is still being stored: the re-send must wait
   * for it, then see it as a duplicate (or, if the first failed, store the decisions itself). The caller
   * loops until undefined and then, in the same turn, calls `filter` and `begin`.
   */
  inFlightAmong(keys: string[]): Promise<unknown> | undefined {
    const pending = new Set<Promise<void>>();
    for (const key of keys) {
      const p = this.inFlight.get(key);
      if (p) pending.add(p);
    }
    return pending.size === 0 ? undefined : Promise.all(pending);
  }

  /**
   * Marks keys as being stored; call it in the same turn as `filter` (no await between), so two requests
   * cannot both take the same decision. `done(true)` remembers them, `done(false)` lets them go.
   */
  begin(keys: string[]): { done(stored: boolean): void } {
    let end!: () => void;
    const promise = new Promise<void>((resolve) => {
      end = resolve;
    });
    for (const key of keys) this.inFlight.set(key, promise);
    return {
      done: (stored: boolean) => {
        if (stored) this.add(keys);
        for (const key of keys) if (this.inFlight.get(key) === promise) this.inFlight.delete(key);
        end();
      },
    };
  }

  /** The key of each decision of the chunks that has a decision_id. */
  static decisionKeys(chunks: NewChunk[]): string[] {
    return chunks.flatMap((c) => (c.decisionKeys ?? []).filter((key) => key !== ''));
  }

  /**
   * The chunks without decisions accepted before (or twice in this request), and the keys of what is new.
   * Chunks are rebuilt only when a line goes.
   */
  filter(chunks: NewChunk[], now = Date.now()): { chunks: NewChunk[]; keys: string[]; duplicates: number } {
    const keys: string[] = [];
    const seen = new Set<string>();
    let duplicates = 0;
    const kept: NewChunk[] = [];
    for (const chunk of chunks) {
      const keep: boolean[] = [];
      let dropped = 0;
      for (const key of chunk.decisionKeys ?? []) {
        if (key === '') {
          keep.push(true);
          continue;
        }
        const duplicate = seen.has(key) || this.has(key, now);
        keep.push(!duplicate);
        if (duplicate) dropped++;
        else {
          seen.add(key);
          keys.push(key);
        }
      }
      duplicates += dropped;
      if (dropped === 0) kept.push(chunk);
      else if (dropped < chunk.count) kept.push(withoutLines(chunk, keep));
    }
    return { chunks: kept, keys, duplicates };
  }

  /**
   * Forgets what is older than the window, and in the buffer also what memory has already let go of
   * (beyond max_entries): the table stays as small as what is remembered. Called from time to time.
   */
  forgetOld(now = Date.now()): void {
    this.evict(now);
    const oldest = this.keys.oldest();
    this.buffer.forgetAccepted(Math.max(now - this.window, oldest === undefined ? now : this.base + oldest * 1000));
  }

  private remember(key: string, at: number): void {
    const words = digestWords(key);
    if (words) this.keys.set(words[0], words[1], this.seconds(at));
  }

  private seconds(ms: number): number {
    return Math.floor((ms - this.base) / 1000);
  }

  private evict(now: number): void {
    this.keys.evict(this.maxEntries, this.seconds(now - this.window));
  }
}

/** The key of a decision_id. */
export function decisionKey(decisionId: string): string {
  // one call per decision at ingest: the one-shot hash, not a Hash object per decision
  return `d${hash('sha256', decisionId, 'base64url').slice(0, 11)}`;
}

/** 64 bits of SHA-256 in 11 characters: short keys keep memory small, and collisions stay negligible (~1e-8 for 500,000 keys). */
function digest(...parts: Array<string | Buffer>): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest('base64url').slice(0, 11);
}

/**
 * The chunk without the lines a re-send repeats. Rare (a decision again inside a different request), so the
 * result is simply stored uncompressed: its payload is re-built from the decoded text.
 */
function withoutLines(chunk: NewChunk, keep: boolean[]): NewChunk {
  const text = chunk.text ?? (chunk.compressed ? gunzipSync(chunk.payload) : chunk.payload);
  const lines = text.toString('utf8').split('\n');
  const kept = lines.filter((_, i) => keep[i]);
  const keys = (chunk.decisionKeys ?? []).filter((_, i) => keep[i]);
  const events = chunk.events?.filter((_, i) => keep[i]);
  const payload = Buffer.from(`${kept.join('\n')}\n`);
  return {
    ...chunk,
    count: kept.length,
    payload,
    compressed: false,
    bytes: payload.length,
    text: undefined,
    decisionKeys: keys,
    events,
  };
}
