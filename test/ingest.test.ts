/**
 * Ingest end to end: the real `sluice serve` process receives OPA decision logs over HTTP and writes objects to a
 * real s3rver (and a file output) on 127.0.0.1. Nothing is mocked.
 */
import { objectKeysUnder } from './helpers/files.js';
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { decodeObject, S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { decision, decisions, postDecisions } from './helpers/opa.js';

const BIG = '12345678901234567890';
const BIG_PLACEHOLDER = '"__BIG_INTEGER__"';

/** The default key layout: <partition>/dt=YYYY-MM-DD/hour=HH/<output>-<bufferid>-<first16>-<last16>.<ext> */
const DEFAULT_KEY =
  /^([A-Za-z0-9._-]+)\/dt=(\d{4}-\d{2}-\d{2})\/hour=(\d{2})\/([A-Za-z0-9_-]+)-([0-9a-f]{8})-(\d{16})-(\d{16})\.(ndjson\.gz|ndjson|json\.gz|json)$/;

interface ParsedKey {
  partition: string;
  date: string;
  hour: string;
  output: string;
  bufferId: string;
  first: number;
  last: number;
  ext: string;
}

function parseKey(key: string): ParsedKey {
  const m = DEFAULT_KEY.exec(key);
  assert.ok(
    m,
    `key ${key} is not in the default layout <partition>/dt=YYYY-MM-DD/hour=HH/<output>-<bufferid>-<first16>-<last16>.<ext>`,
  );
  return {
    partition: m[1]!,
    date: m[2]!,
    hour: m[3]!,
    output: m[4]!,
    bufferId: m[5]!,
    first: Number(m[6]),
    last: Number(m[7]),
    ext: m[8]!,
  };
}

const FAST = { batch: { max_age: '200ms' }, retry: { initial_backoff: '50ms', max_backoff: '500ms' } };

function s3Output(s3: TestS3, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 's3',
    type: 's3',
    bucket: 'logs',
    endpoint: s3.endpoint,
    force_path_style: true,
    access_key_id: S3_KEY,
    secret_access_key: S3_SECRET,
    ...FAST,
    ...extra,
  };
}

/**
 * A real s3rver and the real `sluice serve`, stopped in that order's reverse after the test, pass or fail:
 * Sluice first, since a draining Sluice must still reach its bucket.
 */
async function setup(
  t: TestContext,
  config: (s3: TestS3) => Record<string, unknown>,
  cwd = tempDir(),
  buckets = ['logs'],
): Promise<{ s3: TestS3; sluice: SluiceProcess }> {
  const s3 = new TestS3(buckets);
  let sluice: SluiceProcess | undefined;
  t.after(async () => {
    await sluice?.stop();
    await s3.stop();
    rmSync(s3.directory, { recursive: true, force: true });
    rmSync(cwd, { recursive: true, force: true });
  });
  await s3.start();
  sluice = new SluiceProcess({ config: { shutdown_timeout: '5s', ...config(s3) }, cwd });
  await sluice.start();
  return { s3, sluice };
}

/** POSTs raw bytes with node:http, which (unlike fetch) sends a path such as /logs/.. as it is. */
function post(
  url: string,
  urlPath: string,
  body: Buffer | string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  const { hostname, port } = new URL(url);
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: hostname,
        port,
        path: urlPath,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': String(bytes.length), ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
        res.on('error', reject);
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error(`POST ${urlPath} timed out`)));
    req.on('error', reject);
    req.end(bytes);
  });
}

/** The exact JSON text of each decision as sent; BIG_PLACEHOLDER becomes a number beyond 2^53. */
function jsonText(d: Record<string, unknown>): string {
  return JSON.stringify(d).replace(BIG_PLACEHOLDER, BIG);
}

function arrayText(ds: Array<Record<string, unknown>>): string {
  return `[${ds.map(jsonText).join(',')}]`;
}

