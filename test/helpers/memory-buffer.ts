/**
 * A DecisionBuffer held in memory, for unit tests of what reads it (the batching core): chunks, seals,
 * deliveries and cursors as the SQLite buffer keeps them, without a disk. What a test does not need throws.
 */
import type { Chunk, ChunkMeta, DecisionBuffer, SealedBatch } from '../../src/buffer/types.js';

export class MemoryBuffer implements DecisionBuffer {
  readonly id = 'membuf';
  private readonly chunks: Chunk[] = [];
  private next = 1;
  private readonly cursors = new Map<string, number>();
  /** Sealed batches by output and first position, with whether they are delivered. */
  private readonly batches = new Map<string, Map<number, { batch: SealedBatch; done: boolean }>>();
  /** How many seals are still to fail (a full disk). */
  failSeals = 0;
  readonly seals: SealedBatch[][] = [];

  /** Appends a chunk of `lines` (NDJSON text each) in a stream; returns its position. */
  add(
    partition: string,
    lines: string[],
    opts: { hour?: string; instance?: string; receivedAt?: number } = {},
  ): number {
    const payload = Buffer.from(lines.map((l) => `${l}\n`).join(''));
    const pos = this.next;
    this.chunks.push({
      pos,
      partition,
      hour: opts.hour ?? '2026-12-01T10',
      instance: opts.instance ?? '',
      count: lines.length,
      bytes: payload.length,
      storedBytes: payload.length,
      compressed: false,
      receivedAt: opts.receivedAt ?? 0,
      payload,
    });
    this.next += lines.length;
    return pos;
  }

  readChunkMetas(afterPos: number, limit: number): ChunkMeta[] {
    return this.chunks
      .filter((c) => c.pos + c.count - 1 > afterPos)
      .slice(0, limit)
      .map(metaOf);
  }

  streamChunks(partition: string, hour: string, instance: string | null, first: number, last: number): ChunkMeta[] {
    return this.chunks
      .filter((c) => c.partition === partition && c.hour === hour && (instance === null || c.instance === instance))
      .filter((c) => c.pos <= last && c.pos + c.count - 1 >= first)
      .map(metaOf);
  }

  readChunk(pos: number): Chunk | undefined {
    return this.chunks.find((c) => c.pos === pos);
  }

  readStoredPayload(pos: number): Buffer | undefined {
    return this.readChunk(pos)?.payload;
  }

  cursor(output: string): number {
    return this.cursors.get(output) ?? 0;
  }

  private of(output: string) {
    let batches = this.batches.get(output);
    if (!batches) this.batches.set(output, (batches = new Map()));
    return batches;
  }

  sealedBatches(output: string): SealedBatch[] {
    return [...this.of(output).values()]
      .filter((b) => !b.done)
      .map((b) => b.batch)
      .sort((a, b) => a.first - b.first);
  }

  deliveredBatches(output: string): SealedBatch[] {
    return [...this.of(output).values()].filter((b) => b.done).map((b) => b.batch);
  }

  seal(batches: SealedBatch[]): void {
    if (this.failSeals > 0) {
      this.failSeals--;
      throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
    }
    this.seals.push(batches.map((b) => ({ ...b })));
    for (const b of batches) this.of(b.output).set(b.first, { batch: { ...b }, done: false });
  }

  complete(batch: SealedBatch, cursor: number): void {
    const entry = this.of(batch.output).get(batch.first);
    if (!entry) throw new Error(`batch ${batch.first} of ${batch.output} was never sealed`);
    entry.done = true;
    this.setCursor(batch.output, cursor);
  }

  setCursor(output: string, cursor: number): void {
    this.cursors.set(output, cursor);
    // delivered batches at or below the cursor are forgotten, as the SQLite buffer does
    for (const [first, entry] of this.of(output))
      if (entry.done && entry.batch.last <= cursor) this.of(output).delete(first);
  }

  trim(): number {
    return 0;
  }

  lastPosition(): number {
    return this.next - 1;
  }

  append(): Promise<void> {
    throw new Error('not used');
  }
  acceptedSince(): Array<{ at: number; keys: string[] }> {
    throw new Error('not used');
  }
  forgetAccepted(): void {
    throw new Error('not used');
  }
  hasRoom(): boolean {
    throw new Error('not used');
  }
  onAppend(): void {}
  outputShape(): string | undefined {
    return undefined;
  }
  setOutputShape(): void {}
  retainOutputs(): string[] {
    throw new Error('not used');
  }
  stats(): never {
    throw new Error('not used');
  }
  writable(): boolean {
    return true;
  }
  close(): void {}
}

function metaOf({ payload: _payload, ...meta }: Chunk): ChunkMeta {
  return meta;
}
