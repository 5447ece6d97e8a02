/**
 * Parquet objects encoded in the worker threads (src/delivery/parquet-encoder.ts): the same file as encoding
 * in one go, whatever the pieces the batch is read in; a failure to read the batch is the caller's error,
 * never a shorter file; several files at once each get their own rows.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeDecisionsParquet } from '../../src/formats/parquet-decisions.js';
import { encodeEventsParquet } from '../../src/formats/parquet-events.js';
import {
  closeParquetEncoder,
  parquetDecisionsObject,
  parquetEventsObject,
} from '../../src/delivery/parquet-encoder.js';
import { md5 } from '../../src/sinks/types.js';
import { benchDecision } from '../../bench/payloads.js';

after(() => closeParquetEncoder());

const now = new Date('2026-12-01T10:00:00Z');
const texts = Array.from({ length: 6000 }, (_, i) => JSON.stringify(benchDecision(`enc-${i}`, i, now)));
const ndjson = (t: string[]) => Buffer.from(t.map((x) => `${x}\n`).join(''));
const encoding = { format: 'parquet', compression: 'zstd', parquet: { row_group_bytes: 512 * 1024 } } as const;

test('a batch read in any pieces gives the bytes of the same decisions encoded at once', async () => {
  const direct = await encodeDecisionsParquet([ndjson(texts)], { compression: 'zstd', rowGroupBytes: 512 * 1024 });
  // one group of 4.5 MB (cut into ~1 MiB pieces on the way), then many small ones
  const pieces = [ndjson(texts.slice(0, 5000)), ...texts.slice(5000).map((t) => ndjson([t]))];
  const object = await parquetDecisionsObject(pieces, encoding, 'k.parquet');
  assert.equal(object.count, texts.length);
  assert.ok(object.body.equals(direct.body), 'byte-identical');
  assert.equal(object.contentMD5, md5(direct.body));
  assert.equal(object.contentType, 'application/vnd.apache.parquet');
  assert.equal(object.contentEncoding, undefined);
  assert.deepEqual(object.unprocessable, []);
});

test('a line that is not JSON is left out and reported; the others are written', async () => {
  const object = await parquetDecisionsObject(
    [Buffer.from(`${texts[0]}\n{"cut":\n${texts[1]}\n`)],
    encoding,
    'k.parquet',
  );
  assert.equal(object.count, 2);
  assert.equal(object.unprocessable.length, 1);
  assert.equal(object.unprocessable[0]!.line, '{"cut":');
});

test('reading the batch fails: the encoding fails with that error, and the next one works', async () => {
  function* failing(): Generator<Buffer> {
    yield ndjson(texts.slice(0, 10));
    throw new Error('buffer chunk 7 is missing');
  }
  await assert.rejects(parquetDecisionsObject(failing(), encoding, 'k.parquet'), /buffer chunk 7 is missing/);
  const object = await parquetDecisionsObject([ndjson(texts.slice(0, 10))], encoding, 'k.parquet');
  assert.equal(object.count, 10);
});

test('files encoded at once each hold their own decisions and events', async () => {
  const batches = [0, 1, 2, 3].map((b) => texts.slice(b * 1000, b * 1000 + 1000));
  const events = Array.from({ length: 3000 }, (_, i) => ({
    id: `ev-${i}`,
    topic: 'orders',
    time: '2026-12-01T10:00:00.123456789Z',
    metadata: { n: String(i) },
    data: JSON.stringify({ n: i, big: '1' }),
  }));
  const [a, b, c, d, e] = await Promise.all([
    ...batches.map((t) => parquetDecisionsObject([ndjson(t)], encoding, 'k.parquet')),
    parquetEventsObject(events, encoding, 'e.parquet'),
  ]);
  for (const [i, o] of [a, b, c, d].entries()) {
    const direct = await encodeDecisionsParquet([ndjson(batches[i]!)], {
      compression: 'zstd',
      rowGroupBytes: 512 * 1024,
    });
    assert.ok(o!.body.equals(direct.body), `decision file ${i}`);
  }
  const direct = await encodeEventsParquet(events, { compression: 'zstd', rowGroupBytes: 512 * 1024 });
  assert.ok(e!.body.equals(direct.body), 'event file');
  assert.equal(e!.count, 3000);
});

test('a million tiny decisions ({}, three bytes each) make row groups the encoder thread can hold', async () => {
  // each row counts ROW_OVERHEAD_BYTES on top of its text: without it, 3 MB of `{}` would be one row group of
  // a million rows, past the thread's heap (the worker dies, and the output retries for ever)
  const groups = Array.from({ length: 100 }, () => Buffer.from('{}\n'.repeat(10_000)));
  const object = await parquetDecisionsObject(groups, { format: 'parquet', compression: 'zstd' }, 'k.parquet');
  assert.equal(object.count, 1_000_000);
});