async function delivered(sluice: SluiceProcess, events: number): Promise<void> {
  await sluice.until(`${events} decisions delivered by every output`, async () => {
    const ready = await sluice.ready();
    return ready.outputs.every((o) => o.delivered.events >= events && o.pending_batches === 0);
  });
  const ready = await sluice.ready();
  for (const o of ready.outputs)
    assert.equal(o.delivered.events, events, `output ${o.name} delivered exactly the decisions sent`);
}

function byId(ds: Array<Record<string, unknown>>): Array<Record<string, unknown>> {
  return [...ds].sort((a, b) => String(a.decision_id).localeCompare(String(b.decision_id)));
}

test('OPA gzip batches become objects in S3 in the default layout, exactly as sent, one stream per object', async (t) => {
  const { s3, sluice } = await setup(t, (s3) => ({ outputs: [s3Output(s3)] }));

  // Expected UTC date and hour are written out by hand for each timestamp.
  const h07 = (ts: string, extra: Record<string, unknown> = {}) => ({
    d: decision({ timestamp: ts, ...extra }),
    dt: '2024-03-10',
    hour: '07',
  });
  const defaultBatch = [
    h07('2024-03-10T07:15:00.123456789Z', {
      nd_builtin_cache: { 'time.now_ns': { '[]': 1710054900123456789 } },
      custom_field: { nested: [1, 'two', { three: null }], '10': 'ten', '2': 'two' },
      big: '__BIG_INTEGER__', // becomes the bare integer BIG in the JSON text
    }),
    h07('2024-03-10T07:59:59.999999999Z'),
    { d: decision({ timestamp: '2024-03-10T08:00:00Z' }), dt: '2024-03-10', hour: '08' },
    {
      d: decision({ timestamp: '2024-03-10T08:30:00.5Z', erased: ['/input/password'], masked: ['/input/ssn'] }),
      dt: '2024-03-10',
      hour: '08',
    },
    // +02:00: 09:30 local is 07:30 UTC (joins the 07 stream); 01:30 local is 23:30 UTC the previous day
    h07('2024-03-10T09:30:00+02:00'),
    { d: decision({ timestamp: '2024-03-10T01:30:00.123456789+02:00' }), dt: '2024-03-09', hour: '23' },
  ];
  const tenantBatch = [
    {
      d: decision({
        timestamp: '2024-03-10T07:01:02Z',
        labels: { id: 'other', type: 'opa', version: '0.70.0', region: 'eu' },
      }),
      dt: '2024-03-10',
      hour: '07',
    },
    { d: decision({ timestamp: '2024-03-10T08:01:02Z' }), dt: '2024-03-10', hour: '08' },
  ];
  const send = async (urlPath: string, batch: typeof defaultBatch) => {
    const text = arrayText(batch.map((x) => x.d));
    const res = await post(sluice.url, urlPath, gzipSync(text), {
      'content-encoding': 'gzip',
      'user-agent': 'Open Policy Agent/1.4.2 (linux, amd64)',
    });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(JSON.parse(res.text), { accepted: batch.length });
  };
  assert.ok(
    arrayText(defaultBatch.map((x) => x.d)).includes(`"big":${BIG}`),
    'the request carries the big integer as a number',
  );
  await send('/logs', defaultBatch);
  await send('/logs/tenant-a', tenantBatch);

  const all = [
    ...defaultBatch.map((x) => ({ ...x, partition: 'default' })),
    ...tenantBatch.map((x) => ({ ...x, partition: 'tenant-a' })),
  ];
  await delivered(sluice, all.length);

  const keys = await s3.keys();
  const expectedStreams = [...new Set(all.map((x) => `${x.partition}/dt=${x.dt}/hour=${x.hour}`))].sort();
  assert.deepEqual(
    keys.map((k) => k.replace(/\/[^/]+$/, '')).sort(),
    expectedStreams,
    'one object per partition and UTC hour: a batch never mixes partitions or hours',
  );

  const bufferIds = new Set<string>();
  const seen: Array<Record<string, unknown>> = [];
  for (const key of keys) {
    const k = parseKey(key);
    assert.equal(k.output, 's3');
    assert.equal(k.ext, 'ndjson.gz');
    bufferIds.add(k.bufferId);
    const object = await s3.object(key);
    assert.equal(object.contentType, 'application/x-ndjson', `Content-Type of ${key}`);
    assert.equal(object.contentEncoding, 'gzip', `Content-Encoding of ${key}`);
    const lines = gunzipSync(object.body).toString('utf8').split('\n');
    assert.equal(lines.pop(), '', 'NDJSON ends with a newline');
    const expected = all.filter((x) => x.partition === k.partition && x.dt === k.date && x.hour === k.hour);
    // byte-exact: each line is the decision's text as it was sent, in the order it was sent
    assert.deepEqual(
      lines,
      expected.map((x) => jsonText(x.d)),
      `lines of ${key}`,
    );
    assert.equal(k.last - k.first + 1, lines.length, `${key}: first/last positions span its decisions`);
    for (const d of decodeObject(key, object.body)) seen.push(d);
  }
  assert.equal(bufferIds.size, 1, 'all keys carry the one buffer id');
  assert.deepEqual(byId(seen), byId(all.map((x) => JSON.parse(jsonText(x.d)) as Record<string, unknown>)));

  const bigKey = keys.find((k) => k.startsWith('default/dt=2024-03-10/hour=07/'))!;
  const bigText = gunzipSync((await s3.object(bigKey)).body).toString('utf8');
  assert.ok(bigText.includes(`"big":${BIG}`), `the object keeps ${BIG} byte-exact`);
  assert.ok(
    bigText.includes(`"custom_field":${JSON.stringify(defaultBatch[0]!.d.custom_field)}`),
    'unknown fields kept',
  );

  await sluice.until('buffer trimmed once delivered', async () => (await sluice.ready()).buffer.chunks === 0, 5_000);
});

