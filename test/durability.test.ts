/**
 * Durability: what Sluice acknowledges (200) reaches the bucket exactly once, through a full buffer, kill -9,
 * S3 outages, permanent S3 errors and shutdowns. Everything runs for real: `node dist/cli.js serve` in its own
 * process and s3rver on 127.0.0.1.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { S3_KEY, S3_SECRET, s3For, TestS3 } from './helpers/s3.js';
import { SluiceProcess, tempDir, type ReadyStatus } from './helpers/sluice.js';
import { decisions, postDecisions } from './helpers/opa.js';

const RETRY = { initial_backoff: '50ms', max_backoff: '500ms' };

// ---------------------------------------------------------------------------------------------------------------
// Small glue over the helpers: lifetimes tied to the test, configs, and exactly-once bookkeeping.

/** A data_dir that outlives restarts within the test and is removed after it. */
function dataDirFor(t: TestContext): string {
  const dir = tempDir('sluice-durability-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A SluiceProcess (not started) that is killed when the test ends, whatever state it is in. */
function sluiceFor(t: TestContext, config: Record<string, unknown>): SluiceProcess {
  const sluice = new SluiceProcess({ config });
  t.after(() => sluice.kill9());
  return sluice;
}

function s3Output(s3: TestS3, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const { batch, ...rest } = overrides;
  return {
    name: 's3',
    type: 's3',
    bucket: 'logs',
    endpoint: s3.endpoint,
    force_path_style: true,
    region: 'us-east-1',
    access_key_id: S3_KEY,
    secret_access_key: S3_SECRET,
    retry: RETRY,
    batch: { max_age: '100ms', ...(batch as Record<string, unknown> | undefined) },
    ...rest,
  };
}

function config(
  dataDir: string,
  outputs: Array<Record<string, unknown>>,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { data_dir: dataDir, outputs, ...extra };
}

const idOf = (d: Record<string, unknown>): string => d.decision_id as string;

/** One decision timestamp for the whole file, so a post never straddles an hour (one stream per partition). */
const TIMESTAMP = new Date().toISOString();

/** Posts `n` decisions; on 200 their ids join `acked`. Returns the response (its body unread unless not 200). */
async function post(
  sluice: SluiceProcess,
  n: number,
  acked: Set<string>,
  opts: { partition?: string } = {},
): Promise<Response> {
  const body = decisions(n, { timestamp: TIMESTAMP });
  const res = await postDecisions(sluice.url, body, opts);
  if (res.status === 200) {
    const answer = (await res.json()) as { accepted: number };
    assert.equal(answer.accepted, n, 'a 200 accepts every decision of the request');
    for (const d of body) acked.add(idOf(d));
  }
  return res;
}

/** decision_id -> how many times it is in the bucket. */
async function bucketCounts(s3: TestS3, bucket = 'logs'): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const { decision } of await s3.decisions(bucket))
    counts.set(idOf(decision), (counts.get(idOf(decision)) ?? 0) + 1);
  return counts;
}

/** Waits until every acknowledged decision is in the bucket (cheap count first, then ids). */
async function untilLanded(
  sluice: SluiceProcess,
  s3: TestS3,
  acked: Set<string>,
  bucket = 'logs',
  timeoutMs = 20_000,
): Promise<void> {
  await sluice.until(
    `${acked.size} acknowledged decisions in s3://${bucket}`,
    async () => {
      const counts = await bucketCounts(s3, bucket);
      for (const id of acked) if (!counts.has(id)) return false;
      return true;
    },
    timeoutMs,
  );
}

