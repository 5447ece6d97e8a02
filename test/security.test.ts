/**
 * Secrets, and what a browser or the network can do to Sluice (README "Security"): the real process on
 * 127.0.0.1, requests with node:http where fetch would not send them as they are (a Host header, 2,000 headers).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { stringify } from 'yaml';
import { runCli, SluiceProcess, tempDir } from './helpers/sluice.js';
import { closedPort } from './helpers/outpost.js';
import { decisions } from './helpers/opa.js';
import { HostPolicy, hostCheck } from '../src/http/host-check.js';
import { launchBrowser, noBrowser } from './helpers/browser.js';

const SECRETS = ['tok3n', 'k3y', 'pa55', 'h3ader'];

function dirFor(t: TestContext): string {
  const dir = tempDir('sluice-security-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function started(
  t: TestContext,
  config: Record<string, unknown>,
  env?: NodeJS.ProcessEnv,
): Promise<SluiceProcess> {
  const sluice = new SluiceProcess({ config, env });
  t.after(() => sluice.kill9());
  return sluice.start();
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** One request with exactly these headers (fetch would replace Host); bounded by a 10 s timeout. */
function send(
  url: string,
  opts: { method?: string; path: string; headers?: Record<string, string | string[]>; body?: string | Buffer },
): Promise<Answer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: hostname, port, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
        res.on('error', reject);
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error(`${opts.method ?? 'GET'} ${opts.path} timed out`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** The process's JSON log lines. */
function logLines(sluice: SluiceProcess): Array<Record<string, unknown> & { level?: number; msg?: string }> {
  return sluice.output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .flatMap((l) => {
      try {
        return [JSON.parse(l)];
      } catch {
        return [];
      }
    });
}

function writeConfig(dir: string, config: Record<string, unknown>): string {
  const file = path.join(dir, 'sluice.yaml');
  writeFileSync(file, stringify({ listen: '127.0.0.1:0', ...config }));
  return file;
}

// ---------------------------------------------------------------------------------------------------------
// Secrets

test('an http output URL with user:password@ is refused by sluice check and sluice serve, saying to use headers', async (t) => {
  const dir = dirFor(t);
  const port = await closedPort();
  const file = writeConfig(dir, {
    data_dir: path.join(dir, 'data'),
    outputs: [{ name: 'siem', type: 'http', url: `https://user:pa55@127.0.0.1:${port}/ingest/tok3n?api_key=k3y` }],
  });
  for (const command of ['check', 'serve']) {
    const res = await runCli([command, '--config', file]);
    assert.equal(res.code, 1, `${command} refuses it:\n${res.stdout}${res.stderr}`);
    assert.match(res.stderr, /outputs\.0\.url: must not hold credentials .*headers/, `${command} says to use headers`);
    for (const secret of SECRETS)
      assert.ok(!(res.stdout + res.stderr).includes(secret), `${command} does not print ${secret}`);
  }
  assert.ok(!existsSync(path.join(dir, 'data')), 'serve stopped before making data_dir');
});

test("an http output's path and query tokens never reach /ready, /metrics, the console, sluice check or the logs", async (t) => {
  const dir = dirFor(t);
  const port = await closedPort();
  const config = {
    data_dir: path.join(dir, 'data'),
    outputs: [
      {
        name: 'siem',
        type: 'http',
        url: `https://127.0.0.1:${port}/ingest/tok3n?api_key=k3y`,
        headers: { authorization: 'Bearer h3ader' },
        batch: { max_age: '100ms' },
        retry: { initial_backoff: '50ms', max_backoff: '200ms' },
      },
    ],
  };
  const sluice = await started(t, config);
  const post = await fetch(`${sluice.url}/logs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(decisions(2)),
  });
  assert.equal(post.status, 200);
  // the upload has failed (nothing listens there) and the failure is logged
  await sluice.until(
    'the output to report its error',
    async () => (await sluice.ready()).outputs[0]?.last_error !== null,
  );
  await sluice.until('the failure to be logged', () => sluice.output.includes('upload failed'));

  const ready = await (await fetch(`${sluice.url}/ready`)).text();
  const output = (JSON.parse(ready) as { outputs: Array<{ target: string; last_error: { message: string } }> })
    .outputs[0]!;
  assert.equal(
    output.target,
    `https://127.0.0.1:${port}/[redacted]?api_key=[redacted]`,
    'the target keeps scheme, host, port and the query names',
  );
  assert.ok(
    output.last_error.message.includes(output.target),
    `the error names the target as shown: ${output.last_error.message}`,
  );
  const shown = {
    '/ready': ready,
    '/metrics': await (await fetch(`${sluice.url}/metrics`)).text(),
    '/ui/api/overview': await (await fetch(`${sluice.url}/ui/api/overview`)).text(),
    'sluice check': (await runCli(['check', '--config', writeConfig(dir, config)])).stdout,
    'the process output': sluice.output,
  };
  for (const [where, text] of Object.entries(shown)) {
    for (const secret of SECRETS)
      assert.ok(!text.includes(secret), `${where} does not hold ${secret}:\n${text.slice(0, 3000)}`);
  }
});

test('observability.token: /metrics and /ready need it (401 without), /health stays open, sluice status sends it', async (t) => {
  const dir = dirFor(t);
  const sluice = await started(t, {
    data_dir: path.join(dir, 'data'),
    outputs: [],
    observability: { token: 'obs-t0ken' },
  });
  for (const route of ['/metrics', '/ready']) {
    const none = await fetch(`${sluice.url}${route}`);
    assert.equal(none.status, 401, `${route} without a token`);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer');
    assert.equal(((await none.json()) as { status: number }).status, 401, 'in the JSON error shape');
    assert.equal(
      (await fetch(`${sluice.url}${route}`, { headers: { authorization: 'Bearer wrong' } })).status,
      401,
      `${route} with another token`,
    );
    assert.equal(
      (await fetch(`${sluice.url}${route}`, { headers: { authorization: 'Bearer obs-t0ken' } })).status,
      200,
      `${route} with the token`,
    );
  }
  assert.equal((await fetch(`${sluice.url}/health`)).status, 200, '/health needs nothing');
  const refused = await runCli(['status', '--url', sluice.url]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /observability\.token/);
  const status = await runCli(['status', '--url', sluice.url, '--token', 'obs-t0ken']);
  assert.equal(status.code, 0, status.stdout + status.stderr);
});

/** Modes of data_dir, its SQLite files and secrets/ (path relative to data_dir -> octal mode). */
function modes(dataDir: string): Map<string, number> {
  const out = new Map<string, number>([['.', statSync(dataDir).mode & 0o777]]);
  for (const name of readdirSync(dataDir))
    if (/\.sqlite/.test(name)) out.set(name, statSync(path.join(dataDir, name)).mode & 0o777);
  const secrets = path.join(dataDir, 'secrets');
  out.set('secrets', statSync(secrets).mode & 0o777);
  for (const name of readdirSync(secrets)) out.set(`secrets/${name}`, statSync(path.join(secrets, name)).mode & 0o777);
  return out;
}

function assertPrivate(dataDir: string, when: string): void {
  const found = modes(dataDir);
  assert.ok(
    [...found.keys()].some((k) => k.endsWith('.sqlite-wal')),
    `the WAL files exist while running: ${[...found.keys()]}`,
  );
  for (const [name, mode] of found) {
    const wanted = name === '.' || name === 'secrets' ? 0o700 : 0o600;
    assert.equal(mode.toString(8), wanted.toString(8), `${when}: ${name} is ${wanted.toString(8)}`);
  }
}

test('data_dir is made 0700 and its SQLite files 0600; looser modes left from before are fixed at start, with an info line', async (t) => {
  const dir = dirFor(t);
  const dataDir = path.join(dir, 'data');
  const config = { data_dir: dataDir, outputs: [], shutdown_timeout: '2s' };
  const first = await started(t, config);
  assertPrivate(dataDir, 'a new data_dir');
  assert.equal(await first.stop(), 0);

  // as an older version (or umask 022) left them
  chmodSync(dataDir, 0o755);
  for (const name of readdirSync(dataDir)) if (/\.sqlite/.test(name)) chmodSync(path.join(dataDir, name), 0o644);
  chmodSync(path.join(dataDir, 'secrets'), 0o755);
  for (const name of readdirSync(path.join(dataDir, 'secrets'))) chmodSync(path.join(dataDir, 'secrets', name), 0o644);

  const second = await started(t, config);
  assertPrivate(dataDir, 'after the restart');
  const fixed = logLines(second).find((l) => l.level === 30 && Array.isArray(l.changed));
  assert.ok(fixed, `an info line says what was changed:\n${second.output}`);
  const changed = (fixed.changed as Array<{ path: string; from: string; to: string }>).map(
    (c) => `${path.relative(dataDir, c.path) || '.'} ${c.from}->${c.to}`,
  );
  assert.ok(changed.includes('. 0755->0700'), changed.join(', '));
  assert.ok(changed.includes('buffer.sqlite 0644->0600'), changed.join(', '));
  assert.ok(changed.includes('secrets/encryption_key 0644->0600'), changed.join(', '));
});

test('a generated encryption key is warned about at start, saying how to move it out of data_dir', async (t) => {
  const dir = dirFor(t);
  const sluice = await started(t, { data_dir: path.join(dir, 'data'), outputs: [] });
  const warning = logLines(sluice).find((l) => l.level === 40 && /encryption_key/.test(l.msg ?? ''));
  assert.ok(warning, sluice.output);
  assert.equal(warning.file, path.join(dir, 'data', 'secrets', 'encryption_key'));
  assert.match(warning.msg!, /SLUICE_ENCRYPTION_KEY/);
  assert.match(warning.msg!, /api\.encryption_key/);
  assert.match(warning.msg!, /then delete the file/);
  // given the same key from the environment, nothing is generated or warned about
  const again = new SluiceProcess({
    config: { data_dir: path.join(dir, 'data2'), outputs: [] },
    env: { SLUICE_ENCRYPTION_KEY: 'from-the-secret-store' },
  });
  t.after(() => again.kill9());
  await again.start();
  assert.ok(!logLines(again).some((l) => /encryption_key is not set/.test(l.msg ?? '')), again.output);
  assert.ok(!existsSync(path.join(dir, 'data2', 'secrets', 'encryption_key')));
});

// ---------------------------------------------------------------------------------------------------------
// Network and browser defaults

test('an open API (no admin key) on a listen address that is not loopback is refused before anything listens', async (t) => {
  const dir = dirFor(t);
  const dataDir = path.join(dir, 'data');
  // every interface: should it ever start listening, start() returns and the process is killed at once
  const served = new SluiceProcess({ config: { listen: '0.0.0.0:0', data_dir: dataDir, outputs: [] } });
  t.after(() => served.kill9());
  await assert.rejects(served.start(), /sluice exited with 1/, 'it exits 1 instead of listening');
  assert.ok(!/listening/.test(served.output), `it never listened:\n${served.output}`);
  assert.match(served.output, /api\.admin_key: is not set, and listen 0\.0\.0\.0:0 is not a loopback address/);
  assert.match(served.output, /SLUICE_ADMIN_KEY/);
  assert.match(served.output, /api\.open: true/);
  assert.ok(!existsSync(dataDir), 'it stopped at the config, before data_dir');
  const open = writeConfig(dir, { listen: '0.0.0.0:0', data_dir: dataDir, outputs: [] });
  assert.equal((await runCli(['check', '--config', open])).code, 1, 'sluice check says the same');
  const specific = await runCli([
    'check',
    '--config',
    writeConfig(dir, { listen: '192.0.2.1:8181', data_dir: dataDir }),
  ]);
  assert.equal(specific.code, 1, 'any address that is not loopback');

  // an admin key (from the environment too), or an explicit api.open, is accepted; so is any loopback listen
  assert.equal((await runCli(['check', '--config', open], { env: { SLUICE_ADMIN_KEY: 'k' } })).code, 0);
  const accepted = await runCli([
    'check',
    '--config',
    writeConfig(dir, { listen: '0.0.0.0:0', data_dir: dataDir, api: { open: true } }),
  ]);
  assert.equal(accepted.code, 0, accepted.stderr);
  for (const listen of ['127.0.0.1:0', '[::1]:0', 'localhost:0']) {
    assert.equal(
      (await runCli(['check', '--config', writeConfig(dir, { listen, data_dir: dataDir })])).code,
      0,
      listen,
    );
  }
});

test('the API, console and /logs answer only to their own Host names (DNS rebinding); probes to any', async (t) => {
  const dir = dirFor(t);
  const sluice = await started(t, {
    data_dir: path.join(dir, 'data'),
    outputs: [],
    http: { allowed_hosts: ['sluice.internal', '*.corp.example'] },
  });
  const { port } = new URL(sluice.url);
  const body = JSON.stringify(decisions(1));
  const json = { 'content-type': 'application/json' };
  const routes = [
    { path: '/api/v1/topics' },
    { path: '/ui' },
    { path: '/ui/api/overview' },
    { path: '/openapi.json' },
    { path: '/logs', method: 'POST', body, headers: json },
    { path: '/logs/p', method: 'POST', body, headers: json },
  ];
  for (const host of [
    'evil.example',
    `evil.example:${port}`,
    `127.0.0.1.evil.example:${port}`,
    'corp.example',
    `localhost.evil.example:${port}`,
  ]) {
    for (const r of routes) {
      const res = await send(sluice.url, { ...r, headers: { ...r.headers, host } });
      assert.equal(res.status, 421, `${r.method ?? 'GET'} ${r.path} with Host ${host}: ${res.text}`);
      const error = JSON.parse(res.text) as { status: number; message: string; data: { reason: string } };
      assert.equal(error.data.reason, 'host_not_allowed');
      assert.match(error.message, /http\.allowed_hosts/);
    }
  }
  assert.equal((await sluice.ready()).buffer.chunks, 0, 'no decision posted with a foreign Host was stored');
  for (const host of [
    `127.0.0.1:${port}`,
    `localhost:${port}`,
    `[::1]:${port}`,
    '127.0.0.1',
    'sluice.internal:8181',
    'a.corp.example',
    'SLUICE.INTERNAL.',
  ]) {
    for (const r of routes) {
      const res = await send(sluice.url, { ...r, headers: { ...r.headers, host } });
      assert.ok(
        res.status === 200,
        `${r.method ?? 'GET'} ${r.path} with Host ${host}: ${res.status} ${res.text.slice(0, 200)}`,
      );
    }
  }
  // probes and Prometheus come by whatever name they were given, and read nothing secret
  for (const p of ['/health', '/ready', '/metrics'])
    assert.equal((await send(sluice.url, { path: p, headers: { host: 'evil.example' } })).status, 200, p);
});

test("Host policy of other listen addresses: the listen host, a wildcard listen's own addresses, allowed_hosts; /logs unchecked there", async () => {
  // no process: binding an address other than loopback is not for a test; the policy is the same code
  const check = (policy: HostPolicy, host: string, url = '/api/v1/topics') =>
    hostCheck(policy)({ headers: { host }, url } as never).then(
      () => true,
      () => false,
    );
  const specific = new HostPolicy('10.1.2.3', ['sluice.example.com']);
  assert.equal(await check(specific, '10.1.2.3:8181'), true);
  assert.equal(await check(specific, 'sluice.example.com'), true);
  assert.equal(await check(specific, 'localhost:8181'), true);
  assert.equal(await check(specific, 'evil.example'), false);
  assert.equal(await check(specific, 'evil.example', '/logs'), true, 'OPA reaches a non-loopback Sluice by any name');
  const wildcard = new HostPolicy('0.0.0.0', []);
  assert.equal(await check(wildcard, '127.0.0.1'), true);
  assert.equal(await check(wildcard, 'evil.example'), false);
  assert.equal(await check(new HostPolicy('127.0.0.1', ['*']), 'evil.example'), true, '* turns the check off');
  assert.equal(
    await check(new HostPolicy('127.0.0.1', []), 'evil.example', '/logs'),
    false,
    'a loopback listen checks /logs too',
  );
});

test('a web page cannot post decisions: text/plain, form and untyped POST /logs get 415 (nothing stored), and no answer has CORS headers', async (t) => {
  const dir = dirFor(t);
  const sluice = await started(t, { data_dir: path.join(dir, 'data'), outputs: [] });
  const body = JSON.stringify(decisions(2));
  const answers: Answer[] = [];
  const post = async (headers: Record<string, string>, bytes: string | Buffer = body, route = '/logs') => {
    const res = await send(sluice.url, {
      method: 'POST',
      path: route,
      headers: { origin: 'https://evil.example', ...headers },
      body: bytes,
    });
    answers.push(res);
    return res;
  };
  // what a browser sends without asking first (a "simple" cross-origin request), and no gzip
  for (const headers of [
    { 'content-type': 'text/plain;charset=UTF-8' },
    { 'content-type': 'application/x-www-form-urlencoded' },
    { 'content-type': 'multipart/form-data; boundary=x' },
    {},
  ]) {
    for (const route of ['/logs', '/logs/p']) {
      const res = await post(headers, body, route);
      assert.equal(res.status, 415, `${JSON.stringify(headers)} ${route}: ${res.text}`);
      const error = JSON.parse(res.text) as { message: string; data: { reason: string } };
      assert.equal(error.data.reason, 'unsupported_media_type');
      assert.match(error.message, /application\/json/);
    }
  }
  const ready = await sluice.ready();
  assert.equal(ready.buffer.chunks, 0, 'nothing of a refused request was stored');
  const metrics = await (await fetch(`${sluice.url}/metrics`)).text();
  assert.match(
    metrics,
    /sluice_ingest_rejected_requests_total\{source="opa",reason="unsupported_media_type",code="415"\} 8/,
  );
  // what OPA and sluice send, and curl with -H 'Content-Type: application/json' (the README's quick start)
  assert.equal((await post({ 'content-type': 'application/json' })).status, 200);
  assert.equal(
    (await post({ 'content-type': 'application/json; charset=utf-8' }, JSON.stringify(decisions(1)))).status,
    200,
  );
  assert.equal(
    (await post({ 'content-encoding': 'gzip' }, gzipSync(JSON.stringify(decisions(1))))).status,
    200,
    'gzip needs no type',
  );
  // a preflight is never approved
  for (const route of ['/logs', '/api/v1/topics', '/ui/api/overview']) {
    answers.push(
      await send(sluice.url, {
        method: 'OPTIONS',
        path: route,
        headers: {
          origin: 'https://evil.example',
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'content-type',
        },
      }),
    );
  }
  for (const route of ['/api/v1/topics', '/ui', '/ready', '/health', '/metrics', '/openapi.json']) {
    answers.push(await send(sluice.url, { path: route, headers: { origin: 'https://evil.example' } }));
  }
  for (const a of answers) {
    for (const h of Object.keys(a.headers)) assert.ok(!h.startsWith('access-control-'), `no ${h} (answer ${a.status})`);
  }
});

test('with ingest.tokens, a valid token is enough whatever the Content-Type', async (t) => {
  const dir = dirFor(t);
  const sluice = await started(t, {
    data_dir: path.join(dir, 'data'),
    outputs: [],
    ingest: { tokens: ['ingest-t0ken'] },
  });
  const body = JSON.stringify(decisions(1));
  assert.equal(
    (
      await send(sluice.url, {
        method: 'POST',
        path: '/logs',
        headers: { 'content-type': 'text/plain', authorization: 'Bearer ingest-t0ken' },
        body,
      })
    ).status,
    200,
  );
  assert.equal(
    (await send(sluice.url, { method: 'POST', path: '/logs', headers: { 'content-type': 'text/plain' }, body })).status,
    401,
  );
});

test('/ui sends a Content-Security-Policy, X-Frame-Options: DENY and X-Content-Type-Options: nosniff', async (t) => {
  const dir = dirFor(t);
  const sluice = await started(t, { data_dir: path.join(dir, 'data'), outputs: [], api: { admin_key: 'adm1n' } });
  for (const route of ['/ui', '/ui/assets/console.js', '/ui/api/overview']) {
    const res = await fetch(`${sluice.url}${route}`, { headers: { authorization: 'Bearer adm1n' } });
    assert.equal(res.status, 200, route);
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/, `${route}: ${csp}`);
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|upgrade-insecure-requests/);
    assert.equal(res.headers.get('x-frame-options'), 'DENY', route);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff', route);
    assert.equal(res.headers.get('strict-transport-security'), null, 'plain HTTP: no HSTS');
  }
  // the console's API stays behind the admin key
  assert.equal((await fetch(`${sluice.url}/ui/api/overview`)).status, 401);
});