test('pretty-printed JSON (e.g. curl -d @file) keeps big integers and key order byte-exact', async (t) => {
  const { s3, sluice } = await setup(t, (s3) => ({ outputs: [s3Output(s3)] }));
  const element = `{\n  "decision_id": "pretty-1",\n  "timestamp": "2024-03-10T07:00:00Z",\n  "b": 1,\n  "2": "two",\n  "n": ${BIG}\n}`;
  const res = await post(sluice.url, '/logs', `[\n${element}\n]\n`);
  assert.equal(res.status, 200, res.text);
  await delivered(sluice, 1);
  const [key] = await s3.keys();
  const text = gunzipSync((await s3.object(key!)).body).toString('utf8');
  assert.equal(text.split('\n').length, 2, 'one NDJSON line');
  // whitespace may change, but the number text and the key order must not
  assert.match(text, new RegExp(`"n": ?${BIG}\\b`), `the object keeps ${BIG}; got ${text}`);
  assert.match(text, /"decision_id".*"timestamp".*"b".*"2".*"n"/, `key order kept; got ${text}`);
});

test('a file output and an s3 output side by side get the same keys and the same bytes', async (t) => {
  const cwd = tempDir();
  const objects = path.join(cwd, 'objects');
  const { s3, sluice } = await setup(
    t,
    (s3) => ({
      outputs: [{ name: 'disk', type: 'file', path: objects, ...FAST }, s3Output(s3, { name: 'cloud' })],
    }),
    cwd,
  );

  const a = [
    ...decisions(4, { timestamp: '2024-03-10T07:00:00Z' }),
    ...decisions(3, { timestamp: '2024-03-10T08:00:00Z' }),
  ];
  const b = decisions(5, { timestamp: '2024-03-10T07:00:00Z' });
  assert.equal((await postDecisions(sluice.url, a)).status, 200);
  assert.equal((await postDecisions(sluice.url, b, { partition: 'p2' })).status, 200);
  await delivered(sluice, a.length + b.length);

  const s3Keys = await s3.keys();
  const fileKeys = objectKeysUnder(objects);
  assert.equal(s3Keys.length, 3, `three streams -> three objects: ${s3Keys.join(', ')}`);
  assert.ok(
    fileKeys.every((k) => !k.endsWith('.tmp')),
    'no temporary files left',
  );
  // {batch} starts with the output name (names are unique), so the keys differ only there
  const asDisk = (key: string) => {
    const k = parseKey(key);
    assert.equal(k.output, 'cloud');
    return key.replace(/\/cloud-([0-9a-f]{8}-\d{16}-\d{16}\.)/, '/disk-$1');
  };
  assert.deepEqual(s3Keys.map(asDisk).sort(), fileKeys);
  for (const key of s3Keys) {
    const fromS3 = (await s3.object(key)).body;
    const fromDisk = readFileSync(path.join(objects, asDisk(key)));
    assert.ok(fromS3.equals(fromDisk), `identical bytes for ${key}`);
  }
  const all = (await s3.decisions()).map((x) => x.decision);
  assert.deepEqual(byId(all), byId([...a, ...b]));
});

