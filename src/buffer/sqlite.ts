import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { crc32, gunzipSync } from 'node:zlib';
import type { WalGroupCommit } from '../sqlite/group-commit.js';
import { WalDatabase } from '../sqlite/wal-database.js';
import { ADDED_COLUMNS, SCHEMA } from './sqlite-schema.js';
import {
  CorruptChunkError,
  type BufferStats,
  type Chunk,
  type ChunkMeta,
  type DecisionBuffer,
  type NewChunk,
  type SealedBatch,
} from './types.js';

interface ChunkRow {
  pos: number;
  last_pos: number;
  partition: string;
  hour: string;
  instance: string;
  count: number;
  bytes: number;
  received_at: number;
  compressed: number;
  stored_bytes: number | null;
  payload?: Buffer;
  crc?: number | null;
}

interface BatchRow {
  output: string;
  first_pos: number;
  last_pos: number;
  partition: string;
  hour: string;
  instance: string;
  count: number;
  bytes: number;
}

/**
 * The buffer in an embedded SQLite database (WAL).
 *
 * Appends are group-committed (see WalGroupCommit): acknowledged once an fsync of the WAL that started after
 * their commit has completed, many requests per fsync, without blocking the event loop. Batch seals, which
 * must be durable before an upload starts, are committed with synchronous=FULL.
 */
export class SqliteBuffer implements DecisionBuffer {
  readonly id: string;
  private readonly wal: WalDatabase;
  private readonly db: Database.Database;
  private readonly commits: WalGroupCommit;
  private nextPos: number;
  private storedBytes: number;
  private storedChunks: number;
  private storedEvents: number;
  /** Bytes of appends not yet durable: they count against the bound already. */
  private pendingBytes = 0;
  private closed = false;
  /** Positions of chunks found corrupt since the start: each is counted once however often it is read. */
  private readonly corrupt = new Set<number>();
  /** Set by openBuffer when this buffer replaced a lost one (--accept-buffer-loss). */
  resets = 0;
  private readonly stmt;