test('the console works under its Content-Security-Policy: chromium reports no violation', {
  skip: noBrowser,
}, async (t) => {
  const dir = dirFor(t);
  const sluice = await started(t, {
    data_dir: path.join(dir, 'data'),
    outputs: [{ name: 'local', type: 'file', path: path.join(dir, 'objects') }],
    api: { admin_key: 'adm1n' },
  });
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const page = await browser.newPage();
  const violations: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
  });
  page.on('pageerror', (e) => violations.push(e.message));
  await page.goto(`${sluice.url}/ui`);
  await page.waitForSelector('#login:not([hidden])', { timeout: 20_000 });
  await page.fill('#key', 'adm1n');
  await page.click('#login button');
  await page.waitForSelector('#console:not([hidden])', { timeout: 20_000 });
  await page.waitForFunction(() => document.querySelectorAll('#chart-rates canvas').length === 1, undefined, {
    timeout: 20_000,
  });
  assert.deepEqual(violations, []);
});

test('/ui/assets/constructor, __proto__ and other Object names are 404, unauthenticated, with no error logged', async (t) => {
  const dir = dirFor(t);
  const sluice = await started(t, { data_dir: path.join(dir, 'data'), outputs: [], api: { admin_key: 'adm1n' } });
  for (const name of ['constructor', '__proto__', 'hasOwnProperty', 'toString', 'valueOf', 'nope.js']) {
    const res = await fetch(`${sluice.url}/ui/assets/${name}`);
    assert.equal(res.status, 404, `${name}: ${await res.clone().text()}`);
    const error = (await res.json()) as { status: number; data: { reason: string } };
    assert.equal(error.status, 404);
    assert.ok(!JSON.stringify(error).includes('at '), 'no stack trace in the answer');
  }
  assert.equal((await fetch(`${sluice.url}/ui/assets/console.js`)).status, 200);
  assert.equal(
    (await fetch(`${sluice.url}/api/v1/destination-types/constructor`, { headers: { authorization: 'Bearer adm1n' } }))
      .status,
    404,
  );
  const errors = logLines(sluice).filter((l) => (l.level ?? 0) >= 50);
  assert.deepEqual(errors, [], 'nothing was logged at error');
});