test('format json_array + compression none: .json keys holding a JSON array, Content-Type application/json', async (t) => {
  // max_events 3 closes the batch at once; the two requests make it span two buffer chunks
  const { s3, sluice } = await setup(t, (s3) => ({
    outputs: [s3Output(s3, { format: 'json_array', compression: 'none', batch: { max_events: 3, max_age: '20s' } })],
  }));
  const first = decisions(2, { timestamp: '2024-03-10T07:00:00Z' });
  (first[0] as Record<string, unknown>).big = '__BIG_INTEGER__';
  const second = decisions(1, { timestamp: '2024-03-10T07:30:00Z' });
  let res = await post(sluice.url, '/logs', gzipSync(arrayText(first)), { 'content-encoding': 'gzip' });
  assert.equal(res.status, 200, res.text);
  res = await post(sluice.url, '/logs', arrayText(second));
  assert.equal(res.status, 200, res.text);
  await delivered(sluice, 3);

  const keys = await s3.keys();
  assert.equal(keys.length, 1, keys.join(', '));
  const k = parseKey(keys[0]!);
  assert.equal(k.ext, 'json');
  assert.ok(keys[0]!.endsWith('.json'));
  assert.deepEqual([k.first, k.last], [1, 3]);
  const object = await s3.object(keys[0]!);
  assert.equal(object.contentType, 'application/json');
  assert.equal(object.contentEncoding, undefined, 'no Content-Encoding without compression');
  const text = object.body.toString('utf8');
  assert.equal(text, arrayText([...first, ...second]), 'the body is the JSON array of the decisions, byte-exact');
  assert.deepEqual(JSON.parse(text), JSON.parse(arrayText([...first, ...second])));
});

test('batch.max_events: exact for outputs that re-encode; "at most", on chunk boundaries, for objects made of stored chunks', async (t) => {
  // `exact` compresses every object again (compression_level set); `stored` sends the chunks as stored
  const { s3, sluice } = await setup(
    t,
    (s3) => ({
      outputs: [
        // max_age 1h: only max_events closes a batch while the test posts (a short max_age could cut one early
        // on a slow machine); the last, partial batches are closed by the flush at SIGTERM
        s3Output(s3, {
          name: 'exact',
          bucket: 'exact',
          compression_level: 6,
          batch: { max_events: 10, max_age: '1h' },
        }),
        s3Output(s3, { name: 'stored', bucket: 'stored', batch: { max_events: 10, max_age: '1h' } }),
      ],
    }),
    undefined,
    ['exact', 'stored'],
  );
  const one = decisions(25, { timestamp: '2024-03-10T07:00:00Z' });
  assert.equal((await postDecisions(sluice.url, one, { partition: 'one' })).status, 200);
  // the same 25 in requests of 7, 7, 7 and 4: batches of `exact` cut through the middle of buffer chunks
  const split = decisions(25, { timestamp: '2024-03-10T07:00:00Z' });
  for (let i = 0; i < 25; i += 7)
    assert.equal((await postDecisions(sluice.url, split.slice(i, i + 7), { partition: 'split' })).status, 200);
  assert.equal(
    await sluice.stop('SIGTERM', 30_000),
    0,
    `SIGTERM flushes the open batches and exits 0:\n${sluice.output.slice(-2000)}`,
  );

  const want = {
    exact: { one: [10, 10, 5], split: [10, 10, 5] },
    // a chunk larger than max_events is still split; smaller ones are never cut, so a batch closes before
    // the chunk that would pass max_events
    stored: { one: [10, 10, 5], split: [7, 7, 7, 4] },
  };
  for (const bucket of ['exact', 'stored'] as const) {
    for (const [partition, sent] of [
      ['one', one],
      ['split', split],
    ] as const) {
      const keys = (await s3.keys(bucket))
        .filter((k) => k.startsWith(`${partition}/`))
        .sort((x, y) => parseKey(x).first - parseKey(y).first);
      const counts: number[] = [];
      const got: Array<Record<string, unknown>> = [];
      for (const key of keys) {
        const ds = decodeObject(key, (await s3.object(key, bucket)).body);
        const k = parseKey(key);
        assert.ok(k.last - k.first + 1 >= ds.length, `${key} holds the decisions of its positions`);
        counts.push(ds.length);
        got.push(...ds);
      }
      assert.deepEqual(counts, want[bucket][partition], `${bucket}/${partition}: decisions per object`);
      assert.deepEqual(got, sent, `${bucket}/${partition}: every decision once, in order`);
    }
  }
});