/** Every acknowledged decision is in the bucket exactly once, and nothing appears more than once. */
async function assertExactlyOnce(s3: TestS3, acked: Set<string>, bucket = 'logs'): Promise<Map<string, number>> {
  const counts = await bucketCounts(s3, bucket);
  const missing = [...acked].filter((id) => !counts.has(id));
  const duplicated = [...counts].filter(([, n]) => n > 1);
  assert.deepEqual(
    missing,
    [],
    `${missing.length} of ${acked.size} acknowledged decisions are missing from s3://${bucket}`,
  );
  assert.deepEqual(duplicated, [], `${duplicated.length} decisions are in s3://${bucket} more than once`);
  return counts;
}

interface BatchKey {
  key: string;
  dir: string;
  output: string;
  bufferId: string;
  first: number;
  last: number;
}

/** Parses `<prefix>/<output>-<bufferid>-<first>-<last>.<ext>` (the default key template). */
function parseKey(key: string): BatchKey {
  const m = /^(.*)-([0-9a-f]{8})-(\d{16})-(\d{16})\.ndjson\.gz$/.exec(path.posix.basename(key));
  assert.ok(m, `object key ${key} is not <output>-<bufferid>-<first>-<last>.ndjson.gz`);
  return { key, dir: path.posix.dirname(key), output: m[1]!, bufferId: m[2]!, first: Number(m[3]), last: Number(m[4]) };
}

/** Batches of one output, buffer and stream never share a position: no decision is batched twice. */
function assertNoOverlappingBatches(keys: string[]): BatchKey[] {
  const parsed = keys.map(parseKey);
  const groups = new Map<string, BatchKey[]>();
  for (const k of parsed) {
    const g = `${k.dir}|${k.output}|${k.bufferId}`;
    groups.set(g, [...(groups.get(g) ?? []), k]);
  }
  for (const group of groups.values()) {
    group.sort((a, b) => a.first - b.first);
    for (let i = 0; i < group.length; i++) {
      assert.ok(group[i]!.first <= group[i]!.last, `batch ${group[i]!.key} has first > last`);
      if (i > 0)
        assert.ok(group[i]!.first > group[i - 1]!.last, `batches overlap: ${group[i - 1]!.key} and ${group[i]!.key}`);
    }
  }
  return parsed;
}

function output(ready: ReadyStatus, name = 's3'): ReadyStatus['outputs'][number] {
  const o = ready.outputs.find((x) => x.name === name);
  assert.ok(o, `/ready lists output ${name}: ${JSON.stringify(ready.outputs)}`);
  return o;
}

// ---------------------------------------------------------------------------------------------------------------

