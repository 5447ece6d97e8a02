/**
 * The reliability suite's scenarios, each a function with a size parameter. test/reliability.test.ts runs the
 * short form (part of `npm test`) and, with RELIABILITY=long (`npm run test:reliability`), the long form,
 * which also prints a summary table.
 *
 * Everything runs for real on 127.0.0.1: the built `sluice serve` (SluiceProcess), s3rver (TestS3), and for
 * S3 faults a proxy in between (FaultProxy) that forwards to s3rver. Every loop is bounded in count and time.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync, gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { FaultProxy } from './helpers/fault-proxy.js';
import { decision, decisions, postDecisions } from './helpers/opa.js';
import { decodeObject, S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { SluiceProcess, tempDir, type ReadyStatus } from './helpers/sluice.js';
import { linesUnder } from './helpers/files.js';

// ---------------------------------------------------------------------------------------------------------
// Sizes

export interface Sizes {
  crashLoop: CrashLoopOptions;
  s3Faults: S3FaultsOptions;
  backpressure: BackpressureOptions;
  badInput: BadInputOptions;
  hostileStream: HostileStreamOptions;
}

export const SHORT: Sizes = {
  crashLoop: { kills: 3, killAfterMs: [0, 1200], settleMs: 800 },
  s3Faults: { faultSeconds: 4, goneSeconds: 3, stallMs: [1500, 2500], minEachFault: 2 },
  backpressure: { downSeconds: 2, upSeconds: 2 },
  badInput: { runs: 200 },
  hostileStream: { seconds: 4 },
};

export const LONG: Sizes = {
  crashLoop: { kills: 10, killAfterMs: [0, 3000], settleMs: 2000 },
  s3Faults: { faultSeconds: 20, goneSeconds: 30, stallMs: [2000, 8000], minEachFault: 10 },
  backpressure: { downSeconds: 10, upSeconds: 5 },
  badInput: { runs: 2000 },
  hostileStream: { seconds: 30 },
};

// ---------------------------------------------------------------------------------------------------------
// Results

export interface ScenarioResult {
  scenario: string;
  /** Decisions acknowledged with 200 (for badInput: decisions of the requests that were valid and accepted). */
  acknowledged: number;
  /** Acknowledged decisions not in the bucket at the end. */
  missing: number | null;
  /** Decision ids found in more than one copy in the bucket. */
  duplicates: number | null;
  /** `/ready` outputs[0].retries of the last process. */
  retries: number | null;
  /** From the moment the backlog can go out (load stopped, S3 back) until the buffer is empty. */
  drainMs: number | null;
  notes: Record<string, string | number | boolean>;
  /** Set by the runner once the scenario's assertions passed or failed. */
  passed?: boolean;
}

export function formatSummary(results: ScenarioResult[]): string {
  const head = ['scenario', 'result', 'acknowledged', 'missing', 'duplicates', 'retries', 'drain time', 'notes'];
  const rows = results.map((r) => [
    r.scenario,
    r.passed === undefined ? '-' : r.passed ? 'pass' : 'FAIL',
    String(r.acknowledged),
    r.missing === null ? '-' : String(r.missing),
    r.duplicates === null ? '-' : String(r.duplicates),
    r.retries === null ? '-' : String(r.retries),
    r.drainMs === null ? '-' : `${(r.drainMs / 1000).toFixed(2)} s`,
    Object.entries(r.notes)
      .map(([k, v]) => `${k}=${v}`)
      .join(' '),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i <= 1 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------------------
// Shared pieces

/** Where a scenario registers its cleanups: node:test's `t.after`, so processes are stopped even on failure. */
export interface Scope {
  after(fn: () => unknown): void;
  diagnostic?(message: string): void;
  /** Receives a scenario's figures before its assertions run, so a failed scenario is in the summary too. */
  report?(result: ScenarioResult): void;
}

type Ready = ReadyStatus & {
  buffer: ReadyStatus['buffer'] & { oldest_age_seconds: number };
  outputs: Array<ReadyStatus['outputs'][number] & { retries: number; cursor: number }>;
};

function publish(scope: Scope, result: ScenarioResult): void {
  scope.report?.(result);
  scope.diagnostic?.(`${result.scenario}: ${JSON.stringify(result)}`);
}

/** Runs the registered cleanups last-in first-out, once, from a single `scope.after`. */
function cleanups(scope: Scope): (fn: () => unknown) => void {
  const stack: Array<() => unknown> = [];
  scope.after(async () => {
    for (const fn of stack.reverse()) {
      try {
        await fn();
      } catch {
        // the next cleanup still runs
      }
    }
  });
  return (fn) => stack.push(fn);
}

async function startS3(defer: (fn: () => unknown) => void): Promise<TestS3> {
  const s3 = new TestS3();
  defer(() => rmSync(s3.directory, { recursive: true, force: true }));
  defer(() => s3.stop());
  await s3.start();
  return s3;
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
    batch: { max_age: '200ms', max_events: 500 },
    retry: { initial_backoff: '50ms', max_backoff: '1s' },
    ...extra,
  };
}

/** A sluice process on a data_dir of its own, killed (if still running) and removed at cleanup. */
function sluice(defer: (fn: () => unknown) => void, config: Record<string, unknown>): { proc: SluiceProcess } {
  const cwd = tempDir('sluice-rel-');
  const dataDir = path.join(cwd, 'data');
  const proc = new SluiceProcess({ cwd, config: { data_dir: dataDir, shutdown_timeout: '10s', ...config } });
  defer(() => rmSync(cwd, { recursive: true, force: true }));
  defer(() => proc.kill9());
  return { proc };
}

async function ready(proc: SluiceProcess): Promise<Ready> {
  return (await proc.ready()) as Ready;
}

/** Everything acknowledged went out: the buffer is empty and no batch is pending. Returns the time it took. */
async function waitIdle(proc: SluiceProcess, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  await proc.until(
    'the buffer to drain (buffer.chunks 0, pending_batches 0)',
    async () => {
      const r = await ready(proc);
      return r.buffer.chunks === 0 && r.outputs.every((o) => o.pending_batches === 0);
    },
    timeoutMs,
  );
  return performance.now() - t0;
}

function between([min, max]: [number, number]): number {
  return min + Math.random() * (max - min);
}

/** `promise`, or `undefined` after `ms` (the promise goes on; its result is dropped). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  const ac = new AbortController();
  try {
    return await Promise.race([promise, sleep(ms, undefined, { signal: ac.signal, ref: false })]);
  } finally {
    ac.abort();
  }
}

/** The test's own reads of s3rver, retried a few times: s3rver answers 500 now and then under load. */
async function retried<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= 5) throw err;
      await sleep(200 * attempt);
    }
  }
}

