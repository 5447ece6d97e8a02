/**
 * Enterprise OPA `eopa_dl` configs accepted as they are, the console / http / service outputs, key presets,
 * drop and mask rules end to end, one output failing while another delivers, and OPA re-sends (same request,
 * same decision_id) not stored twice, also across a restart. Everything runs for real: `node dist/cli.js serve`
 * in its own process, s3rver and small node:http servers on 127.0.0.1.
 *
 * The rule language itself is covered by test/transforms.test.ts; here only what reaches the objects.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { S3_KEY, S3_SECRET, s3For, TestS3 } from './helpers/s3.js';
import { runCli, SluiceProcess, tempDir, type ReadyStatus } from './helpers/sluice.js';
import { decisions, postDecisions } from './helpers/opa.js';

type Decision = Record<string, unknown>;

const WAIT_MS = 15_000;
const RETRY = { initial_backoff: '50ms', max_backoff: '300ms' };
/** The s3rver credentials, under the names the seed's eopa config reads them from. */
const EOPA_ENV = { AWS_ACCESS_KEY_ID: S3_KEY, AWS_ACCESS_SECRET: S3_SECRET };
/** The made-up decision of `sluice check` (src/cli.ts exampleKey): 2026-05-01T12:34:56.789012345Z = 1777638896 s. */
const EXAMPLE_ID = '4ca636c1-55e4-417a-b1d8-4aceb67960d1';

// ---------------------------------------------------------------------------------------------------------------
// Glue: lifetimes tied to the test, objects read back from S3 or a directory, bounded waits.

function dirFor(t: TestContext, prefix = 'sluice-eopa-'): string {
  const dir = tempDir(prefix);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A started SluiceProcess, killed when the test ends whatever state it is in. */
async function sluiceFor(t: TestContext, opts: ConstructorParameters<typeof SluiceProcess>[0]): Promise<SluiceProcess> {
  const sluice = new SluiceProcess(opts);
  t.after(() => sluice.kill9());
  await sluice.start();
  return sluice;
}

function writeFile(dir: string, name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** Decodes an object by its name: `.gz` gunzipped; `.jsonl` / `.ndjson` as lines; `.json` one document or an array. */
function decode(key: string, body: Buffer): Decision[] {
  const text = (key.endsWith('.gz') ? gunzipSync(body) : body).toString('utf8');
  const name = key.replace(/\.gz$/, '');
  if (name.endsWith('.jsonl') || name.endsWith('.ndjson'))
    return text
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l));
  const parsed = JSON.parse(text);
  return Array.isArray(parsed) ? parsed : [parsed];
}

interface StoredObject {
  key: string;
  body: Buffer;
  decisions: Decision[];
}

/** Every object (file) under a file output's directory, keyed by its path relative to it; temp files left out. */
function fileObjects(root: string): StoredObject[] {
  const out: StoredObject[] = [];
  let entries: string[];
  try {
    entries = readdirSync(root, { recursive: true }) as string[];
  } catch {
    return out;
  }
  for (const rel of entries.sort()) {
    const file = path.join(root, rel);
    let body: Buffer;
    try {
      body = readFileSync(file);
    } catch {
      continue; // a directory, or a temp file renamed meanwhile
    }
    if (rel.endsWith('.tmp')) continue;
    const key = rel.split(path.sep).join('/');
    out.push({ key, body, decisions: decode(key, body) });
  }
  return out;
}

async function s3Objects(
  s3: TestS3,
  bucket = 'logs',
): Promise<Array<StoredObject & { contentType?: string; contentEncoding?: string }>> {
  const out: Array<StoredObject & { contentType?: string; contentEncoding?: string }> = [];
  for (const key of await s3.keys(bucket)) {
    const o = await s3.object(key, bucket);
    out.push({
      key,
      body: o.body,
      contentType: o.contentType,
      contentEncoding: o.contentEncoding,
      decisions: decode(key, o.body),
    });
  }
  return out;
}

const idOf = (d: Decision): string => d.decision_id as string;

/** decision_id -> how many times it is in the objects. */
function idCounts(objects: StoredObject[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const o of objects) for (const d of o.decisions) counts.set(idOf(d), (counts.get(idOf(d)) ?? 0) + 1);
  return counts;
}

/** The objects hold exactly `expected` decision ids, each once. */
function assertEachOnce(objects: StoredObject[], expected: Iterable<string>, where: string): void {
  const counts = idCounts(objects);
  const want = new Set(expected);
  const missing = [...want].filter((id) => !counts.has(id));
  const extra = [...counts.keys()].filter((id) => !want.has(id));
  const twice = [...counts].filter(([, n]) => n > 1);
  assert.deepEqual(missing, [], `${missing.length} decisions missing from ${where}`);
  assert.deepEqual(extra, [], `${extra.length} unexpected decisions in ${where}`);
  assert.deepEqual(twice, [], `decisions stored more than once in ${where}`);
}

function hasAll(objects: StoredObject[], ids: Iterable<string>): boolean {
  const counts = idCounts(objects);
  for (const id of ids) if (!counts.has(id)) return false;
  return true;
}

function outputOf(
  ready: ReadyStatus,
  name: string,
): ReadyStatus['outputs'][number] & { dropped?: number; retries?: number } {
  const o = ready.outputs.find((x) => x.name === name);
  assert.ok(o, `/ready lists output ${name}: ${JSON.stringify(ready.outputs.map((x) => x.name))}`);
  return o;
}

/** Unix seconds of an RFC 3339 time (the fraction dropped). */
function unixSeconds(rfc3339: string): number {
  return Math.floor(Date.parse(rfc3339.replace(/\.\d+/, '')) / 1000);
}