test('a full buffer answers 429 with Retry-After, stores nothing of that request, and accepts again once drained', async (t) => {
  const s3 = await s3For(t);
  await s3.stop(); // S3 is down from the start: nothing drains
  const dataDir = dataDirFor(t);
  const sluice = sluiceFor(t, config(dataDir, [s3Output(s3)], { buffer: { max_bytes: '16KiB' } }));
  await sluice.start();

  const acked = new Set<string>();
  let rejected: { res: Response; body: Array<Record<string, unknown>> } | undefined;
  for (let i = 0; i < 200 && !rejected; i++) {
    const body = decisions(20);
    const res = await postDecisions(sluice.url, body);
    if (res.status === 200) {
      for (const d of body) acked.add(idOf(d));
      await res.arrayBuffer();
    } else {
      rejected = { res, body };
    }
  }
  assert.ok(
    rejected,
    'the buffer never filled up: no post was refused after 200 posts of 20 decisions into 16KiB (stored compressed)',
  );
  assert.ok(acked.size > 0, 'some posts were accepted before the buffer filled up');
  const { res } = rejected;
  assert.equal(res.status, 429, `a full buffer answers 429, got ${res.status}`);
  const retryAfter = res.headers.get('retry-after');
  assert.ok(
    retryAfter !== null && /^\d+$/.test(retryAfter) && Number(retryAfter) > 0,
    `Retry-After is a positive number of seconds: ${retryAfter}`,
  );
  const error = (await res.json()) as { status: unknown; message: unknown; data: unknown };
  assert.equal(error.status, 429);
  assert.equal(typeof error.message, 'string');
  assert.ok((error.message as string).length > 0);
  assert.equal(typeof error.data, 'object');
  assert.notEqual(error.data, null);

  // Nothing of the refused request is stored: the buffer did not grow, and stays within its bound.
  const full = await sluice.ready();
  assert.ok(
    full.buffer.bytes <= full.buffer.max_bytes,
    `buffer ${full.buffer.bytes} bytes exceeds max_bytes ${full.buffer.max_bytes}`,
  );
  const again = await postDecisions(sluice.url, decisions(20));
  assert.equal(again.status, 429, 'still full while S3 is down');
  await again.arrayBuffer();
  assert.equal((await sluice.ready()).buffer.bytes, full.buffer.bytes, 'a refused request adds nothing to the buffer');

  // S3 comes back: the backlog drains and the buffer shrinks.
  await s3.start();
  await sluice.until(
    'the buffer to shrink after S3 is back',
    async () => (await sluice.ready()).buffer.bytes < full.buffer.bytes,
  );
  // The client retries the refused request, as OPA does: now it is accepted (once).
  const retried = await postDecisions(sluice.url, rejected.body);
  assert.equal(retried.status, 200, `the refused request is accepted once the buffer has room, got ${retried.status}`);
  await retried.arrayBuffer();
  for (const d of rejected.body) acked.add(idOf(d));
  assert.equal((await post(sluice, 5, acked)).status, 200);

  await untilLanded(sluice, s3, acked);
  await sluice.until('the buffer to empty', async () => (await sluice.ready()).buffer.chunks === 0);
  // Had the refused attempt been stored, its decisions would now be in the bucket twice.
  const counts = await assertExactlyOnce(s3, acked);
  assert.equal(counts.size, acked.size, 'the bucket holds exactly the acknowledged decisions');
});

test('kill -9 after acknowledgements: every acknowledged decision lands exactly once after the restart', async (t) => {
  const s3 = await s3For(t);
  const dataDir = dataDirFor(t);
  const acked = new Set<string>();

  const first = sluiceFor(t, config(dataDir, [s3Output(s3, { batch: { max_age: '30s' } })]));
  await first.start();
  for (let i = 0; i < 8; i++) assert.equal((await post(first, 25, acked)).status, 200);
  const before = await first.ready();
  assert.equal(before.buffer.chunks, 8, 'each acknowledged post is one buffered chunk');
  assert.equal(output(before).delivered.events, 0, 'max_age 30s: nothing delivered yet');
  await first.kill9();
  assert.deepEqual(await s3.keys(), [], 'nothing reached S3 before the kill');

  const second = sluiceFor(t, config(dataDir, [s3Output(s3, { batch: { max_age: '100ms' } })]));
  await second.start();
  await untilLanded(second, s3, acked);
  await second.until('the buffer to empty', async () => (await second.ready()).buffer.chunks === 0);
  const counts = await assertExactlyOnce(s3, acked);
  assert.equal(counts.size, acked.size, 'no decision that was not acknowledged appears');
  const keys = await s3.keys();
  const batches = assertNoOverlappingBatches(keys);
  assert.equal(
    new Set(batches.map((b) => b.bufferId)).size,
    1,
    'the same data_dir keeps its buffer id across a kill -9',
  );
  assert.equal(
    output(await second.ready()).delivered.events,
    acked.size,
    'the restarted process delivered each decision once',
  );

  // Another restart of the same data_dir must not deliver anything again.
  assert.equal(await second.stop('SIGTERM'), 0);
  const third = sluiceFor(t, config(dataDir, [s3Output(s3, { batch: { max_age: '100ms' } })]));
  await third.start();
  // A marker posted after the restart lands after anything the output would deliver again (it reads the
  // buffer in order, in the same stream): once it is there, what else landed is known, with no guessed pause.
  const marker = new Set<string>();
  assert.equal((await post(third, 1, marker)).status, 200);
  await untilLanded(third, s3, marker);
  const after = await s3.keys();
  const added = after.filter((k) => !keys.includes(k));
  assert.deepEqual(
    after.filter((k) => keys.includes(k)),
    keys,
    'the objects of before are all still there',
  );
  assert.equal(added.length, 1, `one new object, the marker's: ${added.join(', ')}`);
  assert.deepEqual(
    (await s3.decisions()).filter((d) => d.key === added[0]).map((d) => idOf(d.decision)),
    [...marker],
    'it holds the marker alone',
  );
  assert.equal(output(await third.ready()).delivered.events, 1, 'nothing is delivered twice after a clean restart');
});