const KEY_FORMAT =
  /^[A-Za-z0-9._-]{1,128}\/dt=\d{4}-\d{2}-\d{2}\/hour=\d{2}\/archive-[0-9a-f]{8}-\d{16}-\d{16}\.ndjson\.gz$/;

/** The bucket as seen by the test: every decision_id and how often it occurs, read incrementally. */
class BucketView {
  private readonly ids = new Map<string, string[]>();
  badKeys: string[] = [];

  constructor(private readonly s3: TestS3) {}

  get objects(): number {
    return this.ids.size;
  }

  async counts(): Promise<Map<string, number>> {
    for (const key of await retried(() => this.s3.keys())) {
      if (this.ids.has(key)) continue; // keys are written once (a rewrite carries the same bytes)
      if (!KEY_FORMAT.test(key)) this.badKeys.push(key);
      const { body } = await retried(() => this.s3.object(key));
      this.ids.set(
        key,
        decodeObject(key, body).map((d) => String(d.decision_id)),
      );
    }
    const counts = new Map<string, number>();
    for (const list of this.ids.values()) for (const id of list) counts.set(id, (counts.get(id) ?? 0) + 1);
    return counts;
  }

  /** Polls until every acknowledged id is in the bucket (or the time is up), then counts what is wrong. */
  async verify(
    acked: Set<string>,
    timeoutMs: number,
  ): Promise<{
    missing: number;
    duplicates: number;
    unacknowledged: number;
    inBucket: number;
    missingSample: string[];
  }> {
    const deadline = Date.now() + timeoutMs;
    let counts = new Map<string, number>();
    let missing: string[] = [];
    for (let i = 0; i < 10_000; i++) {
      counts = await this.counts();
      missing = [...acked].filter((id) => !counts.has(id));
      if (missing.length === 0 || Date.now() > deadline) break;
      await sleep(250);
    }
    let duplicates = 0;
    let unacknowledged = 0;
    let inBucket = 0;
    for (const [id, n] of counts) {
      inBucket += n;
      if (n > 1) duplicates++;
      if (!acked.has(id)) unacknowledged++;
    }
    return { missing: missing.length, duplicates, unacknowledged, inBucket, missingSample: missing.slice(0, 5) };
  }
}

/**
 * Posts batches of decisions concurrently, the way OPA does, and records every decision_id acknowledged with
 * 200. A failed request is not retried with the same decisions (so a duplicate in the bucket is Sluice's, not
 * the client's); its ids count as `unacknowledged` if they show up.
 */
export class Loader {
  readonly acked = new Set<string>();
  requests = 0;
  readonly statuses = new Map<string, number>();
  /** 200 answers whose `accepted` was not the number of decisions sent. */
  wrongCounts = 0;
  private stopping = false;
  private workers: Array<Promise<void>> = [];

  constructor(
    private readonly target: () => string,
    private readonly opts: {
      concurrency: number;
      batch: [number, number];
      partitions: string[];
      maxMs: number;
      maxRequests: number;
      /** Each worker starts a request at most this often (0: back to back). */
      intervalMs?: number;
    },
  ) {}

  start(): this {
    const deadline = Date.now() + this.opts.maxMs;
    for (let i = 0; i < this.opts.concurrency; i++) this.workers.push(this.work(deadline));
    return this;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.workers);
  }

  get failures(): number {
    let n = 0;
    for (const [status, count] of this.statuses) if (status !== '200') n += count;
    return n;
  }

  private count(status: string): void {
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
  }

  private async work(deadline: number): Promise<void> {
    let next = Date.now();
    while (!this.stopping && Date.now() < deadline && this.requests < this.opts.maxRequests) {
      const interval = this.opts.intervalMs ?? 0;
      if (interval > 0) {
        next += interval;
        if (next > Date.now()) await sleep(next - Date.now());
        else next = Date.now();
      }
      this.requests++;
      const size = Math.round(between(this.opts.batch));
      const batch = decisions(size);
      const partition = this.opts.partitions[Math.floor(Math.random() * this.opts.partitions.length)];
      let res: Response | undefined;
      let text: string;
      try {
        res = await within(
          postDecisions(this.target(), batch, { partition: partition === 'default' ? undefined : partition }),
          15_000,
        );
        if (!res) {
          this.count('timeout');
          continue;
        }
        text = await res.text();
      } catch {
        // only the request and the reading of its answer: the connection refused, reset or cut
        this.count('connection error');
        await sleep(20);
        continue;
      }
      this.count(String(res.status));
      if (res.status === 200) {
        // a 200 whose body is not {accepted: <size>} (not JSON, cut, another count) is a wrong answer, counted
        // as such and asserted on, never taken for a connection error; the decisions count as acknowledged
        let accepted: unknown;
        try {
          accepted = (JSON.parse(text) as { accepted?: unknown }).accepted;
        } catch {
          accepted = undefined;
        }
        if (accepted !== size) this.wrongCounts++;
        for (const d of batch) this.acked.add(d.decision_id as string);
      } else {
        await sleep(20);
      }
    }
  }
}

function statusSummary(statuses: Map<string, number>): string {
  return [...statuses]
    .sort()
    .map(([s, n]) => `${s}:${n}`)
    .join(',');
}

// ---------------------------------------------------------------------------------------------------------
// crashLoop

export interface CrashLoopOptions {
  kills: number;
  /** Each kill -9 comes at a random moment this long after the process is up. */
  killAfterMs: [number, number];
  /** Load on the last process before the loader stops. */
  settleMs: number;
}

/**
 * Under load, kill -9 the server `kills` times at random moments, restarting it each time on the same
 * data_dir; afterwards every acknowledged decision_id must be in the bucket.
 */
