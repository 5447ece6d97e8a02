/**
 * `format: parquet` end to end: the built `sluice serve`, s3rver (and a file output) on 127.0.0.1, and DuckDB
 * reading the objects with hive_partitioning as a user's query would. Decision outputs: rows per
 * partition/dt/hour, TIMESTAMP, lookup by decision_id, exact JSON text (big integers, 1.0e400), odd
 * decisions in `extra`. Batched destinations: events as Parquet. Kill -9 during Parquet uploads: every
 * acknowledged decision once, every re-uploaded object byte-identical.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { duckdb, type DuckDb } from './helpers/duckdb.js';
import { decision } from './helpers/opa.js';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { OutpostApi } from './helpers/outpost.js';
import { UploadRecorder } from './helpers/upload-recorder.js';
import { Loader } from './reliability.js';

const ADMIN_KEY = 'parquet-test-admin-key';

const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const c of cleanups.reverse())
    await Promise.resolve()
      .then(c)
      .catch(() => {});
});

async function startS3(buckets?: string[]): Promise<TestS3> {
  const s3 = new TestS3(buckets);
  await s3.start();
  cleanups.push(async () => {
    await s3.stop();
    rmSync(s3.directory, { recursive: true, force: true });
  });
  return s3;
}

function dir(prefix: string): string {
  const d = tempDir(prefix);
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function openDuckDb(): Promise<DuckDb> {
  const db = await duckdb();
  cleanups.push(() => db.close());
  return db;
}

function s3Output(endpoint: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'archive',
    type: 's3',
    bucket: 'logs',
    endpoint,
    force_path_style: true,
    access_key_id: S3_KEY,
    secret_access_key: S3_SECRET,
    format: 'parquet',
    batch: { max_age: '300ms', max_events: 200 },
    retry: { initial_backoff: '50ms', max_backoff: '500ms' },
    ...extra,
  };
}

/** POSTs decisions given as JSON texts (so that their numbers are the exact text sent), as OPA does: a gzip JSON array. */
async function postTexts(url: string, texts: string[], partition?: string): Promise<void> {
  const res = await fetch(`${url}/logs${partition ? `/${partition}` : ''}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    body: gzipSync(Buffer.from(`[${texts.join(',')}]`)),
    signal: AbortSignal.timeout(30_000),
  });
  assert.equal(res.status, 200, `POST /logs${partition ? `/${partition}` : ''}: ${await res.text()}`);
}

/** Every object of the bucket written under its key below `root`, as a user would sync a bucket to query it. */
async function download(s3: TestS3, root: string, bucket = 'logs'): Promise<string[]> {
  const keys = await s3.keys(bucket);
  for (const key of keys) {
    const file = path.join(root, key);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, (await s3.object(key, bucket)).body);
  }
  return keys;
}

/**
 * Every .parquet file below `root` with `read_parquet(..., hive_partitioning = true)` (dt and hour from the
 * key's `name=value` levels), and `partition`, the key's first level, from the file name.
 */
function parquetUnder(root: string): string {
  const files = `read_parquet('${root.replace(/'/g, "''")}/**/*.parquet', hive_partitioning = true, filename = true)`;
  return `(SELECT *, regexp_extract(filename, '/([^/]+)/dt=', 1) AS partition FROM ${files})`;
}

/** Waits until everything acknowledged went out: the buffer is empty and no batch is pending. */
async function idle(proc: SluiceProcess, timeoutMs = 60_000): Promise<void> {
  await proc.until(
    'the buffer to drain',
    async () => {
      const r = await proc.ready();
      return r.buffer.chunks === 0 && r.outputs.every((o) => (o as { pending_batches: number }).pending_batches === 0);
    },
    timeoutMs,
  );
}

/** Sluice with one Parquet `file` output (objects under the returned `files`), started. */
async function startFileOutput(prefix: string): Promise<{ files: string; proc: SluiceProcess }> {
  const cwd = dir(prefix);
  const files = path.join(cwd, 'objects');
  const proc = new SluiceProcess({
    cwd,
    config: {
      data_dir: path.join(cwd, 'data'),
      outputs: [{ name: 'local', type: 'file', path: files, format: 'parquet', batch: { max_age: '200ms' } }],
    },
  });
  cleanups.push(() => proc.kill9());
  await proc.start();
  return { files, proc };
}