test('kill -9 with sealed batches pending (S3 down): the restart uploads them under the same keys', async (t) => {
  const s3 = await s3For(t);
  await s3.stop();
  const dataDir = dataDirFor(t);
  const acked = new Set<string>();

  const first = sluiceFor(t, config(dataDir, [s3Output(s3, { batch: { max_age: '50ms', max_events: 30 } })]));
  await first.start();
  for (let i = 0; i < 6; i++) assert.equal((await post(first, 20, acked)).status, 200);
  // Collect the keys the output is retrying: those batches are sealed, so their keys are fixed.
  const failedKeys = new Set<string>();
  await first.until('the output to retry sealed batches', async () => {
    const o = output(await first.ready());
    const m = o.last_error && /PutObject s3:\/\/logs\/(\S+) failed/.exec(o.last_error.message);
    if (m) failedKeys.add(m[1]!);
    return o.state === 'retrying' && o.pending_batches > 0 && failedKeys.size >= 2;
  });
  await first.kill9();

  await s3.start();
  // A different batch size after the restart must not change batches that were already sealed.
  const second = sluiceFor(t, config(dataDir, [s3Output(s3, { batch: { max_age: '50ms', max_events: 7 } })]));
  await second.start();
  await untilLanded(second, s3, acked);
  await second.until('the buffer to empty', async () => (await second.ready()).buffer.chunks === 0);
  const keys = await s3.keys();
  for (const key of failedKeys)
    assert.ok(keys.includes(key), `sealed batch ${key} was uploaded under its original key; keys: ${keys.join(', ')}`);
  assertNoOverlappingBatches(keys);
  const counts = await assertExactlyOnce(s3, acked);
  assert.equal(counts.size, acked.size);
});

test('kill -9 after a batch was delivered ahead of an older open one: the restart does not deliver it again', async (t) => {
  const s3 = await s3For(t);
  const dataDir = dataDirFor(t);
  const older = new Set<string>();
  const ahead = new Set<string>();

  // max_events 10: partition b's batch is full at once and delivered, while partition a's older batch stays open
  // (max_age 30s), so the output's cursor cannot pass b's batch: only the record of the delivered batch says so.
  const first = sluiceFor(t, config(dataDir, [s3Output(s3, { batch: { max_age: '30s', max_events: 10 } })]));
  await first.start();
  assert.equal((await post(first, 4, older, { partition: 'a' })).status, 200);
  assert.equal((await post(first, 10, ahead, { partition: 'b' })).status, 200);
  await untilLanded(first, s3, ahead);
  await first.until(
    "b's batch to be recorded as delivered",
    async () => output(await first.ready()).pending_batches === 0,
  );
  const keysBefore = await s3.keys();
  assert.equal(keysBefore.length, 1, `only b's batch is delivered before the kill: ${keysBefore.join(', ')}`);
  await first.kill9();

  // Smaller batches after the restart: re-batching b's decisions would show up under new keys.
  const second = sluiceFor(t, config(dataDir, [s3Output(s3, { batch: { max_age: '50ms', max_events: 3 } })]));
  await second.start();
  await untilLanded(second, s3, older);
  await second.until('the buffer to empty', async () => (await second.ready()).buffer.chunks === 0);
  assert.equal(
    output(await second.ready()).delivered.events,
    older.size,
    'the restart delivers only what was not delivered before',
  );
  const all = new Set([...older, ...ahead]);
  const counts = await assertExactlyOnce(s3, all);
  assert.equal(counts.size, all.size);
  const keys = await s3.keys();
  assert.ok(keys.includes(keysBefore[0]!));
  assert.equal(keys.filter((k) => k.startsWith('b/')).length, 1, `b's decisions are in one object: ${keys.join(', ')}`);
});