export async function crashLoop(scope: Scope, opts: CrashLoopOptions): Promise<ScenarioResult> {
  const defer = cleanups(scope);
  const s3 = await startS3(defer);
  const { proc } = sluice(defer, { outputs: [s3Output(s3.endpoint, { request_timeout: '5s' })] });
  await proc.start();
  const loader = new Loader(() => proc.url, {
    concurrency: 8,
    batch: [1, 40],
    partitions: ['default', 'team-a', 'team-b'],
    maxMs: opts.kills * (opts.killAfterMs[1] + 5_000) + opts.settleMs + 30_000,
    maxRequests: 1_000_000,
  }).start();
  defer(() => loader.stop());

  const exits: Array<number | null> = [];
  const logs: string[] = [];
  const restartMs: number[] = [];
  for (let k = 0; k < opts.kills; k++) {
    await sleep(between(opts.killAfterMs));
    exits.push(await proc.kill9());
    logs.push(proc.output);
    const t0 = performance.now();
    await proc.start();
    restartMs.push(performance.now() - t0);
  }
  await sleep(opts.settleMs);
  await loader.stop();
  const acknowledged = loader.acked.size;

  const bucket = new BucketView(s3);
  const drainMs = await waitIdle(proc, 30_000).catch(() => null);
  const verdict = await bucket.verify(loader.acked, 30_000);
  const { retries } = (await ready(proc)).outputs[0]!;
  const exitCode = await proc.stop('SIGTERM', 15_000);

  const result: ScenarioResult = {
    scenario: 'crashLoop',
    acknowledged,
    missing: verdict.missing,
    duplicates: verdict.duplicates,
    retries,
    drainMs,
    notes: {
      kills: opts.kills,
      requests: loader.requests,
      statuses: statusSummary(loader.statuses),
      objects: bucket.objects,
      unacked_in_bucket: verdict.unacknowledged,
      max_restart_ms: Math.round(Math.max(0, ...restartMs)),
    },
  };
  publish(scope, result);

  const context = () =>
    `result: ${JSON.stringify(result)}\nmissing (sample): ${verdict.missingSample.join(' ')}\n--- last sluice output ---\n${proc.output.slice(-3000)}`;
  assert.ok(
    exits.every((code) => code === null),
    `every kill -9 ended the process by the signal: ${exits}`,
  );
  assert.ok(acknowledged > 0 && loader.failures > 0, `the load ran and met the kills: ${context()}`);
  assert.equal(
    loader.wrongCounts,
    0,
    `a 200 was not {accepted: <the request's count>} (a wrong count or a malformed body): ${context()}`,
  );
  assert.equal(
    verdict.missing,
    0,
    `acknowledged decisions missing from the bucket after ${opts.kills} kill -9: ${context()}`,
  );
  assert.deepEqual(
    bucket.badKeys,
    [],
    'object keys follow <partition>/dt=/hour=/<output>-<bufferid>-<first>-<last>.ndjson.gz',
  );
  assert.equal(verdict.duplicates, 0, `decisions written to the bucket more than once: ${context()}`);
  assert.notEqual(drainMs, null, `the buffer drained after the last restart: ${context()}`);
  assert.equal(exitCode, 0, `SIGTERM after the crash loop exits 0: ${context()}`);
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// s3Faults

export interface S3FaultsOptions {
  /** Load with faults for at least this long (and until each kind of fault happened `minEachFault` times). */
  faultSeconds: number;
  /** Then S3 is gone for this long (first half refusing connections, second half closing them). */
  goneSeconds: number;
  stallMs: [number, number];
  minEachFault: number;
}

/** Traffic through the fault proxy: 503 SlowDown, resets mid-upload, stalls, then S3 gone; nothing lost. */
export async function s3Faults(scope: Scope, opts: S3FaultsOptions): Promise<ScenarioResult> {
  const defer = cleanups(scope);
  const s3 = await startS3(defer);
  const proxy = await new FaultProxy(s3.port).start();
  defer(() => proxy.stop());
  const { proc } = sluice(defer, { outputs: [s3Output(proxy.endpoint, { request_timeout: '5s' })] });
  await proc.start();
  const totalMs = (opts.faultSeconds + opts.goneSeconds) * 1000;
  const loader = new Loader(() => proc.url, {
    concurrency: 4,
    batch: [5, 40],
    partitions: ['default', 'p1', 'p2', 'p3'],
    maxMs: totalMs + 60_000,
    maxRequests: 1_000_000,
    intervalMs: 20,
  }).start();
  defer(() => loader.stop());

  // 1. faults on a share of the requests
  proxy.set({ slowDown: 0.25, reset: 0.15, stall: 0.1, stallMs: opts.stallMs });
  const faultStart = Date.now();
  const enough = () => {
    const c = proxy.counts;
    return (
      Math.min(c.slowDown, c.resets, c.stalls) >= opts.minEachFault &&
      Date.now() - faultStart >= opts.faultSeconds * 1000
    );
  };
  const errorCodes = new Set<string>();
  const sampleErrors = async () => {
    const error = (await ready(proc)).outputs[0]!.last_error;
    if (error) errorCodes.add(error.code ?? error.message.slice(0, 40));
  };
  for (let i = 0; i < 10_000 && !enough() && Date.now() - faultStart < opts.faultSeconds * 1000 + 30_000; i++) {
    await sampleErrors();
    await sleep(100);
  }
  const afterFaults = { ...proxy.counts };
  const faultCodes = [...errorCodes];

  // 2. S3 gone; ingest must go on
  const ackedBeforeGone = loader.acked.size;
  proxy.set({});
  await proxy.gone('refuse');
  const goneStart = Date.now();
  let sawRetrying = false;
  let switched = false;
  for (let i = 0; i < 10_000 && Date.now() - goneStart < opts.goneSeconds * 1000; i++) {
    if (!switched && Date.now() - goneStart >= (opts.goneSeconds * 1000) / 2) {
      switched = true;
      await proxy.gone('close');
    }
    if (!sawRetrying) sawRetrying = (await ready(proc)).outputs[0]!.state === 'retrying';
    await sampleErrors();
    await sleep(100);
  }
  const ackedDuringGone = loader.acked.size - ackedBeforeGone;

  // 3. S3 back, load stopped: the backlog drains
  await loader.stop();
  await proxy.back();
  const drainMs = await waitIdle(proc, 60_000).catch(() => null);
  const bucket = new BucketView(s3);
  const verdict = await bucket.verify(loader.acked, 30_000);
  const final = (await ready(proc)).outputs[0]!;
  const exitCode = await proc.stop('SIGTERM', 15_000);

  const result: ScenarioResult = {
    scenario: 's3Faults',
    acknowledged: loader.acked.size,
    missing: verdict.missing,
    duplicates: verdict.duplicates,
    retries: final.retries,
    drainMs,
    notes: {
      gone_s: opts.goneSeconds,
      slowdown: afterFaults.slowDown,
      resets: afterFaults.resets,
      stalls: afterFaults.stalls,
      dropped_while_gone: proxy.counts.dropped,
      forwarded: proxy.counts.forwarded,
      acked_while_gone: ackedDuringGone,
      errors_seen: [...errorCodes].sort().join(','),
      objects: bucket.objects,
      statuses: statusSummary(loader.statuses),
    },
  };
  publish(scope, result);

  const context = () =>
    `result: ${JSON.stringify(result)}\nmissing (sample): ${verdict.missingSample.join(' ')}\n--- sluice output ---\n${proc.output.slice(-3000)}`;
  assert.ok(
    Math.min(afterFaults.slowDown, afterFaults.resets, afterFaults.stalls) >= opts.minEachFault,
    `the proxy injected every kind of fault at least ${opts.minEachFault} times: ${JSON.stringify(afterFaults)}`,
  );
  assert.ok(
    faultCodes.includes('SlowDown'),
    `/ready reported the proxy's 503 as an S3 SlowDown error (saw ${faultCodes}): ${context()}`,
  );
  assert.equal(loader.failures, 0, `ingest answers 200 whatever S3 does: ${context()}`);
  assert.ok(ackedDuringGone > 0, `ingest goes on while S3 is gone: ${context()}`);
  assert.ok(sawRetrying, `/ready shows the output retrying while S3 is gone: ${context()}`);
  assert.ok(
    final.retries >= afterFaults.slowDown + afterFaults.resets,
    `every 503 SlowDown and every reset costs at least one retry (retries ${final.retries}): ${context()}`,
  );
  assert.equal(verdict.missing, 0, `acknowledged decisions missing from the bucket after S3 faults: ${context()}`);
  assert.equal(verdict.duplicates, 0, `decisions written to the bucket more than once: ${context()}`);
  assert.deepEqual(bucket.badKeys, []);
  assert.notEqual(drainMs, null, `the backlog drained once S3 came back: ${context()}`);
  assert.equal(final.state, 'ok', `the output is ok again: ${context()}`);
  assert.equal(exitCode, 0);
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// backpressure

export interface BackpressureOptions {
  /** S3 stays stopped this long (at least; and until clients got 429s). */
  downSeconds: number;
  /** Load goes on this long after S3 is back. */
  upSeconds: number;
}

/**
 * A small buffer.max_bytes and a stopped S3: clients get 429 with Retry-After; clients that retry like OPA
 * (the same chunk, with backoff) lose nothing acknowledged, and ingest resumes once S3 is back.
 */
export async function backpressure(scope: Scope, opts: BackpressureOptions): Promise<ScenarioResult> {
  const defer = cleanups(scope);
  const s3 = await startS3(defer);
  await s3.stop();
  const maxBytes = 256 * 1024;
  const { proc } = sluice(defer, {
    buffer: { max_bytes: maxBytes },
    outputs: [s3Output(s3.endpoint, { request_timeout: '5s' })],
  });
  await proc.start();

  const acked = new Set<string>();
  const stats = { ok: 0, tooMany: 0, badTooMany: [] as string[], other: new Map<string, number>(), unfinished: 0 };
  let upAt = 0;
  let firstOkAfterUp = 0;
  let stopping = false;
  const hardDeadline = Date.now() + (opts.downSeconds + opts.upSeconds) * 1000 + 60_000;
  /** One OPA: keeps its chunk and retries it with exponential backoff and jitter until it is accepted. */
  const opa = async (): Promise<void> => {
    while (!stopping && Date.now() < hardDeadline) {
      const batch = decisions(20);
      let done = false;
      for (let attempt = 0; attempt < 1_000 && Date.now() < hardDeadline; attempt++) {
        try {
          const res = await postDecisions(proc.url, batch);
          const text = await res.text();
          if (res.status === 200) {
            for (const d of batch) acked.add(d.decision_id as string);
            stats.ok++;
            if (upAt > 0 && firstOkAfterUp === 0) firstOkAfterUp = Date.now();
            done = true;
            break;
          }
          if (res.status === 429) {
            stats.tooMany++;
            const body = JSON.parse(text) as { status?: unknown; message?: unknown; data?: unknown };
            if (
              !/^\d+$/.test(res.headers.get('retry-after') ?? '') ||
              body.status !== 429 ||
              typeof body.message !== 'string' ||
              typeof body.data !== 'object'
            ) {
              stats.badTooMany.push(`retry-after=${res.headers.get('retry-after')} body=${text}`);
            }
          } else {
            stats.other.set(String(res.status), (stats.other.get(String(res.status)) ?? 0) + 1);
          }
        } catch (err) {
          stats.other.set(
            `error ${(err as Error).message}`,
            (stats.other.get(`error ${(err as Error).message}`) ?? 0) + 1,
          );
        }
        await sleep(Math.random() * Math.min(1_000, 100 * 2 ** attempt));
      }
      if (!done) stats.unfinished++;
    }
  };
  const clients = Array.from({ length: 3 }, () => opa());
  defer(async () => {
    stopping = true;
    await Promise.all(clients);
  });

  // S3 down: the buffer fills up and ingest pushes back, never beyond buffer.max_bytes
  let maxSeen = 0;
  const downStart = Date.now();
  for (let i = 0; i < 10_000 && Date.now() - downStart < opts.downSeconds * 1000 + 20_000; i++) {
    maxSeen = Math.max(maxSeen, (await ready(proc)).buffer.bytes);
    if (stats.tooMany >= 10 && Date.now() - downStart >= opts.downSeconds * 1000) break;
    await sleep(100);
  }
  const tooManyWhileDown = stats.tooMany;
  const ackedWhileDown = acked.size;

  // S3 back: ingest resumes
  await s3.start();
  upAt = Date.now();
  for (let i = 0; i < 10_000 && Date.now() - upAt < opts.upSeconds * 1000; i++) {
    maxSeen = Math.max(maxSeen, (await ready(proc)).buffer.bytes);
    await sleep(100);
  }
  const resumeMs = firstOkAfterUp > 0 ? firstOkAfterUp - upAt : null;
  stopping = true;
  await Promise.all(clients);

  const drainMs = await waitIdle(proc, 30_000).catch(() => null);
  const bucket = new BucketView(s3);
  const verdict = await bucket.verify(acked, 30_000);
  const final = (await ready(proc)).outputs[0]!;
  const exitCode = await proc.stop('SIGTERM', 15_000);

  const result: ScenarioResult = {
    scenario: 'backpressure',
    acknowledged: acked.size,
    missing: verdict.missing,
    duplicates: verdict.duplicates,
    retries: final.retries,
    drainMs,
    notes: {
      max_bytes: maxBytes,
      max_buffer_bytes_seen: maxSeen,
      answers_429: stats.tooMany,
      answers_429_while_down: tooManyWhileDown,
      acked_while_down: ackedWhileDown,
      first_200_after_s3_back_ms: resumeMs ?? -1,
      unfinished_chunks: stats.unfinished,
      other: [...stats.other].map(([k, v]) => `${k}:${v}`).join(',') || 'none',
    },
  };
  publish(scope, result);

  const context = () => `result: ${JSON.stringify(result)}\n--- sluice output ---\n${proc.output.slice(-3000)}`;
  assert.ok(tooManyWhileDown >= 10, `with S3 stopped and a ${maxBytes}-byte buffer, clients get 429: ${context()}`);
  assert.deepEqual(
    stats.badTooMany.slice(0, 3),
    [],
    'every 429 carries Retry-After and a JSON {status, message, data}',
  );
  assert.ok(maxSeen <= maxBytes, `the buffer never holds more than buffer.max_bytes: ${context()}`);
  assert.ok(maxSeen >= maxBytes / 2, `the buffer filled up before pushing back: ${context()}`);
  assert.equal(stats.other.size, 0, `no answer but 200 and 429: ${context()}`);
  assert.ok(resumeMs !== null && acked.size > ackedWhileDown, `ingest resumed once S3 was back: ${context()}`);
  assert.equal(stats.unfinished, 0, `every chunk was accepted in the end: ${context()}`);
  assert.equal(verdict.missing, 0, `acknowledged decisions missing from the bucket: ${context()}`);
  assert.equal(verdict.duplicates, 0, `a chunk answered 429 and retried was stored twice: ${context()}`);
  assert.equal(verdict.unacknowledged, 0, `decisions of rejected requests reached the bucket: ${context()}`);
  assert.notEqual(drainMs, null, `the buffer drained: ${context()}`);
  assert.equal(exitCode, 0);
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// badInput

export interface BadInputOptions {
  runs: number;
  seed?: number;
}

const LIMITS = { maxBodyBytes: 1024 * 1024, maxDecodedBytes: 4 * 1024 * 1024 };
const PARTITION = /^[A-Za-z0-9._-]{1,128}$/;

/** One generated request. `path` is sent as is; `toString` keeps fast-check's reports short. */
interface Case {
  kind: string;
  path: string;
  /** The partition as the server decodes it (undefined: POST /logs), or 'unknown' for raw odd paths. */
  partition: string | undefined | 'unknown';
  contentEncoding: string | undefined;
  contentType: string | undefined;
  body: Buffer;
}

function show(c: Case): string {
  const head = c.body
    .subarray(0, 80)
    .toString('latin1')
    .replace(/[^\x20-\x7e]/g, '.');
  return (
    `{kind: ${c.kind}, path: ${JSON.stringify(c.path)}, content-encoding: ${JSON.stringify(c.contentEncoding)}, ` +
    `content-type: ${JSON.stringify(c.contentType)}, body: ${c.body.length} bytes "${head}${c.body.length > 80 ? '...' : ''}"}`
  );
}

/** What the README promises for a request: 200 with `accepted`, or a 4xx (with its code when it is certain). */
function expected(c: Case): { ok: true; accepted: number } | { ok: false; status?: number; why: string } {
  if (
    c.partition !== undefined &&
    c.partition !== 'unknown' &&
    (!PARTITION.test(c.partition) || c.partition === '.' || c.partition === '..')
  )
    return { ok: false, status: 400, why: 'partition' };
  // what a web page could send without a CORS preflight (text/plain, a form type, no type) and not gzip: 415
  const sentEncoding = (c.contentEncoding ?? '').trim().toLowerCase();
  const mediaType = (c.contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (sentEncoding !== 'gzip' && sentEncoding !== 'x-gzip' && mediaType !== 'application/json')
    return { ok: false, status: 415, why: 'content-type' };
  if (c.body.length > LIMITS.maxBodyBytes) return { ok: false, status: 413, why: 'body too large' };
  if (c.body.length === 0) return { ok: false, why: 'empty body' };
  const encoding = (c.contentEncoding ?? '').trim().toLowerCase();
  let json: Buffer;
  if (encoding === '' || encoding === 'identity') {
    json = c.body;
  } else if (encoding === 'gzip' || encoding === 'x-gzip') {
    try {
      json = gunzipSync(c.body, { maxOutputLength: LIMITS.maxDecodedBytes });
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError
        ? { ok: false, status: 413, why: 'decoded too large' }
        : { ok: false, status: 400, why: 'invalid gzip' };
    }
  } else {
    return { ok: false, status: 415, why: 'content-encoding' };
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(json);
  } catch {
    return { ok: false, status: 400, why: 'invalid utf-8' };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, status: 400, why: 'invalid json' };
  }
  if (!Array.isArray(value)) return { ok: false, status: 400, why: 'not an array' };
  if (nestingOf(text) - 1 > MAX_DECISION_DEPTH) return { ok: false, status: 400, why: 'a decision nests too deep' };
  if (!value.every((v) => v !== null && typeof v === 'object' && !Array.isArray(v)))
    return { ok: false, status: 400, why: 'element not an object' };
  return { ok: true, accepted: value.length };
}

/** The README's bound on a decision's nesting. */
const MAX_DECISION_DEPTH = 1000;

/** How deep valid JSON text nests (the top level counts 1), counted outside strings. */
function nestingOf(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') max = Math.max(max, ++depth);
    else if (c === '}' || c === ']') depth--;
  }
  return max;
}

function nested(depth: number, kind: 'arrays' | 'objects' | 'objects-newline' | 'truncated'): string {
  switch (kind) {
    case 'arrays':
      return '['.repeat(depth) + ']'.repeat(depth);
    case 'objects':
      return '[' + '{"a":'.repeat(depth) + '1' + '}'.repeat(depth) + ']';
    // a newline inside the element: Sluice re-serializes such a decision to keep one line per decision
    case 'objects-newline':
      return '[{"a":\n' + '{"a":'.repeat(depth - 1) + '1' + '}'.repeat(depth) + ']';
    case 'truncated':
      return '[' + '{"a":'.repeat(depth) + '1' + '}'.repeat(depth - 1);
  }
}

/** Made once: inflating them is what costs. */
const BOMBS = {
  zeros: gzipSync(Buffer.alloc(16 * 1024 * 1024)),
  jsonString: gzipSync(
    Buffer.concat([Buffer.from('[{"s":"'), Buffer.alloc(8 * 1024 * 1024, 0x61), Buffer.from('"}]')]),
  ),
  justUnder: gzipSync(
    Buffer.concat([Buffer.from('[{"s":"'), Buffer.alloc(LIMITS.maxDecodedBytes - 64, 0x61), Buffer.from('"}]')]),
  ),
};

function caseArbitrary(): fc.Arbitrary<Case> {
  const jsonText = (value: unknown, pretty: boolean) =>
    Buffer.from(JSON.stringify(value, null, pretty ? 2 : undefined));
  const decisionArb = fc
    .record({ id: fc.uuid(), extra: fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }) })
    .map(({ id, extra }) => ({ ...extra, ...decision({ decision_id: id }) }));

  // bodies as JSON text (before any content encoding)
  const bodies: fc.Arbitrary<{ kind: string; json: Buffer; gzipOnly?: boolean }> = fc.oneof(
    {
      weight: 3,
      arbitrary: fc.uint8Array({ maxLength: 2048 }).map((b) => ({ kind: 'random bytes', json: Buffer.from(b) })),
    },
    { weight: 3, arbitrary: fc.jsonValue().map((v) => ({ kind: 'random JSON', json: jsonText(v, false) })) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.array(fc.oneof(decisionArb, fc.jsonValue({ maxDepth: 3 })), { maxLength: 12 }), fc.boolean())
        .map(([v, pretty]) => ({ kind: 'array with non-objects', json: jsonText(v, pretty) })),
    },
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.array(decisionArb, { maxLength: 20 }), fc.boolean())
        .map(([v, pretty]) => ({ kind: pretty ? 'decisions (pretty)' : 'decisions', json: jsonText(v, pretty) })),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.constantFrom('arrays', 'objects', 'objects-newline', 'truncated' as const),
          fc.constantFrom(1_000, 1_001, 10_000, 100_000),
        )
        .map(([k, depth]) => ({ kind: `nested ${k} ${depth}`, json: Buffer.from(nested(depth, k)) })),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.integer({ min: 1, max: 3 * 1024 * 1024 }), fc.constantFrom('x', 'é', '\\"', '\\u0000'))
        .map(([n, unit]) => ({
          kind: `huge string ${n}`,
          json: Buffer.from(`[{"decision_id":"huge","s":"${unit.repeat(Math.ceil(n / unit.length))}"}]`),
        })),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.array(decisionArb, { minLength: 1, maxLength: 5 }),
          fc.nat(),
          fc.constantFrom(
            [0xff],
            [0xc0, 0x80],
            [0xed, 0xa0, 0x80],
            [0xe2, 0x82],
            [0xf4, 0x90, 0x80, 0x80],
            [0x80],
            [0xfe, 0xff],
          ),
        )
        .map(([v, at, bad]) => {
          // invalid UTF-8 inside a string value
          const text = JSON.stringify(v);
          const quote = text.indexOf('"', 1 + (at % Math.max(1, text.length - 2)));
          const i = quote < 0 ? 2 : quote + 1;
          return {
            kind: 'invalid UTF-8',
            json: Buffer.concat([Buffer.from(text.slice(0, i)), Buffer.from(bad), Buffer.from(text.slice(i))]),
          };
        }),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        { kind: 'gzip bomb (zeros)', json: BOMBS.zeros, gzipOnly: true },
        { kind: 'gzip bomb (JSON string)', json: BOMBS.jsonString, gzipOnly: true },
        { kind: 'gzip just under the limit', json: BOMBS.justUnder, gzipOnly: true },
      ),
    },
  );

  const encodings = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('gzip', undefined) },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        '',
        'identity',
        'GZIP',
        ' gzip ',
        'x-gzip',
        'deflate',
        'br',
        'zstd',
        'gzip, gzip',
        'gzip;q=1',
      ),
    },
    { weight: 1, arbitrary: fc.string({ maxLength: 20 }) }, // printable ASCII: what a header can carry
  );

  const partitions: fc.Arbitrary<{ path: string; partition: string | undefined | 'unknown' }> = fc.oneof(
    { weight: 6, arbitrary: fc.constant({ path: '/logs', partition: undefined }) },
    {
      weight: 3,
      arbitrary: fc.stringMatching(/^[A-Za-z0-9._-]{1,128}$/).map((p) => ({ path: `/logs/${p}`, partition: p })),
    },
    {
      weight: 3,
      arbitrary: fc
        .oneof(
          fc.string({ unit: 'grapheme', minLength: 1, maxLength: 140 }),
          fc.constantFrom('.', '..', 'a'.repeat(129), 'a b', 'ü', 'a/b', '%'),
        )
        .map((p) => ({ path: `/logs/${encodeURIComponent(p)}`, partition: p })),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom<{ path: string; partition: string | undefined | 'unknown' }>(
        // percent-encoding that does not decode, and a name longer than 128 once decoded: 400 like any bad name
        { path: '/logs/%zz', partition: '%zz' },
        { path: '/logs/%E0%A4%A', partition: '%E0%A4%A' },
        { path: `/logs/${'%41'.repeat(40)}`, partition: 'A'.repeat(40) },
        { path: '/logs/%00', partition: '\u0000' },
        { path: '/logs/..%2F..%2Fetc', partition: '../../etc' },
        { path: '/logs/p?x=%ff&y', partition: 'p' },
        { path: '/logs?p=1', partition: undefined },
        // what these route to is Fastify's business: any 4xx, or a 200 if the body is valid
        { path: '/logs//x', partition: 'unknown' },
        { path: '/logs/a/b', partition: 'unknown' },
        { path: '/LOGS', partition: 'unknown' },
      ),
    },
  );

  return fc
    .record({
      body: bodies,
      gzip: fc.boolean(),
      consistent: fc.boolean(),
      encoding: encodings,
      truncateAt: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { freq: 4 }),
      target: partitions,
      contentType: fc.constantFrom(
        'application/json',
        'application/json',
        undefined,
        'text/plain',
        'application/x-www-form-urlencoded',
      ),
    })
    .map(({ body, gzip, consistent, encoding, truncateAt, target, contentType }) => {
      // mostly the header says what the body is; sometimes it lies
      let contentEncoding = encoding;
      let bytes: Buffer;
      let kind = body.kind;
      if (body.gzipOnly) {
        bytes = body.json;
        if (consistent) contentEncoding = 'gzip';
      } else {
        const zip = consistent ? ['gzip', 'x-gzip', 'GZIP', ' gzip '].includes(encoding ?? '') : gzip;
        bytes = zip ? gzipSync(body.json) : body.json;
        if (zip && truncateAt !== null) {
          bytes = bytes.subarray(0, Math.floor(bytes.length * truncateAt));
          kind += ' (truncated gzip)';
        }
      }
      return { kind, path: target.path, partition: target.partition, contentEncoding, contentType, body: bytes };
    })
    .map((c) => Object.assign(c, { [fc.toStringMethod]: () => show(c) }));
}

