import Database from 'better-sqlite3';
import { fsync, fsyncSync, mkdirSync, openSync, closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { BufferStats, Chunk, ChunkMeta, DecisionBuffer, NewChunk, SealedBatch } from './types.js';

import { SCHEMA } from './sqlite-schema.js';

interface PendingAppend {
  chunks: NewChunk[];
  bytes: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface ChunkRow {
  pos: number; last_pos: number; partition: string; hour: string; count: number; bytes: number; received_at: number; payload?: Buffer;
}

interface BatchRow {
  output: string; first_pos: number; last_pos: number; partition: string; hour: string; count: number; bytes: number;
}

/**
 * The buffer in an embedded SQLite database (WAL).
 *
 * Group commit: appends arriving in the same turn of the event loop are written in one transaction, and
 * are acknowledged once an fsync of the WAL file that started after their commit has completed. The fsync
 * runs off the event loop (libuv's thread pool), so requests keep being read, validated and committed while
 * the disk syncs, and the next fsync covers all of them. (With synchronous=FULL, SQLite would fsync inside
 * each commit, blocking the event loop: each fsync would then cover only the few requests read before it.)
 * Batch seals, which must be durable before an upload starts, are committed with synchronous=FULL.
 */
export class SqliteBuffer implements DecisionBuffer {
  readonly id: string;
  private readonly db: Database.Database;
  private readonly listeners: Array<() => void> = [];
  private queue: PendingAppend[] = [];
  private flushScheduled = false;
  private nextPos: number;
  private storedBytes: number;
  private storedChunks: number;
  private pendingBytes = 0;
  /** Committed appends waiting for an fsync of the WAL. */
  private awaitingSync: PendingAppend[] = [];
  private syncing = false;
  private readonly walFd: number;
  private failed: Error | undefined;
  private closed = false;
  private readonly stmt;

  constructor(dataDir: string, private readonly maxBytes: number) {
    mkdirSync(dataDir, { recursive: true });
    this.db = new Database(path.join(dataDir, 'buffer.sqlite'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
    // fsync on any descriptor of the WAL file makes every frame written to it durable.
    this.walFd = openSync(path.join(dataDir, 'buffer.sqlite-wal'), 'r');
    this.stmt = {
      insertChunk: this.db.prepare(
        'INSERT INTO chunks (pos, last_pos, partition, hour, count, bytes, received_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      metas: this.db.prepare(
        'SELECT pos, last_pos, partition, hour, count, bytes, received_at FROM chunks WHERE pos >= ? ORDER BY pos LIMIT ?'),
      chunkAtOrBefore: this.db.prepare('SELECT pos FROM chunks WHERE pos <= ? ORDER BY pos DESC LIMIT 1').pluck(),
      chunk: this.db.prepare('SELECT * FROM chunks WHERE pos = ?'),
      stream: this.db.prepare(
        'SELECT pos, last_pos, partition, hour, count, bytes, received_at FROM chunks WHERE partition = ? AND hour = ? AND last_pos >= ? ORDER BY last_pos'),
      cursor: this.db.prepare('SELECT pos FROM cursors WHERE output = ?').pluck(),
      setCursor: this.db.prepare(
        'INSERT INTO cursors (output, pos) VALUES (?, ?) ON CONFLICT (output) DO UPDATE SET pos = max(pos, excluded.pos)'),
      batches: this.db.prepare('SELECT * FROM batches WHERE output = ? AND done = 0 ORDER BY first_pos'),
      doneBatches: this.db.prepare('SELECT * FROM batches WHERE output = ? AND done = 1 ORDER BY first_pos'),
      seal: this.db.prepare(
        'INSERT OR IGNORE INTO batches (output, first_pos, last_pos, partition, hour, count, bytes) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      markDone: this.db.prepare('UPDATE batches SET done = 1 WHERE output = ? AND first_pos = ?'),
      forgetDone: this.db.prepare('DELETE FROM batches WHERE output = ? AND done = 1 AND last_pos <= ?'),
      outputs: this.db.prepare('SELECT output FROM cursors UNION SELECT output FROM batches').pluck(),
      dropOutput: [
        this.db.prepare('DELETE FROM cursors WHERE output = ?'),
        this.db.prepare('DELETE FROM batches WHERE output = ?'),
      ],
      minCursor: this.db.prepare('SELECT min(pos) FROM cursors').pluck(),
      trimmable: this.db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM chunks WHERE pos <= ? AND last_pos <= ?'),
      trim: this.db.prepare('DELETE FROM chunks WHERE pos <= ? AND last_pos <= ?'),
      oldest: this.db.prepare('SELECT received_at FROM chunks ORDER BY pos LIMIT 1').pluck(),
      oldestPos: this.db.prepare('SELECT pos FROM chunks ORDER BY pos LIMIT 1').pluck(),
      getMeta: this.db.prepare('SELECT value FROM meta WHERE key = ?').pluck(),
      setMeta: this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
    };

    let id = this.stmt.getMeta.get('buffer_id') as string | undefined;
    if (!id) {
      id = randomBytes(4).toString('hex');
      this.stmt.setMeta.run('buffer_id', id);
    }
    this.id = id;
    const totals = this.db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b, coalesce(max(last_pos), 0) AS last FROM chunks').get() as { n: number; b: number; last: number };
    const savedNext = Number(this.stmt.getMeta.get('next_pos') ?? 1);
    this.nextPos = Math.max(savedNext, totals.last + 1);
    this.storedBytes = totals.b;
    this.storedChunks = totals.n;
  }

  append(chunks: NewChunk[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the buffer is closed'));
    const bytes = chunks.reduce((sum, c) => sum + c.payload.length, 0);
    this.pendingBytes += bytes;
    return new Promise((resolve, reject) => {
      this.queue.push({ chunks, bytes, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    const receivedAt = Date.now();
    let pos = this.nextPos;
    let bytes = 0;
    let count = 0;
    try {
      this.db.transaction(() => {
        for (const pending of batch) {
          for (const c of pending.chunks) {
            this.stmt.insertChunk.run(pos, pos + c.count - 1, c.partition, c.hour, c.count, c.payload.length, receivedAt, c.payload);
            pos += c.count;
            bytes += c.payload.length;
            count++;
          }
        }
      })();
    } catch (err) {
      this.failed = err as Error;
      for (const pending of batch) {
        this.pendingBytes -= pending.bytes;
        pending.reject(err as Error);
      }
      return;
    }
    this.nextPos = pos;
    this.storedBytes += bytes;
    this.storedChunks += count;
    for (const pending of batch) this.pendingBytes -= pending.bytes;
    this.awaitingSync.push(...batch);
    this.syncWal();
  }

  /** One fsync at a time; appends committed meanwhile wait for the next one, which starts when it ends. */
  private syncWal(): void {
    if (this.syncing || this.awaitingSync.length === 0) return;
    this.syncing = true;
    const acks = this.awaitingSync;
    this.awaitingSync = [];
    fsync(this.walFd, (err) => {
      this.syncing = false;
      if (err) {
        this.failed = err;
        for (const pending of acks) pending.reject(err);
      } else {
        this.failed = undefined;
        for (const pending of acks) pending.resolve();
        for (const listener of this.listeners) listener();
      }
      this.syncWal();
    });
  }

  hasRoom(bytes: number): boolean {
    return this.storedBytes + this.pendingBytes + bytes <= this.maxBytes;
  }

  readChunkMetas(afterPos: number, limit: number): ChunkMeta[] {
    const containing = this.stmt.chunkAtOrBefore.get(afterPos + 1) as number | undefined;
    const rows = this.stmt.metas.all(containing ?? afterPos + 1, limit) as ChunkRow[];
    return rows.filter((r) => r.last_pos > afterPos).map(toMeta);
  }

  streamChunks(partition: string, hour: string, first: number, last: number): ChunkMeta[] {
    // Collected before returning: an open iterator would keep the connection busy and block appends.
    const metas: ChunkMeta[] = [];
    for (const row of this.stmt.stream.iterate(partition, hour, first) as IterableIterator<ChunkRow>) {
      if (row.pos > last) break;
      metas.push(toMeta(row));
    }
    return metas;
  }

  readChunk(pos: number): Chunk | undefined {
    const row = this.stmt.chunk.get(pos) as ChunkRow | undefined;
    return row && { ...toMeta(row), payload: row.payload! };
  }

  onAppend(listener: () => void): void {
    this.listeners.push(listener);
  }

  cursor(output: string): number {
    const pos = this.stmt.cursor.get(output) as number | undefined;
    if (pos !== undefined) return pos;
    // A new output starts at the oldest buffered chunk: everything still buffered is delivered to it too.
    const oldest = this.stmt.oldestPos.get() as number | undefined;
    const start = (oldest ?? this.nextPos) - 1;
    this.stmt.setCursor.run(output, start);
    return start;
  }

  sealedBatches(output: string): SealedBatch[] {
    return (this.stmt.batches.all(output) as BatchRow[]).map(toBatch);
  }

  deliveredBatches(output: string): SealedBatch[] {
    return (this.stmt.doneBatches.all(output) as BatchRow[]).map(toBatch);
  }

  seal(batches: SealedBatch[]): void {
    if (batches.length === 0) return;
    // A seal must be on disk before its upload starts: this commit fsyncs (and so covers earlier appends).
    this.db.pragma('synchronous = FULL');
    try {
      this.db.transaction(() => {
        for (const b of batches) this.stmt.seal.run(b.output, b.first, b.last, b.partition, b.hour, b.count, b.bytes);
      })();
    } finally {
      this.db.pragma('synchronous = NORMAL');
    }
  }

  complete(batch: SealedBatch, cursor: number): void {
    this.db.transaction(() => {
      this.stmt.markDone.run(batch.output, batch.first);
      this.stmt.setCursor.run(batch.output, cursor);
      this.stmt.forgetDone.run(batch.output, cursor);
    })();
  }

  setCursor(output: string, cursor: number): void {
    this.db.transaction(() => {
      this.stmt.setCursor.run(output, cursor);
      this.stmt.forgetDone.run(output, cursor);
    })();
  }

  retainOutputs(outputs: string[]): string[] {
    const keep = new Set(outputs);
    const dropped = (this.stmt.outputs.all() as string[]).filter((o) => !keep.has(o));
    this.db.transaction(() => {
      for (const o of dropped) for (const s of this.stmt.dropOutput) s.run(o);
    })();
    return dropped;
  }

  trim(): number {
    const upTo = this.stmt.minCursor.get() as number | null;
    if (upTo === null || upTo === undefined) return 0;
    const { n, b } = this.stmt.trimmable.get(upTo, upTo) as { n: number; b: number };
    if (n === 0) return 0;
    this.db.transaction(() => {
      // Positions must never repeat, even once every chunk is gone: remember where they continue.
      this.stmt.setMeta.run('next_pos', String(this.nextPos));
      this.stmt.trim.run(upTo, upTo);
    })();
    this.storedBytes -= b;
    this.storedChunks -= n;
    return n;
  }

  stats(): BufferStats {
    return {
      bytes: this.storedBytes,
      chunks: this.storedChunks,
      maxBytes: this.maxBytes,
      oldestReceivedAt: (this.stmt.oldest.get() as number | undefined) ?? null,
    };
  }

  writable(): boolean {
    return !this.closed && this.failed === undefined;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.queue.length > 0) this.flush();
    fsyncSync(this.walFd);
    for (const pending of this.awaitingSync.splice(0)) pending.resolve();
    closeSync(this.walFd);
    this.db.close();
  }
}

function toMeta(row: ChunkRow): ChunkMeta {
  return { pos: row.pos, partition: row.partition, hour: row.hour, count: row.count, bytes: row.bytes, receivedAt: row.received_at };
}

function toBatch(row: BatchRow): SealedBatch {
  return { output: row.output, first: row.first_pos, last: row.last_pos, partition: row.partition, hour: row.hour, count: row.count, bytes: row.bytes };
}
