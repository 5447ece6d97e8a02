/**
 * Shutdown: SIGTERM ends the process within shutdown_timeout whatever the clients' connections do. A real OPA
 * opens a new keep-alive connection per upload and leaves the old ones idle; a connection whose request is
 * answered during the shutdown must not hold the process for the keep-alive timeout (Fastify's is 72 s).
 * Everything runs for real: `node dist/cli.js serve` in its own process, node:http clients on 127.0.0.1.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync, gzipSync } from 'node:zlib';
import { stringify } from 'yaml';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { decisions, postDecisions } from './helpers/opa.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const SHUTDOWN_TIMEOUT_MS = 2_000;
/** Far below the 72 s keep-alive timeout an idle connection would otherwise hold the process for. */
const EXIT_WITHIN_MS = 20_000;

function dirFor(t: TestContext): string {
  const dir = tempDir('sluice-shutdown-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function serve(t: TestContext, dir: string): Promise<SluiceProcess> {
  const sluice = new SluiceProcess({
    config: {
      data_dir: path.join(dir, 'data'),
      shutdown_timeout: `${SHUTDOWN_TIMEOUT_MS}ms`,
      outputs: [{ name: 'local', type: 'file', path: path.join(dir, 'objects'), batch: { max_age: '1h' } }],
    },
  });
  t.after(() => sluice.kill9());
  return sluice.start();
}

/** decision_ids of every object the file output wrote (complete files only). */
function landedIds(root: string): string[] {
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ndjson.gz') && statSync(path.join(root, f)).isFile())
    .flatMap((f) =>
      gunzipSync(readFileSync(path.join(root, f)))
        .toString('utf8')
        .trim()
        .split('\n'),
    )
    .map((line) => (JSON.parse(line) as { decision_id: string }).decision_id);
}

/** Rejects after `ms` (the timer is cleared when `promise` settles first, so nothing is left running). */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A POST /logs on a keep-alive connection that the server has already started handling: it asks for
 * `100 Continue`, which Node's server sends right before it hands the request to Fastify, and only then
 * writes the first half of the body. The rest is up to the test.
 */
async function uploadInFlight(t: TestContext, url: string, body: Buffer) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const req = http.request(`${url}/logs`, {
    method: 'POST',
    agent,
    headers: {
      'content-type': 'application/json',
      'content-encoding': 'gzip',
      'content-length': body.length,
      expect: '100-continue',
    },
  });
  const response = new Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }>(
    (resolve, reject) => {
      req.on('response', (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        // the socket goes back to the agent as an idle keep-alive connection, as OPA leaves it
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
      });
      req.on('error', reject);
    },
  );
  response.catch(() => {}); // the stalled upload's request fails by design; the test awaits it itself
  await within(
    10_000,
    'the server answers 100 Continue',
    new Promise<void>((resolve, reject) => {
      req.once('continue', resolve);
      req.once('error', reject);
      req.flushHeaders();
    }),
  );
  req.write(body.subarray(0, body.length >> 1));
  return { req, response, rest: body.subarray(body.length >> 1) };
}

test('SIGTERM during an upload on a keep-alive connection: answered, flushed, and the process exits 0 within shutdown_timeout', async (t) => {
  const dir = dirFor(t);
  const sluice = await serve(t, dir);
  const sent = decisions(5);
  const upload = await uploadInFlight(t, sluice.url, gzipSync(JSON.stringify(sent)));

  const signalledAt = Date.now();
  const stopped = sluice.stop('SIGTERM', EXIT_WITHIN_MS); // SIGKILL, and so exit code null, past EXIT_WITHIN_MS
  await sluice.until('the shutdown to start', () => /stopping/.test(sluice.output), 10_000);
  upload.req.end(upload.rest);
  const answer = await within(10_000, 'the answer to the in-flight upload', upload.response);
  assert.equal(answer.status, 200, `a request that was in flight when the shutdown began is answered: ${answer.text}`);
  assert.deepEqual(JSON.parse(answer.text), { accepted: 5 });

  const code = await stopped;
  const tookMs = Date.now() - signalledAt;
  t.diagnostic(`exited ${code} ${tookMs} ms after SIGTERM`);
  assert.equal(
    code,
    0,
    `exits 0 within ${EXIT_WITHIN_MS} ms although the client keeps its connection (took ${tookMs} ms)\n${sluice.output.slice(-3000)}`,
  );
  assert.equal(
    answer.headers.connection,
    'close',
    'answers during the shutdown tell the client not to reuse the connection',
  );
  assert.deepEqual(
    landedIds(path.join(dir, 'objects')).sort(),
    sent.map((d) => d.decision_id as string).sort(),
    'the decisions accepted during the shutdown were flushed before the exit',
  );
});