/**
 * Keep-alive, as OPA's client: a server that answers before reading the whole body then reads the rest
 * instead of closing (with `Connection: close` it would close, and the answer could be lost to a reset).
 */
const KEEP_ALIVE = new http.Agent({ keepAlive: true, maxSockets: 1 });

/**
 * POSTs exactly these bytes and headers (fetch would refuse some of them). The body goes out in pieces and
 * stops as soon as an answer arrives: a server may answer (413, or 400 for a partition) before it read the
 * body, and writing on would only reset the connection under the answer. `reset` tells when it was lost anyway.
 */
function rawPost(
  url: string,
  c: Case,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string } | { reset: string }> {
  const { port } = new URL(url);
  const headers: Record<string, string | number> = { 'content-length': c.body.length };
  if (c.contentEncoding !== undefined) headers['content-encoding'] = c.contentEncoding;
  if (c.contentType !== undefined) headers['content-type'] = c.contentType;
  return new Promise((resolve, reject) => {
    let answered = false;
    let settled = false;
    const settle = (fn: () => void) => {
      if (!settled) {
        settled = true;
        fn();
      }
    };
    const req = http.request(
      {
        host: '127.0.0.1',
        port: Number(port),
        method: 'POST',
        path: c.path,
        headers,
        agent: KEEP_ALIVE,
        timeout: 30_000,
      },
      (res) => {
        answered = true;
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => {
          settle(() =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString('utf8') }),
          );
          req.destroy();
        });
        res.on('error', (err) => settle(() => resolve({ reset: `${err.message} while reading the answer` })));
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', (err) =>
      settle(() =>
        /ECONNRESET|EPIPE|socket hang up/.test(err.message) ? resolve({ reset: err.message }) : reject(err),
      ),
    );
    void (async () => {
      const piece = 64 * 1024;
      for (let off = 0; off < c.body.length && !answered && !req.destroyed; off += piece) {
        if (!req.write(c.body.subarray(off, off + piece))) {
          await new Promise<void>((done) => {
            const finish = () => {
              req.off('drain', finish);
              req.off('close', finish);
              req.off('response', finish);
              done();
            };
            req.on('drain', finish);
            req.on('close', finish);
            req.on('response', finish);
          });
        }
      }
      if (!answered && !req.destroyed) req.end();
    })();
  });
}