test('kill -9 during delivery, several times: no acknowledged decision is lost and none is duplicated', async (t) => {
  const s3 = await s3For(t);
  const dataDir = dataDirFor(t);
  const acked = new Set<string>();
  const cfg = config(dataDir, [s3Output(s3, { batch: { max_age: '30ms', max_events: 15 }, upload_concurrency: 4 })]);
  const sluice = sluiceFor(t, cfg);
  let attempted = 0;

  for (let round = 0; round < 4; round++) {
    await sluice.start();
    let stop = false;
    // Three concurrent OPA-like clients; a failed request (the process died) is simply not acknowledged.
    // Each posts to its own partition: several streams, so batches of one stream complete while another's are
    // still in flight (delivered batches beyond the cursor, the hard case for a restart).
    const client = async (partition: string) => {
      for (let i = 0; i < 40 && !stop; i++) {
        attempted++;
        try {
          if ((await post(sluice, 10, acked, { partition })).status !== 200) break;
        } catch (err) {
          // the process died under the request (fetch failed, or the answer was cut off): not acknowledged.
          // An assertion about an answer that did arrive (a 200 that accepted fewer) fails the test.
          if (err instanceof assert.AssertionError) throw err;
          break;
        }
      }
    };
    const clients = [client('p1'), client('p2'), client('p3')];
    const deliveredBefore = (await s3.keys()).length;
    // Kill once delivery is under way in this round (objects are being written), while clients still post.
    await sluice.until(
      `round ${round}: delivery under way`,
      async () => (await s3.keys()).length >= deliveredBefore + 3,
      10_000,
    );
    await sleep(20 + round * 15);
    await sluice.kill9();
    stop = true;
    await Promise.all(clients);
  }
  assert.ok(
    acked.size >= 100,
    `enough decisions were acknowledged to mean something: ${acked.size} of ${attempted * 10}`,
  );

  await sluice.start();
  await untilLanded(sluice, s3, acked);
  await sluice.until('the buffer to empty', async () => (await sluice.ready()).buffer.chunks === 0);
  const counts = await bucketCounts(s3);
  const duplicates = [...counts.values()].filter((n) => n > 1).length;
  const missing = [...acked].filter((id) => !counts.has(id)).length;
  t.diagnostic(`acknowledged ${acked.size}, in bucket ${counts.size}, duplicated ${duplicates}, missing ${missing}`);
  assert.equal(missing, 0, 'every acknowledged decision is in the bucket');
  assert.equal(duplicates, 0, 'no decision is in the bucket twice');
  assertNoOverlappingBatches(await s3.keys());
  assert.equal(await sluice.stop('SIGTERM'), 0);
});

