/**
 * `npm run bench`: s3rver, the real `sluice serve` and the load generator, each in its own process, on
 * 127.0.0.1. Measures what a fleet of OPAs gets from one Sluice, verifies every acknowledged decision by
 * reading the objects back, and writes bench/results/latest.{json,md,svg}.
 *
 *   npm run bench -- [--scenario steady,latency,count,burst,backlog,partitions,large] [--duration 60]
 *                    [--count 2000000] [--backlog 5000000] [--connections 16] [--chunk-bytes 32768] [--profile]
 *                    [--dedupe-window 10m|0] [--rate 75000] [--compression-level N] [--buffer-level N]
 *                    [--format parquet]
 *
 * `--format parquet` runs each scenario twice in the same run, with the output writing gzip NDJSON (the
 * reference) and then Parquet (zstd): throughput, peak RSS and bytes per decision side by side; Parquet
 * objects are read back with DuckDB.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { stringify } from 'yaml';
import { chunkBody, decisionsPerChunk } from './payloads.js';
import { percentile, type LoadResult } from './loadgen.js';
import { renderChart } from './chart.js';
import { cpuSeconds, freePort, rssMiB, sluiceEnv, SLUICE_NODE_OPTIONS, startS3, waitHealthy } from './processes.js';

import { ROOT } from './processes.js';
import { buildConfig } from '../src/config/load.js';
const RESULTS = path.join(ROOT, 'bench', 'results');

const { values: args } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'steady,latency,count,burst,backlog,partitions,large' },
    duration: { type: 'string', default: '60' },
    count: { type: 'string', default: '2000000' },
    backlog: { type: 'string', default: '5000000' },
    connections: { type: 'string', default: '16' },
    'chunk-bytes': { type: 'string', default: '32768' },
    target: { type: 'string', default: '150000' },
    profile: { type: 'boolean', default: false },
    /** The output's compression_level; unset (the default), objects are the chunks as stored (compressed once at ingest). */
    'compression-level': { type: 'string', default: '' },
    /** buffer.compression_level: the gzip level chunks are stored at. */
    'buffer-level': { type: 'string', default: '' },
    /** Decisions/s the latency scenario offers (open loop); default half of --target. */
    rate: { type: 'string', default: '' },
    /** ingest.dedupe.window: 0 turns re-send detection off, to measure what it costs */
    'dedupe-window': { type: 'string', default: '10m' },
    /** parquet: every scenario with a gzip NDJSON output, then with a Parquet one. */
    format: { type: 'string', default: 'ndjson' },
  },
});
if (!['ndjson', 'parquet'].includes(args.format!)) throw new Error(`--format is ndjson or parquet, not ${args.format}`);
const FORMATS: Array<'ndjson' | 'parquet'> = args.format === 'parquet' ? ['ndjson', 'parquet'] : ['ndjson'];
const DURATION_MS = Number(args.duration) * 1000;
/** The outputs' default batch.max_age: the bench runs on the defaults. */
const MAX_AGE_MS = buildConfig({ outputs: [{ name: 'x', type: 'console' }] }, 'defaults').outputs[0]!.batch.max_age;
const TARGET = Number(args.target);
const LATENCY_RATE = args.rate ? Number(args.rate) : TARGET / 2;

interface Scenario {
  name: string;
  description: string;
  durationMs: number;
  /** Fixed number of decisions to send (0 = as many as the duration allows). */
  count: number;
  rate: number;
  burst?: { onMs: number; offMs: number };
  partitions: number;
  chunkBytes: number;
  /** S3 is started only once every decision is acknowledged (backlog drain). */
  s3Late?: boolean;
  bufferMaxBytes?: string;
}

