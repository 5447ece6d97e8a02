/**
 * The output worker against a real buffer (SQLite in a temp dir) and a sink held in memory: what it seals, what
 * it delivers and where its cursor goes, across a crash, deterministically (no S3, no timing).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { pino } from 'pino';
import { SqliteBuffer } from '../../src/buffer/sqlite.js';
import { OutputWorker } from '../../src/delivery/output-worker.js';
import { DeadLetter } from '../../src/delivery/dead-letter.js';
import { buildConfig } from '../../src/config/load.js';
import type { Sink, StoredObject } from '../../src/sinks/types.js';
import { tempDir } from '../helpers/sluice.js';

const log = pino({ level: 'silent' });
const HOUR = '2026-12-01T10';

/** A chunk of NDJSON lines as ingest stores it uncompressed (buffer.compression_level 0). */
function plainChunk(partition: string, lines: string[]) {
  const payload = Buffer.from(lines.map((l) => `${l}\n`).join(''));
  return {
    partition,
    hour: HOUR,
    instance: '',
    count: lines.length,
    payload,
    compressed: false,
    bytes: payload.length,
  };
}

/** A sink that keeps what it is given; `hold(key)` makes a put wait until the worker stops (an upload cut by a crash). */
class MemorySink implements Sink {
  readonly target = 'memory://';
  readonly objects = new Map<string, Buffer>();
  constructor(private readonly hold: (object: StoredObject) => boolean = () => false) {}
  async put(object: StoredObject, signal: AbortSignal): Promise<void> {
    if (this.hold(object)) {
      await new Promise((_resolve, reject) =>
        signal.addEventListener('abort', () => reject(new Error('stopped')), { once: true }),
      );
    }
    // a copy: the body's memory is the caller's again once put returns (Sink.put)
    this.objects.set(object.key, Buffer.from(object.body));
  }
  close(): void {}
  ids(): string[] {
    return [...this.objects.values()]
      .flatMap((b) => gunzipSync(b).toString('utf8').split('\n').filter(Boolean))
      .map((l) => (JSON.parse(l) as { id: string }).id);
  }
}

function outputConfig(batch: Record<string, unknown>, uploadConcurrency = 2) {
  return buildConfig(
    { outputs: [{ name: 'out', type: 'file', path: '/nonexistent', batch, upload_concurrency: uploadConcurrency }] },
    'test',
  ).outputs[0]!;
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('a crash with one stream delivered ahead of the others: after the restart every decision is delivered once, none skipped', async (t) => {
  const dir = tempDir('sluice-worker-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let buffer = new SqliteBuffer(dir, 1 << 30);
  // three streams, chunks interleaved: p1 p2 p3 p1 p2 p3 ... p3's are small, so most of p3 is still in an open
  // batch at the crash, at positions below batches the other streams sealed or delivered
  const sent: string[] = [];
  for (let round = 0; round < 7; round++) {
    for (const [partition, count] of [
      ['p1', 10],
      ['p2', 10],
      ['p3', 4],
    ] as const) {
      const lines = Array.from({ length: count }, (_, i) => JSON.stringify({ id: `${partition}-${round}-${i}` }));
      sent.push(...lines.map((l) => (JSON.parse(l) as { id: string }).id));
      await buffer.append([plainChunk(partition, lines)]);
    }
  }
  // enough upload slots that p1's uploads are not stuck behind the hanging ones
  const config = outputConfig({ max_events: 15, max_age: '1h' }, 16);
  // before the crash: p1's batches go out, p2's and p3's uploads hang
  const first = new MemorySink((o) => !o.key.startsWith('p1/'));
  const a = new OutputWorker(config, buffer, first, log, new DeadLetter(`${dir}/dead-letter`));
  a.start();
  // p1 and p2: four full batches each go out (p1) or hang (p2), ten stay open; p3: one hangs, 13 stay open
  await until('p1 delivered', () => first.ids().length === 60);
  a.stop();
  buffer.close();

  buffer = new SqliteBuffer(dir, 1 << 30);
  const second = new MemorySink();
  const b = new OutputWorker(
    outputConfig({ max_events: 15, max_age: '10ms' }),
    buffer,
    second,
    log,
    new DeadLetter(`${dir}/dead-letter`),
  );
  b.start();
  assert.ok(await b.drain(Date.now() + 10_000), 'the restarted worker delivers everything');
  b.stop();
  const delivered = [...first.ids(), ...second.ids()];
  assert.equal(new Set(delivered).size, delivered.length, 'no decision twice');
  assert.deepEqual([...delivered].sort(), [...sent].sort(), 'every decision');
  assert.equal(buffer.cursor('out'), buffer.lastPosition(), 'the cursor is at the end');
  buffer.close();
});

test('reading ahead is bounded inside one chunk: a chunk of 5,000 decisions in batches of one is sealed a few at a time', async (t) => {
  const dir = tempDir('sluice-worker-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const buffer = new SqliteBuffer(dir, 1 << 30);
  const lines = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ id: `d${i}` }));
  await buffer.append([plainChunk('p', lines)]);
  let maxPending = 0;
  const sink = new MemorySink();
  const worker = new OutputWorker(
    outputConfig({ max_events: 1, max_age: '1h' }),
    buffer,
    sink,
    log,
    new DeadLetter(`${dir}/dead-letter`),
  );
  const original = sink.put.bind(sink);
  sink.put = async (object, signal) => {
    maxPending = Math.max(maxPending, worker.status().pending_batches);
    return original(object, signal);
  };
  worker.start();
  assert.ok(await worker.drain(Date.now() + 60_000));
  worker.stop();
  assert.equal(sink.objects.size, 5000);
  assert.ok(maxPending <= 4, `at most upload_concurrency x 2 batches pending, saw ${maxPending}`);
  buffer.close();
});