const HOURS = ['2026-05-01T10', '2026-05-01T11'];

test('a Parquet decision output: DuckDB reads every decision per partition/dt/hour, TIMESTAMP, lookup, exact JSON, odd ones in extra', async () => {
  const s3 = await startS3();
  const files = dir('sluice-parquet-files-');
  const cwd = dir('sluice-parquet-');
  const proc = new SluiceProcess({
    cwd,
    config: {
      data_dir: path.join(cwd, 'data'),
      outputs: [
        s3Output(s3.endpoint),
        // a second output of the same decisions: another codec, small row groups (several per object)
        {
          name: 'local',
          type: 'file',
          path: files,
          format: 'parquet',
          compression: 'snappy',
          parquet: { row_group_bytes: '64KiB' },
          batch: { max_age: '300ms', max_events: 1000 },
        },
      ],
    },
  });
  cleanups.push(() => proc.kill9());
  await proc.start();

  // decisions of two partitions and two hours, in several requests each
  const sent = new Map<string, Record<string, unknown>>();
  const expected = new Map<string, number>();
  const plan: Array<[partition: string | undefined, hour: string, n: number]> = [
    [undefined, HOURS[0]!, 130],
    [undefined, HOURS[1]!, 45],
    ['team-a', HOURS[0]!, 20],
    ['team-a', HOURS[1]!, 260],
  ];
  for (const [partition, hour, n] of plan) {
    for (let start = 0; start < n; start += 70) {
      const batch = Array.from({ length: Math.min(70, n - start) }, (_, i) => {
        const s = String((start + i) % 60).padStart(2, '0');
        return decision({ timestamp: `${hour}:${s}:07.123456789Z`, req_id: start + i });
      });
      for (const d of batch) sent.set(d.decision_id as string, d);
      await postTexts(
        proc.url,
        batch.map((d) => JSON.stringify(d)),
        partition,
      );
    }
    const k = `${partition ?? 'default'} ${hour.slice(0, 10)} ${Number(hour.slice(11))}`;
    expected.set(k, (expected.get(k) ?? 0) + n);
  }
  // numbers no JS value can hold, as their exact text
  const big =
    '{"decision_id":"big-1","path":"p/q","timestamp":"2026-05-01T10:30:00.5Z","input":{"account":123456789012345678901234567890,"ratio":1.0e400,"zero":-0.0,"keys":{"b":1,"2":2}},"result":[9007199254740993,1.50],"req_id":9223372036854775807}';
  // a timestamp that is not RFC 3339 and a req_id that is not an integer: kept in extra, the typed columns null
  const odd =
    '{"decision_id":"odd-1","path":"p","timestamp":"yesterday at noon","req_id":12.5,"input":{"a":1},"custom":{"x":[1,2]}}';
  await postTexts(proc.url, [big], 'team-b');
  await postTexts(proc.url, [odd], 'odd');
  expected.set('team-b 2026-05-01 10', 1);
  await idle(proc);

  const root = dir('sluice-parquet-download-');
  const keys = await download(s3, root);
  assert.ok(keys.length >= 6, `several objects: ${keys.join(' ')}`);
  for (const key of keys)
    assert.match(key, /^[A-Za-z0-9_-]+\/dt=\d{4}-\d{2}-\d{2}\/hour=\d{2}\/archive-[0-9a-f]{8}-\d{16}-\d{16}\.parquet$/);
  const head = await s3.object(keys[0]!);
  assert.equal(head.contentType, 'application/vnd.apache.parquet');
  assert.equal(head.contentEncoding, undefined, 'no Content-Encoding: the compression is inside the file');

  const db = await openDuckDb();
  const table = parquetUnder(root);
  const counts = await db.all(
    `SELECT partition, dt::VARCHAR AS dt, hour, count(*) AS n FROM ${table} WHERE partition <> 'odd' GROUP BY ALL ORDER BY ALL`,
  );
  assert.deepEqual(
    Object.fromEntries(counts.map((r) => [`${r.partition} ${r.dt} ${r.hour}`, Number(r.n)])),
    Object.fromEntries([...expected].sort()),
    'rows per partition, dt and hour are what was sent',
  );

  const [types] = await db.all(
    `SELECT typeof(timestamp) AS ts, typeof(input) AS input, typeof(labels) AS labels, typeof(req_id) AS req_id FROM ${table} LIMIT 1`,
  );
  assert.deepEqual(types, {
    ts: 'TIMESTAMP WITH TIME ZONE',
    input: 'JSON',
    labels: 'MAP(VARCHAR, VARCHAR)',
    req_id: 'BIGINT',
  });

  // a lookup by decision_id gives the decision back; the timestamp in microseconds, UTC
  const [id, d] = [...sent][77]!;
  const [found] = await db.all(
    `SELECT path, req_id, labels['id'] AS instance, epoch_us(timestamp) AS micros, input::VARCHAR AS input, result::VARCHAR AS result, extra FROM ${table} WHERE decision_id = '${id}'`,
  );
  const ts = d.timestamp as string;
  assert.deepEqual(found, {
    path: d.path,
    req_id: BigInt(d.req_id as number),
    instance: (d.labels as { id: string }).id,
    micros: BigInt(Date.parse(`${ts.slice(0, 19)}Z`)) * 1000n + 123456n,
    input: JSON.stringify(d.input),
    result: JSON.stringify(d.result),
    // the column holds microseconds; the nanosecond text as sent is kept in extra, to be read back exactly
    extra: /\.\d{7,9}Z$/.test(ts) ? JSON.stringify({ timestamp: ts }) : null,
  });

  // every decision's input and result are the text that was sent
  const rows = await db.all(
    `SELECT decision_id, input::VARCHAR AS input, result::VARCHAR AS result FROM ${table} WHERE partition IN ('default', 'team-a')`,
  );
  assert.equal(rows.length, sent.size);
  for (const r of rows) {
    const s = sent.get(r.decision_id as string)!;
    assert.equal(r.input, JSON.stringify(s.input));
    assert.equal(r.result, JSON.stringify(s.result));
  }

  const [bigRow] = await db.all(
    `SELECT input::VARCHAR AS input, result::VARCHAR AS result, req_id, extra FROM ${table} WHERE decision_id = 'big-1'`,
  );
  assert.deepEqual(bigRow, {
    input: '{"account":123456789012345678901234567890,"ratio":1.0e400,"zero":-0.0,"keys":{"b":1,"2":2}}',
    result: '[9007199254740993,1.50]',
    req_id: 9223372036854775807n,
    extra: null,
  });

  const [oddRow] = await db.all(
    `SELECT timestamp, req_id, path, input::VARCHAR AS input, extra::VARCHAR AS extra, extra->>'$.timestamp' AS ts_text FROM ${table} WHERE decision_id = 'odd-1'`,
  );
  assert.deepEqual(oddRow, {
    timestamp: null,
    req_id: null,
    path: 'p',
    input: '{"a":1}',
    extra: '{"timestamp":"yesterday at noon","req_id":12.5,"custom":{"x":[1,2]}}',
    ts_text: 'yesterday at noon',
  });

  // the file output: the same decisions, snappy, several row groups per object
  const local = parquetUnder(files);
  const [{ n, ids }] = (await db.all(`SELECT count(*) AS n, count(DISTINCT decision_id) AS ids FROM ${local}`)) as [
    { n: bigint; ids: bigint },
  ];
  assert.equal(Number(n), sent.size + 2);
  assert.equal(Number(ids), sent.size + 2);
  const [{ groups }] = (await db.all(
    `SELECT max(row_group_id) + 1 AS groups FROM parquet_metadata('${files}/**/*.parquet')`,
  )) as [{ groups: bigint }];
  assert.ok(Number(groups) > 1, `64KiB row groups: several per object (${groups})`);
  const codecs = await db.all(`SELECT DISTINCT compression FROM parquet_metadata('${files}/**/*.parquet')`);
  assert.deepEqual(
    codecs.map((c) => c.compression),
    ['SNAPPY'],
  );
  const s3Codecs = await db.all(`SELECT DISTINCT compression FROM parquet_metadata('${root}/**/*.parquet')`);
  assert.deepEqual(
    s3Codecs.map((c) => c.compression),
    ['ZSTD'],
    'zstd by default',
  );

  assert.equal(await proc.stop(), 0);
});