test('S3 down while decisions arrive: /ready shows retrying with last_error, then everything lands once', async (t) => {
  const s3 = await s3For(t);
  const dataDir = dataDirFor(t);
  const acked = new Set<string>();
  const sluice = sluiceFor(t, config(dataDir, [s3Output(s3)]));
  await sluice.start();

  assert.equal((await post(sluice, 10, acked)).status, 200);
  await untilLanded(sluice, s3, acked);
  assert.equal(output(await sluice.ready()).state, 'ok');

  await s3.stop();
  for (let i = 0; i < 5; i++)
    assert.equal((await post(sluice, 20, acked)).status, 200, 'decisions are accepted while S3 is down');
  await sluice.until('the output to report retrying', async () => {
    const ready = await sluice.ready();
    const o = output(ready);
    return o.state === 'retrying' && o.last_error !== null;
  });
  const down = await sluice.ready();
  const o = output(down);
  assert.equal(down.status, 'degraded');
  assert.ok(down.buffer.writable, 'the buffer still takes writes while S3 is down');
  assert.ok(down.buffer.chunks > 0, 'undelivered decisions stay buffered');
  assert.equal(typeof o.last_error!.message, 'string');
  assert.ok(o.last_error!.message.length > 0);
  assert.ok(o.pending_batches > 0);

  await s3.start();
  await untilLanded(sluice, s3, acked);
  await sluice.until('the output to recover', async () => {
    const ready = await sluice.ready();
    return output(ready).state === 'ok' && ready.buffer.chunks === 0;
  });
  assert.equal((await sluice.ready()).status, 'ok');
  const counts = await assertExactlyOnce(s3, acked);
  assert.equal(counts.size, acked.size);
  assertNoOverlappingBatches(await s3.keys());
});

test('a missing bucket is a permanent error: failing with NoSuchBucket, data stays buffered, delivered once the bucket exists', async (t) => {
  const s3 = await s3For(t);
  const dataDir = dataDirFor(t);
  const acked = new Set<string>();
  const sluice = sluiceFor(t, config(dataDir, [s3Output(s3, { bucket: 'not-yet-there' })]));
  await sluice.start();

  for (let i = 0; i < 3; i++) assert.equal((await post(sluice, 15, acked)).status, 200);
  await sluice.until('the output to report failing', async () => output(await sluice.ready()).state === 'failing');
  const failing = output(await sluice.ready());
  assert.ok(failing.last_error, 'a failing output says why');
  assert.match(failing.last_error.message, /NoSuchBucket/);
  assert.equal(failing.last_error.code, 'NoSuchBucket');
  // It keeps failing (and keeps the data) for as long as the bucket is missing: two more attempts, each
  // failed, and the decisions still buffered (counted attempts, not a pause that proves nothing when slow).
  await sluice.until(
    'two more failed attempts',
    async () => output(await sluice.ready()).retries >= failing.retries + 2,
  );
  const later = await sluice.ready();
  assert.equal(output(later).state, 'failing');
  assert.ok(later.buffer.chunks > 0, 'decisions stay buffered while the output fails');
  assert.equal(output(later).delivered.events, 0);

  await s3.client.send(new CreateBucketCommand({ Bucket: 'not-yet-there' }));
  await untilLanded(sluice, s3, acked, 'not-yet-there');
  await sluice.until('the output to recover and the buffer to empty', async () => {
    const ready = await sluice.ready();
    return output(ready).state === 'ok' && ready.buffer.chunks === 0;
  });
  const counts = await assertExactlyOnce(s3, acked, 'not-yet-there');
  assert.equal(counts.size, acked.size);
});

test('SIGTERM flushes open batches before exiting 0', async (t) => {
  const s3 = await s3For(t);
  const dataDir = dataDirFor(t);
  const acked = new Set<string>();
  // `marker`, a file output with a short max_age, reads the same buffer: once it has written every decision,
  // the s3 output (max_age 1h) has had them as long, and must still have written nothing
  const markerDir = path.join(dataDir, 'objects');
  const sluice = sluiceFor(
    t,
    config(dataDir, [
      s3Output(s3, { batch: { max_age: '1h' } }),
      { name: 'marker', type: 'file', path: markerDir, batch: { max_age: '50ms' } },
    ]),
  );
  await sluice.start();

  for (let i = 0; i < 4; i++)
    assert.equal((await post(sluice, 25, acked, { partition: i % 2 ? 'team-a' : 'team-b' })).status, 200);
  await sluice.until(
    'the marker output wrote every decision',
    async () => output(await sluice.ready(), 'marker').delivered.events === acked.size,
  );
  assert.deepEqual(await s3.keys(), [], 'max_age 1h: nothing is delivered before the shutdown');

  const started = Date.now();
  const code = await sluice.stop('SIGTERM', 15_000);
  assert.equal(code, 0, `SIGTERM exits 0:\n${sluice.output.slice(-2000)}`);
  assert.ok(Date.now() - started < 10_000, 'the flush does not wait for max_age');
  const counts = await assertExactlyOnce(s3, acked);
  assert.equal(counts.size, acked.size);
  const keys = await s3.keys();
  assert.ok(
    keys.some((k) => k.startsWith('team-a/')) && keys.some((k) => k.startsWith('team-b/')),
    `one batch per partition: ${keys.join(', ')}`,
  );
  assert.match(sluice.output, /"flushed":true/);
});