/**
 * Property-based: random bodies, Content-Encodings and partitions. The server never answers 5xx, never
 * dies, answers invalid input with a 4xx JSON {status, message, data}, and stores nothing of what it rejects.
 */
export async function badInput(scope: Scope, opts: BadInputOptions): Promise<ScenarioResult> {
  const defer = cleanups(scope);
  const { proc } = sluice(defer, {
    ingest: { max_body_bytes: LIMITS.maxBodyBytes, max_decoded_bytes: LIMITS.maxDecodedBytes },
    // nothing is delivered while the property runs, so /ready buffer.chunks only grows with accepted requests
    outputs: [
      {
        name: 'local',
        type: 'file',
        path: 'objects',
        batch: { max_age: '1h', max_bytes: '1GiB', max_events: 100_000_000 },
      },
    ],
  });
  await proc.start();

  const tally = new Map<string, number>();
  const note = (k: string) => tally.set(k, (tally.get(k) ?? 0) + 1);
  let accepted = 0;
  let rejected = 0;
  let runs = 0;
  const property = fc.asyncProperty(caseArbitrary(), async (c) => {
    runs++;
    assert.equal(
      proc.exitCode,
      undefined,
      `sluice is not running any more (exit ${proc.exitCode}):\n${proc.output.slice(-2000)}`,
    );
    const before = (await ready(proc)).buffer.chunks;
    const answer = await rawPost(proc.url, c);
    const after = (await ready(proc)).buffer.chunks;
    const want = expected(c);
    if ('reset' in answer) {
      // Only a request refused before its body was read may lose its answer to a reset (the server closes
      // such connections); it must still store nothing.
      note('reset');
      assert.ok(
        !want.ok && c.body.length > LIMITS.maxBodyBytes,
        `the connection was reset (${answer.reset}) instead of an answer`,
      );
      assert.equal(after, before, `a request that got no answer stored ${after - before} chunk(s)`);
      rejected++;
      return;
    }
    const res = answer;
    note(`${res.status}`);
    assert.ok(
      res.status < 500,
      `answered ${res.status}: ${res.body.slice(0, 300)}\n--- sluice output ---\n${proc.output.slice(-1500)}`,
    );
    const health = await fetch(`${proc.url}/health`);
    assert.equal(health.status, 200, 'GET /health answers 200 after every request');
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(res.body) as Record<string, unknown>;
    } catch {
      assert.fail(`answer ${res.status} is not JSON: ${res.body.slice(0, 200)}`);
    }
    // `want` judges the body (and the partition, when the path has a known one): a path of unknown routing
    // may be refused whatever the body, but a 200 is only right for a valid body.
    const pathKnown = c.partition !== 'unknown';
    if (res.status === 200) {
      assert.ok(want.ok, `accepted (200 ${res.body}) what should be rejected (${!want.ok && want.why})`);
      // the same valid body again (fast-check repeats values) is a re-send: acknowledged, not stored twice
      if (body.duplicate_request === true) {
        assert.equal(body.accepted, 0, 'a re-sent request adds nothing');
      } else {
        const duplicates = typeof body.duplicates === 'number' ? body.duplicates : 0;
        assert.equal(
          (body.accepted as number) + duplicates,
          want.accepted,
          'accepted and duplicates count every decision of the request',
        );
        if ((body.accepted as number) > 0) assert.ok(after > before, 'an accepted request is in the buffer');
        accepted += body.accepted as number;
      }
    } else {
      rejected++;
      assert.ok(res.status >= 400 && res.status < 500, `a rejection is a 4xx, not ${res.status}`);
      if (pathKnown) {
        assert.ok(
          !want.ok,
          `rejected (${res.status} ${res.body.slice(0, 200)}) a valid request of ${want.ok && want.accepted} decisions`,
        );
        if (want.status !== undefined)
          assert.equal(
            res.status,
            want.status,
            `${want.why}: expected ${want.status}, got ${res.status} ${res.body.slice(0, 200)}`,
          );
      }
      const shape = `an error answers JSON {status, message, data}; got ${res.status} ${res.body.slice(0, 200)}`;
      assert.equal(body.status, res.status, shape);
      assert.equal(typeof body.message, 'string', shape);
      assert.ok(body.data !== null && typeof body.data === 'object' && !Array.isArray(body.data), shape);
      assert.equal(after, before, `a rejected request stored ${after - before} chunk(s)`);
    }
  });
  const started = performance.now();
  let failure: unknown;
  try {
    await fc.assert(property, {
      numRuns: opts.runs,
      seed: opts.seed,
      includeErrorInReport: true,
      // a failure is shrunk by re-running requests against the live process: keep that bounded
      interruptAfterTimeLimit: 30_000 + opts.runs * 100,
      markInterruptAsFailure: true,
    });
  } catch (err) {
    failure = err;
  }
  const elapsed = performance.now() - started;
  const alive = proc.exitCode === undefined;
  const exitCode = alive ? await proc.stop('SIGTERM', 15_000) : proc.exitCode;
  const result: ScenarioResult = {
    scenario: 'badInput',
    acknowledged: accepted,
    missing: null,
    duplicates: null,
    retries: null,
    drainMs: null,
    notes: {
      runs,
      rejected,
      seconds: Math.round(elapsed / 1000),
      statuses: [...tally]
        .sort()
        .map(([k, v]) => `${k}:${v}`)
        .join(','),
      ...(failure
        ? {
            FAILED: (
              (failure as Error).message.match(/Got (?:AssertionError \[ERR_ASSERTION\]: )?(.*)/)?.[1] ??
              'see the test output'
            ).slice(0, 120),
          }
        : {}),
    },
  };
  publish(scope, result);
  if (failure) throw failure;
  assert.ok(alive, `sluice still runs after the bad input:\n${proc.output.slice(-2000)}`);
  assert.equal(exitCode, 0, 'SIGTERM after the bad input exits 0');
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// hostileStream