  constructor(
    dataDir: string,
    private readonly maxBytes: number,
  ) {
    this.wal = new WalDatabase(dataDir, 'buffer.sqlite', SCHEMA, ADDED_COLUMNS);
    this.db = this.wal.db;
    this.commits = this.wal.commits;
    this.stmt = {
      insertChunk: this.db.prepare(
        'INSERT INTO chunks (pos, last_pos, partition, hour, instance, count, bytes, received_at, payload, crc, compressed, stored_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      metas: this.db.prepare(`SELECT ${META_COLUMNS} FROM chunks WHERE pos >= ? ORDER BY pos LIMIT ?`),
      chunkAtOrBefore: this.db.prepare('SELECT pos FROM chunks WHERE pos <= ? ORDER BY pos DESC LIMIT 1').pluck(),
      chunk: this.db.prepare('SELECT * FROM chunks WHERE pos = ?'),
      stream: this.db.prepare(
        `SELECT ${META_COLUMNS} FROM chunks WHERE partition = ? AND hour = ? AND last_pos >= ? ORDER BY last_pos`,
      ),
      cursor: this.db.prepare('SELECT pos FROM cursors WHERE output = ?').pluck(),
      setCursor: this.db.prepare(
        'INSERT INTO cursors (output, pos) VALUES (?, ?) ON CONFLICT (output) DO UPDATE SET pos = max(pos, excluded.pos)',
      ),
      batches: this.db.prepare('SELECT * FROM batches WHERE output = ? AND done = 0 ORDER BY first_pos'),
      doneBatches: this.db.prepare('SELECT * FROM batches WHERE output = ? AND done = 1 ORDER BY first_pos'),
      seal: this.db.prepare(
        'INSERT OR IGNORE INTO batches (output, first_pos, last_pos, partition, hour, instance, count, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      markDone: this.db.prepare('UPDATE batches SET done = 1 WHERE output = ? AND first_pos = ?'),
      forgetDone: this.db.prepare('DELETE FROM batches WHERE output = ? AND done = 1 AND last_pos <= ?'),
      outputs: this.db.prepare('SELECT output FROM cursors UNION SELECT output FROM batches').pluck(),
      dropOutput: [
        this.db.prepare('DELETE FROM cursors WHERE output = ?'),
        this.db.prepare('DELETE FROM batches WHERE output = ?'),
      ],
      minCursor: this.db.prepare('SELECT min(pos) FROM cursors').pluck(),
      trimmable: this.db.prepare(
        `SELECT count(*) AS n, coalesce(sum(${STORED_BYTES}), 0) AS b, coalesce(sum(count), 0) AS e FROM chunks WHERE pos <= ? AND last_pos <= ?`,
      ),
      trim: this.db.prepare('DELETE FROM chunks WHERE pos <= ? AND last_pos <= ?'),
      oldest: this.db.prepare('SELECT received_at FROM chunks ORDER BY pos LIMIT 1').pluck(),
      oldestPos: this.db.prepare('SELECT pos FROM chunks ORDER BY pos LIMIT 1').pluck(),
      getMeta: this.db.prepare('SELECT value FROM meta WHERE key = ?').pluck(),
      insertAccepted: this.db.prepare('INSERT INTO accepted (at, keys) VALUES (?, ?)'),
      acceptedSince: this.db.prepare('SELECT at, keys FROM accepted WHERE at >= ? ORDER BY at DESC'),
      forgetAccepted: this.db.prepare('DELETE FROM accepted WHERE at < ?'),
      setMeta: this.db.prepare(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ),
    };

    let id = this.stmt.getMeta.get('buffer_id') as string | undefined;
    if (!id) {
      id = randomBytes(4).toString('hex');
      this.stmt.setMeta.run('buffer_id', id);
    }
    this.id = id;
    const totals = this.db
      .prepare(
        `SELECT count(*) AS n, coalesce(sum(${STORED_BYTES}), 0) AS b, coalesce(sum(count), 0) AS e, coalesce(max(last_pos), 0) AS last FROM chunks`,
      )
      .get() as { n: number; b: number; e: number; last: number };
    const savedNext = Number(this.stmt.getMeta.get('next_pos') ?? 1);
    this.nextPos = Math.max(savedNext, totals.last + 1);
    this.storedBytes = totals.b;
    this.storedChunks = totals.n;
    this.storedEvents = totals.e;
  }

  append(chunks: NewChunk[], accepted: string[] = []): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the buffer is closed'));
    const bytes = chunks.reduce((sum, c) => sum + c.payload.length, 0);
    this.pendingBytes += bytes;
    const written = this.commits.run(() => {
      const receivedAt = Date.now();
      for (const c of chunks) {
        // SQLite keeps no checksum of its own: a flipped bit on disk would otherwise be uploaded as data.
        this.stmt.insertChunk.run(
          this.nextPos,
          this.nextPos + c.count - 1,
          c.partition,
          c.hour,
          c.instance,
          c.count,
          c.bytes,
          receivedAt,
          c.payload,
          crc32(c.payload),
          c.compressed ? 1 : 0,
          c.payload.length,
        );
        // A position of a rolled-back write is simply never used: positions must be unique, not dense.
        this.nextPos += c.count;
      }
      if (accepted.length > 0) this.stmt.insertAccepted.run(receivedAt, accepted.join('\n'));
    });
    return written.then(
      () => {
        this.pendingBytes -= bytes;
        this.storedBytes += bytes;
        this.storedChunks += chunks.length;
        this.storedEvents += chunks.reduce((sum, c) => sum + c.count, 0);
      },
      (err: Error) => {
        this.pendingBytes -= bytes;
        throw err;
      },
    );
  }

  acceptedSince(since: number, maxKeys: number): Array<{ at: number; keys: string[] }> {
    const rows: Array<{ at: number; keys: string[] }> = [];
    let count = 0;
    // newest first, and only as many as will be remembered: the table may hold far more within the window
    for (const row of this.stmt.acceptedSince.iterate(since) as IterableIterator<{ at: number; keys: string }>) {
      const keys = row.keys.split('\n');
      rows.push({ at: row.at, keys });
      count += keys.length;
      if (count >= maxKeys) break;
    }
    return rows.reverse();
  }

  forgetAccepted(before: number): void {
    this.stmt.forgetAccepted.run(before);
  }

  hasRoom(bytes: number): boolean {
    return this.storedBytes + this.pendingBytes + bytes <= this.maxBytes;
  }

  readChunkMetas(afterPos: number, limit: number): ChunkMeta[] {
    const containing = this.stmt.chunkAtOrBefore.get(afterPos + 1) as number | undefined;
    const rows = this.stmt.metas.all(containing ?? afterPos + 1, limit) as ChunkRow[];
    return rows.filter((r) => r.last_pos > afterPos).map(toMeta);
  }

  streamChunks(partition: string, hour: string, instance: string | null, first: number, last: number): ChunkMeta[] {
    // Collected before returning: an open iterator would keep the connection busy and block appends.
    const metas: ChunkMeta[] = [];
    for (const row of this.stmt.stream.iterate(partition, hour, first) as IterableIterator<ChunkRow>) {
      if (row.pos > last) break;
      if (instance !== null && row.instance !== instance) continue;
      metas.push(toMeta(row));
    }
    return metas;
  }

  readChunk(pos: number): Chunk | undefined {
    const row = this.verifiedRow(pos);
    if (!row) return undefined;
    let payload = row.payload!;
    if (row.compressed) {
      try {
        payload = gunzipSync(payload);
      } catch {
        // the checksum matched what was written, so this is a chunk older than checksums, damaged
        this.corrupt.add(row.pos);
        throw new CorruptChunkError(row.pos, row.last_pos, row.payload!);
      }
    }
    return { ...toMeta(row), payload };
  }

  readStoredPayload(pos: number): Buffer | undefined {
    return this.verifiedRow(pos)?.payload;
  }

  private verifiedRow(pos: number): ChunkRow | undefined {
    const row = this.stmt.chunk.get(pos) as ChunkRow | undefined;
    if (!row) return undefined;
    // NULL: a row stored before checksums existed, read unchecked
    if (row.crc !== null && row.crc !== undefined && crc32(row.payload!) !== row.crc) {
      this.corrupt.add(row.pos);
      throw new CorruptChunkError(row.pos, row.last_pos, row.payload!);
    }
    return row;
  }

  onAppend(listener: () => void): void {
    this.commits.onDurable(listener);
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
    this.wal.commitNow(() => {
      for (const b of batches)
        this.stmt.seal.run(b.output, b.first, b.last, b.partition, b.hour, b.instance, b.count, b.bytes);
    });
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

  outputShape(output: string): string | undefined {
    return (this.stmt.getMeta.get(`output_shape:${output}`) as string | undefined) ?? undefined;
  }

  setOutputShape(output: string, shape: string): void {
    // durable at once: batches sealed from now on are named after it
    this.wal.commitNow(() => this.stmt.setMeta.run(`output_shape:${output}`, shape));
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
    const { n, b, e } = this.stmt.trimmable.get(upTo, upTo) as { n: number; b: number; e: number };
    if (n === 0) return 0;
    this.db.transaction(() => {
      // Positions must never repeat, even once every chunk is gone: remember where they continue.
      this.stmt.setMeta.run('next_pos', String(this.nextPos));
      this.stmt.trim.run(upTo, upTo);
    })();
    this.storedBytes -= b;
    this.storedChunks -= n;
    this.storedEvents -= e;
    return n;
  }

  lastPosition(): number {
    return this.nextPos - 1;
  }

  stats(): BufferStats {
    return {
      bytes: this.storedBytes,
      chunks: this.storedChunks,
      events: this.storedEvents,
      maxBytes: this.maxBytes,
      oldestReceivedAt: (this.stmt.oldest.get() as number | undefined) ?? null,
      corruptChunks: this.corrupt.size,
      resets: this.resets,
    };
  }

  writable(): boolean {
    return this.wal.writable();
  }

  close(): void {
    this.closed = true;
    this.wal.close();
  }
}

function toMeta(row: ChunkRow): ChunkMeta {
  return {
    pos: row.pos,
    partition: row.partition,
    hour: row.hour,
    instance: row.instance,
    count: row.count,
    bytes: row.bytes,
    storedBytes: row.stored_bytes ?? row.bytes,
    compressed: row.compressed === 1,
    receivedAt: row.received_at,
  };
}

const META_COLUMNS = 'pos, last_pos, partition, hour, instance, count, bytes, received_at, compressed, stored_bytes';
/** Rows from before compression at ingest have no stored_bytes: they are stored as their bytes. */
const STORED_BYTES = 'coalesce(stored_bytes, bytes)';

function toBatch(row: BatchRow): SealedBatch {
  return {
    output: row.output,
    first: row.first_pos,
    last: row.last_pos,
    partition: row.partition,
    hour: row.hour,
    instance: row.instance,
    count: row.count,
    bytes: row.bytes,
  };
}