test('SIGTERM with S3 down and a short shutdown_timeout exits 0 promptly; the restart delivers', async (t) => {
  const s3 = await s3For(t);
  const dataDir = dataDirFor(t);
  const acked = new Set<string>();
  const cfg = config(dataDir, [s3Output(s3, { batch: { max_age: '1h' } })], { shutdown_timeout: '1s' });
  const sluice = sluiceFor(t, cfg);
  await sluice.start();

  await s3.stop();
  for (let i = 0; i < 4; i++) assert.equal((await post(sluice, 25, acked)).status, 200);
  const started = Date.now();
  const code = await sluice.stop('SIGTERM', 15_000);
  const took = Date.now() - started;
  assert.equal(code, 0, `SIGTERM exits 0 even when it cannot flush:\n${sluice.output.slice(-2000)}`);
  assert.ok(took < 4_000, `shutdown_timeout 1s bounds the shutdown: took ${took} ms`);
  assert.match(sluice.output, /"flushed":false/);
  // The drain sealed the open batches and tried to upload them: those keys are fixed from now on.
  const sealedKeys = [...sluice.output.matchAll(/"key":"([^"]+)"/g)].map((m) => m[1]!);
  assert.ok(sealedKeys.length > 0, `the drain tried to upload sealed batches:\n${sluice.output.slice(-2000)}`);

  await s3.start();
  const restarted = sluiceFor(
    t,
    config(dataDir, [s3Output(s3, { batch: { max_age: '100ms' } })], { shutdown_timeout: '1s' }),
  );
  await restarted.start();
  await untilLanded(restarted, s3, acked);
  await restarted.until('the buffer to empty', async () => (await restarted.ready()).buffer.chunks === 0);
  const counts = await assertExactlyOnce(s3, acked);
  assert.equal(counts.size, acked.size);
  const keys = await s3.keys();
  for (const key of sealedKeys)
    assert.ok(
      keys.includes(key),
      `batch sealed during the shutdown landed under its key ${key}; keys: ${keys.join(', ')}`,
    );
  assertNoOverlappingBatches(keys);
});

test('SIGTERM when everything is already delivered completes the shutdown', async (t) => {
  const s3 = await s3For(t);
  const dataDir = dataDirFor(t);
  const acked = new Set<string>();
  const sluice = sluiceFor(t, config(dataDir, [s3Output(s3)]));
  await sluice.start();

  assert.equal((await post(sluice, 10, acked)).status, 200);
  await untilLanded(sluice, s3, acked);
  await sluice.until('the output to be idle', async () => {
    const ready = await sluice.ready();
    return ready.buffer.chunks === 0 && output(ready).pending_batches === 0;
  });
  const code = await sluice.stop('SIGTERM', 15_000);
  assert.equal(code, 0);
  // cli.ts logs this once server.shutdown() (drain, stop the outputs, close the buffer) has returned.
  assert.match(
    sluice.output,
    /"flushed":true[^\n]*"msg":"stopped; everything delivered"/,
    `the shutdown ran to its end (drain, stop outputs, close the buffer):\n${sluice.output.slice(-1500)}`,
  );
});

