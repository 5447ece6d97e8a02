/**
 * The buffer's own guards, in-process against a real SQLite file: every chunk's payload carries a CRC32 from
 * append, checked at every read, and a data_dir takes one process at a time.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SqliteBuffer } from '../src/buffer/sqlite.ts';
import { CorruptChunkError, type NewChunk } from '../src/buffer/types.ts';
import { DataDirInUseError, DataDirLock } from '../src/buffer/data-dir-lock.ts';
import { tempDir } from './helpers/sluice.js';

function dirFor(t: TestContext): string {
  const dir = tempDir('sluice-buffer-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function chunk(lines: string[], partition = 'default'): NewChunk {
  const payload = Buffer.from(lines.map((l) => `${l}\n`).join(''));
  return {
    partition,
    hour: '2026-05-01T12',
    instance: '',
    count: lines.length,
    payload,
    compressed: false,
    bytes: payload.length,
  };
}

/** Another connection to the buffer's file, as a disk fault or a stray tool would change it. */
function tamper(dir: string, sql: string, ...params: unknown[]): void {
  const db = new Database(path.join(dir, 'buffer.sqlite'));
  try {
    db.prepare(sql).run(...params);
  } finally {
    db.close();
  }
}

test('readChunk throws CorruptChunkError (positions, raw bytes) when a payload no longer matches its checksum, and counts it once', async (t) => {
  const dir = dirFor(t);
  const buffer = new SqliteBuffer(dir, 1 << 20);
  t.after(() => buffer.close());
  await buffer.append([
    chunk(['{"decision_id":"a1"}', '{"decision_id":"a2"}']),
    chunk(['{"decision_id":"b1"}', '{"decision_id":"b2"}', '{"decision_id":"b3"}'], 'other'),
  ]);
  const [first, second] = buffer.readChunkMetas(0, 10);
  assert.ok(first && second);
  assert.equal(
    buffer.readChunk(second.pos)!.payload.toString(),
    '{"decision_id":"b1"}\n{"decision_id":"b2"}\n{"decision_id":"b3"}\n',
  );
  assert.equal(buffer.stats().corruptChunks, 0);

  // Same length, still valid NDJSON: only a checksum can tell these bytes are not the ones acknowledged.
  const garbage = Buffer.from('{"decision_id":"XX"}\n{"decision_id":"b2"}\n{"decision_id":"b3"}\n');
  tamper(dir, 'UPDATE chunks SET payload = ? WHERE pos = ?', garbage, second.pos);
  let thrown: unknown;
  try {
    buffer.readChunk(second.pos);
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown instanceof CorruptChunkError, `readChunk throws CorruptChunkError, not ${String(thrown)}`);
  assert.equal(thrown.pos, second.pos);
  assert.equal(thrown.lastPos, second.pos + 2);
  assert.deepEqual(thrown.payload, garbage, 'the error carries the raw bytes as stored');
  assert.match(thrown.message, new RegExp(`${second.pos}-${second.pos + 2}`), 'the message names the positions');
  assert.ok(!JSON.stringify(thrown).includes('XX'), 'the payload stays out of a serialized (logged) error');
  assert.equal(buffer.stats().corruptChunks, 1);
  assert.throws(() => buffer.readChunk(second.pos), CorruptChunkError);
  assert.equal(buffer.stats().corruptChunks, 1, 'a chunk read twice is one corrupt chunk');
  // the other chunk is untouched and reads as before
  assert.equal(buffer.readChunk(first.pos)!.payload.toString(), '{"decision_id":"a1"}\n{"decision_id":"a2"}\n');
});