test('a seal that fails (a full disk) loses nothing: the batches wait, hold the cursor, and go out once a seal commits', async (t) => {
  const dir = tempDir('sluice-worker-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const buffer = new SqliteBuffer(dir, 1 << 30);
  const lines = Array.from({ length: 40 }, (_, i) => JSON.stringify({ id: `d${i}` }));
  for (let i = 0; i < 4; i++) {
    const part = lines.slice(i * 10, i * 10 + 10);
    await buffer.append([plainChunk('p', part)]);
  }
  let failures = 3;
  const seal = buffer.seal.bind(buffer);
  buffer.seal = (batches) => {
    if (failures-- > 0) throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
    seal(batches);
  };
  const sink = new MemorySink();
  const worker = new OutputWorker(
    outputConfig({ max_events: 15, max_age: '10ms' }),
    buffer,
    sink,
    log,
    new DeadLetter(`${dir}/dead-letter`),
  );
  worker.start();
  assert.ok(await worker.drain(Date.now() + 10_000), 'everything goes out once the seals commit');
  worker.stop();
  assert.deepEqual(
    sink.ids().sort(),
    lines.map((l) => (JSON.parse(l) as { id: string }).id).sort(),
    'every decision, once',
  );
  assert.equal(failures < 0, true, 'the seal failed first');
  buffer.close();
});

test('a key layout changed across a restart: batches sealed before go out under their old names, nothing is written twice', async (t) => {
  const dir = tempDir('sluice-worker-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let buffer = new SqliteBuffer(dir, 1 << 30);
  const lines = (prefix: string, n: number) =>
    Array.from({ length: n }, (_, i) =>
      JSON.stringify({ decision_id: `${prefix}-${i}`, labels: { id: 'opa-1' }, timestamp: '2026-12-01T10:00:00Z' }),
    );
  await buffer.append([{ ...plainChunk('p', lines('a', 3)), instance: 'opa-1' }]);
  const config = (key: string) =>
    buildConfig(
      { outputs: [{ name: 'out', type: 'file', path: '/nonexistent', key, batch: { max_age: '10ms' } }] },
      'test',
    ).outputs[0]!;
  // before the restart: hive, and the upload never completes (the process dies during it)
  const first = new MemorySink(() => true);
  const a = new OutputWorker(config('hive'), buffer, first, log, new DeadLetter(`${dir}/dead-letter`));
  a.start();
  await until(
    'the batch is sealed',
    () => a.status().pending_batches === 1 && buffer.sealedBatches('out').length === 1,
  );
  a.stop();
  buffer.close();

  // after: one object per decision, and three more decisions
  buffer = new SqliteBuffer(dir, 1 << 30);
  await buffer.append([{ ...plainChunk('p', lines('b', 3)), instance: 'opa-1' }]);
  const second = new MemorySink();
  const b = new OutputWorker(config('eopa-per-decision'), buffer, second, log, new DeadLetter(`${dir}/dead-letter`));
  b.start();
  assert.ok(await b.drain(Date.now() + 10_000));
  b.stop();
  const keys = [...second.objects.keys()].sort();
  const hive = keys.filter((k) => k.endsWith('.ndjson.gz'));
  const perDecision = keys.filter((k) => k.startsWith('eopa=opa-1/'));
  assert.equal(hive.length, 1, `the batch sealed under hive keeps its hive name: ${keys.join(', ')}`);
  assert.equal(gunzipSync(second.objects.get(hive[0]!)!).toString().trim().split('\n').length, 3);
  assert.deepEqual(
    perDecision.map((k) => /decision_id=(.*)\.json$/.exec(k)![1]).sort(),
    ['b-0', 'b-1', 'b-2'],
    'only the new decisions get objects of the new layout',
  );
  assert.equal(keys.length, 4, 'nothing written twice');
  assert.equal(
    buffer.outputShape('out'),
    JSON.stringify(['eopa-per-decision', 'ndjson', 'gzip']),
    'once the old batches are out, the new settings are recorded',
  );
  buffer.close();
});