const chunkBytes = Number(args['chunk-bytes']);
const SCENARIOS: Record<string, Scenario> = {
  steady: {
    name: 'steady',
    description: `closed loop, ${args.connections} connections, ${args.duration} s`,
    durationMs: DURATION_MS,
    count: 0,
    rate: 0,
    partitions: 1,
    chunkBytes,
  },
  latency: {
    name: 'latency',
    description: `open loop at ${LATENCY_RATE}/s offered (each chunk on schedule, on a connection of its own when needed), ${DURATION_MS / 2000} s`,
    durationMs: DURATION_MS / 2,
    count: 0,
    rate: LATENCY_RATE,
    partitions: 1,
    chunkBytes,
  },
  count: {
    name: 'count',
    description: `fixed count of ${Number(args.count).toLocaleString('en')} decisions`,
    durationMs: 600_000,
    count: Number(args.count),
    rate: 0,
    partitions: 1,
    chunkBytes,
  },
  burst: {
    name: 'burst',
    description: 'closed loop, 2 s on / 2 s off',
    durationMs: DURATION_MS / 2,
    count: 0,
    rate: 0,
    burst: { onMs: 2000, offMs: 2000 },
    partitions: 1,
    chunkBytes,
  },
  backlog: {
    name: 'backlog',
    description: `S3 stopped while ${Number(args.backlog).toLocaleString('en')} decisions arrive, then started`,
    durationMs: 900_000,
    count: Number(args.backlog),
    rate: 0,
    partitions: 1,
    chunkBytes,
    s3Late: true,
    bufferMaxBytes: '16GiB',
  },
  partitions: {
    name: 'partitions',
    description: '100 partitions (/logs/p0 .. /logs/p99)',
    durationMs: DURATION_MS / 2,
    count: 0,
    rate: 0,
    partitions: 100,
    chunkBytes,
  },
  large: {
    name: 'large',
    description: '1 MiB compressed chunks (upload_size_limit_bytes raised)',
    durationMs: DURATION_MS / 2,
    count: 0,
    rate: 0,
    partitions: 1,
    chunkBytes: 1024 * 1024,
  },
};

export interface ScenarioResult {
  scenario: string;
  /** The output's format: ndjson (gzip) or parquet (zstd). */
  format: 'ndjson' | 'parquet';
  /** Object bytes in the bucket per decision landed. */
  bytesPerDecision: number;
  description: string;
  acknowledged: number;
  ackedPerSec: number;
  landed: number;
  landedPerSec: number;
  missing: number;
  duplicates: number;
  latencyMs: { p50: number; p99: number; max: number };
  peakRssMiB: number;
  putsPerMillion: number;
  objects: number;
  e2eMs: { p50: number; p99: number };
  rejected: Record<string, number>;
  /** CPU cores each process used while the load ran (of this machine's cores). */
  cores: { sluice: number; loadgen: number; s3rver: number };
  drainPerSec?: number;
  /** Seconds from the last acknowledgement to the last object landed (max_age included). */
  tailSeconds?: number;
  ceilingRatio: number;
  timeline: number[];
  latencyTimeline: number[];
  rssTimeline: number[];
}

