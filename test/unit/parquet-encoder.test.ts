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
import { availableParallelism } from 'node:os';
import { bodyBuffers } from '../../src/delivery/body-buffers.js';
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

test('a file written into the memory of a body given back is byte-identical to one written into new memory', async () => {
  const small = texts.slice(0, 3000);
  const expected = (await encodeDecisionsParquet([ndjson(small)], { compression: 'zstd', rowGroupBytes: 512 * 1024 }))
    .body;
  // a larger file first, its body given back: the next file is written over its bytes
  const large = await parquetDecisionsObject([ndjson(texts)], encoding, 'large.parquet');
  const largeCopy = Buffer.from(large.body);
  const memory = large.body.buffer;
  const size = memory.byteLength;
  large.releaseBody!();
  const reused = await parquetDecisionsObject([ndjson(small)], encoding, 'small.parquet');
  // the memory moved to the encoder thread (its handle here is detached) and came back as the new body's
  assert.equal(memory.byteLength, 0, 'the memory given back went to the encoder');
  assert.equal(reused.body.buffer.byteLength, size, 'and holds the new file');
  assert.ok(reused.body.equals(expected), 'byte-identical, nothing of the larger file past its end');
  assert.equal(reused.contentMD5, md5(expected));
  // and a file larger than the memory given back gets memory of its own, whole
  reused.releaseBody!();
  const again = await parquetDecisionsObject([ndjson(texts)], encoding, 'large.parquet');
  assert.ok(again.body.equals(largeCopy));
  again.releaseBody!();
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

test('batches waiting for the encoder thread hold no body memory: only a running file takes a buffer', async () => {
  // Each file is written into a body buffer given back (body-buffers.ts). Were it taken when the batch is
  // queued rather than when its encoding starts, every sealed batch waiting behind the thread at full load
  // would hold a body's worth (8 MiB for the default 64 MiB batch) doing nothing.
  const size = 4 * 1024 * 1024;
  for (let i = 0; i < 6; i++) bodyBuffers.give(new ArrayBuffer(size));
  assert.equal(bodyBuffers.keptBytes, 6 * size, 'the six buffers are what the pool keeps');
  let fewest = bodyBuffers.keptBytes;
  const sampler = setInterval(() => (fewest = Math.min(fewest, bodyBuffers.keptBytes)), 1);
  const files = await Promise.all(
    Array.from({ length: 8 }, (_, b) =>
      parquetDecisionsObject([ndjson(texts.slice(b * 500, b * 500 + 500))], encoding, `q${b}.parquet`).then((o) => {
        fewest = Math.min(fewest, bodyBuffers.keptBytes);
        o.releaseBody!();
        return o;
      }),
    ),
  );
  clearInterval(sampler);
  assert.equal(files.length, 8);
  const threads = Math.max(1, Math.floor(availableParallelism() / 2));
  assert.ok(
    fewest >= (6 - threads) * size,
    `at most ${threads} buffer(s) out at once (one per encoder thread), saw ${6 - fewest / size}`,
  );
  assert.equal(bodyBuffers.keptBytes, 6 * size, 'every buffer came back');
});