test('routes: /health, /ready with outputs, /logs -> default partition, trailing slashes, []', async (t) => {
  const { s3, sluice } = await setup(t, (s3) => ({ outputs: [s3Output(s3, { name: 'archive' })] }));

  const health = await fetch(`${sluice.url}/health`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: 'ok' });

  const readyRes = await fetch(`${sluice.url}/ready`);
  assert.equal(readyRes.status, 200);
  const ready = (await readyRes.json()) as Record<string, any>;
  assert.equal(ready.status, 'ok');
  assert.equal(ready.buffer.writable, true);
  assert.equal(ready.buffer.chunks, 0);
  assert.equal(ready.outputs.length, 1);
  assert.equal(ready.outputs[0].name, 'archive');
  assert.equal(ready.outputs[0].type, 's3');
  assert.equal(ready.outputs[0].target, 's3://logs');
  assert.equal(ready.outputs[0].state, 'ok');
  assert.deepEqual(ready.outputs[0].delivered, { events: 0, objects: 0, bytes: 0 });

  const empty = await postDecisions(sluice.url, []);
  assert.equal(empty.status, 200);
  assert.deepEqual(await empty.json(), { accepted: 0 });
  assert.equal((await sluice.ready()).buffer.chunks, 0, '[] stores nothing');

  const ts = { timestamp: '2024-03-10T07:00:00Z' };
  const viaLogs = decisions(2, ts);
  const viaSlash = decisions(2, ts);
  const viaPSlash = decisions(3, ts);
  assert.equal(
    (await post(sluice.url, '/logs', gzipSync(JSON.stringify(viaLogs)), { 'content-encoding': 'gzip' })).status,
    200,
  );
  const slash = await post(sluice.url, '/logs/', JSON.stringify(viaSlash));
  assert.equal(slash.status, 200, slash.text);
  const pSlash = await post(sluice.url, '/logs/p/', gzipSync(JSON.stringify(viaPSlash)), {
    'content-encoding': 'GZIP',
  });
  assert.equal(pSlash.status, 200, pSlash.text);
  assert.deepEqual(JSON.parse(pSlash.text), { accepted: 3 });
  await delivered(sluice, 7);

  const byPartition = new Map<string, Array<Record<string, unknown>>>();
  for (const { key, decision: d } of await s3.decisions()) {
    const p = parseKey(key).partition;
    byPartition.set(p, [...(byPartition.get(p) ?? []), d]);
  }
  assert.deepEqual([...byPartition.keys()].sort(), ['default', 'p']);
  assert.deepEqual(byId(byPartition.get('default')!), byId([...viaLogs, ...viaSlash]));
  assert.deepEqual(byPartition.get('p'), viaPSlash);
});

