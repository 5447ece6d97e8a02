/**
 * `npm run bench:publish`: events published to aws_s3 destinations through the Outpost-compatible API, one
 * object per event and batched, against s3rver on 127.0.0.1. Verifies that every acknowledged event landed
 * exactly once, and writes bench/results/publish.{json,md}.
 *
 *   npm run bench:publish -- [--each 20000] [--batched 200000] [--connections 64] [--batch-size 100] [--profile]
 *     [--store sqlite|postgres] [--nodes 1] [--postgres-url postgres://postgres@127.0.0.1:5432/test]
 *
 * `--store postgres --nodes N` starts N nodes on one fresh schema of that database (dropped afterwards), and
 * the publishers send their requests to the nodes in turn (a round-robin load balancer).
 *
 * The batched destination is measured twice: one event per `POST /publish` (Outpost's API), and
 * `--batch-size` events per `POST /publish/batch` (Sluice's extension).
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, ListObjectsCommand, S3Client } from '@aws-sdk/client-s3';
import pg from 'pg';
import { stringify } from 'yaml';
import { percentile } from './loadgen.js';
import {
  cpuSeconds,
  freePort,
  ROOT,
  rssMiB,
  sluiceEnv,
  SLUICE_NODE_OPTIONS,
  startS3,
  waitHealthy,
} from './processes.js';

const { values: args } = parseArgs({
  options: {
    each: { type: 'string', default: '20000' },
    batched: { type: 'string', default: '200000' },
    connections: { type: 'string', default: '64' },
    'batch-size': { type: 'string', default: '100' },
    profile: { type: 'boolean', default: false },
    store: { type: 'string', default: 'sqlite' },
    nodes: { type: 'string', default: '1' },
    'postgres-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/test' },
  },
});
const STORE = args.store === 'postgres' ? 'postgres' : 'sqlite';
const NODES = Number(args.nodes);
if (args.store !== STORE || !Number.isInteger(NODES) || NODES < 1 || NODES > 8)
  throw new Error('--store is sqlite or postgres; --nodes 1 to 8');
if (STORE === 'sqlite' && NODES !== 1) throw new Error('several nodes need --store postgres');
/** bench/results/<this>.{json,md}: the SQLite run keeps its name, the PostgreSQL runs say their node count. */
const RESULTS = STORE === 'sqlite' ? 'publish' : `publish-postgres-${NODES}-nodes`;
const ADMIN = 'bench-admin-key';
const DRAIN_TIMEOUT_MS = 600_000;

interface PhaseResult {
  phase: string;
  events: number;
  ackedPerSec: number;
  latencyMs: { p50: number; p99: number };
  landedPerSec: number;
  objects: number;
  missing: number;
  duplicates: number;
  sluiceCores: number;
  peakRssMiB: number;
  /** Requests answered 429 (and sent again after 250 ms). */
  throttled: number;
}

