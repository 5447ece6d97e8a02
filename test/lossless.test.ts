/**
 * Decisions and events come out as they went in: through an output with a mask rule, `sluice query` and
 * `sluice tail`, the console's decision lookup, a published event's S3 object and the event API, every
 * number keeps its text (big integers, 2^53 + 1, long decimals, 1E+400, -0.0) and every object its key
 * order; only what a rule masks changes. And depth is bounded at the door: a publish body nested 100,000
 * levels is a 400 (not a 500) and the server keeps answering; data as deep as allowed is served by every
 * event route. The real `sluice serve`, the CLI and s3rver, on 127.0.0.1.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { runCli, SluiceProcess, tempDir } from './helpers/sluice.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/cli.js');
const ADMIN_KEY = 'lossless-test-admin-key';
const MAX_JSON_DEPTH = 1000;

/** Numbers a JS value cannot hold as written, and integer-like keys (JS objects would move them first). */
const EXOTIC =
  '"n":{"big":12345678901234567890123,"beyond_2_53":9007199254740993,"digits":0.10000000000000000555,' +
  '"huge":1E+400,"negative_zero":-0.0,"exp":2.50e-7},"order":{"b":1,"2":2,"a":3,"1":4}';

/** A decision's text as OPA could send it (compact), with a password to mask and EXOTIC in input and result. */
function decisionText(id: string, timestamp: string): string {
  return (
    `{"decision_id":"${id}","path":"authz/allow","input":{"password":"hunter2",${EXOTIC}},"result":{${EXOTIC}},` +
    `"timestamp":"${timestamp}","labels":{"id":"opa-1","version":"1.4.2"}}`
  );
}

/** The same decision as the masking output must write it: the password member gone, erased appended. */
function maskedText(id: string, timestamp: string): string {
  return (
    `{"decision_id":"${id}","path":"authz/allow","input":{${EXOTIC}},"result":{${EXOTIC}},` +
    `"timestamp":"${timestamp}","labels":{"id":"opa-1","version":"1.4.2"},"erased":["/input/password"]}`
  );
}