interface Operation {
  security?: Array<Record<string, string[]>>;
}
type Paths = Record<string, Record<string, Operation>>;

async function openapi(
  url: string,
): Promise<{ paths: Paths; components: { securitySchemes?: Record<string, unknown> }; security?: unknown }> {
  const res = await fetch(`${url}/openapi.json`);
  assert.equal(res.status, 200);
  return (await res.json()) as never;
}

/** A documented path with its parameters filled in: the tenant is `acme`, other ids name nothing. */
function concrete(p: string): string {
  return p
    .replace('{tenant_id}', 'acme')
    .replace('{type}', 'aws_s3')
    .replace('{partition}', 'p')
    .replace(/\{[a-z_]+\}/g, 'none');
}

test('/openapi.json says per route which credential it needs, and the server agrees', async (t) => {
  const dir = dirFor(t);
  // nothing configured: every route is open, and says so
  const open = await started(t, { data_dir: path.join(dir, 'open'), outputs: [] });
  const openDoc = await openapi(open.url);
  assert.equal(openDoc.security, undefined, 'no document-wide claim');
  for (const [p, methods] of Object.entries(openDoc.paths)) {
    for (const [m, op] of Object.entries(methods)) assert.deepEqual(op.security, [], `${m.toUpperCase()} ${p} is open`);
  }

  const sluice = await started(t, {
    data_dir: path.join(dir, 'data'),
    outputs: [],
    api: { admin_key: 'adm1n' },
    ingest: { tokens: ['ingest-t0ken'] },
    observability: { token: 'obs-t0ken' },
  });
  const doc = await openapi(sluice.url);
  assert.deepEqual(Object.keys(doc.components.securitySchemes ?? {}).sort(), [
    'admin',
    'ingest',
    'observability',
    'tenant',
  ]);
  const claims = new Map<string, string[][]>();
  for (const [p, methods] of Object.entries(doc.paths)) {
    for (const [m, op] of Object.entries(methods)) {
      assert.ok(Array.isArray(op.security), `${m.toUpperCase()} ${p} has its own security`);
      claims.set(
        `${m.toUpperCase()} ${p}`,
        op.security!.map((s) => Object.keys(s)),
      );
    }
  }
  const expectations: Array<[string, string[][]]> = [
    ['POST /logs', [['ingest']]],
    ['POST /logs/{partition}', [['ingest']]],
    ['GET /metrics', [['observability']]],
    ['GET /ready', [['observability']]],
    ['GET /health', []],
    ['GET /ui', []],
    ['GET /ui/api/overview', [['admin']]],
    ['GET /ui/api/decisions', [['admin']]],
    ['GET /api/v1/tenants', [['admin'], ['tenant']]],
    ['PUT /api/v1/tenants/{tenant_id}', [['admin'], ['tenant']]],
    ['POST /api/v1/publish', [['admin']]],
    ['GET /api/v1/tenants/{tenant_id}', [['admin'], ['tenant']]],
    ['GET /api/v1/events', [['admin'], ['tenant']]],
    ['GET /api/v1/tenants/{tenant_id}/token', [['admin']]],
    ['GET /api/v1/tenants/{tenant_id}/portal', [['admin']]],
    ['GET /api/v1/config', [['admin']]],
    ['GET /api/v1/healthz', []],
  ];
  for (const [route, wanted] of expectations) assert.deepEqual(claims.get(route), wanted, route);

  // every claim against the server: no credential is 401 exactly where one is claimed; a tenant token is
  // refused (403) exactly where only the admin key is claimed
  const admin = { authorization: 'Bearer adm1n' };
  assert.equal((await fetch(`${sluice.url}/api/v1/tenants/acme`, { method: 'PUT', headers: admin })).status, 201);
  const { token } = (await (await fetch(`${sluice.url}/api/v1/tenants/acme/token`, { headers: admin })).json()) as {
    token: string;
  };
  // a body the route accepts where its validation would otherwise answer before its auth does
  const bodies = new Map([['POST /api/v1/publish', { tenant_id: 'acme', topic: 'orders', data: { n: 1 } }]]);
  // the tenant token deleting its own tenant revokes itself: that route comes last
  const ownDelete = 'DELETE /api/v1/tenants/{tenant_id}';
  const ordered = [...claims].sort(([a], [b]) => Number(a === ownDelete) - Number(b === ownDelete));
  for (const [route, schemes] of ordered) {
    const [method, p] = route.split(' ') as [string, string];
    const withBody = ['POST', 'PUT', 'PATCH'].includes(method);
    const call = (headers: Record<string, string>) =>
      fetch(`${sluice.url}${concrete(p)}`, {
        method,
        headers: { ...headers, ...(withBody ? { 'content-type': 'application/json' } : {}) },
        body: withBody ? JSON.stringify(bodies.get(route) ?? {}) : undefined,
      });
    const anonymous = await call({});
    assert.equal(
      anonymous.status === 401,
      schemes.length > 0,
      `${route} without a credential: ${anonymous.status}, documented ${JSON.stringify(schemes)}`,
    );
    if (p.startsWith('/api/v1/')) {
      const tenant = await call({ authorization: `Bearer ${token}` });
      // an open route (GET /api/v1/healthz) takes any caller
      const tenantReaches = schemes.length === 0 || schemes.some((s) => s.includes('tenant'));
      assert.equal(
        ![401, 403].includes(tenant.status),
        tenantReaches,
        `${route} with a tenant token: ${tenant.status} ${await tenant.text()}`,
      );
    }
  }
});

