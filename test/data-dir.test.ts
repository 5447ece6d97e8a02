/**
 * What Sluice does about its data_dir going wrong under it: a second process on it, a buffer deleted or
 * emptied or swapped, bytes rotting in a chunk, a full disk. Everything runs for real: `node dist/cli.js serve`
 * in its own process, s3rver on 127.0.0.1, and for the full disk a real tmpfs in a mount namespace.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { S3_KEY, S3_SECRET, s3For, type TestS3 } from './helpers/s3.js';
import { type LogLine, SluiceProcess, tempDir } from './helpers/sluice.js';
import { decisions, postDecisions } from './helpers/opa.js';
import { tmpfsDataDir } from './helpers/full-disk.js';

const RETRY = { initial_backoff: '50ms', max_backoff: '500ms' };
/** One timestamp for the file: a post never straddles an hour, so each post is one chunk per partition. */
const TIMESTAMP = new Date().toISOString();

function dataDirFor(t: TestContext): string {
  const dir = tempDir('sluice-datadir-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function sluiceFor(
  t: TestContext,
  config: Record<string, unknown>,
  opts: { args?: string[]; env?: NodeJS.ProcessEnv; wrap?: string[] } = {},
): SluiceProcess {
  const sluice = new SluiceProcess({ config, ...opts });
  t.after(() => sluice.kill9());
  return sluice;
}

function config(dataDir: string, s3: TestS3, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    data_dir: dataDir,
    shutdown_timeout: '2s',
    outputs: [
      {
        name: 's3',
        type: 's3',
        bucket: 'logs',
        endpoint: s3.endpoint,
        force_path_style: true,
        region: 'us-east-1',
        access_key_id: S3_KEY,
        secret_access_key: S3_SECRET,
        retry: RETRY,
        batch: { max_age: '100ms' },
      },
    ],
    ...extra,
  };
}

/** Posts `n` decisions; on 200 their ids join `acked`. */
async function post(sluice: SluiceProcess, n: number, acked: Set<string>, partition?: string): Promise<Response> {
  const body = decisions(n, { timestamp: TIMESTAMP });
  const res = await postDecisions(sluice.url, body, { partition });
  if (res.status === 200) for (const d of body) acked.add(d.decision_id as string);
  await res.arrayBuffer();
  return res;
}