test('delivered data is removed from the buffer, and positions never repeat after it is gone', async (t) => {
  const s3 = await s3For(t);
  const dataDir = dataDirFor(t);
  const acked = new Set<string>();
  const cfg = config(dataDir, [s3Output(s3)]);
  const first = sluiceFor(t, cfg);
  await first.start();

  for (let i = 0; i < 3; i++) assert.equal((await post(first, 20, acked)).status, 200);
  assert.ok((await first.ready()).buffer.chunks > 0);
  await untilLanded(first, s3, acked);
  await first.until('the buffer to empty once delivered', async () => {
    const ready = await first.ready();
    return ready.buffer.chunks === 0 && ready.buffer.bytes === 0;
  });
  const keysBefore = await s3.keys();
  assert.equal(await first.stop('SIGTERM'), 0);

  // The buffer is empty on disk now; new decisions after a restart must get new positions (new keys).
  const second = sluiceFor(t, cfg);
  await second.start();
  for (let i = 0; i < 2; i++) assert.equal((await post(second, 20, acked)).status, 200);
  await untilLanded(second, s3, acked);
  await second.until('the buffer to empty again', async () => (await second.ready()).buffer.chunks === 0);
  const keys = await s3.keys();
  for (const k of keysBefore) assert.ok(keys.includes(k), `object ${k} is still there`);
  const lastBefore = Math.max(...keysBefore.map((k) => parseKey(k).last));
  const newer = keys.filter((k) => !keysBefore.includes(k)).map(parseKey);
  assert.ok(newer.length > 0);
  for (const b of newer)
    assert.ok(b.first > lastBefore, `position ${b.first} of ${b.key} repeats one delivered before (<= ${lastBefore})`);
  await assertExactlyOnce(s3, acked);
});

test('with two outputs, chunks stay until both have delivered', async (t) => {
  const s3 = await s3For(t);
  const dataDir = dataDirFor(t);
  const acked = new Set<string>();
  const sluice = sluiceFor(
    t,
    config(dataDir, [s3Output(s3, { name: 'primary' }), s3Output(s3, { name: 'archive', bucket: 'archive-later' })]),
  );
  await sluice.start();

  for (let i = 0; i < 3; i++) assert.equal((await post(sluice, 20, acked)).status, 200);
  await untilLanded(sluice, s3, acked);
  await sluice.until('primary to deliver everything and archive to fail', async () => {
    const ready = await sluice.ready();
    return output(ready, 'primary').delivered.events === acked.size && output(ready, 'archive').state === 'failing';
  });
  // two more failed attempts of archive (counted, not waited for by a pause) and the chunks are still there
  const retries = output(await sluice.ready(), 'archive').retries;
  await sluice.until(
    'two more failed attempts of archive',
    async () => output(await sluice.ready(), 'archive').retries >= retries + 2,
  );
  const held = await sluice.ready();
  assert.ok(held.buffer.chunks > 0, 'chunks stay while one output has not delivered them');
  assert.equal(output(held, 'primary').state, 'ok');
  assert.equal(output(held, 'archive').state, 'failing');
  assert.match(output(held, 'archive').last_error?.message ?? '', /NoSuchBucket/);

  await s3.client.send(new CreateBucketCommand({ Bucket: 'archive-later' }));
  await untilLanded(sluice, s3, acked, 'archive-later');
  await sluice.until('the buffer to empty once both outputs delivered', async () => {
    const ready = await sluice.ready();
    return ready.buffer.chunks === 0 && ready.buffer.bytes === 0;
  });
  const primary = await assertExactlyOnce(s3, acked, 'logs');
  const archive = await assertExactlyOnce(s3, acked, 'archive-later');
  assert.equal(primary.size, acked.size);
  assert.equal(archive.size, acked.size);
});