test('generated decisions -> Parquet objects -> DuckDB: the same JSON text of every member', async () => {
  const { files, proc } = await startFileOutput('sluice-parquet-prop-');
  // JSON text with what a JS round trip changes: integers past 2^53, exponents, escapes, key order
  const number = fc.oneof(
    fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String),
    fc.tuple(fc.integer({ min: 1, max: 9 }), fc.integer({ min: -400, max: 400 })).map(([m, e]) => `${m}.0e${e}`),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map((v) => JSON.stringify(v)),
  );
  const text = fc.letrec<{ value: string }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small' },
      number,
      fc.string({ unit: 'grapheme', maxLength: 12 }).map((s) => JSON.stringify(s)),
      fc.constantFrom('true', 'false', 'null', '"\\u00e9\\n\\"x\\""'),
      fc.array(tie('value'), { maxLength: 4 }).map((a) => `[${a.join(',')}]`),
      fc
        .uniqueArray(fc.tuple(fc.string({ maxLength: 6 }), tie('value')), { maxLength: 4, selector: ([k]) => k })
        .map((m) => `{${m.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`),
    ),
  })).value;
  const decisionText = fc.record({
    input: text,
    result: text,
    extraValue: text,
    hour: fc.integer({ min: 0, max: 23 }),
  });
  const generated = fc.sample(decisionText, { numRuns: 300, seed: 16 });
  const texts = generated.map(
    (g, i) =>
      `{"decision_id":"gen-${i}","path":"gen","timestamp":"2026-05-02T${String(g.hour).padStart(2, '0')}:00:00Z","input":${g.input},"result":${g.result},"x_other":${g.extraValue}}`,
  );
  for (let i = 0; i < texts.length; i += 50) await postTexts(proc.url, texts.slice(i, i + 50));
  await idle(proc);
  const db = await openDuckDb();
  const rows = await db.all(
    `SELECT decision_id, input::VARCHAR AS input, result::VARCHAR AS result, extra::VARCHAR AS extra FROM ${parquetUnder(files)}`,
  );
  assert.equal(rows.length, texts.length);
  const byId = new Map(rows.map((r) => [r.decision_id as string, r]));
  generated.forEach((g, i) => {
    const r = byId.get(`gen-${i}`);
    assert.deepEqual(
      r && { input: r.input, result: r.result, extra: r.extra },
      { input: g.input, result: g.result, extra: `{"x_other":${g.extraValue}}` },
      `decision gen-${i}: ${texts[i]}`,
    );
  });
  assert.equal(await proc.stop(), 0);
});