async function api(
  base: string,
  method: string,
  route: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${base}/api/v1${route}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

function eventOf(topic: string, n: number): Record<string, unknown> {
  return {
    id: `${topic}-${n}`,
    tenant_id: 'bench',
    topic,
    data: {
      n,
      topic,
      customer_id: `c-${n % 100}`,
      decision: { allow: n % 3 !== 0, path: 'authz/allow' },
      padding: 'x'.repeat(400),
    },
  };
}

/** `count` events over `connections` publishers, `perRequest` to a request (1: `POST /publish`, more: `/publish/batch`). */
async function publishAll(
  bases: string[],
  topic: string,
  count: number,
  connections: number,
  perRequest: number,
): Promise<{ seconds: number; latencies: number[]; throttled: number }> {
  const latencies: number[] = [];
  let throttled = 0;
  let next = 0;
  let turn = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (next < count) {
        const first = next;
        next = Math.min(count, next + perRequest);
        const t0 = performance.now();
        const events = Array.from({ length: next - first }, (_, i) => eventOf(topic, first + i));
        const base = bases[turn++ % bases.length]!;
        // a 429 (the tenant's pending bound: delivery is behind) is waited out and sent again, as a client should
        for (let attempt = 0; ; attempt++) {
          const { status } =
            perRequest === 1
              ? await api(base, 'POST', '/publish', events[0])
              : await api(base, 'POST', '/publish/batch', events);
          if (status === 202) break;
          if (status !== 429 || attempt >= 1000) throw new Error(`publish answered ${status}`);
          throttled++;
          await sleep(250);
        }
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return { seconds: (performance.now() - started) / 1000, latencies, throttled };
}

async function waitDrained(base: string): Promise<void> {
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const ready = (await (await fetch(`${base}/ready`)).json()) as { events: { pending_deliveries: number } };
    if (ready.events.pending_deliveries === 0) return;
    await sleep(200);
  }
  throw new Error('deliveries did not drain in time');
}

/** Every `n` found in the objects under the prefix: one per object, or one per NDJSON line of gzip batches. */
async function landed(s3: S3Client, prefix: string, batched: boolean): Promise<{ objects: number; ns: number[] }> {
  const ns: number[] = [];
  let objects = 0;
  // ListObjects (v1) with a marker: s3rver's v2 continuation tokens use a cipher OpenSSL 3 refuses (HTTP 500)
  let after: string | undefined;
  let more = true;
  while (more) {
    const page = await s3.send(new ListObjectsCommand({ Bucket: 'logs', Prefix: prefix, Marker: after }));
    for (const o of page.Contents ?? []) {
      objects++;
      let body: Buffer;
      try {
        body = Buffer.from(
          await (await s3.send(new GetObjectCommand({ Bucket: 'logs', Key: o.Key }))).Body!.transformToByteArray(),
        );
      } catch (err) {
        throw new Error(`reading back ${o.Key} failed: ${(err as Error).message}`);
      }
      const text = batched ? gunzipSync(body).toString('utf8') : body.toString('utf8');
      for (const line of text.split('\n')) if (line) ns.push((JSON.parse(line) as { n: number }).n);
      after = o.Key;
    }
    more = page.IsTruncated === true;
  }
  return { objects, ns };
}

async function phase(
  name: string,
  bases: string[],
  sluices: ChildProcess[],
  s3: S3Client,
  topic: string,
  prefix: string,
  batched: boolean,
  count: number,
  perRequest = 1,
): Promise<PhaseResult> {
  process.stdout.write(`  ${name}: publishing ${count.toLocaleString('en')} events... `);
  const cpuOf = () => sluices.reduce((sum, p) => sum + cpuSeconds(p.pid), 0);
  const cpu0 = cpuOf();
  const started = performance.now();
  const { seconds, latencies, throttled } = await publishAll(bases, topic, count, Number(args.connections), perRequest);
  // the pending count is the store's: with PostgreSQL, the cluster's
  await waitDrained(bases[0]!);
  const total = (performance.now() - started) / 1000;
  const cpu = cpuOf() - cpu0;
  const { objects, ns } = await landed(s3, prefix, batched);
  const unique = new Set(ns);
  const result: PhaseResult = {
    phase: name,
    events: count,
    ackedPerSec: count / seconds,
    latencyMs: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99) },
    landedPerSec: count / total,
    objects,
    missing: count - unique.size,
    duplicates: ns.length - unique.size,
    sluiceCores: cpu / total,
    peakRssMiB: Math.max(...sluices.map((p) => rssMiB(p.pid!, 'VmHWM'))),
    throttled,
  };
  console.log(`done (${result.missing} missing, ${result.duplicates} duplicates)`);
  return result;
}

