/**
 * A Parquet output reads its batch as the chunks are stored (src/delivery/parquet-encoder.ts storedChunks):
 * each gzip member goes to the encoder thread to be gunzipped there. Against a real SQLite buffer: the file
 * is the one the batch's NDJSON lines give; a chunk whose checksum fails is set aside; a chunk that passed its
 * checksum but does not gunzip (stored before checksums) fails the encoding so that the batch is read again.
 */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { SqliteBuffer } from '../../src/buffer/sqlite.js';
import type { CorruptChunkError, NewChunk, SealedBatch } from '../../src/buffer/types.js';
import { bufferLines } from '../../src/delivery/encode.js';
import {
  closeParquetEncoder,
  parquetDecisionsObject,
  storedChunks,
  unreadableChunk,
} from '../../src/delivery/parquet-encoder.js';
import { benchDecision } from '../../bench/payloads.js';
import { tempDir } from '../helpers/sluice.js';

after(() => closeParquetEncoder());

const encoding = { format: 'parquet', compression: 'zstd', parquet: { row_group_bytes: 256 * 1024 } } as const;
const now = new Date('2026-12-01T10:00:00Z');

function chunkOf(texts: string[], compressed: boolean): NewChunk {
  const ndjson = Buffer.from(texts.map((x) => `${x}\n`).join(''));
  return {
    partition: 'default',
    hour: '2026-12-01T10',
    instance: '',
    count: texts.length,
    payload: compressed ? gzipSync(ndjson, { level: 1 }) : ndjson,
    compressed,
    bytes: ndjson.length,
  };
}

async function bufferWith(t: TestContext, compressed: boolean[]): Promise<{ buffer: SqliteBuffer; dir: string }> {
  const dir = tempDir('sluice-stored-');
  const buffer = new SqliteBuffer(dir, 64 << 20);
  t.after(() => {
    buffer.close();
    rmSync(dir, { recursive: true, force: true });
  });
  let n = 0;
  await buffer.append(
    compressed.map((c) =>
      chunkOf(
        Array.from({ length: 300 }, () => JSON.stringify(benchDecision(`s-${n}`, n++, now))),
        c,
      ),
    ),
  );
  return { buffer, dir };
}

const batchOf = (first: number, last: number): SealedBatch => ({
  output: 'archive',
  partition: 'default',
  hour: '2026-12-01T10',
  instance: null,
  first,
  last,
  count: last - first + 1,
  bytes: 0,
});

test('stored chunks, gzip and plain, give the file the batch lines give, cut to the batch where it starts and ends mid-chunk', async (t) => {
  const { buffer } = await bufferWith(t, [true, true, false, true]);
  const [first] = buffer.readChunkMetas(0, 10);
  // from the 50th decision of the first chunk to the 100th of the last
  const batch = batchOf(first!.pos + 49, first!.pos + 3 * 300 + 99);
  const fromLines = await parquetDecisionsObject(bufferLines(buffer, batch), encoding, 'k.parquet');
  const fromStored = await parquetDecisionsObject(storedChunks(buffer, batch), encoding, 'k.parquet');
  assert.equal(fromStored.count, batch.count);
  assert.equal(fromLines.count, batch.count);
  assert.ok(fromStored.body.equals(fromLines.body), 'byte-identical');
});

test('a chunk whose checksum fails is set aside and the rest is written; one that does not gunzip fails the encoding, to be read again', async (t) => {
  const { buffer, dir } = await bufferWith(t, [true, true, true]);
  const metas = buffer.readChunkMetas(0, 10);
  const batch = batchOf(metas[0]!.pos, metas[2]!.pos + 299);
  const tamper = (sql: string, ...params: unknown[]) => {
    const db = new Database(path.join(dir, 'buffer.sqlite'));
    try {
      db.prepare(sql).run(...params);
    } finally {
      db.close();
    }
  };
  const stored = buffer.readStoredPayload(metas[1]!.pos)!;
  const damaged = Buffer.from(stored);
  damaged[damaged.length - 9] ^= 0x01;
  tamper('UPDATE chunks SET payload = ? WHERE pos = ?', damaged, metas[1]!.pos);

  const setAside: CorruptChunkError[] = [];
  const object = await parquetDecisionsObject(
    storedChunks(buffer, batch, (err) => setAside.push(err)),
    encoding,
    'k.parquet',
  );
  assert.equal(object.count, 600, 'the two good chunks');
  assert.deepEqual(
    setAside.map((e) => e.pos),
    [metas[1]!.pos],
  );

  // the same damage in a chunk from before checksums: nothing catches it before the encoder thread gunzips it
  tamper('UPDATE chunks SET crc = NULL WHERE pos = ?', metas[1]!.pos);
  const failed = await parquetDecisionsObject(storedChunks(buffer, batch), encoding, 'k.parquet').catch((e) => e);
  assert.ok(unreadableChunk(failed), String(failed));
  assert.match(String(failed), new RegExp(`position ${metas[1]!.pos}`));
  // read as lines (what the output does then), the chunk is set aside
  const again: CorruptChunkError[] = [];
  const reread = await parquetDecisionsObject(
    bufferLines(buffer, batch, (err) => again.push(err)),
    encoding,
    'k.parquet',
  );
  assert.equal(reread.count, 600);
  assert.deepEqual(
    again.map((e) => e.pos),
    [metas[1]!.pos],
  );
});