async function bucketCounts(s3: TestS3): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const { decision } of await s3.decisions('logs')) {
    const id = decision.decision_id as string;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

async function untilLanded(sluice: SluiceProcess, s3: TestS3, ids: Iterable<string>): Promise<void> {
  const wanted = [...ids];
  await sluice.until(`${wanted.length} acknowledged decisions in s3://logs`, async () => {
    const counts = await bucketCounts(s3);
    return wanted.every((id) => counts.has(id));
  });
}

async function assertExactlyOnce(s3: TestS3, acked: Set<string>): Promise<void> {
  const counts = await bucketCounts(s3);
  const missing = [...acked].filter((id) => !counts.has(id));
  const twice = [...counts].filter(([, n]) => n > 1);
  assert.deepEqual(
    missing,
    [],
    `${missing.length} of ${acked.size} acknowledged decisions are missing from the bucket`,
  );
  assert.deepEqual(twice, [], `${twice.length} decisions are in the bucket more than once`);
}

/** Starts a process that must refuse: its start fails (bounded by the helper's 15 s) and it exits 1. */
async function assertRefused(sluice: SluiceProcess): Promise<LogLine> {
  await assert.rejects(
    sluice.start(),
    /sluice exited with 1/,
    'the process refuses to start (exit 1) instead of serving',
  );
  assert.equal(sluice.exitCode, 1);
  assert.ok(!sluice.output.includes('sluice listening'), 'it never listened');
  const fatal = sluice.logLines().find((l) => l.level === 60);
  assert.ok(fatal, `a fatal line says why:\n${sluice.output}`);
  return fatal;
}

// ---------------------------------------------------------------------------------------------------------------
// Two processes on one data_dir

test('a second sluice serve on a data_dir in use exits 1 naming the directory and the holder; the first goes on intact; after kill -9 a new one starts at once', async (t) => {
  const s3 = await s3For(t);
  const dataDir = dataDirFor(t);
  const cfg = config(dataDir, s3);
  const acked = new Set<string>();
  const first = sluiceFor(t, cfg);
  await first.start();
  assert.equal((await post(first, 20, acked)).status, 200);

  const second = sluiceFor(t, cfg);
  const refusal = await assertRefused(second);
  const message = String(refusal.msg);
  assert.ok(message.includes(dataDir), `the refusal names the data_dir ${dataDir}: ${message}`);
  assert.ok(message.includes(`pid ${first.pid}`), `the refusal names the holder's pid ${first.pid}: ${message}`);
  assert.match(message, /started \d{4}-\d\d-\d\dT/, 'and when the holder started');

  // The first one never noticed: it takes and delivers decisions, exactly once.
  for (let i = 0; i < 3; i++) assert.equal((await post(first, 20, acked)).status, 200);
  assert.equal((await fetch(`${first.url}/ready`)).status, 200);
  await untilLanded(first, s3, acked);
  await assertExactlyOnce(s3, acked);
  assert.ok(!/UNIQUE constraint/.test(first.output), "no write of another process collided with the first one's");

  // kill -9 leaves no stale lock: the kernel drops it with the process, so a new one starts straight away.
  assert.equal((await post(first, 20, acked)).status, 200);
  await first.kill9();
  const third = sluiceFor(t, cfg);
  await third.start();
  const holder = JSON.parse(readFileSync(path.join(dataDir, 'lock.json'), 'utf8')) as { pid: number };
  assert.equal(holder.pid, third.pid, 'lock.json names the new holder');
  assert.equal((await post(third, 20, acked)).status, 200);
  await untilLanded(third, s3, acked);
  await assertExactlyOnce(s3, acked);
});

// The reliability scenario "two processes on one data_dir" (test/reliability.ts is edited elsewhere, so it lives
// here): second processes keep being started on the data_dir of one under load; each is refused, and nothing the
// first acknowledged is lost or doubled.
test('reliability: second processes started again and again on the data_dir of one under load are all refused; nothing acknowledged is lost', async (t) => {
  const s3 = await s3For(t);
  const dataDir = dataDirFor(t);
  const cfg = config(dataDir, s3);
  const first = sluiceFor(t, cfg);
  await first.start();
  const acked = new Set<string>();
  let stop = false;
  const statuses = new Map<number, number>();
  const load = async (partition: string) => {
    for (let i = 0; i < 5000 && !stop; i++) {
      const { status } = await post(first, 50, acked, partition);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  };
  const loads = [load('p1'), load('p2'), load('p3')];
  try {
    for (let i = 0; i < 5; i++) {
      const other = sluiceFor(t, cfg);
      const refusal = await assertRefused(other);
      assert.ok(String(refusal.msg).includes(`pid ${first.pid}`), String(refusal.msg));
    }
  } finally {
    stop = true;
    await Promise.all(loads);
  }
  assert.deepEqual([...statuses.keys()], [200], `every post under load was accepted: ${JSON.stringify([...statuses])}`);
  await untilLanded(first, s3, acked);
  await assertExactlyOnce(s3, acked);
  assert.ok(!/UNIQUE constraint/.test(first.output), "no write of another process collided with the first one's");
});

// ---------------------------------------------------------------------------------------------------------------
// A lost buffer

test('a deleted, emptied or swapped buffer.sqlite refuses the start with the command that accepts the loss; --accept-buffer-loss logs it, counts it and starts anew', async (t) => {
  const s3 = await s3For(t, []); // no bucket: the decisions stay in the buffer, undelivered
  const dataDir = dataDirFor(t);
  const cfg = config(dataDir, s3);
  const bufferFile = path.join(dataDir, 'buffer.sqlite');
  const acked = new Set<string>();
  const first = sluiceFor(t, cfg);
  await first.start();
  for (let i = 0; i < 2; i++) assert.equal((await post(first, 10, acked)).status, 200);
  assert.equal((await first.ready()).buffer.chunks, 2);
  assert.equal(await first.stop(), 0);
  const id = readFileSync(path.join(dataDir, 'buffer.id'), 'utf8').trim();
  assert.match(id, /^[0-9a-f]{8}$/, 'data_dir/buffer.id names the buffer');
  const kept = readFileSync(bufferFile);
  const removeBuffer = () => {
    for (const f of ['', '-wal', '-shm']) rmSync(`${bufferFile}${f}`, { force: true });
  };

  const assertLossRefused = async (what: RegExp, env: NodeJS.ProcessEnv = {}) => {
    const message = String((await assertRefused(sluiceFor(t, cfg, { env }))).msg);
    assert.match(message, what);
    assert.ok(message.includes(bufferFile), `it names the file: ${message}`);
    assert.ok(message.includes('--accept-buffer-loss'), `it gives the command that accepts the loss: ${message}`);
    assert.match(message, /sluice serve --config \S+sluice\.yaml --accept-buffer-loss/, message);
  };

  removeBuffer();
  await assertLossRefused(new RegExp(`buffer\\.sqlite is missing.*buffer ${id}`));
  assert.ok(!existsSync(bufferFile), 'the refusal created no new, empty buffer');

  writeFileSync(bufferFile, '');
  await assertLossRefused(/buffer\.sqlite is empty/);
  // only an explicit yes accepts
  await assertLossRefused(/buffer\.sqlite is empty/, { SLUICE_ACCEPT_BUFFER_LOSS: 'false' });

  removeBuffer();
  const other = new Database(bufferFile);
  other.exec(
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('buffer_id', 'deadbeef')",
  );
  other.close();
  await assertLossRefused(new RegExp(`holds buffer deadbeef, not buffer ${id}`));

  // The file back, and buffer.id gone (a data_dir from before the marker): it starts, with every decision kept.
  removeBuffer();
  writeFileSync(bufferFile, kept);
  rmSync(path.join(dataDir, 'buffer.id'));
  const restored = sluiceFor(t, cfg);
  await restored.start();
  assert.equal((await restored.ready()).buffer.chunks, 2, 'the restored buffer holds both chunks');
  assert.equal(
    readFileSync(path.join(dataDir, 'buffer.id'), 'utf8').trim(),
    id,
    'buffer.id is written for a buffer from before it',
  );
  assert.equal(await restored.stop(), 0);

  // Nothing recorded the id, but a store.sqlite says Sluice ran here: a missing buffer is still refused.
  removeBuffer();
  rmSync(path.join(dataDir, 'buffer.id'));
  await assertLossRefused(/buffer\.sqlite is missing.*its id was not recorded/);

  // Accepting the loss: said at error with the lost buffer's id, counted, the remains moved aside, a new buffer.
  writeFileSync(path.join(dataDir, 'buffer.id'), `${id}\n`);
  writeFileSync(bufferFile, '');
  const accepted = sluiceFor(t, cfg, { args: ['--accept-buffer-loss'] });
  await accepted.start();
  const lost = accepted.logLines().find((l) => l.level === 50 && l.lost_buffer_id === id);
  assert.ok(lost, `an error line names the lost buffer ${id}:\n${accepted.output}`);
  assert.match(String(lost.msg), /buffer lost/);
  const metrics = await (await fetch(`${accepted.url}/metrics`)).text();
  assert.match(metrics, /^sluice_buffer_resets_total 1$/m);
  const ready = await accepted.ready();
  assert.equal(ready.buffer.chunks, 0, 'the new buffer is empty');
  const newId = readFileSync(path.join(dataDir, 'buffer.id'), 'utf8').trim();
  assert.notEqual(newId, id, 'buffer.id names the new buffer');
  const aside = readdirSync(dataDir).filter((f) => f.startsWith(`lost-buffer-${id}-`));
  assert.equal(
    aside.length,
    1,
    `what was left of the lost buffer is moved aside, not deleted: ${readdirSync(dataDir).join(', ')}`,
  );
  assert.ok(existsSync(path.join(dataDir, aside[0]!, 'buffer.sqlite')));
  assert.equal((await post(accepted, 5, new Set())).status, 200);
  assert.equal(await accepted.stop(), 0);

  // The next start needs no flag: the new buffer is this data_dir's now, and nothing was reset this time.
  const after = sluiceFor(t, cfg);
  await after.start();
  assert.match(await (await fetch(`${after.url}/metrics`)).text(), /^sluice_buffer_resets_total 0$/m);
  assert.equal((await after.ready()).buffer.chunks, 1);
});

// ---------------------------------------------------------------------------------------------------------------
// Corrupt chunks

test('a chunk whose bytes changed on disk (through SQLite, or raw in the file) is never uploaded; /ready and /metrics count it and the error log names its positions', async (t) => {
  const s3 = await s3For(t, []); // the bucket comes later: first the decisions stay in the buffer
  const dataDir = dataDirFor(t);
  // chunks stored uncompressed, so that the test can find a decision_id's bytes in the file (compressed
  // chunks are checked the same way: test/buffer-checksum.test.ts)
  const cfg = config(dataDir, s3, { buffer: { compression_level: 0 } });
  const bufferFile = path.join(dataDir, 'buffer.sqlite');
  const first = sluiceFor(t, cfg);
  await first.start();
  const good = new Set<string>();
  const flipped = new Set<string>();
  const rotted = new Set<string>();
  assert.equal((await post(first, 10, good, 'good')).status, 200);
  assert.equal((await post(first, 10, flipped, 'flipped')).status, 200);
  assert.equal((await post(first, 10, rotted, 'rotted')).status, 200);
  assert.equal(await first.stop(), 0);

  // 1. Through SQLite: one decision_id in the 'flipped' chunk replaced by as many other bytes (still valid NDJSON).
  const db = new Database(bufferFile);
  const chunkOf = (partition: string) =>
    db.prepare('SELECT pos, last_pos, payload FROM chunks WHERE partition = ?').get(partition) as {
      pos: number;
      last_pos: number;
      payload: Buffer;
    };
  const flippedChunk = chunkOf('flipped');
  const rottedChunk = chunkOf('rotted');
  const flippedId = [...flipped][3]!;
  const flippedBytes = Buffer.from(
    flippedChunk.payload.toString('utf8').replace(flippedId, `FLIPPED-${'x'.repeat(flippedId.length - 8)}`),
  );
  assert.equal(flippedBytes.length, flippedChunk.payload.length);
  db.prepare('UPDATE chunks SET payload = ? WHERE pos = ?').run(flippedBytes, flippedChunk.pos);
  // everything in the main file, so that the raw overwrite below finds the bytes where SQLite reads them
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  assert.ok(!existsSync(`${bufferFile}-wal`) || statSync(`${bufferFile}-wal`).size === 0, 'no WAL left over');

  // 2. Raw, as a disk would: bytes of one decision_id of the 'rotted' chunk overwritten in place in buffer.sqlite.
  const rottedId = [...rotted][5]!;
  const file = readFileSync(bufferFile);
  const at = file.indexOf(rottedId);
  assert.ok(
    at >= 0 && file.indexOf(rottedId, at + 1) < 0,
    'the decision_id is in the file exactly once (in its chunk)',
  );
  const fd = openSync(bufferFile, 'r+');
  writeSync(fd, Buffer.from(`ROTTED-${'y'.repeat(rottedId.length - 7)}`), 0, rottedId.length, at);
  closeSync(fd);

  await s3.client.send(new CreateBucketCommand({ Bucket: 'logs' }));
  const second = sluiceFor(t, cfg);
  await second.start();
  await untilLanded(second, s3, good);
  await second.until('both corrupt chunks counted in /ready', async () => {
    const ready = (await second.ready()) as unknown as { buffer: { corrupt_chunks: number } };
    return ready.buffer.corrupt_chunks === 2;
  });
  assert.match(await (await fetch(`${second.url}/metrics`)).text(), /^sluice_buffer_corrupt_chunks_total 2$/m);
  for (const chunk of [flippedChunk, rottedChunk]) {
    const named = second
      .logLines()
      .filter((l) => l.level! >= 50 && JSON.stringify(l).includes(`positions ${chunk.pos}-${chunk.last_pos}`));
    assert.ok(
      named.length > 0,
      `an error line names positions ${chunk.pos}-${chunk.last_pos}:\n${second.output.slice(-4000)}`,
    );
  }
  // The output goes on past them (the delivery code sets corrupt chunks aside).
  await second.until(
    'the buffer to drain past the corrupt chunks',
    async () => (await second.ready()).buffer.chunks === 0,
  );
  for (const key of await s3.keys('logs')) {
    const { body } = await s3.object(key, 'logs');
    const text = (key.endsWith('.gz') ? gunzipSync(body) : body).toString('utf8');
    assert.ok(!text.includes('FLIPPED-') && !text.includes('ROTTED-'), `object ${key} holds bytes of a corrupt chunk`);
  }
  await assertExactlyOnce(s3, good);
});

// ---------------------------------------------------------------------------------------------------------------
// A full disk

test('a full disk: ingest and the control plane answer 503 with Retry-After, one error line per cause, and /ready recovers by itself once space is back', async (t) => {
  // a real full disk: a small tmpfs on data_dir, in a user and mount namespace of its own
  const disk = await tmpfsDataDir(t, 16);
  if ('skip' in disk) {
    t.skip(`no full disk to make: ${disk.skip}`);
    return;
  }
  const s3 = await s3For(t);
  const sluice = sluiceFor(t, config(disk.dataDir, s3), { wrap: disk.wrap });
  await sluice.start();
  const acked = new Set<string>();
  assert.equal((await post(sluice, 20, acked)).status, 200);
  // delivered before the disk fills, so that no output has bookkeeping to write meanwhile
  await untilLanded(sluice, s3, acked);
  await sluice.until('the buffer to empty', async () => (await sluice.ready()).buffer.chunks === 0);
  assert.ok(disk.fill() > 0, 'the tmpfs takes the filler until it is full');

  // Ingest: refused with 503 and Retry-After, nothing acknowledged.
  let refused: Response | undefined;
  for (let i = 0; i < 50 && !refused; i++) {
    const body = decisions(20, { timestamp: TIMESTAMP });
    const res = await postDecisions(sluice.url, body);
    if (res.status === 200) for (const d of body) acked.add(d.decision_id as string);
    else refused = res;
    if (res.status === 200) await res.arrayBuffer();
  }
  assert.ok(refused, 'posts are refused once the disk is full');
  assert.equal(refused.status, 503);
  assert.match(refused.headers.get('retry-after') ?? '', /^\d+$/);
  assert.equal(((await refused.json()) as { data: { reason: string } }).data.reason, 'buffer_unavailable');
  const notReady = await fetch(`${sluice.url}/ready`);
  assert.equal(notReady.status, 503, '/ready says the buffer cannot take writes');
  assert.equal(((await notReady.json()) as { buffer: { writable: boolean } }).buffer.writable, false);

  // The control plane: a write to the store is a 503 to retry, with a message that says why, not a 500.
  const putTenant = () => fetch(`${sluice.url}/api/v1/tenants/acme`, { method: 'PUT' });
  const tenant = await putTenant();
  const answer = (await tenant.json()) as { status: number; message: string; data: { reason: string; code: string } };
  assert.equal(tenant.status, 503, `a store write on a full disk answers 503: ${JSON.stringify(answer)}`);
  assert.match(tenant.headers.get('retry-after') ?? '', /^\d+$/);
  assert.equal(answer.data.reason, 'storage_unavailable');
  assert.match(answer.data.code, /^SQLITE_(FULL|IOERR)/);
  assert.match(answer.message, /cannot write to its data_dir/);

  // More refusals of each kind: still one error line per cause.
  for (let i = 0; i < 5; i++) assert.equal((await post(sluice, 5, acked)).status, 503);
  for (let i = 0; i < 3; i++) assert.equal((await putTenant()).status, 503);
  const errors = sluice.logLines().filter((l) => l.level === 50);
  const count = (re: RegExp) => errors.filter((l) => re.test(String(l.msg))).length;
  assert.equal(count(/^buffer append failed/), 1, `one line for the refused appends:\n${sluice.output.slice(-4000)}`);
  assert.equal(count(/^request refused with 503/), 1, 'one line for the refused store writes');
  assert.equal(count(/^request failed/), 0, 'no second line per refused request');

  // Space is back: /ready recovers without any client write, and both sides take writes again.
  disk.free();
  await sluice.until(
    '/ready to answer 200 again without any write',
    async () => (await fetch(`${sluice.url}/ready`)).status === 200,
  );
  assert.equal((await post(sluice, 20, acked)).status, 200);
  assert.ok([200, 201].includes((await putTenant()).status));
  await untilLanded(sluice, s3, acked);
  await assertExactlyOnce(s3, acked);
});