const dir = mkdtempSync(path.join(tmpdir(), 'sluice-bench-publish-'));
const s3Port = await freePort();
const s3Process = await startS3(path.join(dir, 's3'), s3Port);
const schema = `sluice_bench_${process.pid}_${Date.now()}`;
const ports: number[] = [];
const sluices: ChildProcess[] = [];
// --profile: a V8 CPU profile of the server in bench/results/profiles
const profile = args.profile ? ['--cpu-prof', '--cpu-prof-dir', path.join(ROOT, 'bench', 'results', 'profiles')] : [];
for (let i = 0; i < NODES; i++) {
  const port = await freePort();
  const file = path.join(dir, `sluice-${i}.yaml`);
  writeFileSync(
    file,
    stringify({
      listen: `127.0.0.1:${port}`,
      data_dir: path.join(dir, `data-${i}`),
      log: { level: 'warn' },
      ...(STORE === 'postgres'
        ? { store: { type: 'postgres', url: args['postgres-url'], schema, node_id: `bench-${i}` } }
        : {}),
      // s3rver on loopback: tenant destinations reach it only when it is allowed
      api: {
        admin_key: ADMIN,
        ...(STORE === 'postgres' ? { encryption_key: 'bench-encryption-key', jwt_secret: 'bench-jwt-secret' } : {}),
        retry: { initial_backoff: '200ms', max_backoff: '2s' },
        destinations: { allowed_endpoints: ['127.0.0.1/32'] },
      },
    }),
  );
  sluices.push(
    spawn(
      process.execPath,
      [...SLUICE_NODE_OPTIONS, ...profile, path.join(ROOT, 'dist', 'cli.js'), 'serve', '--config', file],
      {
        env: sluiceEnv(),
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    ),
  );
  ports.push(port);
  // one at a time: the first migrates the schema (the others would wait on its lock anyway)
  await waitHealthy(port);
}
const bases = ports.map((p) => `http://127.0.0.1:${p}`);
const base = bases[0]!;
const s3 = new S3Client({
  region: 'us-east-1',
  endpoint: `http://127.0.0.1:${s3Port}`,
  forcePathStyle: true,
  credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
});
const results: PhaseResult[] = [];
try {
  const connection = { bucket: 'logs', region: 'us-east-1', endpoint: `http://127.0.0.1:${s3Port}` };
  const credentials = { key: 'S3RVER', secret: 'S3RVER' };
  await api(base, 'PUT', '/tenants/bench');
  await api(base, 'POST', '/tenants/bench/destinations', {
    type: 'aws_s3',
    topics: ['each'],
    config: {
      ...connection,
      key_template: "join('/', ['each', data.customer_id, join('', [metadata.\"event-id\", '.json'])])",
    },
    credentials,
  });
  await api(base, 'POST', '/tenants/bench/destinations', {
    type: 'aws_s3',
    topics: ['batch'],
    config: { ...connection, batching: { max_events: 10000, max_age: '1s' } },
    credentials,
  });
  results.push(await phase('one object per event', bases, sluices, s3, 'each', 'each/', false, Number(args.each)));
  await api(base, 'POST', '/tenants/bench/destinations', {
    type: 'aws_s3',
    topics: ['bulk'],
    config: { ...connection, batching: { max_events: 10000, max_age: '1s' } },
    credentials,
  });
  results.push(
    await phase('batched (10,000 events, 1 s)', bases, sluices, s3, 'batch', 'batch/', true, Number(args.batched)),
  );
  const perRequest = Number(args['batch-size']);
  results.push(
    await phase(
      `batched, ${perRequest} events per POST /publish/batch`,
      bases,
      sluices,
      s3,
      'bulk',
      'bulk/',
      true,
      Number(args.batched),
      perRequest,
    ),
  );
} finally {
  for (const sluice of sluices) sluice.kill('SIGTERM');
  s3Process.kill('SIGTERM');
  await Promise.all(sluices.map((sluice) => new Promise((resolve) => sluice.once('exit', resolve))));
  if (STORE === 'postgres') {
    const client = new pg.Client({ connectionString: args['postgres-url'] });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await client.end();
  }
}

const n = (v: number) => Math.round(v).toLocaleString('en');
const markdown = [
  `Publish to aws_s3 destinations, ${args.connections} concurrent publishers, ~600 B events, store ${STORE}, ${NODES} node${NODES > 1 ? 's' : ''}`,
  '',
  '| destination | events | acked/s | publish ms p50 / p99 | landed/s (publish to last object) | objects | missing / dup | 429s | sluice cores | peak RSS MiB |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...results.map(
    (r) =>
      `| ${r.phase} | ${n(r.events)} | ${n(r.ackedPerSec)} | ${r.latencyMs.p50.toFixed(1)} / ${r.latencyMs.p99.toFixed(1)} | ${n(r.landedPerSec)} | ${n(r.objects)} | ${r.missing} / ${r.duplicates} | ${n(r.throttled)} | ${r.sluiceCores.toFixed(2)} | ${r.peakRssMiB.toFixed(0)} |`,
  ),
].join('\n');
mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
writeFileSync(
  path.join(ROOT, 'bench', 'results', `${RESULTS}.json`),
  JSON.stringify({ date: new Date().toISOString(), node: process.version, args, results }, null, 2),
);
writeFileSync(
  path.join(ROOT, 'bench', 'results', `${RESULTS}.md`),
  `# Publish benchmark ${new Date().toISOString()}\n\n${markdown}\n`,
);
console.log(`\n${markdown}\n\nwritten: bench/results/${RESULTS}.json, ${RESULTS}.md`);
rmSync(dir, { recursive: true, force: true });
process.exit(results.every((r) => r.missing === 0 && r.duplicates === 0) ? 0 : 1);