export interface HostileStreamOptions {
  /** How long the good load and the hostile requests run side by side. */
  seconds: number;
}

const HOSTILE_LAYOUTS = ['hive', 'eopa', 'eopa-per-decision', 'hourly-per-decision', 'outpost'] as const;

/** Hostile requests, each with the answer it must get: nothing of them may be stored, nothing good lost. */
const HOSTILE: Array<{ kind: string; body: () => Buffer; status: number }> = [
  {
    kind: 'decision 1,001 levels deep',
    status: 400,
    body: () => gzipSync(`[{"decision_id":"deep","result":${'{"a":'.repeat(1001)}1${'}'.repeat(1001)}}]`),
  },
  {
    kind: '20,000 levels in ~300 bytes',
    status: 400,
    body: () => gzipSync(`[${'['.repeat(20_000)}${']'.repeat(20_000)}]`),
  },
  { kind: '400,000 {} in ~1 KiB', status: 413, body: () => gzipSync(`[${'{},'.repeat(399_999)}{}]`) },
  { kind: '10,000,000 {} in ~30 KiB', status: 413, body: () => gzipSync(`[${'{},'.repeat(9_999_999)}{}]`) },
];

/**
 * Good decisions from a loader while hostile requests (deep nesting, tiny-element bombs) arrive in between,
 * into one output of every key layout: each hostile request is refused with its status, the service answers
 * /health throughout, and every acknowledged decision lands once in every layout.
 */