test('a chunk from before checksums (crc NULL) is read unchecked; a buffer from before the column gets it, and new chunks are checked', async (t) => {
  const dir = dirFor(t);
  // a buffer as the previous release made it: chunks without the crc column
  const old = new Database(path.join(dir, 'buffer.sqlite'));
  old.exec(`CREATE TABLE chunks (pos INTEGER PRIMARY KEY, last_pos INTEGER NOT NULL, partition TEXT NOT NULL, hour TEXT NOT NULL,
    count INTEGER NOT NULL, bytes INTEGER NOT NULL, received_at INTEGER NOT NULL, payload BLOB NOT NULL, instance TEXT NOT NULL DEFAULT '')`);
  old
    .prepare(
      'INSERT INTO chunks (pos, last_pos, partition, hour, count, bytes, received_at, payload) VALUES (1, 1, ?, ?, 1, 9, 0, ?)',
    )
    .run('default', '2026-05-01T12', Buffer.from('{"old":1}'));
  old.close();

  const buffer = new SqliteBuffer(dir, 1 << 20);
  t.after(() => buffer.close());
  assert.equal(buffer.readChunk(1)!.payload.toString(), '{"old":1}', 'an old row has no checksum and is read as it is');
  await buffer.append([chunk(['{"new":1}'])]);
  const fresh = buffer.readChunkMetas(1, 10)[0]!;
  assert.equal(fresh.pos, 2);
  tamper(dir, 'UPDATE chunks SET payload = ? WHERE pos = ?', Buffer.from('{"new":2}\n'), fresh.pos);
  assert.throws(
    () => buffer.readChunk(fresh.pos),
    (err: unknown) => err instanceof CorruptChunkError && err.pos === 2 && err.lastPos === 2,
  );
  // a checksum set to NULL (a row as the old release wrote it) is not checked
  tamper(dir, 'UPDATE chunks SET crc = NULL WHERE pos = ?', fresh.pos);
  assert.equal(buffer.readChunk(fresh.pos)!.payload.toString(), '{"new":2}\n');
});

test('a data_dir takes one lock holder at a time, and the lock is free again once released', (t) => {
  const dir = dirFor(t);
  const lock = DataDirLock.acquire(dir);
  let released = false;
  t.after(() => {
    if (!released) lock.release();
  });
  // SQLite tracks its file locks per connection within a process too: a second holder is refused here as well
  assert.throws(
    () => DataDirLock.acquire(dir),
    (err: unknown) => {
      assert.ok(err instanceof DataDirInUseError, String(err));
      assert.equal(err.holder?.pid, process.pid);
      assert.ok(err.message.includes(dir) && err.message.includes(`pid ${process.pid}`), err.message);
      return true;
    },
  );
  lock.release();
  released = true;
  DataDirLock.acquire(dir).release();
});

test('a compressed chunk reads back as its NDJSON; a byte changed in its gzip member fails the checksum on either read', async (t) => {
  const dir = dirFor(t);
  const buffer = new SqliteBuffer(dir, 1 << 20);
  t.after(() => buffer.close());
  const ndjson = Buffer.from('{"decision_id":"c1"}\n{"decision_id":"c2"}\n');
  const member = gzipSync(ndjson, { level: 1 });
  await buffer.append([
    {
      partition: 'default',
      hour: '2026-05-01T12',
      instance: '',
      count: 2,
      payload: member,
      compressed: true,
      bytes: ndjson.length,
    },
  ]);
  const [meta] = buffer.readChunkMetas(0, 10);
  assert.ok(meta);
  assert.equal(meta.compressed, true);
  assert.equal(meta.bytes, ndjson.length, 'bytes: the NDJSON uncompressed (what batches count)');
  assert.equal(meta.storedBytes, member.length, 'storedBytes: what the buffer holds (what buffer.max_bytes counts)');
  assert.equal(buffer.stats().bytes, member.length);
  assert.deepEqual(buffer.readChunk(meta.pos)!.payload, ndjson, 'readChunk gives the NDJSON');
  assert.deepEqual(buffer.readStoredPayload(meta.pos), member, 'readStoredPayload gives the member as stored');

  const damaged = Buffer.from(member);
  damaged[damaged.length - 9] ^= 0x01; // inside the deflate data's tail
  tamper(dir, 'UPDATE chunks SET payload = ? WHERE pos = ?', damaged, meta.pos);
  assert.throws(() => buffer.readChunk(meta.pos), CorruptChunkError);
  assert.throws(() => buffer.readStoredPayload(meta.pos), CorruptChunkError);
  assert.equal(buffer.stats().corruptChunks, 1);
});