async function startSluice(
  dir: string,
  port: number,
  s3Port: number,
  scenario: Scenario,
  format: ScenarioResult['format'],
): Promise<ChildProcess> {
  const config = {
    listen: `127.0.0.1:${port}`,
    data_dir: path.join(dir, 'data'),
    log: { level: 'warn' },
    buffer: {
      ...(scenario.bufferMaxBytes ? { max_bytes: scenario.bufferMaxBytes } : {}),
      ...(args['buffer-level'] ? { compression_level: Number(args['buffer-level']) } : {}),
    },
    ingest: { dedupe: { window: args['dedupe-window'] } },
    outputs: [
      {
        name: 'archive',
        type: 's3',
        bucket: 'logs',
        endpoint: `http://127.0.0.1:${s3Port}`,
        force_path_style: true,
        access_key_id: 'S3RVER',
        secret_access_key: 'S3RVER',
        ...(args['compression-level'] && format === 'ndjson'
          ? { compression_level: Number(args['compression-level']) }
          : {}),
        ...(format === 'parquet' ? { format: 'parquet' } : {}),
        retry: { initial_backoff: '200ms', max_backoff: '2s' },
      },
    ],
  };
  const file = path.join(dir, 'sluice.yaml');
  writeFileSync(file, stringify(config));
  // --profile: a V8 CPU profile of the server per scenario, for `node --cpu-prof` style analysis
  const profile = args.profile ? ['--cpu-prof', '--cpu-prof-dir', path.join(RESULTS, 'profiles')] : [];
  const child = spawn(
    process.execPath,
    [...SLUICE_NODE_OPTIONS, ...profile, path.join(ROOT, 'dist', 'cli.js'), 'serve', '--config', file],
    {
      env: sluiceEnv(),
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  await waitHealthy(port);
  return child;
}

interface ReadyBody {
  buffer: { chunks: number };
  outputs: Array<{ delivered: { objects: number; events: number }; retries: number; pending_batches: number }>;
}

async function ready(port: number): Promise<ReadyBody> {
  return (await (await fetch(`http://127.0.0.1:${port}/ready`)).json()) as ReadyBody;
}

/** Single-process gunzip + JSON.parse of the same payloads: what this machine's one core can decode. */
function machineCeiling(perChunk: number): number {
  const now = new Date();
  const bodies = Array.from({ length: 60 }, (_, i) => chunkBody('ceiling', i, perChunk, now));
  let decoded = 0;
  const start = performance.now();
  for (let round = 0; round < 5; round++) {
    for (const body of bodies) decoded += (JSON.parse(gunzipSync(body).toString('utf8')) as unknown[]).length;
  }
  return decoded / ((performance.now() - start) / 1000);
}

async function runScenario(scenario: Scenario, format: ScenarioResult['format']): Promise<ScenarioResult> {
  const dir = mkdtempSync(path.join(tmpdir(), `sluice-bench-${scenario.name}-`));
  const s3Port = await freePort();
  const port = await freePort();
  const client = new S3Client({
    region: 'us-east-1',
    endpoint: `http://127.0.0.1:${s3Port}`,
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  let s3Process = scenario.s3Late ? undefined : await startS3(path.join(dir, 's3'), s3Port);
  const sluice = await startSluice(dir, port, s3Port, scenario, format);
  const perChunk = decisionsPerChunk(scenario.chunkBytes);
  const wanted =
    scenario.count > 0 ? scenario.count : (Math.max(TARGET, scenario.rate) * 1.6 * scenario.durationMs) / 1000;
  const chunks = Math.ceil(wanted / perChunk);
  const run = `${scenario.name}${Date.now().toString(36)}`;

  const loadgen = fork(path.join(ROOT, 'bench', 'loadgen.ts'), [], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
  });
  const message = (type: string) =>
    new Promise<any>((resolve) => {
      const onMessage = (m: { type: string }) => {
        if (m.type === type) {
          loadgen.off('message', onMessage);
          resolve(m);
        }
      };
      loadgen.on('message', onMessage);
    });
  process.stdout.write(
    `  ${scenario.name} (${format === 'parquet' ? 'Parquet, zstd' : 'NDJSON, gzip'}): preparing ${(chunks * perChunk).toLocaleString('en')} decisions (${perChunk}/chunk)... `,
  );
  loadgen.send({ type: 'prepare', run, chunks, perChunk, partitions: scenario.partitions });
  await message('prepared');
  process.stdout.write('sending\n');

  // while the load runs: the server's memory, and when each object first shows in the bucket
  const rssTimeline: number[] = [];
  const firstSeen = new Map<string, number>();
  let sampling = true;
  const sampler = (async () => {
    for (let i = 0; sampling && i < 100_000; i++) {
      rssTimeline.push(rssMiB(sluice.pid!, 'VmRSS'));
      if (s3Process && i % 2 === 0) {
        try {
          await listKeys(client, (key) => {
            if (!firstSeen.has(key)) firstSeen.set(key, Date.now());
          });
        } catch {
          /* s3rver busy */
        }
      }
      await sleep(500);
    }
  })();

  const cpuBefore = {
    sluice: cpuSeconds(sluice.pid),
    loadgen: cpuSeconds(loadgen.pid),
    s3: cpuSeconds(s3Process?.pid),
  };
  loadgen.send({
    type: 'go',
    url: `http://127.0.0.1:${port}`,
    connections: Number(args.connections),
    durationMs: scenario.durationMs,
    rate: scenario.rate,
    burstOnMs: scenario.burst?.onMs ?? 0,
    burstOffMs: scenario.burst?.offMs ?? 0,
  });
  const { result } = (await message('done')) as { result: LoadResult };
  const loadSeconds = (result.endedAt - result.startedAt) / 1000;
  const cores = {
    sluice: (cpuSeconds(sluice.pid) - cpuBefore.sluice) / loadSeconds,
    loadgen: (cpuSeconds(loadgen.pid) - cpuBefore.loadgen) / loadSeconds,
    s3rver: (cpuSeconds(s3Process?.pid) - cpuBefore.s3) / loadSeconds,
  };

  let drainStart = Date.now();
  if (scenario.s3Late) {
    s3Process = await startS3(path.join(dir, 's3'), s3Port);
    drainStart = Date.now();
  }
  // drained: nothing left in the buffer, nothing in flight
  const drainDeadline = Date.now() + 600_000;
  let state = await ready(port);
  while (Date.now() < drainDeadline && (state.buffer.chunks > 0 || state.outputs[0]!.pending_batches > 0)) {
    await sleep(250);
    state = await ready(port);
    if (scenario.s3Late) continue;
    await listKeys(client, (key) => {
      if (!firstSeen.has(key)) firstSeen.set(key, Date.now());
    }).catch(() => undefined);
  }
  const drainedAt = Date.now();
  await listKeys(client, (key) => {
    if (!firstSeen.has(key)) firstSeen.set(key, drainedAt);
  });
  sampling = false;
  await sampler;
  const peakRss = rssMiB(sluice.pid!, 'VmHWM');
  const { objects, retries } = { objects: state.outputs[0]!.delivered.objects, retries: state.outputs[0]!.retries };

  // read every object back: each acknowledged decision exactly once?
  const seen = new Map<string, number>();
  const e2e: number[] = [];
  const idPattern = new RegExp(`"decision_id":"${run}-(\\d+)-(\\d+)"`, 'g');
  let objectBytes = 0;
  const parquet = format === 'parquet' ? await parquetIds(path.join(dir, 'read-back')) : undefined;
  for (const [key, visibleAt] of firstSeen) {
    const res = await client.send(new GetObjectCommand({ Bucket: 'logs', Key: key }));
    const body = Buffer.from(await res.Body!.transformToByteArray());
    objectBytes += body.length;
    const text = parquet ? await parquet.ids(body) : gunzipSync(body).toString('utf8');
    for (const m of text.matchAll(idPattern)) {
      const id = `${m[1]}-${m[2]}`;
      seen.set(id, (seen.get(id) ?? 0) + 1);
      const ackedAt = result.ackTimes[Number(m[1])]!;
      if (ackedAt > 0 && Number(m[2]) === 0) e2e.push(visibleAt - ackedAt);
    }
  }
  let missing = 0;
  let duplicates = 0;
  result.ackTimes.forEach((ackedAt, chunk) => {
    if (ackedAt === 0) return;
    for (let i = 0; i < perChunk; i++) {
      const n = seen.get(`${chunk}-${i}`) ?? 0;
      if (n === 0) missing++;
      if (n > 1) duplicates += n - 1;
    }
  });
  const landed = [...seen.values()].reduce((a, b) => a + b, 0);
  parquet?.close();

  sluice.kill('SIGTERM');
  s3Process?.kill('SIGTERM');
  loadgen.kill();
  await sleep(500);
  rmSync(dir, { recursive: true, force: true });

  const ingestSeconds = (result.endedAt - result.startedAt) / 1000;
  // The last batches wait up to max_age for more decisions after the load stops: that wait is the freshness
  // bound, by design, not delivery falling behind. What is left after it is counted: a delivery that keeps up
  // lands everything within max_age (plus one upload) of the last acknowledgement.
  const tailMs = drainedAt - result.endedAt;
  const landedSeconds = (drainedAt - result.startedAt - Math.min(tailMs, MAX_AGE_MS)) / 1000;
  return {
    scenario: scenario.name,
    format,
    bytesPerDecision: objectBytes / Math.max(1, landed),
    description: scenario.description,
    acknowledged: result.ackedDecisions,
    ackedPerSec: result.ackedDecisions / ingestSeconds,
    landed,
    landedPerSec: scenario.s3Late ? landed / ((drainedAt - drainStart) / 1000) : landed / landedSeconds,
    missing,
    duplicates,
    latencyMs: {
      p50: percentile(result.latenciesMs, 0.5),
      p99: percentile(result.latenciesMs, 0.99),
      max: Math.max(0, ...result.latenciesMs),
    },
    peakRssMiB: peakRss,
    objects,
    putsPerMillion: ((objects + retries) / Math.max(1, landed)) * 1e6,
    e2eMs: scenario.s3Late ? { p50: 0, p99: 0 } : { p50: percentile(e2e, 0.5), p99: percentile(e2e, 0.99) },
    rejected: result.rejected,
    cores,
    drainPerSec: scenario.s3Late ? landed / ((drainedAt - drainStart) / 1000) : undefined,
    tailSeconds: scenario.s3Late ? undefined : tailMs / 1000,
    ceilingRatio: 0,
    timeline: result.timeline,
    latencyTimeline: result.latencyTimeline,
    rssTimeline,
  };
}

/**
 * The decision ids of Parquet objects, read with DuckDB (a devDependency) as the text `"decision_id":"<id>"`
 * per decision, so that they are counted as the NDJSON objects' are.
 */
async function parquetIds(scratch: string): Promise<{ ids(body: Buffer): Promise<string>; close(): void }> {
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
  const conn = await instance.connect();
  mkdirSync(scratch, { recursive: true });
  const file = path.join(scratch, 'object.parquet');
  return {
    ids: async (body) => {
      writeFileSync(file, body);
      const rows = (await conn.runAndReadAll(`SELECT decision_id FROM read_parquet('${file}')`)).getRows();
      return rows.map(([id]) => `"decision_id":${JSON.stringify(id)}`).join('\n');
    },
    close: () => {
      conn.closeSync();
      instance.closeSync();
    },
  };
}

async function listKeys(client: S3Client, onKey: (key: string) => void): Promise<void> {
  let token: string | undefined;
  for (let page = 0; page < 10_000; page++) {
    const res = await client.send(new ListObjectsV2Command({ Bucket: 'logs', ContinuationToken: token }));
    for (const o of res.Contents ?? []) onKey(o.Key!);
    if (!res.IsTruncated) return;
    token = res.NextContinuationToken;
  }
}

function table(results: ScenarioResult[], ceiling: number): string {
  const n = (v: number) => Math.round(v).toLocaleString('en');
  const ms = (v: number) => v.toFixed(1);
  const rows = results.map(
    (r) =>
      `| ${r.scenario} | ${r.format === 'parquet' ? 'Parquet (zstd)' : 'NDJSON (gzip)'} | ${r.bytesPerDecision.toFixed(1)} | ${n(r.acknowledged)} | ${n(r.ackedPerSec)} | ${n(r.landedPerSec)} | ${ms(r.latencyMs.p50)} / ${ms(r.latencyMs.p99)} / ${ms(r.latencyMs.max)} | ${r.peakRssMiB.toFixed(0)} | ${r.putsPerMillion.toFixed(1)} | ${r.scenario === 'backlog' ? '-' : `${n(r.e2eMs.p50)} / ${n(r.e2eMs.p99)}`} | ${r.missing} / ${r.duplicates} | ${(r.ceilingRatio * 100).toFixed(0)} % | ${
        Object.entries(r.rejected)
          .map(([k, v]) => `${k}: ${v}`)
          .join(', ') || '-'
      } |`,
  );
  return [
    `Machine ceiling (gunzip + JSON.parse, one process): ${n(ceiling)} decisions/s`,
    '',
    '| scenario | format | bytes/decision | acknowledged | acked/s | landed/s | ingest ms p50 / p99 / max | peak RSS MiB | PUT per M | ack->visible ms p50 / p99 | missing / dup | of ceiling | non-2xx |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    ...results.map(
      (r) =>
        `- ${r.scenario} (${r.format}): ${r.description}${r.drainPerSec ? `; drain ${n(r.drainPerSec)} decisions/s` : ''}${r.tailSeconds !== undefined ? `; last object ${r.tailSeconds.toFixed(1)} s after the last acknowledgement (max_age ${MAX_AGE_MS / 1000} s)` : ''}; CPU cores while loaded: sluice ${r.cores.sluice.toFixed(2)}, load generator ${r.cores.loadgen.toFixed(2)}, s3rver ${r.cores.s3rver.toFixed(2)}`,
    ),
  ].join('\n');
}

const names = args
  .scenario!.split(',')
  .map((s) => s.trim())
  .filter(Boolean);
for (const name of names)
  if (!SCENARIOS[name]) throw new Error(`unknown scenario ${name}; known: ${Object.keys(SCENARIOS).join(', ')}`);
const perChunk = decisionsPerChunk(chunkBytes);
const ceiling = machineCeiling(perChunk);
console.log(
  `machine ceiling: ${Math.round(ceiling).toLocaleString('en')} decisions/s (gunzip + JSON.parse, one process)`,
);
const results: ScenarioResult[] = [];
for (const name of names) {
  for (const format of FORMATS) {
    const r = await runScenario(SCENARIOS[name]!, format);
    r.ceilingRatio = r.ackedPerSec / ceiling;
    results.push(r);
  }
}
mkdirSync(RESULTS, { recursive: true });
const markdown = table(results, ceiling);
const meta = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: (await import('node:os')).cpus().length,
  args,
};
writeFileSync(path.join(RESULTS, 'latest.json'), JSON.stringify({ ...meta, ceiling, results }, null, 2));
writeFileSync(path.join(RESULTS, 'latest.md'), `# Benchmark ${meta.date}\n\n${markdown}\n`);
// scenarios run in two formats are two series of the chart
const series = results.map((r) => (FORMATS.length > 1 ? { ...r, scenario: `${r.scenario} (${r.format})` } : r));
writeFileSync(path.join(RESULTS, 'latest.svg'), await renderChart(series));
console.log(`\n${markdown}\n\nwritten: bench/results/latest.json, latest.md, latest.svg`);
process.exit(results.every((r) => r.missing === 0) ? 0 : 1);