export async function hostileStream(scope: Scope, opts: HostileStreamOptions): Promise<ScenarioResult> {
  const defer = cleanups(scope);
  const root = tempDir('sluice-hostile-stream-');
  defer(() => rmSync(root, { recursive: true, force: true }));
  const outputs = HOSTILE_LAYOUTS.map((key) => ({
    name: key,
    type: 'file',
    path: path.join(root, key),
    key,
    batch: { max_age: '200ms' },
  }));
  const { proc } = sluice(defer, { outputs });
  await proc.start();
  const loader = new Loader(() => proc.url, {
    concurrency: 2,
    batch: [5, 30],
    partitions: ['default'],
    maxMs: opts.seconds * 1000,
    maxRequests: 100_000,
    intervalMs: 50,
  }).start();
  defer(() => loader.stop());
  const bodies = HOSTILE.map((h) => ({ ...h, bytes: h.body() }));
  const refused = new Map<string, number>();
  const deadline = Date.now() + opts.seconds * 1000;
  for (let i = 0; Date.now() < deadline && i < 1000; i++) {
    const h = bodies[i % bodies.length]!;
    const res = await fetch(`${proc.url}/logs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: h.bytes,
      signal: AbortSignal.timeout(60_000),
    });
    await res.text();
    assert.equal(res.status, h.status, `${h.kind}: answered ${res.status}`);
    refused.set(h.kind, (refused.get(h.kind) ?? 0) + 1);
    assert.equal(
      (await fetch(`${proc.url}/health`, { signal: AbortSignal.timeout(10_000) })).status,
      200,
      `/health after ${h.kind}`,
    );
  }
  await loader.stop();
  const acknowledged = loader.acked.size;
  const drainMs = await waitIdle(proc, 60_000).catch(() => null);

  let missing = 0;
  let duplicates = 0;
  for (const output of outputs) {
    const counts = new Map<string, number>();
    for (const line of linesUnder(output.path)) {
      const id = /"decision_id":"([^"]+)"/.exec(line)?.[1] ?? '';
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    for (const id of loader.acked) if (!counts.has(id)) missing++;
    for (const n of counts.values()) if (n > 1) duplicates++;
  }
  const result: ScenarioResult = {
    scenario: 'hostileStream',
    acknowledged,
    missing,
    duplicates,
    retries: null,
    drainMs,
    notes: {
      layouts: outputs.length,
      refused: [...refused].map(([k, n]) => `${k}: ${n}`).join('; '),
      statuses: statusSummary(loader.statuses),
    },
  };
  publish(scope, result);
  assert.ok(acknowledged > 0, 'the good load ran');
  assert.equal(loader.wrongCounts, 0);
  assert.equal(missing, 0, `acknowledged decisions missing from some layout: ${JSON.stringify(result)}`);
  assert.equal(duplicates, 0, `decisions written twice: ${JSON.stringify(result)}`);
  assert.notEqual(drainMs, null, 'everything was delivered');
  assert.equal(await proc.stop('SIGTERM', 15_000), 0);
  return result;
}