test('hostile decisions (millions of elements, a million members) land in a Parquet output, and so does what follows them', async () => {
  const { files, proc } = await startFileOutput('sluice-parquet-hostile-');
  // each once took the encoder thread past its heap limit (a node per JSON value), failing its batch on
  // every retry and holding back every batch after it
  const elements = `[${'0,'.repeat(2_000_000)}0]`;
  const members = Array.from({ length: 600_000 }, (_, i) => `"m${i.toString(36)}":${i % 10}`).join(',');
  const labels = `{${Array.from({ length: 100_000 }, (_, i) => `"l${i}":"v"`).join(',')}}`;
  const hostile = [
    `{"decision_id":"elements","path":"p","input":${elements},"result":[${'{},'.repeat(500_000)}{}]}`,
    `{"decision_id":"members","path":"p",${members}}`,
    `{"decision_id":"labels","path":"p","labels":${labels},"masked":[${'"/a",'.repeat(300_000)}"/a"]}`,
  ];
  await postTexts(proc.url, hostile);
  await postTexts(
    proc.url,
    Array.from({ length: 10 }, (_, i) => `{"decision_id":"after-${i}","path":"p","input":{"i":${i}}}`),
  );
  await idle(proc, 180_000);
  const db = await openDuckDb();
  const rows = await db.all(
    `SELECT decision_id, md5(input::VARCHAR) AS input, md5(result::VARCHAR) AS result, md5(extra::VARCHAR) AS extra, labels IS NULL AS no_labels, masked IS NULL AS no_masked FROM ${parquetUnder(files)} ORDER BY decision_id`,
  );
  const md5 = (t: string) => createHash('md5').update(t).digest('hex');
  assert.equal(rows.length, 13);
  const byId = new Map(rows.map((r) => [r.decision_id as string, r]));
  assert.deepEqual(
    { input: byId.get('elements')?.input, result: byId.get('elements')?.result },
    { input: md5(elements), result: md5(`[${'{},'.repeat(500_000)}{}]`) },
  );
  assert.equal(byId.get('members')?.extra, md5(`{${members}}`), 'every member, as sent, in extra');
  // collections past what a column takes keep their text in extra
  assert.deepEqual(
    { labels: byId.get('labels')?.no_labels, masked: byId.get('labels')?.no_masked, extra: byId.get('labels')?.extra },
    { labels: true, masked: true, extra: md5(`{"labels":${labels},"masked":[${'"/a",'.repeat(300_000)}"/a"]}`) },
  );
  for (let i = 0; i < 10; i++) assert.ok(byId.has(`after-${i}`), `after-${i} landed`);
  assert.equal(await proc.stop(), 0);
});