test('SIGTERM while an upload stalls mid-body: its connection is cut at shutdown_timeout and the process exits 0', async (t) => {
  const dir = dirFor(t);
  const sluice = await serve(t, dir);
  const upload = await uploadInFlight(t, sluice.url, gzipSync(JSON.stringify(decisions(5))));

  const signalledAt = Date.now();
  const code = await sluice.stop('SIGTERM', EXIT_WITHIN_MS);
  const tookMs = Date.now() - signalledAt;
  t.diagnostic(`exited ${code} ${tookMs} ms after SIGTERM`);
  assert.equal(
    code,
    0,
    `exits 0 within ${EXIT_WITHIN_MS} ms although a client never finishes its body (took ${tookMs} ms)\n${sluice.output.slice(-3000)}`,
  );
  assert.ok(
    tookMs >= SHUTDOWN_TIMEOUT_MS - 100,
    `the stalled request was given shutdown_timeout to finish (took ${tookMs} ms)`,
  );
  await assert.rejects(
    within(10_000, 'the stalled request to fail', upload.response),
    'the stalled request gets no answer: its connection is closed',
  );
  assert.deepEqual(landedIds(path.join(dir, 'objects')), [], 'nothing of the unfinished request is stored');
});

/** Processes whose command line mentions `needle` (a unique temp path), from /proc. */
function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle)) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

test('npm start: SIGTERM to npm reaches the server, which flushes and exits, leaving no process on the port', async (t) => {
  const dir = dirFor(t);
  const dataDir = path.join(dir, 'data');
  const file = path.join(dir, 'sluice.yaml');
  // max_age 1h: only the SIGTERM flush can write the object within this test
  writeFileSync(
    file,
    stringify({
      listen: '127.0.0.1:0',
      data_dir: dataDir,
      shutdown_timeout: '10s',
      outputs: [{ name: 'local', type: 'file', path: path.join(dataDir, 'objects'), batch: { max_age: '1h' } }],
    }),
  );
  // --prefix runs the repo's own start script (in the repo's directory); the config keeps every file in `dir`
  const npm = spawn('npm', ['--prefix', REPO, 'start', '--silent', '--', '--config', file], {
    cwd: dir,
    // without a MALLOC_ARENA_MAX of its own, so that the one npm start sets is seen
    env: { ...process.env, MALLOC_ARENA_MAX: undefined },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    npm.kill('SIGKILL');
    for (const pid of processesMentioning(file)) process.kill(pid, 'SIGKILL'); // a server npm left behind
  });
  let output = '';
  npm.stdout.on('data', (d) => (output += d));
  npm.stderr.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => npm.on('exit', (code) => resolve(code)));
  let url = '';
  for (let i = 0; i < 300 && !url; i++) {
    url = /sluice listening on (http:\/\/[^"\s]+)/.exec(output)?.[1] ?? '';
    if (!url) await sleep(50);
  }
  assert.ok(url, `npm start did not start sluice within 15 s:\n${output}`);

  // the server runs with glibc's malloc held to two arenas (README "Performance")
  const servers = processesMentioning(file).filter((pid) =>
    readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('dist/cli.js'),
  );
  assert.equal(servers.length, 1, 'one server process');
  assert.ok(
    readFileSync(`/proc/${servers[0]}/environ`, 'utf8').split('\0').includes('MALLOC_ARENA_MAX=2'),
    'npm start sets MALLOC_ARENA_MAX=2',
  );
  assert.ok(
    readFileSync(`/proc/${servers[0]}/cmdline`, 'utf8').split('\0').includes('--max-semi-space-size=8'),
    'npm start gives node --max-semi-space-size=8',
  );

  const sent = decisions(4);
  const res = await postDecisions(url, sent);
  assert.equal(res.status, 200, await res.text());
  npm.kill('SIGTERM');
  const code = await within(30_000, 'npm to exit after SIGTERM', exited);
  assert.equal(code, 0, `npm exits 0 once the server has stopped:\n${output}`);
  assert.match(output, /stopping: no new requests/, 'the server itself got the SIGTERM');
  assert.deepEqual(
    landedIds(path.join(dataDir, 'objects')).sort(),
    sent.map((d) => d.decision_id as string).sort(),
    'the server flushed before npm exited',
  );
  assert.deepEqual(processesMentioning(file), [], 'no server process is left behind');
  await assert.rejects(fetch(`${url}/health`), 'nothing listens on the port any more');
});