/** A decision as the seed shows Enterprise OPA's (plus input and result). */
function seedDecision(overrides: Decision = {}): Decision {
  return {
    decision_id: randomUUID(),
    labels: { id: '5758c49f-c271-4cff-adbe-07b3558ff8a1', type: 'enterprise-opa', version: '0.52.0' },
    metrics: {
      counter_regovm_eval_instructions: 5,
      counter_server_query_cache_hit: 1,
      timer_rego_input_parse_ns: 417,
      timer_regovm_eval_ns: 53511,
      timer_server_handler_ns: 76383,
    },
    nd_builtin_cache: {},
    path: 'foo',
    req_id: 19,
    requested_by: '',
    timestamp: '2023-05-24T12:13:14.50627+02:00',
    input: { user: 'alice' },
    result: true,
    ...overrides,
  };
}

/** POSTs exactly these bytes (a gzip JSON array) to /logs, as OPA re-sends a chunk. */
async function postRaw(url: string, gz: Buffer): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}/logs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    body: gz as unknown as BodyInit,
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON: kept as text for the assertion message */
  }
  return { status: res.status, body };
}

async function post200(url: string, body: Decision[], opts: { token?: string } = {}): Promise<void> {
  const res = await postDecisions(url, body, opts);
  const text = await res.text();
  assert.equal(res.status, 200, `POST /logs answered ${res.status}: ${text}`);
  assert.deepEqual(JSON.parse(text), { accepted: body.length });
}

/** Waits until `ids` are in the file output `out` under `root` and it has no batch sealed or in flight. */
async function untilSettled(sluice: SluiceProcess, root: string, ids: string[]): Promise<void> {
  await sluice.until(
    'the last decisions delivered and nothing pending',
    async () => hasAll(fileObjects(root), ids) && outputOf(await sluice.ready(), 'out').pending_batches === 0,
    WAIT_MS,
  );
}