test('a batched destination with batching.format parquet: its events land as Parquet (id, topic, time, metadata, data)', async () => {
  const s3 = await startS3(['events']);
  const cwd = dir('sluice-parquet-events-');
  const proc = new SluiceProcess({
    cwd,
    config: {
      data_dir: path.join(cwd, 'data'),
      outputs: [],
      api: {
        admin_key: ADMIN_KEY,
        retry: { initial_backoff: '100ms', max_backoff: '200ms', max_retries: 50 },
        destinations: { allowed_endpoints: ['127.0.0.1/32'] },
      },
    },
  });
  cleanups.push(() => proc.kill9());
  await proc.start();
  const api = new OutpostApi(proc.url, ADMIN_KEY);
  await api.putTenant('acme');
  const destination = (config: Record<string, unknown>) => ({
    type: 'aws_s3',
    topics: ['orders'],
    config: { bucket: 'events', region: 'us-east-1', endpoint: s3.endpoint, ...config },
    credentials: { key: S3_KEY, secret: S3_SECRET },
  });

  // invalid combinations are a 422 that names the field
  const zstdLines = await api.call(
    'POST',
    '/tenants/acme/destinations',
    destination({ batching: { format: 'ndjson', compression: 'zstd' } }),
  );
  assert.equal(zstdLines.status, 422, zstdLines.text);
  assert.match(zstdLines.text, /config\.batching\.compression.*zstd is for format parquet/);
  const badFormat = await api.call('POST', '/tenants/acme/destinations', destination({ 'batching.format': 'orc' }));
  assert.equal(badFormat.status, 422, badFormat.text);

  // flat form fields, as Outpost's forms send them
  const created = await api.createDestination(
    'acme',
    destination({ 'batching.format': 'parquet', 'batching.max_events': '5', 'batching.max_age': '300ms' }),
  );
  assert.deepEqual(
    { format: created.config.batching.format, compression: created.config.batching.compression },
    { format: 'parquet', compression: 'zstd' },
  );
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) {
    const res = await api.publish({
      tenant_id: 'acme',
      topic: 'orders',
      metadata: { source: 'test', n: String(i) },
      data: { n: i, order_id: `o-${i}` },
    });
    ids.push(res.id);
  }
  // an event whose data holds a number no JS value can: its exact text is kept
  const raw = await fetch(`${proc.url}/api/v1/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: '{"tenant_id":"acme","topic":"orders","data":{"amount":123456789012345678901234567890,"rate":1.0e400}}',
  });
  const rawText = await raw.text();
  assert.equal(raw.status, 202, rawText);
  const bigId = (JSON.parse(rawText) as { id: string }).id;

  await proc.until(
    '13 events in Parquet objects',
    async () => {
      const keys = await s3.keys('events');
      if (keys.length === 0) return false;
      const root = tempDir('sluice-parquet-ev-');
      try {
        await download(s3, root, 'events');
        const db = await duckdb();
        try {
          const [{ n }] = (await db.all(`SELECT count(*) AS n FROM ${parquetUnder(root)}`)) as [{ n: bigint }];
          return Number(n) >= 13;
        } finally {
          db.close();
        }
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    },
    30_000,
  );
  // objects are sealed with their key: wait for the attempts to be recorded before reading
  await sleep(200);
  const root = dir('sluice-parquet-events-download-');
  const keys = await download(s3, root, 'events');
  for (const key of keys)
    assert.match(key, /^orders\/dt=\d{4}-\d{2}-\d{2}\/hour=\d{2}\/[A-Za-z0-9_-]+-[0-9a-f]{8}-\d{16}-\d{16}\.parquet$/);
  assert.ok(keys.length >= 3, `max_events 5: at least 3 objects for 13 events (${keys.length})`);
  assert.equal((await s3.object(keys[0]!, 'events')).contentType, 'application/vnd.apache.parquet');
  const db = await openDuckDb();
  const table = parquetUnder(root);
  const [types] = await db.all(
    `SELECT typeof(id) AS id, typeof(topic) AS topic, typeof(time) AS time, typeof(metadata) AS metadata, typeof(data) AS data FROM ${table} LIMIT 1`,
  );
  assert.deepEqual(types, {
    id: 'VARCHAR',
    topic: 'VARCHAR',
    time: 'TIMESTAMP WITH TIME ZONE',
    metadata: 'MAP(VARCHAR, VARCHAR)',
    data: 'JSON',
  });
  const rows = await db.all(
    `SELECT id, topic, metadata['n'] AS n, metadata['source'] AS source, data::VARCHAR AS data, time IS NOT NULL AS timed FROM ${table} ORDER BY id`,
  );
  assert.equal(rows.length, 13, 'each event once');
  assert.deepEqual(new Set(rows.map((r) => r.id)), new Set([...ids, bigId]));
  for (const [i, id] of ids.entries()) {
    const r = rows.find((x) => x.id === id)!;
    assert.deepEqual(r, {
      id,
      topic: 'orders',
      n: String(i),
      source: 'test',
      data: JSON.stringify({ n: i, order_id: `o-${i}` }),
      timed: true,
    });
  }
  const bigRow = rows.find((x) => x.id === bigId)!;
  assert.equal(bigRow.data, '{"amount":123456789012345678901234567890,"rate":1.0e400}');
  assert.equal(await proc.stop(), 0);
});

test('kill -9 during Parquet uploads: every acknowledged decision lands once, and every re-upload is byte-identical', async () => {
  const s3 = await startS3();
  const recorder = await new UploadRecorder(s3.port).start();
  cleanups.push(() => recorder.stop());
  const cwd = dir('sluice-parquet-kill-');
  const proc = new SluiceProcess({
    cwd,
    config: {
      data_dir: path.join(cwd, 'data'),
      shutdown_timeout: '10s',
      outputs: [s3Output(recorder.endpoint, { request_timeout: '5s', parquet: { row_group_bytes: '64KiB' } })],
    },
  });
  cleanups.push(() => proc.kill9());
  await proc.start();

  // 1. uploads that land in the store while Sluice never hears of it: killed then, it uploads them again
  recorder.holdAnswers = true;
  const acked = new Set<string>();
  for (let r = 0; r < 6; r++) {
    const batch = Array.from({ length: 150 }, () => decision());
    await postTexts(
      proc.url,
      batch.map((d) => JSON.stringify(d)),
      r % 2 === 0 ? undefined : 'team-a',
    );
    for (const d of batch) acked.add(d.decision_id as string);
  }
  await proc.until('uploads stored whose answers are held', () => recorder.storedPuts().size >= 3, 30_000);
  assert.equal(await proc.kill9(), null);
  recorder.holdAnswers = false;
  await proc.start();

  // 2. under load, kill -9 at moments the test does not choose
  const loader = new Loader(() => proc.url, {
    concurrency: 4,
    batch: [1, 60],
    partitions: ['default', 'team-a', 'team-b'],
    maxMs: 60_000,
    maxRequests: 100_000,
  }).start();
  cleanups.push(() => loader.stop());
  for (let k = 0; k < 2; k++) {
    await sleep(300 + Math.random() * 900);
    await proc.kill9();
    await proc.start();
  }
  await sleep(500);
  await loader.stop();
  for (const id of loader.acked) acked.add(id);
  await idle(proc);

  // every key's uploads carried the same bytes; the held ones went twice
  const byKey = recorder.storedPuts();
  const reuploaded = [...byKey].filter(([, puts]) => puts.length > 1);
  assert.ok(reuploaded.length >= 3, `objects uploaded again after the kill: ${reuploaded.length}`);
  for (const [key, puts] of byKey)
    assert.equal(new Set(puts.map((p) => p.md5)).size, 1, `${key}: ${puts.length} uploads, differing bytes`);

  const root = dir('sluice-parquet-kill-download-');
  const keys = await download(s3, root);
  for (const key of keys) {
    const body = readFileSync(path.join(root, key));
    assert.equal(createHash('md5').update(body).digest('base64'), byKey.get(key)?.[0]?.md5, `${key} as uploaded`);
  }
  const db = await openDuckDb();
  const counts = await db.all(`SELECT decision_id, count(*) AS n FROM ${parquetUnder(root)} GROUP BY decision_id`);
  const inBucket = new Map(counts.map((r) => [r.decision_id as string, Number(r.n)]));
  const missing = [...acked].filter((id) => !inBucket.has(id));
  const duplicated = [...inBucket].filter(([, n]) => n > 1);
  assert.deepEqual(missing.slice(0, 5), [], `${missing.length} of ${acked.size} acknowledged decisions missing`);
  assert.deepEqual(duplicated.slice(0, 5), [], `${duplicated.length} decisions in more than one copy`);
  assert.equal(await proc.stop('SIGTERM', 20_000), 0);
});

test('a stored chunk from before checksums that no longer gunzips: the Parquet output sets it aside and writes the rest', async () => {
  const cwd = dir('sluice-parquet-unreadable-');
  const files = path.join(cwd, 'objects');
  const dataDir = path.join(cwd, 'data');
  const configFor = (maxAge: string) => ({
    data_dir: dataDir,
    outputs: [{ name: 'local', type: 'file', path: files, format: 'parquet', batch: { max_age: maxAge } }],
  });
  // 1. three requests, three stored chunks, acknowledged and never delivered (max_age 1h, then kill -9)
  const first = new SluiceProcess({ cwd, config: configFor('1h') });
  cleanups.push(() => first.kill9());
  await first.start();
  const sent = [0, 1, 2].map((r) => Array.from({ length: 40 }, (_, i) => `{"decision_id":"u-${r}-${i}","path":"p"}`));
  for (const texts of sent) await postTexts(first.url, texts);
  await first.kill9();

  // 2. the middle chunk as a chunk stored before checksums and damaged since: its CRC column empty, its gzip bad
  const db = new Database(path.join(dataDir, 'buffer.sqlite'));
  const chunks = db.prepare('SELECT pos, payload, compressed FROM chunks ORDER BY pos').all() as Array<{
    pos: number;
    payload: Buffer;
    compressed: number;
  }>;
  assert.equal(chunks.length, 3);
  assert.ok(
    chunks.every((c) => c.compressed === 1),
    'chunks are stored compressed (the default)',
  );
  const damaged = Buffer.from(chunks[1]!.payload);
  damaged[damaged.length - 9] ^= 0x01;
  db.prepare('UPDATE chunks SET payload = ?, crc = NULL WHERE pos = ?').run(damaged, chunks[1]!.pos);
  db.close();

  // 3. delivered: the encoder thread cannot gunzip it, the batch is read again on the event loop, which sets it aside
  const second = new SluiceProcess({ cwd, config: configFor('200ms') });
  cleanups.push(() => second.kill9());
  await second.start();
  await second.until('the chunk to be counted corrupt', async () => {
    const ready = (await second.ready()) as unknown as { buffer: { corrupt_chunks: number } };
    return ready.buffer.corrupt_chunks === 1;
  });
  await idle(second);
  const duck = await openDuckDb();
  const ids = (await duck.all(`SELECT decision_id FROM ${parquetUnder(files)}`)).map((r) => r.decision_id as string);
  assert.deepEqual(
    ids.sort(),
    [...sent[0]!, ...sent[2]!].map((t) => (JSON.parse(t) as { decision_id: string }).decision_id).sort(),
  );
  assert.equal(await second.stop(), 0);
});