/** POSTs decision texts as OPA does (a gzip JSON array), built from the texts themselves, not from JS values. */
async function postTexts(url: string, texts: string[], partition = ''): Promise<Response> {
  return fetch(`${url}/logs${partition ? `/${partition}` : ''}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    body: gzipSync(Buffer.from(`[${texts.join(',')}]`)),
  });
}

/** Every object body a file output wrote (gunzipped), by key. */
function fileObjects(root: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const rel of readdirSync(root, { recursive: true }) as string[]) {
    if (!/\.(ndjson|json)(\.gz)?$/.test(rel)) continue;
    const body = readFileSync(path.join(root, rel));
    out.set(rel, (rel.endsWith('.gz') ? gunzipSync(body) : body).toString('utf8'));
  }
  return out;
}

const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const c of cleanups.reverse())
    await Promise.resolve()
      .then(c)
      .catch(() => {});
});

describe('decisions through outputs with rules, query, tail and the console', () => {
  const dir = tempDir('sluice-lossless-');
  const configFile = path.join(dir, 'sluice.yaml');
  const sluice = new SluiceProcess({
    cwd: dir,
    config: {
      data_dir: path.join(dir, 'data'),
      shutdown_timeout: '2s',
      outputs: [
        // the same decisions, masked (and as a gzip JSON array, the other way query reads objects) and as received
        {
          name: 'masked',
          type: 'file',
          path: path.join(dir, 'masked'),
          format: 'json_array',
          compression: 'gzip',
          batch: { max_age: '200ms' },
          rules: { mask: ['/input/password'] },
        },
        { name: 'raw', type: 'file', path: path.join(dir, 'raw'), compression: 'none', batch: { max_age: '200ms' } },
      ],
    },
  });
  const timestamp = new Date().toISOString().replace('Z', '123456Z');
  const ids = [randomUUID(), randomUUID(), randomUUID()];

  before(async () => {
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    cleanups.push(() => sluice.kill9());
    await sluice.start();
    const res = await postTexts(
      sluice.url,
      ids.map((id) => decisionText(id, timestamp)),
    );
    assert.equal(res.status, 200, await res.text());
    await sluice.until('both outputs delivered the three decisions', async () =>
      (await sluice.ready()).outputs.every((o) => o.delivered.events === 3),
    );
  });

  test('an output with a mask rule writes each decision with its numbers and key order intact', () => {
    const masked = [...fileObjects(path.join(dir, 'masked')).values()];
    assert.equal(masked.length, 1, 'one request, one batch, one object');
    assert.equal(masked[0], `[${ids.map((id) => maskedText(id, timestamp)).join(',')}]`);
    const raw = [...fileObjects(path.join(dir, 'raw')).values()];
    assert.deepEqual(
      raw,
      [`${ids.map((id) => decisionText(id, timestamp)).join('\n')}\n`],
      'an output without rules: the bytes received',
    );
  });

  test('sluice query prints each decision as stored, and --where compares number and object text', async () => {
    const all = await runCli(['query', '-c', configFile, '-o', 'masked', '--from', '2h']);
    assert.equal(all.code, 0, all.stderr);
    assert.deepEqual(all.stdout.trim().split('\n').sort(), ids.map((id) => maskedText(id, timestamp)).sort());
    const raw = await runCli(['query', '-c', configFile, '-o', 'raw', '--from', '2h', '--decision-id', ids[1]!]);
    assert.equal(raw.stdout, `${decisionText(ids[1]!, timestamp)}\n`);
    for (const where of [
      'input.n.big=12345678901234567890123',
      'input.n.beyond_2_53=9007199254740993',
      'result.n.huge=1E+400',
      'input.n.negative_zero=-0.0',
      'input.order={"b":1,"2":2,"a":3,"1":4}',
      'input.n.negative_zero=0',
    ]) {
      const found = await runCli(['query', '-c', configFile, '-o', 'masked', '--from', '2h', '--where', where]);
      assert.equal(found.code, 0, `--where ${where}: ${found.stderr}`);
      assert.equal(found.stdout.trim().split('\n').length, 3, `--where ${where} matches every decision`);
    }
    const none = await runCli([
      'query',
      '-c',
      configFile,
      '-o',
      'masked',
      '--from',
      '2h',
      '--where',
      'input.order={"2":2,"a":3,"b":1,"1":4}',
    ]);
    assert.equal(none.code, 1, 'another key order is other text');
  });

  test('sluice tail prints the decisions that land, as stored', async (t) => {
    const child = spawn(
      process.execPath,
      [CLI, 'tail', '-c', configFile, '-o', 'masked', '--interval', '200ms', '--max', '1'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    t.after(() => child.kill('SIGKILL'));
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    let code: number | null | undefined;
    const exited = new Promise<void>((resolve) =>
      child.on('exit', (c) => {
        code = c;
        resolve();
      }),
    );
    // tail does not say when its first listing is done, and objects that land before it are not printed:
    // one decision at a time, each waited for in the objects, until tail has printed one
    const posted = new Map<string, string>();
    for (let i = 0; i < 60 && code === undefined; i++) {
      const id = randomUUID();
      posted.set(id, maskedText(id, timestamp));
      assert.equal((await postTexts(sluice.url, [decisionText(id, timestamp)])).status, 200);
      await sluice.until(
        'the decision in the objects',
        async () => (await sluice.ready()).outputs[0]!.delivered.events === 3 + posted.size,
      );
      await untilOrTimeout(exited, 1_000);
    }
    await untilOrTimeout(exited, 15_000);
    assert.equal(code, 0, `tail exits 0 after --max 1: ${stdout}`);
    const line = stdout.trim();
    const id = /"decision_id":"([^"]+)"/.exec(line)?.[1];
    assert.ok(id && posted.has(id), `a decision posted after tail started: ${line}`);
    assert.equal(line, posted.get(id));
  });

  test("the console's decision lookup answers each decision's stored text", async () => {
    const res = await fetch(`${sluice.url}/ui/api/decisions?output=masked&decision_id=${ids[2]}&from=2h`);
    const text = await res.text();
    assert.equal(res.status, 200, text);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.ok(text.startsWith(`{"decisions":[${maskedText(ids[2]!, timestamp)}],`), text);
    assert.equal(JSON.parse(text).truncated, false);
  });
});

describe('published events keep their data as sent; publish bodies have a depth bound', () => {
  const dir = tempDir('sluice-lossless-events-');
  const s3 = new TestS3(['events', 'batched']);
  let sluice: SluiceProcess;
  const auth = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' };
  const api = (route: string, init: RequestInit = {}) =>
    fetch(`${sluice.url}/api/v1${route}`, { ...init, headers: { ...auth, ...init.headers } });
  /** Publishes a body given as text; returns the answer's status and parsed body. */
  const publish = async (body: string) => {
    const res = await api('/publish', { method: 'POST', body });
    const text = await res.text();
    return {
      status: res.status,
      text,
      body: JSON.parse(text) as { id: string; status?: number; message?: string; data?: { reason?: string } },
    };
  };
  const publishBody = (data: string, extra = '') => `{"tenant_id":"acme","topic":"orders"${extra},"data":${data}}`;
  let perEvent = '';

  before(async () => {
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    await s3.start();
    cleanups.push(async () => {
      await s3.stop();
      rmSync(s3.directory, { recursive: true, force: true });
    });
    sluice = new SluiceProcess({
      config: {
        data_dir: dir,
        outputs: [],
        shutdown_timeout: '2s',
        api: {
          admin_key: ADMIN_KEY,
          retry: { initial_backoff: '100ms', max_backoff: '200ms', max_retries: 50 },
          destinations: { allowed_endpoints: ['127.0.0.1/32'] },
        },
      },
    });
    cleanups.push(() => sluice.kill9());
    await sluice.start();
    assert.equal((await api('/tenants/acme', { method: 'PUT', body: '{}' })).status, 201);
    const destination = (bucket: string, config: Record<string, unknown> = {}) =>
      JSON.stringify({
        type: 'aws_s3',
        topics: ['orders'],
        credentials: { key: S3_KEY, secret: S3_SECRET },
        config: { bucket, region: 'us-east-1', endpoint: s3.endpoint, ...config },
      });
    const created = await api('/tenants/acme/destinations', { method: 'POST', body: destination('events') });
    assert.equal(created.status, 201, await created.clone().text());
    perEvent = ((await created.json()) as { id: string }).id;
    const batched = await api('/tenants/acme/destinations', {
      method: 'POST',
      body: destination('batched', {
        batching: { max_events: 1, max_age: '200ms', compression: 'none', format: 'ndjson' },
      }),
    });
    assert.equal(batched.status, 201);
  });

  /** Waits for the per-event object of an event and returns its body. */
  async function objectOf(id: string): Promise<string> {
    let key: string | undefined;
    await sluice.until(`the object of event ${id}`, async () => {
      key = (await s3.keys('events')).find((k) => k.endsWith(`_${id}.json`));
      return key !== undefined;
    });
    return (await s3.object(key!, 'events')).body.toString('utf8');
  }

  test('the S3 object is the exact data text, and GET /events, /events/{id} carry it intact', async () => {
    // whitespace inside data is part of what was sent, so it is kept too
    const data = `{"order_id": 12345678901234567890123, ${EXOTIC}, "list":[1.0, -0, 9007199254740993],\n "10":"x"}`;
    const published = await publish(publishBody(data, ',"metadata":{"source":"checkout"}'));
    assert.equal(published.status, 202, published.text);
    const id = published.body.id;
    assert.equal(await objectOf(id), data);

    const one = await api(`/events/${id}`);
    const oneText = await one.text();
    assert.equal(one.status, 200, oneText);
    assert.ok(oneText.includes(`"data":${data},`), oneText);
    assert.equal(JSON.parse(oneText).metadata.source, 'checkout');
    const list = await api(`/events?tenant_id=acme&topic=orders&limit=100`);
    const listText = await list.text();
    assert.equal(list.status, 200);
    assert.ok(listText.includes(`"id":"${id}"`) && listText.includes(`"data":${data},`), listText.slice(0, 2000));
    assert.ok(Array.isArray(JSON.parse(listText).models));

    // a batched destination writes it as one NDJSON line: only the raw newline (whitespace) becomes a space
    await sluice.until('the batched object', async () => {
      for (const key of await s3.keys('batched'))
        if ((await s3.object(key, 'batched')).body.toString('utf8').includes(`"order_id": 12345678901234567890123`))
          return true;
      return false;
    });
    const bodies = await Promise.all(
      (await s3.keys('batched')).map(async (key) => (await s3.object(key, 'batched')).body.toString('utf8')),
    );
    assert.ok(bodies.includes(`${data.replace('\n', ' ')}\n`), bodies.join('\n---\n'));
  });

  test('a body nested 100,000 levels is a 400 with the error shape, and the server keeps answering', async () => {
    const deep = `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`;
    const refused = await publish(publishBody(deep));
    assert.equal(refused.status, 400, refused.text.slice(0, 500));
    assert.equal(refused.body.status, 400);
    assert.match(refused.body.message!, /nested deeper than 1000 levels/);
    assert.equal(refused.body.data?.reason, 'too_deep');
    // one level past the bound is refused the same way, on every /api/v1 route that takes a body
    const justOver = `${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}`;
    assert.equal((await publish(publishBody(`{"x":${justOver}}`))).status, 400);
    const tenant = await api('/tenants/deep', {
      method: 'PUT',
      body: `{"metadata":${'['.repeat(MAX_JSON_DEPTH + 1)}${']'.repeat(MAX_JSON_DEPTH + 1)}}`,
    });
    assert.equal(tenant.status, 400);
    // still serving
    assert.equal((await api('/events?limit=1')).status, 200);
    const ok = await publish(publishBody('{"after":true}'));
    assert.equal(ok.status, 202, ok.text);
  });

  test('data as deep as the bound allows is stored, delivered and served by every event route', async () => {
    // the body is at most 1000 levels deep, so its data 999
    const depth = MAX_JSON_DEPTH - 1;
    const data = `${'{"a":'.repeat(depth - 1)}{"n":12345678901234567890123}${'}'.repeat(depth - 1)}`;
    const published = await publish(publishBody(data));
    assert.equal(published.status, 202, published.text.slice(0, 500));
    const id = published.body.id;
    // (assert.ok: a failure message of two 6 kB texts would say nothing)
    assert.ok((await objectOf(id)) === data, 'the object body is the data text');
    const one = await api(`/events/${id}`);
    const oneText = await one.text();
    assert.equal(one.status, 200, oneText.slice(0, 500));
    assert.ok(oneText.includes(`"data":${data},`), 'GET /events/{id} carries the data text');
    for (const route of ['/events', '/events?limit=1000', `/events?destination_id=${perEvent}`, '/attempts']) {
      const res = await api(route);
      assert.equal(res.status, 200, `${route}: ${(await res.text()).slice(0, 500)}`);
    }
  });

  test('a body that is not valid UTF-8 is a 400 (invalid_utf8) that stores nothing; valid UTF-8, U+FFFD itself included, is kept byte for byte', async () => {
    const bytes = (...parts: Array<string | number[]>) =>
      Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
    const invalid: Array<[string, number[]]> = [
      ['a lone continuation byte', [0x80]],
      ['0xFF', [0xff]],
      ['a sequence cut short', [0xe2, 0x82]],
      ['an overlong encoding of "/"', [0xc0, 0xaf]],
      ['a UTF-16 surrogate encoded as UTF-8', [0xed, 0xa0, 0x80]],
    ];
    for (const [what, bad] of invalid) {
      const marker = `utf8-${what.replace(/\W+/g, '-')}`;
      const res = await api('/publish', {
        method: 'POST',
        body: bytes(`{"tenant_id":"acme","topic":"orders","id":"${marker}","data":{"s":"x`, bad, 'y"}}'),
      });
      const text = await res.text();
      assert.equal(res.status, 400, `${what}: ${text}`);
      const body = JSON.parse(text) as { status: number; message: string; data: { reason: string } };
      assert.equal(body.status, 400);
      assert.match(body.message, /not valid UTF-8/);
      assert.deepEqual(body.data, { reason: 'invalid_utf8' });
      assert.equal((await api(`/events/${marker}`)).status, 404, `${what}: nothing was stored`);
    }
    // in another route's body too: a tenant's metadata
    const tenant = await api('/tenants/utf8', { method: 'PUT', body: bytes('{"metadata":{"k":"', [0xff], '"}}') });
    assert.equal(tenant.status, 400);
    assert.equal(((await tenant.json()) as { data: { reason: string } }).data.reason, 'invalid_utf8');
    assert.equal((await api('/tenants/utf8')).status, 404);

    // U+FFFD sent as such, and an escape, which stays an escape
    const data = '{"s":"é € 𝄞 \uFFFD \\u00e9"}';
    const published = await api('/publish', { method: 'POST', body: Buffer.from(publishBody(data)) });
    const text = await published.text();
    assert.equal(published.status, 202, text);
    assert.ok(
      Buffer.from(await objectOf((JSON.parse(text) as { id: string }).id)).equals(Buffer.from(data)),
      'the object holds the bytes sent',
    );
  });
});

/** Resolves when `promise` does or after `ms`, whichever is first; the timer never outlives it. */
async function untilOrTimeout(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    promise,
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}