function fileOutput(name: string, dir: string, extra: Decision = {}): Decision {
  return {
    name,
    type: 'file',
    path: path.join(dir, name),
    compression: 'none',
    batch: { max_age: '100ms' },
    retry: RETRY,
    ...extra,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Enterprise OPA configs

test("eopa: the seed's S3 config, unchanged, writes one object per decision as eopa=<labels.id>/ts=<unix>/decision_id=<id>.json", async (t) => {
  const s3 = await s3For(t);
  const dir = dirFor(t);
  // The seed's "simplest-possible configuration", in a whole Enterprise OPA config, with endpoint and force_path
  // to reach s3rver; Sluice's own listen and data_dir beside it. Credentials come from the environment.
  const file = writeFile(
    dir,
    'eopa.yaml',
    `
services:
  acmecorp:
    url: https://example.com/control-plane-api/v1
labels:
  app: myapp
bundles:
  authz:
    service: acmecorp
decision_logs:
  plugin: eopa_dl
plugins:
  eopa_dl:
    output:
      - type: s3
        access_key_id: $AWS_ACCESS_KEY_ID
        access_secret: $AWS_ACCESS_SECRET
        region: "us-east-1"
        bucket: logs
        endpoint: ${s3.endpoint}
        force_path: true
listen: 127.0.0.1:0
data_dir: ${path.join(dir, 'data')}
`,
  );
  const sluice = await sluiceFor(t, { args: ['--config', file], env: EOPA_ENV });

  const sent = [
    seedDecision(),
    seedDecision({ timestamp: '2023-05-24T10:13:15.000001Z', result: false, input: { user: 'bob' } }),
    seedDecision({
      timestamp: '2023-05-24T12:13:16.9+02:00',
      labels: { id: 'b3d656eb-186b-45d4-9c25-8a8ea0dc80b3', type: 'enterprise-opa', version: '0.52.0' },
    }),
  ];
  await post200(sluice.url, sent);

  let objects: Awaited<ReturnType<typeof s3Objects>> = [];
  await sluice.until(
    'one object per decision in s3://logs',
    async () => (objects = await s3Objects(s3)).length >= sent.length,
    WAIT_MS,
  );
  // a moment later nothing more has appeared (each decision is one object, not more)
  const expectedKeys = sent
    .map(
      (d) => `eopa=${(d.labels as Decision).id}/ts=${unixSeconds(d.timestamp as string)}/decision_id=${idOf(d)}.json`,
    )
    .sort();
  // hand-checked: 2023-05-24T12:13:14.50627+02:00 is 10:13:14Z, Unix 1684923194
  assert.equal(expectedKeys.filter((k) => k.includes('/ts=1684923194/')).length, 1);
  assert.deepEqual(
    objects.map((o) => o.key),
    expectedKeys,
  );
  for (const d of sent) {
    const o = objects.find((x) => x.key.endsWith(`/decision_id=${idOf(d)}.json`))!;
    assert.deepEqual(JSON.parse(o.body.toString('utf8')), d, `the object ${o.key} is the decision as sent`);
    assert.match(o.contentType ?? '', /^application\/json/, `Content-Type of ${o.key}`);
    assert.equal(o.contentEncoding, undefined, `${o.key} is not compressed`);
  }
  const ready = await sluice.ready();
  assert.deepEqual(
    ready.outputs.map((o) => o.name),
    ['s3'],
    'a single output is named after its type',
  );
  assert.equal(outputOf(ready, 's3').state, 'ok');
});

test('eopa: batching {at_count 5, at_period 1s, lines, compress} gives .jsonl.gz batches per OPA instance; list rules apply', async (t) => {
  const s3 = await s3For(t);
  const dir = dirFor(t);
  const file = writeFile(
    dir,
    'eopa.yaml',
    `
decision_logs:
  plugin: eopa_dl
plugins:
  eopa_dl:
    output:
      type: s3
      bucket: logs
      region: us-east-1
      endpoint: ${s3.endpoint}
      force_path: true
      access_key_id: \${AWS_ACCESS_KEY_ID}
      access_secret: $AWS_ACCESS_SECRET
      batching:
        at_count: 5
        at_period: 1s
        format: lines
        compress: true
      drop_decision:
        - field: path
          prefix: system/health
      mask_decision:
        - /input/password
listen: 127.0.0.1:0
data_dir: ${path.join(dir, 'data')}
`,
  );
  const sluice = await sluiceFor(t, { args: ['--config', file], env: EOPA_ENV });
  const A = 'opa-a-0001';
  const B = 'opa-b-0002';
  const labels = (id: string) => ({ id, type: 'enterprise-opa', version: '0.52.0' });
  const at = (s: number) => `2023-05-24T10:00:${String(s).padStart(2, '0')}.25Z`;
  // 7 of A (seconds 1..7), 3 of B (seconds 11..13) interleaved, and 2 health checks of A that are dropped
  const a = Array.from({ length: 7 }, (_, i) =>
    seedDecision({ labels: labels(A), timestamp: at(i + 1), input: { user: `a${i}`, password: 'hunter2' } }),
  );
  const b = Array.from({ length: 3 }, (_, i) =>
    seedDecision({ labels: labels(B), timestamp: at(i + 11), input: { user: `b${i}`, password: 'hunter2' } }),
  );
  const health = [
    seedDecision({ labels: labels(A), path: 'system/health', timestamp: at(20) }),
    seedDecision({ labels: labels(A), path: 'system/health/live', timestamp: at(21) }),
  ];
  const all = [a[0]!, b[0]!, a[1]!, a[2]!, health[0]!, b[1]!, a[3]!, a[4]!, a[5]!, b[2]!, health[1]!, a[6]!];
  await post200(sluice.url, all);
  const kept = [...a, ...b];

  let objects: Awaited<ReturnType<typeof s3Objects>> = [];
  await sluice.until(
    'the 10 kept decisions in s3://logs',
    async () => hasAll((objects = await s3Objects(s3)), kept.map(idOf)),
    WAIT_MS,
  );
  assertEachOnce(objects, kept.map(idOf), 's3://logs');

  const KEY = /^eopa=([^/]+)\/first_ts=(\d+)\/last_ts=(\d+)\/batch_id=([^/]+)\.jsonl\.gz$/;
  const batchIds = new Set<string>();
  const instances = new Map<string, number>();
  for (const o of objects) {
    const m = KEY.exec(o.key);
    assert.ok(m, `batch key is eopa=<labels.id>/first_ts=<unix>/last_ts=<unix>/batch_id=<id>.jsonl.gz: ${o.key}`);
    const [, instance, first, last, batchId] = m;
    assert.ok(!batchIds.has(batchId!), `batch_id ${batchId} is used once`);
    batchIds.add(batchId!);
    assert.equal(o.contentEncoding, 'gzip', `${o.key} is sent with Content-Encoding gzip`);
    assert.equal(o.contentType, 'application/json', `${o.key} has Enterprise OPA's Content-Type`);
    assert.ok(
      o.decisions.length >= 1 && o.decisions.length <= 5,
      `${o.key} holds 1 to 5 decisions (at_count 5): ${o.decisions.length}`,
    );
    for (const d of o.decisions)
      assert.equal((d.labels as Decision).id, instance, `${o.key} holds only decisions of OPA ${instance}`);
    const seconds = o.decisions.map((d) => unixSeconds(d.timestamp as string));
    assert.equal(Number(first), Math.min(...seconds), `first_ts of ${o.key}`);
    assert.equal(Number(last), Math.max(...seconds), `last_ts of ${o.key}`);
    instances.set(instance!, (instances.get(instance!) ?? 0) + o.decisions.length);
  }
  assert.deepEqual(Object.fromEntries(instances), { [A]: 7, [B]: 3 });
  assert.ok(
    objects.filter((o) => o.key.startsWith(`eopa=${A}/`)).length >= 2,
    '7 decisions of A with at_count 5 make at least 2 objects',
  );
  // the body: each kept decision as sent, with its password masked away (mask_decision as a Sluice rule list)
  for (const o of objects) {
    for (const d of o.decisions) {
      const original = kept.find((x) => idOf(x) === idOf(d))!;
      const { password: _p, ...input } = original.input as Decision;
      assert.deepEqual(d, { ...original, input, erased: ['/input/password'] });
    }
  }
  // hand-checked: A's lines are one chunk in the order sent (a0 a1 a2 h0 a3 | a4 a5 h1 a6), B's another; at_count
  // counts buffer positions, so A's first batch is a0..a3 (h0 dropped): 10:00:01..04 = Unix 1684922401..1684922404,
  // its second a4..a6: 1684922405..1684922407, and B's 10:00:11..13: 1684922411..1684922413.
  assert.deepEqual(objects.map((o) => o.key.replace(/\/batch_id=.*$/, '')).sort(), [
    `eopa=${A}/first_ts=1684922401/last_ts=1684922404`,
    `eopa=${A}/first_ts=1684922405/last_ts=1684922407`,
    `eopa=${B}/first_ts=1684922411/last_ts=1684922413`,
  ]);
  const ready = await sluice.ready();
  assert.equal(outputOf(ready, 's3').dropped, 2, 'the 2 health checks are counted as dropped');
  assert.equal(outputOf(ready, 's3').delivered.events, 10);
});

test('eopa: sluice check names what Sluice cannot do (kafka, Rego drop_decision); serve refuses to start', async (t) => {
  const dir = dirFor(t);
  const kafka = writeFile(
    dir,
    'kafka.yaml',
    `
decision_logs:
  plugin: eopa_dl
plugins:
  eopa_dl:
    output:
      - type: kafka
        urls: [127.0.0.1:9092]
        topic: logs
`,
  );
  const res = await runCli(['check', '--config', kafka]);
  assert.equal(res.code, 1, `check of a kafka output exits 1: ${res.stdout}${res.stderr}`);
  assert.match(res.stderr, /plugins\.eopa_dl\.output\.0\.type/, `the error names the eopa field: ${res.stderr}`);
  assert.match(res.stderr, /kafka/);
  for (const type of ['s3', 'console', 'http', 'service'])
    assert.match(res.stderr, new RegExp(`\\b${type}\\b`), `the error names the supported type ${type}: ${res.stderr}`);

  const served = await runCli(['serve', '--config', kafka]);
  assert.equal(served.code, 1, 'serve with a kafka output does not start');
  assert.match(served.stderr, /kafka/);
  assert.doesNotMatch(served.stdout + served.stderr, /listening on/);

  const rego = writeFile(
    dir,
    'rego.yaml',
    `
plugins:
  eopa_dl:
    output:
      type: console
      drop_decision: /system/log/drop
`,
  );
  const r = await runCli(['check', '--config', rego], { env: EOPA_ENV });
  assert.equal(r.code, 1, `check of a Rego drop_decision exits 1: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, /plugins\.eopa_dl\.output\.drop_decision/, r.stderr);
  assert.match(r.stderr, /Rego/, `the error says Sluice does not evaluate Rego: ${r.stderr}`);
  assert.match(r.stderr, /\/system\/log\/drop/);

  for (const other of ['splunk', 'gcs']) {
    const f = writeFile(dir, `${other}.yaml`, `plugins:\n  eopa_dl:\n    output:\n      type: ${other}\n`);
    const o = await runCli(['check', '--config', f]);
    assert.equal(o.code, 1, `${other} is refused`);
    assert.match(o.stderr, /s3, console, http, service/, o.stderr);
  }
});

/** The seed tutorial's eopa_dl block, as it is written there (the block alone). */
const SEED_BLOCK = `
plugin: eopa_dl
output:
  - type: s3
    access_key_id: $AWS_ACCESS_KEY_ID
    access_secret: $AWS_ACCESS_SECRET
    region: "us-east-1"
    bucket: logs
`;

test('eopa: sluice check of the seed config (the block alone) and of each batching format prints the object keys', async (t) => {
  const dir = dirFor(t);
  const file = writeFile(dir, 'seed.yaml', SEED_BLOCK);
  const ok = await runCli(['check', '--config', file], { env: EOPA_ENV });
  assert.equal(ok.code, 0, `${ok.stdout}${ok.stderr}`);
  assert.match(ok.stdout, /output s3: s3:\/\/logs/);
  assert.ok(
    ok.stdout.includes(`an example decision's object: eopa=opa-1/ts=1777638896/decision_id=${EXAMPLE_ID}.json`),
    ok.stdout,
  );

  // batching formats: none is one object per decision; array is .json; compress adds .gz; several outputs are s3-<i>
  const s3 = (batching?: Record<string, unknown>) => ({
    type: 's3',
    bucket: 'logs',
    access_key_id: 'k',
    access_secret: 's',
    ...(batching ? { batching } : {}),
  });
  const formats = writeFile(
    dir,
    'formats.yaml',
    JSON.stringify({
      decision_logs: { plugin: 'eopa_dl' },
      plugins: {
        eopa_dl: {
          output: [
            s3({ format: 'none', at_count: 10 }),
            s3({ format: 'array', compress: true }),
            s3({ format: 'lines' }),
            s3(),
          ],
        },
      },
    }),
  );
  const f = await runCli(['check', '--config', formats]);
  assert.equal(f.code, 0, `${f.stdout}${f.stderr}`);
  const batch = (name: string, ext: string) =>
    `eopa=opa-1/first_ts=1777638896/last_ts=1777638896/batch_id=${name}-0a1b2c3d-0000000000000001-0000000000001000.${ext}`;
  assert.deepEqual(
    [...f.stdout.matchAll(/output (\S+):.*\n\s+an example decision's object: (\S+)/g)].map((m) => [m[1], m[2]]),
    [
      ['s3-0', `eopa=opa-1/ts=1777638896/decision_id=${EXAMPLE_ID}.json`],
      ['s3-1', batch('s3-1', 'json.gz')],
      ['s3-2', batch('s3-2', 'jsonl')],
      ['s3-3', `eopa=opa-1/ts=1777638896/decision_id=${EXAMPLE_ID}.json`],
    ],
    f.stdout,
  );
});

test('eopa: a missing credential variable is reported at the field the eopa config has (access_secret)', async (t) => {
  const dir = dirFor(t);
  const file = writeFile(dir, 'seed.yaml', SEED_BLOCK);
  const missing = await runCli(['check', '--config', file], { env: { AWS_ACCESS_KEY_ID: '', AWS_ACCESS_SECRET: '' } });
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /AWS_ACCESS_SECRET is not set/);
  // the user wrote access_secret: an error about it should name that field, not Sluice's secret_access_key
  assert.match(
    missing.stderr,
    /output\.0\.access_secret:/,
    `the problem is reported at the field the eopa config has: ${missing.stderr}`,
  );
});

test('eopa: console output (the eopa_dl block alone) writes decisions as NDJSON lines on stdout', async (t) => {
  const dir = dirFor(t);
  const sluice = await sluiceFor(t, {
    // the eopa_dl block alone (it has `output`), with Sluice's listen/log (added by the helper) and data_dir beside it
    config: {
      data_dir: path.join(dir, 'data'),
      buffer: { type: 'memory', flush_at_period: '200ms' },
      output: { type: 'console' },
    },
  });
  const sent = decisions(3);
  await post200(sluice.url, sent);
  const lines = () =>
    sluice.output.split('\n').flatMap((l) => {
      try {
        const v = JSON.parse(l);
        return v && typeof v === 'object' && typeof v.decision_id === 'string' && !('msg' in v) ? [v as Decision] : [];
      } catch {
        return [];
      }
    });
  await sluice.until(
    'the 3 decisions on stdout',
    () => sent.every((d) => lines().some((l) => idOf(l) === idOf(d))),
    WAIT_MS,
  );
  for (const d of sent) {
    const found = lines().filter((l) => idOf(l) === idOf(d));
    assert.equal(found.length, 1, `decision ${idOf(d)} is printed once`);
    assert.deepEqual(found[0], d, 'the line is the decision as sent');
  }
  assert.deepEqual(
    (await sluice.ready()).outputs.map((o) => o.name),
    ['console'],
  );
});

interface Recorded {
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  status: number;
}

/** A node:http server on 127.0.0.1 that records every request and answers `status(request, n-th to its path)`. */
async function recorder(
  t: TestContext,
  status: (path: string, nth: number) => number,
): Promise<{ url: string; requests: Recorded[] }> {
  const requests: Recorded[] = [];
  const perPath = new Map<string, number>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const p = req.url ?? '';
      const nth = (perPath.get(p) ?? 0) + 1;
      perPath.set(p, nth);
      const code = status(p, nth);
      requests.push({ path: p, headers: req.headers, body: Buffer.concat(chunks), status: code });
      res
        .writeHead(code, { 'content-type': 'application/json' })
        .end(code === 200 ? '{"ok":true}' : '{"error":"try later"}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

test('eopa: http outputs (lines, and a gzip array) POST with their headers and an idempotency key; a 503 is retried', async (t) => {
  const dir = dirFor(t);
  const receiver = await recorder(t, (_path, nth) => (nth === 1 ? 503 : 200));
  const sluice = await sluiceFor(t, {
    config: {
      data_dir: path.join(dir, 'data'),
      decision_logs: { plugin: 'eopa_dl' },
      plugins: {
        eopa_dl: {
          output: [
            {
              type: 'http',
              url: `${receiver.url}/plain`,
              headers: { 'x-team': 'policy' },
              timeout: '5s',
              batching: { at_period: '200ms', format: 'lines' },
            },
            {
              type: 'http',
              url: `${receiver.url}/gz`,
              headers: { 'x-team': 'policy-gz' },
              batching: { at_period: '200ms', format: 'array', compress: true },
            },
          ],
        },
      },
    },
  });
  const sent = decisions(4);
  await post200(sluice.url, sent);
  const delivered = (p: string) => receiver.requests.filter((r) => r.path === p && r.status === 200);
  const bodyOf = (r: Recorded): Decision[] =>
    r.path === '/gz'
      ? JSON.parse(gunzipSync(r.body).toString('utf8'))
      : r.body
          .toString('utf8')
          .split('\n')
          .filter((l) => l)
          .map((l) => JSON.parse(l));
  await sluice.until(
    'both http outputs delivered after their 503',
    () =>
      ['/plain', '/gz'].every((p) =>
        hasAll([{ key: p, body: Buffer.alloc(0), decisions: delivered(p).flatMap(bodyOf) }], sent.map(idOf)),
      ),
    WAIT_MS,
  );

  for (const [p, header] of [
    ['/plain', 'policy'],
    ['/gz', 'policy-gz'],
  ] as const) {
    const all = receiver.requests.filter((r) => r.path === p);
    assert.equal(all[0]!.status, 503, `${p}: the first request was answered 503`);
    const retry = all.find((r, i) => i > 0 && r.headers['idempotency-key'] === all[0]!.headers['idempotency-key']);
    assert.ok(retry, `${p}: the batch answered 503 is sent again with the same idempotency-key`);
    assert.ok(retry.body.equals(all[0]!.body), `${p}: the retry carries the same bytes`);
    for (const r of all) {
      assert.equal(r.headers['x-team'], header, `${p}: the configured header`);
      assert.equal(typeof r.headers['idempotency-key'], 'string');
      assert.ok((r.headers['idempotency-key'] as string).length > 0);
    }
    const objects = delivered(p).map((r) => ({ key: p, body: r.body, decisions: bodyOf(r) }));
    assertEachOnce(objects, sent.map(idOf), `http ${p}`);
    for (const d of objects.flatMap((o) => o.decisions))
      assert.deepEqual(
        d,
        sent.find((s) => idOf(s) === idOf(d)),
      );
  }
  const plain = receiver.requests.filter((r) => r.path === '/plain');
  const gz = receiver.requests.filter((r) => r.path === '/gz');
  for (const r of plain) {
    assert.equal(r.headers['content-encoding'], undefined, '/plain is not compressed');
    assert.match(r.headers['content-type'] ?? '', /ndjson/, `/plain is NDJSON: ${r.headers['content-type']}`);
  }
  for (const r of gz) {
    assert.equal(r.headers['content-encoding'], 'gzip');
    assert.match(r.headers['content-type'] ?? '', /^application\/json/);
    assert.ok(Array.isArray(JSON.parse(gunzipSync(r.body).toString('utf8'))), '/gz is a JSON array');
  }
  const ready = await sluice.ready();
  assert.deepEqual(
    ready.outputs.map((o) => o.name),
    ['http-0', 'http-1'],
    'several outputs are named <type>-<index>',
  );
  for (const name of ['http-0', 'http-1']) {
    const o = outputOf(ready, name);
    assert.equal(o.state, 'ok');
    assert.ok((o.retries ?? 0) >= 1, `${name} counted its retry: ${JSON.stringify(o)}`);
    assert.equal(o.delivered.events, sent.length);
  }
});

test('eopa: a service output (service: <name> with a bearer token) forwards to another Sluice as OPA does', async (t) => {
  const dir = dirFor(t);
  const TOKEN = 'tok-service-test';
  const receiver = await sluiceFor(t, {
    config: { data_dir: path.join(dir, 'receiver'), ingest: { tokens: [TOKEN] }, outputs: [fileOutput('out', dir)] },
  });
  // without the token the receiver refuses, so whatever lands there came with it
  const refused = await postDecisions(receiver.url, decisions(1));
  assert.equal(refused.status, 401);
  await refused.arrayBuffer();

  const sender = await sluiceFor(t, {
    config: {
      data_dir: path.join(dir, 'sender'),
      services: [{ name: 'dl', url: receiver.url, credentials: { bearer: { token: TOKEN } } }],
      decision_logs: { plugin: 'eopa_dl' },
      plugins: { eopa_dl: { output: { type: 'service', service: 'dl', batching: { at_period: '200ms' } } } },
    },
  });
  const sent = [...decisions(3), ...decisions(2, { labels: { id: 'opa-2', version: '1.4.2' } })];
  await post200(sender.url, sent);
  const root = path.join(dir, 'out');
  await receiver.until(
    "the forwarded decisions in the receiver's file output",
    () => hasAll(fileObjects(root), sent.map(idOf)),
    WAIT_MS,
  );
  const objects = fileObjects(root);
  assertEachOnce(objects, sent.map(idOf), 'the receiver');
  for (const d of objects.flatMap((o) => o.decisions))
    assert.deepEqual(
      d,
      sent.find((s) => idOf(s) === idOf(d)),
      'forwarded unchanged',
    );
  const out = outputOf(await sender.ready(), 'service');
  assert.equal(out.state, 'ok');
  assert.equal(out.delivered.events, sent.length);
});

// ---------------------------------------------------------------------------------------------------------------
// Native config: rules, failing outputs, re-sends, key presets

test('rules: a global drop, then per-output mask (erased/masked) and drop, hand-checked per output; /ready counts drops', async (t) => {
  const dir = dirFor(t);
  const sluice = await sluiceFor(t, {
    config: {
      data_dir: path.join(dir, 'data'),
      rules: { drop: [{ field: 'path', prefix: 'system/health' }] },
      outputs: [
        fileOutput('masked', dir, {
          rules: { mask: ['/input/password', { op: 'upsert', path: '/input/ssn', value: '***' }] },
        }),
        fileOutput('denials', dir, { rules: { drop: [{ field: 'result', equals: true }] } }),
      ],
    },
  });
  const base = { labels: { id: 'opa-1', version: '1.4.2' }, timestamp: '2026-03-01T09:00:00Z' };
  const d1 = {
    ...base,
    decision_id: 'd1',
    path: 'http/authz/allow',
    input: { user: 'alice', password: 'pw1', ssn: '111-11-1111' },
    result: true,
  };
  const d2 = {
    ...base,
    decision_id: 'd2',
    path: 'http/authz/allow',
    input: { user: 'bob', password: 'pw2', ssn: '222-22-2222' },
    result: false,
  };
  const d3 = { ...base, decision_id: 'd3', path: 'system/health', input: { password: 'pw3' }, result: true };
  const d4 = { ...base, decision_id: 'd4', path: 'system/health/live', input: {}, result: false };
  const d5 = { ...base, decision_id: 'd5', path: 'http/authz/allow', input: { user: 'carol' }, result: false };
  const d6 = { ...base, decision_id: 'd6', path: 'http/authz/allow', result: true };
  const sent = [d1, d2, d3, d4, d5, d6].map((d) => ({ ...d, decision_id: `${d.decision_id}-${randomUUID()}` }));
  const [s1, s2, , , s5, s6] = sent as Array<Decision & { input?: Decision }>;
  await post200(sluice.url, sent);

  // hand-checked expectations
  const expectedMasked: Decision[] = [
    { ...s1, input: { user: 'alice', ssn: '***' }, erased: ['/input/password'], masked: ['/input/ssn'] },
    { ...s2, input: { user: 'bob', ssn: '***' }, erased: ['/input/password'], masked: ['/input/ssn'] },
    { ...s5, input: { user: 'carol', ssn: '***' }, masked: ['/input/ssn'] }, // nothing to remove: no erased
    s6!, // no input: neither entry applies, nothing recorded
  ];
  const expectedDenials: Decision[] = [s2!, s5!]; // unmasked: the mask is output "masked"'s own
  const ids = (list: Decision[]) => list.map(idOf);
  await sluice.until(
    'both outputs delivered',
    async () => {
      const ready = await sluice.ready();
      return outputOf(ready, 'masked').delivered.events === 4 && outputOf(ready, 'denials').delivered.events === 2;
    },
    WAIT_MS,
  );
  for (const [name, expected] of [
    ['masked', expectedMasked],
    ['denials', expectedDenials],
  ] as const) {
    const objects = fileObjects(path.join(dir, name));
    assertEachOnce(objects, ids(expected), `output ${name}`);
    const got = objects.flatMap((o) => o.decisions).sort((a, b) => idOf(a).localeCompare(idOf(b)));
    assert.deepEqual(
      got,
      [...expected].sort((a, b) => idOf(a).localeCompare(idOf(b))),
      `output ${name} holds the hand-checked decisions`,
    );
  }
  const ready = await sluice.ready();
  assert.equal(outputOf(ready, 'masked').dropped, 2, 'masked: the 2 health checks');
  assert.equal(outputOf(ready, 'denials').dropped, 4, 'denials: 2 health checks and 2 allowed');
  for (const name of ['masked', 'denials']) assert.equal(outputOf(ready, name).state, 'ok');
});

test('one output failing (no such bucket) while another delivers; once the bucket exists everything lands there too, once', async (t) => {
  const s3 = await s3For(t, ['logs']);
  const dir = dirFor(t);
  const s3Output = (name: string, bucket: string) => ({
    name,
    type: 's3',
    bucket,
    endpoint: s3.endpoint,
    force_path_style: true,
    region: 'us-east-1',
    access_key_id: S3_KEY,
    secret_access_key: S3_SECRET,
    retry: RETRY,
    batch: { max_age: '100ms' },
  });
  const sluice = await sluiceFor(t, {
    config: { data_dir: path.join(dir, 'data'), outputs: [s3Output('good', 'logs'), s3Output('late', 'late-bucket')] },
  });

  const acked: string[] = [];
  for (let round = 0; round < 3; round++) {
    const body = decisions(5);
    await post200(sluice.url, body); // ingest goes on whatever the outputs do
    acked.push(...body.map(idOf));
  }
  await sluice.until('everything in the good bucket', async () => hasAll(await s3Objects(s3, 'logs'), acked), WAIT_MS);
  await sluice.until(
    'the late output to report its error',
    async () => outputOf(await sluice.ready(), 'late').last_error !== null,
    WAIT_MS,
  );
  let ready = await sluice.ready();
  const late = outputOf(ready, 'late');
  assert.notEqual(late.state, 'ok', `the failing output is not ok: ${JSON.stringify(late)}`);
  assert.equal(late.delivered.events, 0);
  assert.match(late.last_error!.message + (late.last_error!.code ?? ''), /NoSuchBucket|bucket/i);
  assert.equal(ready.status, 'degraded');
  assert.equal(outputOf(ready, 'good').state, 'ok');
  assert.equal(outputOf(ready, 'good').delivered.events, acked.length);
  const more = decisions(3);
  await post200(sluice.url, more);
  acked.push(...more.map(idOf));

  await s3.client.send(new CreateBucketCommand({ Bucket: 'late-bucket' }));
  await sluice.until(
    'everything in the late bucket',
    async () => hasAll(await s3Objects(s3, 'late-bucket'), acked),
    WAIT_MS,
  );
  await sluice.until(
    'good to deliver the last decisions',
    async () => hasAll(await s3Objects(s3, 'logs'), acked),
    WAIT_MS,
  );
  await sluice.until(
    'the late output ok again',
    async () => outputOf(await sluice.ready(), 'late').state === 'ok',
    WAIT_MS,
  );
  assertEachOnce(await s3Objects(s3, 'logs'), acked, 's3://logs');
  assertEachOnce(await s3Objects(s3, 'late-bucket'), acked, 's3://late-bucket');
  ready = await sluice.ready();
  assert.equal(outputOf(ready, 'late').delivered.events, acked.length);
  assert.equal(ready.status, 'ok');
});

test('re-sends: the same chunk again is acknowledged and not stored; a decision again in another chunk is stored once; remembered across a restart', async (t) => {
  const dir = dirFor(t);
  const config = { data_dir: path.join(dir, 'data'), shutdown_timeout: '5s', outputs: [fileOutput('out', dir)] };
  const root = path.join(dir, 'out');
  let sluice = await sluiceFor(t, { config });

  const first = decisions(5);
  const chunk = gzipSync(Buffer.from(JSON.stringify(first)));
  let res = await postRaw(sluice.url, chunk);
  assert.deepEqual([res.status, res.body], [200, { accepted: 5 }]);
  res = await postRaw(sluice.url, chunk);
  assert.deepEqual([res.status, res.body], [200, { accepted: 0, duplicate_request: true }], 'the same bytes again');

  const fresh = decisions(3);
  const mixed = [first[1]!, fresh[0]!, first[3]!, fresh[1]!, fresh[2]!];
  res = await postRaw(sluice.url, gzipSync(Buffer.from(JSON.stringify(mixed))));
  assert.deepEqual(
    [res.status, res.body],
    [200, { accepted: 3, duplicates: 2 }],
    'two decisions of the first chunk in another chunk',
  );
  const twice = decisions(1)[0]!;
  res = await postRaw(sluice.url, gzipSync(Buffer.from(JSON.stringify([twice, twice]))));
  assert.deepEqual([res.status, res.body], [200, { accepted: 1, duplicates: 1 }], 'a decision twice in one request');
  let expected = [...first, ...fresh, twice].map(idOf);
  await sluice.until('the 9 distinct decisions in the file output', () => hasAll(fileObjects(root), expected), WAIT_MS);
  // a last decision behind the re-sends: once it is delivered, so is anything the re-sends might have stored
  const sentinel = decisions(1);
  await post200(sluice.url, sentinel);
  expected = [...expected, idOf(sentinel[0]!)];
  await untilSettled(sluice, root, expected);
  assertEachOnce(fileObjects(root), expected, 'the file output');
  assert.equal(outputOf(await sluice.ready(), 'out').delivered.events, 10);

  // restart on the same data_dir: the chunk and the decision_ids are still known
  assert.equal(await sluice.stop(), 0, 'a clean stop');
  sluice = await sluiceFor(t, { config });
  res = await postRaw(sluice.url, chunk);
  assert.deepEqual(
    [res.status, res.body],
    [200, { accepted: 0, duplicate_request: true }],
    'the same bytes again after a restart',
  );
  const after = decisions(1);
  res = await postRaw(sluice.url, gzipSync(Buffer.from(JSON.stringify([first[0]!, after[0]!, fresh[2]!]))));
  assert.deepEqual([res.status, res.body], [200, { accepted: 1, duplicates: 2 }], 'known decision_ids after a restart');
  expected = [...expected, idOf(after[0]!)];
  await sluice.until('the new decision after the restart', () => hasAll(fileObjects(root), expected), WAIT_MS);
  assertEachOnce(fileObjects(root), expected, 'the file output after the restart');
});

test('re-sends while the first request is still in flight (OPA timed out and sent again) are not stored twice', async (t) => {
  const dir = dirFor(t);
  const root = path.join(dir, 'out');
  const sluice = await sluiceFor(t, {
    config: { data_dir: path.join(dir, 'data'), outputs: [fileOutput('out', dir)] },
  });
  const sent = decisions(1000);
  const chunk = gzipSync(Buffer.from(JSON.stringify(sent)));
  const other = decisions(1);
  // the same chunk eight times, and some of its decisions inside a different chunk, all at the same time
  const overlapping = gzipSync(Buffer.from(JSON.stringify([...sent.slice(0, 10), ...other])));
  const answers = await Promise.all([...Array(8).fill(chunk), overlapping].map((body) => postRaw(sluice.url, body)));
  for (const a of answers) assert.equal(a.status, 200, JSON.stringify(a.body));
  const expected = [...sent, ...other].map(idOf);
  const sentinel = decisions(1);
  await post200(sluice.url, sentinel);
  await untilSettled(sluice, root, [idOf(sentinel[0]!)]);
  const accepted = answers.reduce((n, a) => n + (a.body.accepted as number), 0);
  const counts = idCounts(fileObjects(root));
  assertEachOnce(
    fileObjects(root),
    [...expected, idOf(sentinel[0]!)],
    `the file output (${counts.size} distinct decisions in ${[...counts.values()].reduce((a, b) => a + b, 0)} lines; answers ${JSON.stringify(answers.map((a) => a.body))})`,
  );
  assert.equal(
    accepted,
    1001,
    `the answers accept the 1001 distinct decisions in all: ${JSON.stringify(answers.map((a) => a.body))}`,
  );
});

test('key presets: hourly-per-decision (hour received, UTC) and outpost (RFC 3339 nano) for file outputs; sluice check shows example keys', async (t) => {
  const dir = dirFor(t);
  const config = {
    data_dir: path.join(dir, 'data'),
    outputs: [
      fileOutput('hourly', dir, { key: 'hourly-per-decision' }),
      fileOutput('outpost', dir, { key: 'outpost' }),
    ],
  };
  const sluice = await sluiceFor(t, { config });
  const sent = [
    decisions(1, { timestamp: '2023-05-24T12:13:14.50627+02:00' })[0]!,
    decisions(1, { timestamp: '2026-01-02T03:04:05.123456789Z' })[0]!,
    decisions(1, { timestamp: '2026-01-02T03:04:05Z' })[0]!,
  ];
  const before = new Date().toISOString();
  await post200(sluice.url, sent);
  const after = new Date().toISOString();
  await sluice.until(
    'both outputs have the 3 decisions',
    () =>
      hasAll(fileObjects(path.join(dir, 'hourly')), sent.map(idOf)) &&
      hasAll(fileObjects(path.join(dir, 'outpost')), sent.map(idOf)),
    WAIT_MS,
  );

  // hourly: the hour the decision was received (not its timestamp), UTC
  const hourDir = (iso: string) => `${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}/${iso.slice(11, 13)}`;
  const hours = new Set([hourDir(before), hourDir(after)]);
  const hourly = fileObjects(path.join(dir, 'hourly'));
  assert.equal(hourly.length, 3, `one object per decision: ${hourly.map((o) => o.key).join(', ')}`);
  for (const d of sent) {
    const o = hourly.find((x) => x.key.endsWith(`/${idOf(d)}.json`));
    assert.ok(o, `hourly object of ${idOf(d)}: ${hourly.map((x) => x.key).join(', ')}`);
    const m = /^(\d{4}\/\d{2}\/\d{2}\/\d{2})\/([^/]+)\.json$/.exec(o.key);
    assert.ok(
      m && hours.has(m[1]!),
      `${o.key} is YYYY/MM/DD/HH/<decision_id>.json in the hour it was received (${[...hours].join(' or ')})`,
    );
    assert.deepEqual(JSON.parse(o.body.toString('utf8')), d);
  }
  // outpost: <timestamp as RFC 3339 nano in UTC>_<decision_id>.json, hand-checked
  const outpost = fileObjects(path.join(dir, 'outpost'));
  assert.deepEqual(
    outpost.map((o) => o.key).sort(),
    [
      `2023-05-24T10:13:14.50627Z_${idOf(sent[0]!)}.json`,
      `2026-01-02T03:04:05.123456789Z_${idOf(sent[1]!)}.json`,
      `2026-01-02T03:04:05Z_${idOf(sent[2]!)}.json`,
    ].sort(),
  );
  for (const o of outpost)
    assert.deepEqual(
      JSON.parse(o.body.toString('utf8')),
      sent.find((d) => o.key.endsWith(`_${idOf(d)}.json`)),
    );

  // sluice check: one example key per output, for every preset (hand-checked from the made-up decision)
  const file = writeFile(
    dir,
    'presets.yaml',
    JSON.stringify({
      data_dir: path.join(dir, 'data'),
      outputs: ['hive', 'eopa', 'eopa-per-decision', 'hourly-per-decision', 'outpost'].map((key) => ({
        name: key,
        type: 'file',
        path: path.join(dir, key),
        key,
      })),
    }),
  );
  const check = await runCli(['check', '--config', file]);
  assert.equal(check.code, 0, check.stderr);
  const examples = [...check.stdout.matchAll(/an example decision's object: (\S+)/g)].map((m) => m[1]);
  assert.deepEqual(
    examples,
    [
      'default/dt=2026-05-01/hour=12/hive-0a1b2c3d-0000000000000001-0000000000001000.ndjson.gz',
      'eopa=opa-1/first_ts=1777638896/last_ts=1777638896/batch_id=eopa-0a1b2c3d-0000000000000001-0000000000001000.jsonl.gz',
      `eopa=opa-1/ts=1777638896/decision_id=${EXAMPLE_ID}.json`,
      `2026/05/01/12/${EXAMPLE_ID}.json`,
      `2026-05-01T12:34:56.789012345Z_${EXAMPLE_ID}.json`,
    ],
    check.stdout,
  );
});