test('2,000 request headers get 431 with a short JSON body, not a connection reset', async (t) => {
  const dir = dirFor(t);
  const sluice = await started(t, { data_dir: path.join(dir, 'data'), outputs: [] });
  // over Node's 16 KiB of headers: refused by the parser while the client is still sending
  const large: Record<string, string> = {};
  for (let i = 0; i < 2000; i++) large[`x-header-${i}`] = 'v'.repeat(1000);
  const overflow = await send(sluice.url, { path: '/health', headers: large });
  assert.equal(overflow.status, 431, overflow.text);
  assert.equal(overflow.headers.connection, 'close');
  assert.deepEqual(JSON.parse(overflow.text), {
    status: 431,
    message: 'the request headers are larger than 16 KiB (all of them together)',
    data: { code: 'HPE_HEADER_OVERFLOW' },
  });
  // as many, each tiny: under the size limit, over the count
  const many: Record<string, string> = {};
  for (let i = 0; i < 2000; i++) many[`h${i}`] = '1';
  const counted = await send(sluice.url, { path: '/health', headers: many });
  assert.equal(counted.status, 431, counted.text);
  const error = JSON.parse(counted.text) as { status: number; data: { reason: string; max_headers: number } };
  assert.equal(error.data.reason, 'too_many_headers');
  assert.ok(error.data.max_headers >= 100, 'browsers and proxies stay well under the limit');
  assert.equal((await fetch(`${sluice.url}/health`)).status, 200, 'the server goes on');
});
