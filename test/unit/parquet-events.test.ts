/**
 * Destination events as Parquet (src/formats/parquet-events.ts), read back with DuckDB: id, topic, a
 * TIMESTAMP time, the metadata map and the data's exact JSON text; the same events give the same bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { encodeEventsParquet, eventParquetWriter, type ParquetEvent } from '../../src/formats/parquet-events.js';
import { duckdb, parquetFile } from '../helpers/duckdb.js';
import { tempDir } from '../helpers/sluice.js';

const events: ParquetEvent[] = Array.from({ length: 500 }, (_, i) => ({
  id: `evt_${i}`,
  topic: i % 2 === 0 ? 'user.created' : 'order.paid',
  time: `2026-12-01T10:${String(i % 60).padStart(2, '0')}:00.123456789Z`,
  metadata: i % 3 === 0 ? {} : { source: 'billing', attempt: String(i % 3) },
  data:
    i === 7
      ? '{"amount":12345678901234567890.10,"ids":[9007199254740993], "spaced" : true}'
      : JSON.stringify({ n: i, user: { name: `u${i}` } }),
}));

test('events read back in DuckDB: columns, types, exact data text', async (t) => {
  const dir = tempDir('sluice-parquet-events-');
  const db = await duckdb();
  t.after(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const { body, count } = await encodeEventsParquet(events, { compression: 'zstd', rowGroupBytes: 8 * 1024 });
  assert.equal(count, events.length);
  const file = parquetFile(dir, 'events.parquet', body);
  const types = await db.all(
    `SELECT typeof(id) AS id, typeof(time) AS time, typeof(metadata) AS metadata, typeof(data) AS data FROM ${file} LIMIT 1`,
  );
  assert.deepEqual(types, [
    { id: 'VARCHAR', time: 'TIMESTAMP WITH TIME ZONE', metadata: 'MAP(VARCHAR, VARCHAR)', data: 'JSON' },
  ]);
  assert.ok((await db.all(`SELECT DISTINCT row_group_id FROM parquet_metadata(${file})`)).length > 1);
  const rows =
    await db.all(`SELECT id, topic, epoch_us(time) AS micros, map_keys(metadata) AS keys, map_values(metadata) AS vals, data::VARCHAR AS data
    FROM read_parquet(${file}, file_row_number = true) ORDER BY file_row_number`);
  assert.deepEqual(
    rows,
    events.map((e) => ({
      id: e.id,
      topic: e.topic,
      micros: BigInt(Date.parse(e.time)) * 1000n + 456n,
      keys: Object.keys(e.metadata),
      vals: Object.values(e.metadata),
      data: e.data,
    })),
  );
  // the exact text is what the rows above compared; a query of an integer past 2^53 gets its digits
  assert.deepEqual(
    await db.all(`SELECT json_extract_string(data, '$.ids[0]') AS first FROM ${file} WHERE id = 'evt_7'`),
    [{ first: '9007199254740993' }],
  );
});

test('the same events give the same bytes, in one go or event by event into memory that grows', async () => {
  for (const compression of ['zstd', 'snappy', 'gzip', 'none'] as const) {
    const options = { compression, rowGroupBytes: 8 * 1024 };
    const once = (await encodeEventsParquet(events, options)).body;
    assert.ok(once.equals((await encodeEventsParquet(events, options)).body), compression);
    const writer = await eventParquetWriter({ ...options, into: new ArrayBuffer(100) });
    for (const e of events) writer.add(e);
    assert.ok(writer.finish().equals(once), compression);
  }
});
