/**
 * `service` (and `http`) outputs against a real second Sluice as the upstream: a batch larger than a decision
 * log service takes in one request goes in requests within `max_request_bytes` / `max_request_decisions`,
 * cut on decision boundaries; a retry after the upstream was down resumes after the acknowledged requests;
 * a receiver with smaller limits gets its 413s answered by smaller requests, and a decision too large even
 * alone is set aside in the dead letter instead of blocking the output. Every process is real
 * (`node dist/cli.js serve` on 127.0.0.1); the one node:http server only passes requests on and records them.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { SluiceProcess, tempDir, type ReadyStatus } from './helpers/sluice.js';
import { postDecisions } from './helpers/opa.js';

type Decision = Record<string, unknown>;
type Output = ReadyStatus['outputs'][number] & { dead_letter: { events: number; file: string }; retries: number };

const WAIT_MS = 90_000;
const RETRY = { initial_backoff: '50ms', max_backoff: '300ms' };
/** The old defaults of every output: a batch of 120,000 decisions is one batch, far over what one request may carry. */
const LARGE_BATCH = { max_events: 1_000_000, max_bytes: '64MiB', max_age: '2s' };

function dirFor(t: TestContext): string {
  const dir = tempDir('sluice-service-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function sluiceFor(t: TestContext, config: Record<string, unknown>): Promise<SluiceProcess> {
  const sluice = new SluiceProcess({ config });
  t.after(() => sluice.kill9());
  await sluice.start();
  return sluice;
}

/** An upstream Sluice writing what it accepts as plain NDJSON files under `<dir>/<name>-out`. */
function upstreamConfig(dir: string, ingest: Record<string, unknown> = {}, name = 'upstream'): Record<string, unknown> {
  return {
    data_dir: path.join(dir, name),
    ingest,
    outputs: [
      {
        name: 'out',
        type: 'file',
        path: path.join(dir, `${name}-out`),
        compression: 'none',
        batch: { max_age: '200ms' },
      },
    ],
  };
}

/** Small decisions, each with its own id. */
function smallDecisions(n: number): Decision[] {
  return Array.from({ length: n }, (_, i) => ({
    decision_id: randomUUID(),
    path: 'authz/allow',
    result: i % 3 !== 0,
    timestamp: new Date().toISOString(),
  }));
}

async function post200(url: string, body: Decision[]): Promise<void> {
  const res = await postDecisions(url, body);
  const text = await res.text();
  assert.equal(res.status, 200, `POST /logs answered ${res.status}: ${text}`);
}

/** Every decision in the NDJSON files under `root`. */
function landed(root: string): Decision[] {
  const out: Decision[] = [];
  let entries: string[];
  try {
    entries = readdirSync(root, { recursive: true }) as string[];
  } catch {
    return out;
  }
  for (const rel of entries) {
    if (!rel.endsWith('.ndjson')) continue;
    let text: string;
    try {
      text = readFileSync(path.join(root, rel), 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) if (line) out.push(JSON.parse(line) as Decision);
  }
  return out;
}

/** How many decisions the NDJSON files under `root` hold: cheap enough to poll. */
function landedCount(root: string): number {
  let n = 0;
  let entries: string[];
  try {
    entries = readdirSync(root, { recursive: true }) as string[];
  } catch {
    return 0;
  }
  for (const rel of entries) {
    if (!rel.endsWith('.ndjson')) continue;
    try {
      const bytes = readFileSync(path.join(root, rel));
      for (let i = bytes.indexOf(0x0a); i !== -1; i = bytes.indexOf(0x0a, i + 1)) n++;
    } catch {
      /* renamed meanwhile */
    }
  }
  return n;
}

/** Each of `ids` exactly once among `decisions`, and nothing else. */
function assertEachOnce(decisions: Decision[], ids: string[], where: string): void {
  const counts = new Map<string, number>();
  for (const d of decisions) counts.set(d.decision_id as string, (counts.get(d.decision_id as string) ?? 0) + 1);
  const missing = ids.filter((id) => !counts.has(id));
  const twice = [...counts].filter(([, n]) => n > 1);
  const want = new Set(ids);
  const extra = [...counts.keys()].filter((id) => !want.has(id));
  assert.deepEqual(
    [missing.length, twice.length, extra.length],
    [0, 0, 0],
    `${where}: ${missing.length} missing, ${twice.length} more than once, ${extra.length} unexpected`,
  );
}

function outputOf(ready: ReadyStatus, name: string): Output {
  const o = ready.outputs.find((x) => x.name === name);
  assert.ok(o, `/ready lists output ${name}`);
  return o as Output;
}

/** Sum of a Prometheus counter's samples whose labels include all of `labels`. */
async function counter(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

interface Forwarded {
  key: string;
  bytes: number;
  decisions: number;
  status: number;
  md5: string;
}

/**
 * Passes each request on to `target` (a real Sluice) as it came, and records it: its Idempotency-Key, body
 * bytes, number of decisions and the answer. `beforeForward(n)` runs before request n is passed on. When the
 * target cannot be reached, it answers 502, as a load balancer in front of a stopped service does.
 */
async function recordingProxy(t: TestContext, beforeForward: (nth: number) => Promise<void> = async () => {}) {
  const state = { target: '', forwarded: [] as Forwarded[] };
  let seen = 0;
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on(
      'end',
      () =>
        void (async () => {
          const body = Buffer.concat(parts);
          const nth = ++seen;
          await beforeForward(nth);
          const decisions = (JSON.parse(gunzipSync(body).toString('utf8')) as unknown[]).length;
          const headers: Record<string, string> = {};
          for (const h of ['content-type', 'content-encoding', 'idempotency-key', 'authorization'])
            if (req.headers[h]) headers[h] = req.headers[h] as string;
          let status = 502;
          let answer = '{"message":"bad gateway"}';
          try {
            const upstream = await fetch(`${state.target}${req.url}`, { method: 'POST', headers, body });
            status = upstream.status;
            answer = await upstream.text();
          } catch {
            /* the target is down */
          }
          const md5 = createHash('md5').update(body).digest('hex');
          state.forwarded.push({ key: headers['idempotency-key'] ?? '', bytes: body.length, decisions, status, md5 });
          res.writeHead(status, { 'content-type': 'application/json' }).end(answer);
        })(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, state };
}

test('service output, the repro: 120,000 decisions in one batch reach a default Sluice upstream once each, in requests it accepts', async (t) => {
  const dir = dirFor(t);
  const upstream = await sluiceFor(t, upstreamConfig(dir));
  const sender = await sluiceFor(t, {
    data_dir: path.join(dir, 'sender'),
    outputs: [{ name: 'fwd', type: 'service', url: upstream.url, batch: LARGE_BATCH, retry: RETRY }],
  });
  const sent = [...smallDecisions(60_000), ...smallDecisions(60_000)];
  await post200(sender.url, sent.slice(0, 60_000));
  await post200(sender.url, sent.slice(60_000));
  const root = path.join(dir, 'upstream-out');
  await sender.until(
    "every decision forwarded and in the upstream's files",
    async () => {
      const fwd = outputOf(await sender.ready(), 'fwd');
      assert.notEqual(fwd.state, 'failing', `the output does not fail: ${JSON.stringify(fwd.last_error)}`);
      return fwd.delivered.events === sent.length && fwd.pending_batches === 0 && landedCount(root) >= sent.length;
    },
    WAIT_MS,
  );
  assertEachOnce(
    landed(root),
    sent.map((d) => d.decision_id as string),
    'the upstream',
  );
  const fwd = outputOf(await sender.ready(), 'fwd');
  assert.equal(fwd.state, 'ok');
  assert.equal(fwd.dead_letter.events, 0);
  assert.equal(
    await counter(upstream.url, 'sluice_ingest_rejected_requests_total', { code: '413' }),
    0,
    'the upstream refused no request as too large',
  );
  // at most 10,000 decisions a request (max_request_decisions): at least 12 requests for 120,000
  const requests = await counter(upstream.url, 'sluice_ingest_requests_total', { code: '200' });
  assert.ok(requests >= 12, `${requests} requests upstream`);
  assert.equal(
    await counter(upstream.url, 'sluice_ingest_events_total'),
    sent.length,
    'the upstream accepted each decision once',
  );
});

test('service output: every request within the limits; after the upstream was down a retry resumes after the acknowledged requests, each decision lands once', async (t) => {
  const dir = dirFor(t);
  // the upstream refuses anything over the sender's default limits (1 MiB compressed, 10,000 decisions)
  const config = upstreamConfig(dir, { max_body_bytes: '1MiB', max_decisions_per_request: 10_000 });
  let upstream = await sluiceFor(t, config);
  let down = false;
  // the upstream goes down just before the 4th request reaches it, after three were acknowledged
  const proxy = await recordingProxy(t, async (nth) => {
    if (nth === 4 && !down) {
      down = true;
      await upstream.stop();
    }
  });
  proxy.state.target = upstream.url;
  const sender = await sluiceFor(t, {
    data_dir: path.join(dir, 'sender'),
    outputs: [{ name: 'fwd', type: 'service', url: proxy.url, batch: LARGE_BATCH, retry: RETRY }],
  });
  const sent = [...smallDecisions(60_000), ...smallDecisions(60_000)];
  await post200(sender.url, sent.slice(0, 60_000));
  await post200(sender.url, sent.slice(60_000));
  await sender.until(
    'the sender retrying while the upstream is down',
    async () =>
      proxy.state.forwarded.filter((f) => f.status === 502).length >= 3 &&
      outputOf(await sender.ready(), 'fwd').state === 'retrying',
    WAIT_MS,
  );
  upstream = await sluiceFor(t, config);
  proxy.state.target = upstream.url;
  const root = path.join(dir, 'upstream-out');
  await sender.until(
    "every decision forwarded and in the upstream's files",
    async () => {
      const fwd = outputOf(await sender.ready(), 'fwd');
      return fwd.delivered.events === sent.length && fwd.pending_batches === 0 && landedCount(root) >= sent.length;
    },
    WAIT_MS,
  );
  assertEachOnce(
    landed(root),
    sent.map((d) => d.decision_id as string),
    'the upstream',
  );

  const { forwarded } = proxy.state;
  for (const f of forwarded) {
    assert.ok(f.bytes <= 1024 * 1024, `a request of ${f.bytes} bytes`);
    assert.ok(f.decisions <= 10_000, `a request of ${f.decisions} decisions`);
    assert.notEqual(f.status, 413);
  }
  const acknowledged = forwarded.filter((f) => f.status === 200);
  assert.equal(
    acknowledged.reduce((n, f) => n + f.decisions, 0),
    sent.length,
    'the acknowledged requests hold each decision once',
  );
  assert.equal(
    new Set(acknowledged.map((f) => f.key)).size,
    acknowledged.length,
    'no acknowledged request was sent again',
  );
  for (const f of forwarded.filter((x) => x.status === 502)) {
    assert.ok(
      acknowledged.some((a) => a.key === f.key && a.md5 === f.md5),
      `the request refused while down (${f.key}) was re-sent with the same key and bytes`,
    );
  }
  assert.ok(
    acknowledged.slice(0, 3).every((a) => /#\d+-\d+$/.test(a.key)),
    `requests are pieces of a batch: ${acknowledged.slice(0, 3).map((a) => a.key)}`,
  );
  assert.equal(await counter(upstream.url, 'sluice_ingest_rejected_requests_total', { code: '413' }), 0);
  assert.equal(outputOf(await sender.ready(), 'fwd').state, 'ok');
});

test('service and http outputs against receivers with smaller limits: 413s answered with smaller requests; a decision too large alone goes to the dead letter', async (t) => {
  const dir = dirFor(t);
  // one upstream per output: a Sluice stores a decision_id once, whichever partition it comes in
  const limits = { max_body_bytes: '64KiB', max_decisions_per_request: 500 };
  const upstreams = {
    fwd: await sluiceFor(t, upstreamConfig(dir, limits, 'fwd')),
    hook: await sluiceFor(t, upstreamConfig(dir, limits, 'hook')),
  };
  const sender = await sluiceFor(t, {
    data_dir: path.join(dir, 'sender'),
    outputs: [
      // the service output's own limits (1 MiB, 10,000) are above the receiver's
      { name: 'fwd', type: 'service', url: upstreams.fwd.url, batch: { max_age: '500ms' }, retry: RETRY },
      // an http output POSTs a batch whole unless it is told a limit: the receiver's 413s cut it
      {
        name: 'hook',
        type: 'http',
        url: `${upstreams.hook.url}/logs`,
        format: 'json_array',
        compression: 'gzip',
        batch: { max_age: '500ms' },
        retry: RETRY,
      },
    ],
  });
  const sent = smallDecisions(3_000);
  // ~270 KB of base64 of random bytes: over 64 KiB compressed even alone
  const huge: Decision = {
    decision_id: randomUUID(),
    path: 'authz/allow',
    result: true,
    timestamp: new Date().toISOString(),
    input: { blob: randomBytes(200_000).toString('base64') },
  };
  await post200(sender.url, [...sent.slice(0, 1_500), huge, ...sent.slice(1_500)]);
  const names = ['fwd', 'hook'] as const;
  await sender.until(
    'both outputs done, the huge decision set aside by each',
    async () => {
      const ready = await sender.ready();
      return names.every((name) => {
        const o = outputOf(ready, name);
        return (
          o.delivered.events === sent.length &&
          o.dead_letter.events === 1 &&
          o.pending_batches === 0 &&
          landedCount(path.join(dir, `${name}-out`)) >= sent.length
        );
      });
    },
    WAIT_MS,
  );
  const ids = sent.map((d) => d.decision_id as string);
  const ready = await sender.ready();
  for (const name of names) {
    assertEachOnce(landed(path.join(dir, `${name}-out`)), ids, `the upstream of ${name}`);
    assert.ok(
      (await counter(upstreams[name].url, 'sluice_ingest_rejected_requests_total', { code: '413' })) > 0,
      `${name}'s receiver did refuse requests as too large`,
    );
    const o = outputOf(ready, name);
    assert.equal(o.state, 'ok', `${name} goes on: ${JSON.stringify(o.last_error)}`);
    const lines = readFileSync(o.dead_letter.file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 1, `${name}: one incident in ${o.dead_letter.file}`);
    assert.equal(lines[0]!.reason, 'too_large');
    assert.equal(lines[0]!.events, 1);
    assert.match(lines[0]!.error as string, /413/);
    assert.deepEqual(JSON.parse(lines[0]!.decision_text as string), huge, `${name}: the refused decision's exact text`);
  }
  assert.equal(await counter(sender.url, 'sluice_output_dead_letter_events_total', { reason: 'too_large' }), 2);
});