test('partition names of up to 128 characters are accepted', async (t) => {
  const { s3, sluice } = await setup(t, (s3) => ({ outputs: [s3Output(s3)] }));
  const sent = new Map<string, Array<Record<string, unknown>>>();
  for (const name of ['p.1_-X', 'b'.repeat(100), 'c'.repeat(101), 'd'.repeat(127) + '9']) {
    const ds = decisions(1, { timestamp: '2024-03-10T07:00:00Z' });
    const res = await postDecisions(sluice.url, ds, { partition: name });
    assert.equal(res.status, 200, `partition of ${name.length} characters: ${await res.text()}`);
    sent.set(name, ds);
  }
  await delivered(sluice, sent.size);
  const got = new Map<string, Array<Record<string, unknown>>>();
  for (const { key, decision: d } of await s3.decisions())
    got.set(parseKey(key).partition, [...(got.get(parseKey(key).partition) ?? []), d]);
  assert.deepEqual(got, sent);
});

test('ingest.tokens: a missing or wrong bearer token gets 401 and stores nothing; the right one gets 200', async (t) => {
  const { s3, sluice } = await setup(t, (s3) => ({
    ingest: { tokens: ['first-token', 's3cret-token'] },
    outputs: [s3Output(s3)],
  }));
  const ds = decisions(3, { timestamp: '2024-03-10T07:00:00Z' });

  for (const [what, token, header] of [
    ['missing', undefined, undefined],
    ['wrong', 'nope', undefined],
    ['a prefix of a valid one', 's3cret', undefined],
    ['not a bearer token', undefined, 'Basic czNjcmV0LXRva2Vu'],
  ] as const) {
    const headers: Record<string, string> = { 'content-encoding': 'gzip' };
    if (token) headers.authorization = `Bearer ${token}`;
    if (header) headers.authorization = header;
    const res = await post(sluice.url, '/logs', gzipSync(JSON.stringify(ds)), headers);
    assert.equal(res.status, 401, `${what} token: ${res.text}`);
    assert.equal(res.headers['www-authenticate'], 'Bearer');
    const body = JSON.parse(res.text) as { status: number; message: string; data: Record<string, unknown> };
    assert.equal(body.status, 401);
    assert.match(body.message, /bearer|token/i);
    assert.equal(typeof body.data, 'object');
    assert.equal((await sluice.ready()).buffer.chunks, 0, `${what} token: nothing stored`);
  }
  assert.equal((await fetch(`${sluice.url}/health`)).status, 200, '/health needs no token');

  const ok = await postDecisions(sluice.url, ds, { token: 's3cret-token' });
  assert.equal(ok.status, 200);
  await delivered(sluice, 3);
  const keys = await s3.keys();
  assert.equal(keys.length, 1);
  assert.equal(parseKey(keys[0]!).first, 1, 'the accepted request is the first thing ever stored');
  assert.deepEqual(
    (await s3.decisions()).map((x) => x.decision),
    ds,
  );
});

describe('bad requests: a status, a JSON {status, message, data} that says what is wrong, and nothing stored', () => {
  const MAX_BODY = 64 * 1024;
  const MAX_DECODED = 256 * 1024;
  let s3: TestS3;
  let sluice: SluiceProcess;
  let cwd: string;

  before(async () => {
    s3 = new TestS3(['logs']);
    await s3.start();
    cwd = tempDir();
    sluice = new SluiceProcess({
      cwd,
      config: {
        shutdown_timeout: '5s',
        ingest: { max_body_bytes: '64KiB', max_decoded_bytes: '256KiB' },
        outputs: [s3Output(s3)],
      },
    });
    await sluice.start();
  });

  after(async () => {
    await sluice?.stop(); // before s3: a draining Sluice must still reach its bucket
    await s3?.stop();
    if (s3) rmSync(s3.directory, { recursive: true, force: true });
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  const valid = () => JSON.stringify(decisions(3, { timestamp: '2024-03-10T07:00:00Z' }));
  const gz = { 'content-encoding': 'gzip' };

  const cases: Array<{
    name: string;
    path?: string;
    body: () => Buffer | string;
    headers?: Record<string, string>;
    status: number;
    message: RegExp;
    data?: Record<string, unknown>;
  }> = [
    {
      name: 'invalid gzip',
      body: () => Buffer.from(valid()),
      headers: gz,
      status: 400,
      message: /not valid gzip/,
      data: { reason: 'invalid_gzip' },
    },
    {
      name: 'truncated gzip',
      body: () => {
        const z = gzipSync(valid());
        return z.subarray(0, z.length >> 1);
      },
      headers: gz,
      status: 400,
      message: /not valid gzip/,
      data: { reason: 'invalid_gzip' },
    },
    {
      name: 'invalid JSON',
      body: () => gzipSync(valid().slice(0, -1)),
      headers: gz,
      status: 400,
      message: /not valid JSON/,
      data: { reason: 'invalid_json' },
    },
    {
      name: 'not an array',
      body: () => gzipSync(JSON.stringify(decision())),
      headers: gz,
      status: 400,
      message: /JSON array/,
      data: { reason: 'not_an_array' },
    },
    {
      name: 'an element that is not an object, among valid decisions',
      body: () => gzipSync(JSON.stringify([decision(), decision(), 42, decision()])),
      headers: gz,
      status: 400,
      message: /element 2 .*not a decision object/,
      data: { reason: 'not_an_object', index: 2 },
    },
    {
      name: 'a null element',
      body: () => JSON.stringify([decision(), null]),
      status: 400,
      message: /element 1 /,
      data: { reason: 'not_an_object', index: 1 },
    },
    {
      name: 'an array element',
      body: () => JSON.stringify([[decision()]]),
      status: 400,
      message: /element 0 /,
      data: { reason: 'not_an_object', index: 0 },
    },
    {
      name: 'invalid UTF-8',
      body: () =>
        gzipSync(
          Buffer.concat([
            Buffer.from('[{"decision_id":"x","input":"'),
            Buffer.from([0xc3, 0x28, 0xff]),
            Buffer.from('"}]'),
          ]),
        ),
      headers: gz,
      status: 400,
      message: /UTF-8/,
      data: { reason: 'invalid_utf8' },
    },
    { name: 'an empty body', body: () => '', status: 400, message: /JSON/ },
    {
      name: 'body over ingest.max_body_bytes',
      body: () => JSON.stringify(decisions(Math.ceil((MAX_BODY * 1.5) / 600))),
      status: 413,
      message: /max_body_bytes/,
    },
    {
      name: 'gzip bomb decoding past ingest.max_decoded_bytes',
      body: () => {
        const z = gzipSync(JSON.stringify([decision({ input: 'x'.repeat(MAX_DECODED * 8) })]));
        assert.ok(z.length < MAX_BODY, 'the bomb itself is under max_body_bytes');
        return z;
      },
      headers: gz,
      status: 413,
      message: /max_decoded_bytes/,
      data: { reason: 'decoded_too_large', limit: MAX_DECODED },
    },
    {
      name: 'unknown Content-Encoding br',
      body: () => valid(),
      headers: { 'content-encoding': 'br' },
      status: 415,
      message: /Content-Encoding.*br/,
    },
    {
      name: 'unknown Content-Encoding deflate',
      body: () => valid(),
      headers: { 'content-encoding': 'deflate' },
      status: 415,
      message: /gzip/,
    },
    {
      name: 'partition "bad name!"',
      path: '/logs/bad%20name!',
      body: () => valid(),
      status: 400,
      message: /partition/,
      data: { partition: 'bad name!' },
    },
    {
      name: 'a 129-char partition',
      path: `/logs/${'a'.repeat(129)}`,
      body: () => valid(),
      status: 400,
      message: /partition/,
      data: { partition: 'a'.repeat(129) },
    },
    {
      name: 'partition ".."',
      path: '/logs/..',
      body: () => valid(),
      status: 400,
      message: /partition/,
      data: { partition: '..' },
    },
    {
      name: 'partition "%2E%2E"',
      path: '/logs/%2E%2E',
      body: () => valid(),
      status: 400,
      message: /partition/,
      data: { partition: '..' },
    },
    {
      name: 'partition "."',
      path: '/logs/.',
      body: () => valid(),
      status: 400,
      message: /partition/,
      data: { partition: '.' },
    },
    { name: 'partition with a slash', path: '/logs/a%2Fb', body: () => valid(), status: 400, message: /partition/ },
  ];

  for (const c of cases) {
    test(`${c.name} -> ${c.status}`, async () => {
      const res = await post(sluice.url, c.path ?? '/logs', c.body(), c.headers);
      assert.equal(res.status, c.status, res.text);
      assert.match(String(res.headers['content-type']), /application\/json/);
      const body = JSON.parse(res.text) as { status: number; message: string; data: Record<string, unknown> };
      assert.equal(body.status, c.status);
      assert.equal(typeof body.message, 'string');
      assert.match(body.message, c.message);
      assert.ok(body.data && typeof body.data === 'object' && !Array.isArray(body.data), 'data is an object');
      if (c.data) assert.deepEqual(body.data, { ...body.data, ...c.data });
      const ready = await sluice.ready();
      assert.equal(ready.buffer.chunks, 0, 'nothing stored');
      assert.equal(ready.buffer.bytes, 0, 'nothing stored');
    });
  }

  test('after all of them: no object, and the first valid request gets buffer position 1', async () => {
    const ready = await sluice.ready();
    assert.equal(ready.status, 'ok');
    assert.deepEqual(
      ready.outputs.map((o) => o.delivered.events),
      [0],
    );
    assert.deepEqual(await s3.keys(), []);
    const sentinel = decisions(2, { timestamp: '2024-03-10T07:00:00Z' });
    assert.equal((await postDecisions(sluice.url, sentinel, { partition: 'sentinel' })).status, 200);
    await delivered(sluice, 2);
    const keys = await s3.keys();
    assert.equal(keys.length, 1, keys.join(', '));
    const k = parseKey(keys[0]!);
    assert.equal(k.partition, 'sentinel');
    assert.deepEqual([k.first, k.last], [1, 2], 'no rejected decision ever took a buffer position');
    assert.deepEqual(
      (await s3.decisions()).map((x) => x.decision),
      sentinel,
    );
  });
});

test('objects made of stored chunks are one valid gzip stream of several members: gzip -t, zcat and Python read them whole', async (t) => {
  const { s3, sluice } = await setup(t, (s3) => ({ outputs: [s3Output(s3, { batch: { max_age: '1s' } })] }));
  const sent: Array<Record<string, unknown>> = [];
  for (let i = 0; i < 6; i++) {
    const body = decisions(50, { timestamp: '2024-03-10T07:00:00Z' });
    sent.push(...body);
    assert.equal((await postDecisions(sluice.url, body)).status, 200);
  }
  await delivered(sluice, sent.length);
  const keys = await s3.keys();
  assert.equal(keys.length, 1, `one object of six chunks: ${keys.join(', ')}`);
  const { body } = await s3.object(keys[0]!);
  // six gzip members, one after another (each starts with the gzip magic 1f 8b 08)
  let members = 0;
  for (
    let i = body.indexOf(Buffer.from([0x1f, 0x8b, 0x08]));
    i !== -1;
    i = body.indexOf(Buffer.from([0x1f, 0x8b, 0x08]), i + 1)
  )
    members++;
  assert.ok(members >= 6, `several members: found ${members}`);
  const dir = tempDir('sluice-gzip-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'object.ndjson.gz');
  writeFileSync(file, body);
  const run = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  assert.equal(run('gzip', ['-t', file]).status, 0, 'gzip -t accepts it');
  const ids = (text: string) =>
    text
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { decision_id: string }).decision_id);
  const want = sent.map((d) => d.decision_id);
  assert.deepEqual(ids(run('zcat', [file]).stdout), want, 'zcat reads every decision, in order');
  const python = run('python3', ['-c', 'import gzip,sys; sys.stdout.write(gzip.open(sys.argv[1], "rt").read())', file]);
  if (python.error) t.diagnostic(`python3 not found: ${python.error.message}`);
  else assert.deepEqual(ids(python.stdout), want, "Python's gzip reads every decision, in order");
});
