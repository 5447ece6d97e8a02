/**
 * The Outpost-compatible control-plane API under /api/v1, against the real `sluice serve` process: tenants,
 * tokens and auth, destinations (both path shapes), destination types, topics, publish, and the delivery log
 * (events, attempts, retry). What S3 objects look like is test/destinations.test.ts's business; here a
 * destination points at a closed port when deliveries must exist at all, so every attempt fails fast.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { SignJWT } from 'jose';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { ApiClient, assertError, assertNotFound, assertValidation, decodeJwt, UUID, type Json } from './helpers/api.js';

const ADMIN = 'admin-secret';
/** Nothing listens here: an upload is refused at once. */
const DEAD_ENDPOINT = 'http://127.0.0.1:1';

/** Keys from the environment of whoever runs the tests must not change what the server is configured with. */
const CLEAN_ENV: NodeJS.ProcessEnv = {
  SLUICE_ADMIN_KEY: undefined,
  SLUICE_JWT_SECRET: undefined,
  SLUICE_ENCRYPTION_KEY: undefined,
};

interface Server {
  sluice: SluiceProcess;
  admin: ApiClient;
  anon: ApiClient;
  dataDir: string;
}

/** One real server for the enclosing describe, stopped and removed after it. */
function serve(api: Record<string, unknown>): Server {
  const server = {} as Server;
  const dirs: string[] = [];
  before(async () => {
    const dataDir = tempDir();
    const cwd = tempDir();
    dirs.push(dataDir, cwd);
    server.dataDir = dataDir;
    // destinations point at loopback (a closed port, s3rver), which tenant destinations reach only when allowed
    const withLoopback = { destinations: { allowed_endpoints: ['127.0.0.1/32'] }, ...api };
    server.sluice = new SluiceProcess({
      config: { data_dir: dataDir, shutdown_timeout: '2s', api: withLoopback, outputs: [] },
      cwd,
      env: CLEAN_ENV,
    });
    await server.sluice.start();
    server.admin = new ApiClient(server.sluice.url, typeof api.admin_key === 'string' ? api.admin_key : undefined);
    server.anon = new ApiClient(server.sluice.url);
  });
  after(async () => {
    await server.sluice?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  return server;
}

/** A valid aws_s3 destination body; `over` replaces top-level fields. */
function s3Destination(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'aws_s3',
    topics: ['orders'],
    config: { bucket: 'test-bucket', region: 'us-east-1', endpoint: DEAD_ENDPOINT },
    credentials: { key: 'AKIATESTKEY000000000', secret: 'test-secret-value-0000000000000000000000' },
    ...over,
  };
}

async function createDestination(api: ApiClient, tenant: string, over: Record<string, unknown> = {}): Promise<Json> {
  const res = await api.post(`/tenants/${tenant}/destinations`, s3Destination(over));
  assert.equal(res.status, 201, `create a destination for ${tenant}: ${res.text}`);
  assert.equal(typeof res.body.id, 'string', `the new destination has an id: ${res.text}`);
  return res.body;
}

async function putTenant(api: ApiClient, tenant: string, body: Record<string, unknown> = {}): Promise<void> {
  const res = await api.put(`/tenants/${tenant}`, body);
  assert.ok(res.status === 201 || res.status === 200, `PUT /tenants/${tenant}: ${res.status} ${res.text}`);
}

const sorted = (xs: string[]) => [...xs].sort();
const ids = (models: Json[]): string[] => models.map((m) => m.id as string);

function assertTimestamp(value: unknown, what: string): void {
  assert.equal(typeof value, 'string', `${what} is a timestamp string; got ${JSON.stringify(value)}`);
  assert.ok(!Number.isNaN(Date.parse(value as string)), `${what} parses as a date; got ${JSON.stringify(value)}`);
}

/** Lines of the process output that warn (pino level >= 40, or a plain line saying "warn") and mention `word`. */
function warningsMentioning(output: string, word: string): string[] {
  return output.split('\n').filter((line) => {
    if (!line.includes(word)) return false;
    try {
      const entry = JSON.parse(line) as { level?: unknown };
      return typeof entry.level === 'number' ? entry.level >= 40 : /warn/i.test(String(entry.level));
    } catch {
      return /warn/i.test(line);
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------

describe('tenants and auth (admin_key configured)', () => {
  const s = serve({ admin_key: ADMIN });

  test('PUT creates a tenant (201), PUT again updates it (200); GET returns its fields', async () => {
    const created = await s.admin.put('/tenants/acme', { metadata: { plan: 'pro' } });
    assert.equal(created.status, 201, created.text);

    const first = await s.admin.get('/tenants/acme');
    assert.equal(first.status, 200, first.text);
    assert.equal(first.body.id, 'acme');
    assert.equal(first.body.destinations_count, 0);
    assert.deepEqual(first.body.topics, []);
    assert.deepEqual(first.body.metadata, { plan: 'pro' });
    assertTimestamp(first.body.created_at, 'created_at');
    assertTimestamp(first.body.updated_at, 'updated_at');

    const updated = await s.admin.put('/tenants/acme', { metadata: { plan: 'team' } });
    assert.equal(updated.status, 200, `PUT of an existing tenant is an update: ${updated.text}`);
    const second = await s.admin.get('/tenants/acme');
    assert.equal(second.status, 200, second.text);
    assert.deepEqual(second.body.metadata, { plan: 'team' }, 'the update replaced the metadata');
    assert.equal(second.body.created_at, first.body.created_at, 'an update keeps created_at');

    assertNotFound(await s.admin.get('/tenants/nobody'), 'GET of a tenant that does not exist');
  });

  test('GET /tenants/{id} counts the destinations and lists the union of their topics', async () => {
    await putTenant(s.admin, 'topical');
    await createDestination(s.admin, 'topical', { topics: ['orders'] });
    await createDestination(s.admin, 'topical', { topics: ['refunds', 'orders'] });
    const res = await s.admin.get('/tenants/topical');
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.destinations_count, 2);
    assert.ok(Array.isArray(res.body.topics), res.text);
    assert.deepEqual(sorted(res.body.topics), ['orders', 'refunds'], 'each topic once');
  });

  test('DELETE removes the tenant and its destinations', async () => {
    await putTenant(s.admin, 'doomed');
    const dest = await createDestination(s.admin, 'doomed');
    const del = await s.admin.delete('/tenants/doomed');
    assert.equal(del.status, 200, del.text);
    assert.deepEqual(del.body, { success: true });
    assertNotFound(await s.admin.get('/tenants/doomed'), 'GET of the deleted tenant');

    // the same id again is a new, empty tenant: the old destinations went with the old one
    const again = await s.admin.put('/tenants/doomed', {});
    assert.equal(again.status, 201, `the deleted tenant is gone, so PUT creates it: ${again.text}`);
    const tenant = await s.admin.get('/tenants/doomed');
    assert.equal(tenant.body.destinations_count, 0, tenant.text);
    const list = await s.admin.get('/tenants/doomed/destinations');
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.body, []);
    assertNotFound(await s.admin.get(`/tenants/doomed/destinations/${dest.id}`), 'the old destination');
  });

  test('GET /tenants pages with limit and next/prev cursors: every tenant once', async () => {
    const mine = ['page-1', 'page-2', 'page-3', 'page-4', 'page-5'];
    for (const id of mine) await putTenant(s.admin, id);

    // Outpost's bound for tenant pages: 100 (a larger limit is 422)
    assert.equal((await s.admin.get('/tenants?limit=101')).status, 422);
    const everything = await s.admin.page('/tenants', { limit: 100 });
    assert.equal(everything.pagination.next, null, 'one page holds them all');
    const all = ids(everything.models);
    for (const id of mine) assert.ok(all.includes(id), `${id} is listed`);
    assert.equal(new Set(all).size, all.length, 'no tenant twice');

    // forwards, two at a time
    const pages: string[][] = [];
    let page = await s.admin.page('/tenants', { limit: 2 });
    assert.equal(page.pagination.prev, null, 'the first page has no prev');
    assert.equal(page.pagination.limit, 2);
    pages.push(ids(page.models));
    for (let i = 0; page.pagination.next !== null; i++) {
      assert.ok(i < 50, 'next cursors end');
      const next: string = page.pagination.next;
      page = await s.admin.page('/tenants', { limit: 2, next });
      assert.notEqual(page.pagination.prev, null, 'a later page has a prev cursor');
      pages.push(ids(page.models));
    }
    for (const p of pages)
      assert.ok(p.length >= 1 && p.length <= 2, `pages hold 1..limit tenants: ${JSON.stringify(pages)}`);
    const walked = pages.flat();
    assert.equal(new Set(walked).size, walked.length, `no tenant on two pages: ${JSON.stringify(pages)}`);
    assert.deepEqual(sorted(walked), sorted(all), `the pages together are every tenant: ${JSON.stringify(pages)}`);
    assert.equal(pages.length, Math.ceil(all.length / 2));

    // backwards from the last page gives the same pages in reverse
    const back: string[][] = [ids(page.models)];
    for (let i = 0; page.pagination.prev !== null; i++) {
      assert.ok(i < 50, 'prev cursors end');
      const prev: string = page.pagination.prev;
      page = await s.admin.page('/tenants', { limit: 2, prev });
      back.unshift(ids(page.models));
    }
    assert.deepEqual(back, pages, 'prev walks back through the same pages');
  });

  test('GET /tenants/{id}/token returns an HS256 JWT for that tenant, valid 24 h', async () => {
    await putTenant(s.admin, 'tok');
    const res = await s.admin.get('/tenants/tok/token');
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.tenant_id, 'tok');
    const { header, payload } = decodeJwt(res.body.token);
    assert.equal(header.alg, 'HS256');
    assert.equal(payload.sub, 'tok');
    const now = Date.now() / 1000;
    assert.equal(typeof payload.exp, 'number', JSON.stringify(payload));
    assert.ok(
      payload.exp > now + 23 * 3600 && payload.exp < now + 25 * 3600,
      `expires in 24 h: ${JSON.stringify(payload)}`,
    );
  });

  test("a tenant token reaches its own tenant, and is 403 on another tenant's paths and on admin-only routes", async () => {
    await putTenant(s.admin, 'alpha');
    await putTenant(s.admin, 'beta');
    const betaDest = await createDestination(s.admin, 'beta');
    const token = (await s.admin.get('/tenants/alpha/token')).body.token as string;
    const alpha = s.admin.as(token);

    // its own tenant
    const own = await alpha.get('/tenants/alpha');
    assert.equal(own.status, 200, own.text);
    assert.equal(own.body.id, 'alpha');
    const created = await alpha.post('/tenants/alpha/destinations', s3Destination());
    assert.equal(created.status, 201, created.text);
    const list = await alpha.get('/tenants/alpha/destinations');
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(ids(list.body), [created.body.id]);
    const oldList = await alpha.get('/alpha/destinations');
    assert.equal(oldList.status, 200, oldList.text);
    assert.deepEqual(ids(oldList.body), [created.body.id]);
    assert.equal((await alpha.get(`/tenants/alpha/destinations/${created.body.id}`)).status, 200);

    // another tenant
    assertError(await alpha.get('/tenants/beta'), 403, 'GET another tenant');
    assertError(await alpha.get('/tenants/beta/destinations'), 403, "another tenant's destinations");
    assertError(await alpha.get('/beta/destinations'), 403, "another tenant's destinations, older path");
    assertError(await alpha.get(`/tenants/beta/destinations/${betaDest.id}`), 403, "another tenant's destination");
    assertError(await alpha.post('/tenants/beta/destinations', s3Destination()), 403, 'create for another tenant');
    assertError(
      await alpha.delete(`/tenants/beta/destinations/${betaDest.id}`),
      403,
      "delete another tenant's destination",
    );
    assert.equal(
      (await s.admin.get(`/tenants/beta/destinations/${betaDest.id}`)).status,
      200,
      'the 403 changed nothing',
    );

    // as in Outpost: GET /tenants lists only itself, and it may PUT its own tenant (not another)
    const tenants = await alpha.get('/tenants');
    assert.equal(tenants.status, 200, tenants.text);
    assert.deepEqual(ids(tenants.body.models), ['alpha']);
    assert.equal(tenants.body.count, 1);
    assertError(await alpha.get('/tenants?id=beta'), 403, 'GET /tenants?id=<another tenant>');
    const renamed = await alpha.put('/tenants/alpha', { metadata: { x: 'y' } });
    assert.equal(renamed.status, 200, renamed.text);
    assert.deepEqual(renamed.body.metadata, { x: 'y' });
    assertError(await alpha.put('/tenants/beta', { metadata: { x: 'y' } }), 403, 'PUT another tenant');
    assertError(await alpha.delete('/tenants/beta'), 403, 'DELETE another tenant');
    // admin-only routes, even for its own tenant
    assertError(
      await alpha.post('/publish', { tenant_id: 'alpha', topic: 'orders', data: { a: 1 } }),
      403,
      'POST /publish',
    );
    assertError(await alpha.get('/tenants/alpha/token'), 403, 'a token minting tokens');
    assertError(await alpha.get('/tenants/alpha/portal'), 403, 'the portal URL');
    assert.equal((await s.admin.get('/tenants/alpha')).status, 200, 'the tenant is still there');
    assert.equal((await s.admin.get('/tenants/beta')).status, 200, 'the other tenant is still there');
    // its own tenant's DELETE: allowed, and it revokes the token itself
    const deleted = await alpha.delete('/tenants/alpha');
    assert.equal(deleted.status, 200, deleted.text);
    assert.equal((await alpha.get('/tenants/alpha')).status, 401, 'its token is revoked by the delete');
  });

  test('no token, a wrong key, another scheme or a forged token is 401', async () => {
    await putTenant(s.admin, 'gamma');
    for (const [method, path, body] of [
      ['GET', '/tenants', undefined],
      ['GET', '/tenants/gamma', undefined],
      ['GET', '/tenants/gamma/destinations', undefined],
      ['POST', '/publish', { tenant_id: 'gamma', topic: 'orders', data: { a: 1 } }],
    ] as const) {
      assertError(await s.anon.request(method, path, body), 401, `${method} ${path} without a token`);
      assertError(
        await s.admin.as('not-the-admin-key').request(method, path, body),
        401,
        `${method} ${path} with a wrong key`,
      );
    }
    assertError(
      await s.anon.request('GET', '/tenants', undefined, {
        authorization: `Basic ${Buffer.from(`admin:${ADMIN}`).toString('base64')}`,
      }),
      401,
      'Basic auth',
    );

    // a real tenant token with its subject changed no longer verifies
    const token = (await s.admin.get('/tenants/gamma/token')).body.token as string;
    const [h, , sig] = token.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...decodeJwt(token).payload, sub: 'acme' })).toString('base64url')}.${sig}`;
    assertError(await s.admin.as(forged).get('/tenants/acme'), 401, 'a token whose sub was edited');
    const foreign = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('gamma')
      .setIssuer('outpost')
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode('some-other-secret'));
    assertError(await s.admin.as(foreign).get('/tenants/gamma'), 401, 'a token signed with another secret');
  });

  test('with an admin_key configured there is no warning about admin_key', () => {
    assert.deepEqual(warningsMentioning(s.sluice.output, 'admin_key'), []);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('no admin_key configured', () => {
  const s = serve({});

  test('the API is open to every caller and the server warns about it at start', async () => {
    await s.sluice.until(
      'a warning mentioning admin_key',
      () => warningsMentioning(s.sluice.output, 'admin_key').length > 0,
      5_000,
    );

    const put = await s.anon.put('/tenants/open', {});
    assert.equal(put.status, 201, put.text);
    const list = await s.anon.page('/tenants');
    assert.deepEqual(ids(list.models), ['open']);
    const token = await s.anon.get('/tenants/open/token');
    assert.equal(token.status, 200, token.text);
    const publish = await s.anon.post('/publish', { tenant_id: 'open', topic: 'anything', data: { a: 1 } });
    assert.equal(publish.status, 202, publish.text);
    assert.deepEqual(publish.body.destination_ids, [], 'the tenant has no destinations');
    // any bearer is admin too
    assert.equal((await s.anon.as('whatever').get('/tenants')).status, 200);
  });

  test('GET /topics is [] when no topics are configured (any topic)', async () => {
    const res = await s.anon.get('/topics');
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, []);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('destinations', () => {
  const s = serve({ admin_key: ADMIN });
  const KEY = 'AKIAIOSFODNN7EXAMPLE';
  const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
  const NEW_KEY = 'ASIAY34FZKBOKMUTVV7A';
  const NEW_SECRET = 'NeWsEcReT/0123456789abcdefghijklmnopqrs';
  const SESSION = 'FwoGZXIvYXdzEXAMPLESESSIONTOKEN0123456789';

  before(async () => {
    await putTenant(s.admin, 'acme');
    await putTenant(s.admin, 'globex');
  });

  test("the seed's curl body on the older path /api/v1/{tenant}/destinations: 201, and visible on both paths", async () => {
    // exactly the body of the Outpost documentation's example
    const body =
      '{ "type": "aws_s3", "topics": ["orders"], "config": { "bucket": "my-events-bucket", "region": "us-east-1" }, "credentials": { "key": "<AWS_ACCESS_KEY_ID>", "secret": "<AWS_SECRET_ACCESS_KEY>" } }';
    const res = await s.admin.post('/acme/destinations', body);
    assert.equal(res.status, 201, res.text);
    const d = res.body;
    assert.equal(typeof d.id, 'string');
    assert.ok(d.id.length > 0);
    assert.equal(d.type, 'aws_s3');
    assert.deepEqual(d.topics, ['orders']);
    assert.equal(d.config.bucket, 'my-events-bucket');
    assert.equal(d.config.region, 'us-east-1');
    assert.equal(d.credentials.secret, '****');
    assert.ok(
      !res.text.includes('<AWS_SECRET_ACCESS_KEY>') && !res.text.includes('<AWS_ACCESS_KEY_ID>'),
      `credentials not echoed: ${res.text}`,
    );
    assert.equal(d.disabled_at ?? null, null, 'a new destination is enabled');
    assertTimestamp(d.created_at, 'created_at');

    const viaNew = await s.admin.get(`/tenants/acme/destinations/${d.id}`);
    assert.equal(viaNew.status, 200, viaNew.text);
    assert.deepEqual(viaNew.body, d, 'the same destination on the current path');
    const viaOld = await s.admin.get(`/acme/destinations/${d.id}`);
    assert.equal(viaOld.status, 200, viaOld.text);
    assert.deepEqual(viaOld.body, d);
    const list = await s.admin.get('/tenants/acme/destinations');
    assert.equal(list.status, 200, list.text);
    assert.ok(ids(list.body).includes(d.id), `listed: ${list.text}`);
    const oldList = await s.admin.get('/acme/destinations');
    assert.deepEqual(sorted(ids(oldList.body)), sorted(ids(list.body)), 'both list paths agree');
  });

  test('a body missing the required fields is 422 naming each of them', async () => {
    const empty = await s.admin.post('/tenants/acme/destinations', {
      type: 'aws_s3',
      topics: ['orders'],
      config: {},
      credentials: {},
    });
    assertValidation(
      empty,
      [
        'config.bucket is required',
        'config.region is required',
        'credentials.key is required',
        'credentials.secret is required',
      ],
      'empty config and credentials',
    );
    const absent = await s.admin.post('/tenants/acme/destinations', { type: 'aws_s3', topics: ['orders'] });
    assertValidation(
      absent,
      [
        'config.bucket is required',
        'config.region is required',
        'credentials.key is required',
        'credentials.secret is required',
      ],
      'no config and no credentials',
    );
    const noRegion = await s.admin.post('/acme/destinations', {
      type: 'aws_s3',
      topics: ['orders'],
      config: { bucket: 'b-1' },
      credentials: { key: 'k', secret: 's' },
    });
    assertValidation(noRegion, ['config.region is required'], 'no region, older path');
    assert.ok(
      !noRegion.body.data.includes('config.bucket is required'),
      `only the missing field is named: ${noRegion.text}`,
    );
    const noTopics = await s.admin.post('/tenants/acme/destinations', s3Destination({ topics: undefined }));
    assertValidation(noTopics, [], 'no topics');
    assert.ok(
      noTopics.body.data.some((p: unknown) => String(p).startsWith('topics')),
      `a problem names topics: ${noTopics.text}`,
    );
  });

  test('a bad storage_class and a key_template that does not compile are both listed', async () => {
    const res = await s.admin.post('/tenants/acme/destinations', {
      type: 'aws_s3',
      topics: ['orders'],
      config: { bucket: 'b-1', region: 'us-east-1', storage_class: 'SUPERFAST', key_template: "join('/'," },
      credentials: { key: 'AKIAX' },
    });
    assertValidation(res, [
      'config.storage_class failed enum validation',
      'config.key_template failed pattern validation',
      'credentials.secret is required',
    ]);
  });

  test('an unknown type or no type is 422', async () => {
    const before = await s.admin.get('/tenants/acme/destinations');
    assert.equal(before.status, 200, before.text);
    for (const [what, type] of [
      ['unknown type', 'aws_s4'],
      ['no type', undefined],
    ] as const) {
      const res = await s.admin.post('/tenants/acme/destinations', s3Destination({ type }));
      assertValidation(res, [], what);
      assert.ok(
        res.body.data.some((p: unknown) => String(p).startsWith('type')),
        `${what}: a problem names type: ${res.text}`,
      );
    }
    const after = await s.admin.get('/tenants/acme/destinations');
    assert.deepEqual(sorted(ids(after.body)), sorted(ids(before.body)), `nothing was created: ${after.text}`);
  });

  test('storage_class in any case and a key_template that compiles are accepted', async () => {
    const d = await createDestination(s.admin, 'acme', {
      config: {
        bucket: 'b-1',
        region: 'eu-west-1',
        storage_class: 'glacier',
        key_template: "join('/', ['orders', time.date, join('', [metadata.\"event-id\", '.json'])])",
      },
    });
    assert.equal(String(d.config.storage_class).toUpperCase(), 'GLACIER');
    assert.equal(d.config.key_template, "join('/', ['orders', time.date, join('', [metadata.\"event-id\", '.json'])])");
    const mixed = await createDestination(s.admin, 'acme', {
      config: { bucket: 'b-1', region: 'eu-west-1', storage_class: 'Standard_Ia' },
    });
    assert.equal(String(mixed.config.storage_class).toUpperCase(), 'STANDARD_IA');
  });

  test('credentials are masked in every response and kept when PATCH sends the masked values back', async () => {
    const seen: string[] = [];
    const api = new ApiClient(s.sluice.url, ADMIN, seen);
    const created = await api.post(
      '/tenants/acme/destinations',
      s3Destination({ credentials: { key: KEY, secret: SECRET } }),
    );
    assert.equal(created.status, 201, created.text);
    const id = created.body.id as string;
    assert.deepEqual(created.body.credentials, { key: 'AKIA****', secret: '****' });

    const got = await api.get(`/tenants/acme/destinations/${id}`);
    assert.deepEqual(got.body.credentials, { key: 'AKIA****', secret: '****' });
    await api.get(`/acme/destinations/${id}`);
    const list = await api.get('/tenants/acme/destinations');
    const listed = list.body.find((d: Json) => d.id === id);
    assert.deepEqual(listed?.credentials, { key: 'AKIA****', secret: '****' }, `listed masked: ${list.text}`);
    await api.get('/acme/destinations');

    // the masked values sent back keep what is stored: accepted, and still the same masked key
    const masked = await api.patch(`/tenants/acme/destinations/${id}`, {
      credentials: { key: 'AKIA****', secret: '****' },
    });
    assert.equal(masked.status, 200, masked.text);
    assert.deepEqual(masked.body.credentials, { key: 'AKIA****', secret: '****' });
    const maskedOld = await api.patch(`/acme/destinations/${id}`, {
      topics: ['orders'],
      credentials: { key: 'AKIA****', secret: '****' },
    });
    assert.equal(maskedOld.status, 200, maskedOld.text);

    // new credentials replace them (shown by the new key's prefix), and are masked too
    const replaced = await api.patch(`/tenants/acme/destinations/${id}`, {
      credentials: { key: NEW_KEY, secret: NEW_SECRET, session: SESSION },
    });
    assert.equal(replaced.status, 200, replaced.text);
    assert.equal(replaced.body.credentials.key, 'ASIA****', replaced.text);
    assert.equal(replaced.body.credentials.secret, '****', replaced.text);
    const after = await api.get(`/tenants/acme/destinations/${id}`);
    assert.equal(after.body.credentials.key, 'ASIA****', after.text);
    assert.equal(after.body.credentials.secret, '****', after.text);

    await api.put(`/tenants/acme/destinations/${id}/disable`);
    await api.put(`/tenants/acme/destinations/${id}/enable`);
    await api.get('/tenants/acme');

    assert.ok(seen.length >= 12, `every response was recorded (${seen.length})`);
    for (const text of seen) {
      for (const secret of [KEY, SECRET, NEW_KEY, NEW_SECRET, SESSION]) {
        assert.ok(!text.includes(secret), `a response body carries ${secret}: ${text}`);
      }
    }
  });

  test('PATCH replaces topics and merges config', async () => {
    const d = await createDestination(s.admin, 'acme', {
      topics: ['orders'],
      config: { bucket: 'patch-bucket', region: 'us-east-1', endpoint: DEAD_ENDPOINT },
      metadata: { team: 'a' },
    });
    const res = await s.admin.patch(`/tenants/acme/destinations/${d.id}`, {
      topics: ['refunds', 'orders'],
      config: { storage_class: 'STANDARD_IA' },
    });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(sorted(res.body.topics), ['orders', 'refunds']);
    assert.equal(res.body.config.bucket, 'patch-bucket', 'config fields not sent are kept');
    assert.equal(res.body.config.region, 'us-east-1');
    assert.equal(String(res.body.config.storage_class).toUpperCase(), 'STANDARD_IA');
    assert.equal(res.body.type, 'aws_s3');
    assert.deepEqual(res.body.metadata, { team: 'a' }, 'fields not sent are kept');

    const got = await s.admin.get(`/tenants/acme/destinations/${d.id}`);
    assert.deepEqual(sorted(got.body.topics), ['orders', 'refunds'], 'the change is stored');
    assert.equal(got.body.config.bucket, 'patch-bucket');

    const old = await s.admin.patch(`/acme/destinations/${d.id}`, { topics: ['*'] });
    assert.equal(old.status, 200, old.text);
    assert.deepEqual(old.body.topics, ['*']);
  });

  test('PATCH with an invalid value is 422 and changes nothing', async () => {
    const d = await createDestination(s.admin, 'acme', { topics: ['orders'] });
    assertValidation(
      await s.admin.patch(`/tenants/acme/destinations/${d.id}`, {
        topics: ['refunds'],
        config: { storage_class: 'NOPE' },
      }),
      ['config.storage_class failed enum validation'],
    );
    assertValidation(
      await s.admin.patch(`/tenants/acme/destinations/${d.id}`, { config: { key_template: "join('/'," } }),
      ['config.key_template failed pattern validation'],
    );
    const got = await s.admin.get(`/tenants/acme/destinations/${d.id}`);
    assert.deepEqual(got.body.topics, ['orders'], 'a refused PATCH changes nothing');
    assert.ok(
      got.body.config.storage_class === undefined || String(got.body.config.storage_class).toUpperCase() === 'STANDARD',
      `storage_class unchanged: ${got.text}`,
    );
  });

  test('disable sets disabled_at, enable clears it (both path shapes)', async () => {
    const d = await createDestination(s.admin, 'acme');
    const off = await s.admin.put(`/tenants/acme/destinations/${d.id}/disable`);
    assert.equal(off.status, 200, off.text);
    assertTimestamp(off.body.disabled_at, 'disabled_at after disable');
    assertTimestamp(
      (await s.admin.get(`/tenants/acme/destinations/${d.id}`)).body.disabled_at,
      'disabled_at as read back',
    );
    const on = await s.admin.put(`/tenants/acme/destinations/${d.id}/enable`);
    assert.equal(on.status, 200, on.text);
    assert.equal(on.body.disabled_at ?? null, null);
    assert.equal((await s.admin.get(`/tenants/acme/destinations/${d.id}`)).body.disabled_at ?? null, null);

    const offOld = await s.admin.put(`/acme/destinations/${d.id}/disable`);
    assert.equal(offOld.status, 200, offOld.text);
    assertTimestamp(offOld.body.disabled_at, 'disabled_at after disable on the older path');
    const onOld = await s.admin.put(`/acme/destinations/${d.id}/enable`);
    assert.equal(onOld.status, 200, onOld.text);
    assert.equal(onOld.body.disabled_at ?? null, null);
  });

  test('DELETE removes a destination: then GET is 404 and it is not listed', async () => {
    const d = await createDestination(s.admin, 'acme');
    const del = await s.admin.delete(`/tenants/acme/destinations/${d.id}`);
    assert.equal(del.status, 200, del.text);
    assertNotFound(await s.admin.get(`/tenants/acme/destinations/${d.id}`), 'GET after DELETE');
    assertNotFound(await s.admin.get(`/acme/destinations/${d.id}`), 'GET after DELETE, older path');
    assert.ok(!ids((await s.admin.get('/tenants/acme/destinations')).body).includes(d.id));

    const viaOld = await createDestination(s.admin, 'acme');
    const delOld = await s.admin.delete(`/acme/destinations/${viaOld.id}`);
    assert.equal(delOld.status, 200, delOld.text);
    assertNotFound(await s.admin.get(`/tenants/acme/destinations/${viaOld.id}`), 'GET after DELETE on the older path');
    assertNotFound(await s.admin.get('/tenants/acme/destinations/des_does_not_exist'), 'an id that never existed');
  });

  test("another tenant's destination is 404 on every route, and stays untouched", async () => {
    const d = await createDestination(s.admin, 'acme');
    assertNotFound(await s.admin.get(`/tenants/globex/destinations/${d.id}`), 'GET');
    assertNotFound(await s.admin.get(`/globex/destinations/${d.id}`), 'GET, older path');
    assertNotFound(await s.admin.patch(`/tenants/globex/destinations/${d.id}`, { topics: ['refunds'] }), 'PATCH');
    assertNotFound(await s.admin.put(`/tenants/globex/destinations/${d.id}/disable`), 'disable');
    assertNotFound(await s.admin.delete(`/tenants/globex/destinations/${d.id}`), 'DELETE');
    assertNotFound(await s.admin.get(`/tenants/globex/destinations/${d.id}/attempts`), 'its attempts');
    assert.ok(
      !ids((await s.admin.get('/tenants/globex/destinations')).body).includes(d.id),
      "not in the other tenant's list",
    );
    const still = await s.admin.get(`/tenants/acme/destinations/${d.id}`);
    assert.equal(still.status, 200, still.text);
    assert.deepEqual(still.body.topics, ['orders']);
    assert.equal(still.body.disabled_at ?? null, null);
  });

  test('GET /destination-types lists aws_s3 and its fields; /destination-types/{type}; an unknown type is 404', async () => {
    const res = await s.admin.get('/destination-types');
    assert.equal(res.status, 200, res.text);
    assert.ok(Array.isArray(res.body), res.text);
    const s3 = res.body.find((t: Json) => t.type === 'aws_s3');
    assert.ok(s3, `aws_s3 is listed: ${res.text}`);
    const text = JSON.stringify(s3);
    for (const field of ['bucket', 'region', 'key_template', 'storage_class', 'endpoint', 'secret', 'session']) {
      assert.ok(text.includes(`"${field}"`), `aws_s3 describes ${field}: ${text}`);
    }
    const one = await s.admin.get('/destination-types/aws_s3');
    assert.equal(one.status, 200, one.text);
    assert.deepEqual(one.body, s3, 'the same description on its own');
    assertNotFound(await s.admin.get('/destination-types/carrier_pigeon'), 'unknown destination type');
  });

  test('credentials never appear in the log output, nor in plain text in data_dir', () => {
    const files = (readdirSync(s.dataDir, { recursive: true }) as string[])
      .map((f) => path.join(s.dataDir, f))
      .filter((f) => statSync(f).isFile());
    assert.ok(files.length > 0, 'the store is in data_dir');
    for (const secret of [SECRET, NEW_SECRET, SESSION, '<AWS_SECRET_ACCESS_KEY>']) {
      assert.ok(!s.sluice.output.includes(secret), `the log carries ${secret}`);
      for (const f of files) assert.ok(!readFileSync(f).includes(secret), `${f} holds ${secret} in plain text`);
    }
    assert.ok(!s.sluice.output.includes(KEY) && !s.sluice.output.includes(NEW_KEY), 'the log carries an access key id');
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('publish', () => {
  const s = serve({ admin_key: ADMIN, topics: ['orders', 'refunds'], retry: { max_retries: 0 } });
  const d: Record<'orders' | 'all' | 'refunds' | 'off', string> = { orders: '', all: '', refunds: '', off: '' };

  before(async () => {
    await putTenant(s.admin, 'shop');
    await putTenant(s.admin, 'quiet');
    d.orders = (await createDestination(s.admin, 'shop', { topics: ['orders'] })).id;
    d.all = (await createDestination(s.admin, 'shop', { topics: ['*'] })).id;
    d.refunds = (await createDestination(s.admin, 'shop', { topics: ['refunds'] })).id;
    d.off = (await createDestination(s.admin, 'shop', { topics: ['orders'] })).id;
    const off = await s.admin.put(`/tenants/shop/destinations/${d.off}/disable`);
    assert.equal(off.status, 200, off.text);
  });

  test('GET /topics returns the configured topics', async () => {
    const res = await s.admin.get('/topics');
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, ['orders', 'refunds']);
  });

  test('202 with a generated UUID and the enabled destinations whose topics match (or are "*")', async () => {
    const res = await s.admin.post('/publish', {
      tenant_id: 'shop',
      topic: 'orders',
      data: { order_id: '123', status: 'created' },
      metadata: { source: 'checkout-service' },
    });
    assert.equal(res.status, 202, res.text);
    assert.match(res.body.id, UUID, 'an id is made when none is given');
    assert.equal(res.body.duplicate, false);
    assert.deepEqual(
      sorted(res.body.destination_ids),
      sorted([d.orders, d.all]),
      'orders and *, not refunds, not the disabled one',
    );

    const refunds = await s.admin.post('/publish', { tenant_id: 'shop', topic: 'refunds', data: { refund_id: 'r1' } });
    assert.equal(refunds.status, 202, refunds.text);
    assert.deepEqual(sorted(refunds.body.destination_ids), sorted([d.refunds, d.all]));
    assert.notEqual(refunds.body.id, res.body.id, 'each event gets its own id');

    const none = await s.admin.post('/publish', { tenant_id: 'quiet', topic: 'orders', data: { a: 1 } });
    assert.equal(none.status, 202, none.text);
    assert.deepEqual(none.body.destination_ids, []);
  });

  test('a disabled destination is left out; enabled again, it is included', async () => {
    const on = await s.admin.put(`/tenants/shop/destinations/${d.off}/enable`);
    assert.equal(on.status, 200, on.text);
    const res = await s.admin.post('/publish', { tenant_id: 'shop', topic: 'orders', data: { n: 2 } });
    assert.equal(res.status, 202, res.text);
    assert.deepEqual(sorted(res.body.destination_ids), sorted([d.orders, d.all, d.off]));
    const off = await s.admin.put(`/tenants/shop/destinations/${d.off}/disable`);
    assert.equal(off.status, 200, off.text);
    const again = await s.admin.post('/publish', { tenant_id: 'shop', topic: 'orders', data: { n: 3 } });
    assert.deepEqual(sorted(again.body.destination_ids), sorted([d.orders, d.all]));
  });

  test('destination_id targets only that destination; one that does not exist (for the tenant) is 404', async () => {
    const res = await s.admin.post('/publish', {
      tenant_id: 'shop',
      destination_id: d.orders,
      topic: 'orders',
      data: { n: 4 },
    });
    assert.equal(res.status, 202, res.text);
    assert.deepEqual(res.body.destination_ids, [d.orders]);
    assertNotFound(
      await s.admin.post('/publish', {
        tenant_id: 'shop',
        destination_id: 'des_nope',
        topic: 'orders',
        data: { n: 5 },
      }),
      'unknown destination_id',
    );
    assertNotFound(
      await s.admin.post('/publish', { tenant_id: 'quiet', destination_id: d.orders, topic: 'orders', data: { n: 6 } }),
      "another tenant's destination_id",
    );
  });

  test('422 for a missing tenant_id, missing or non-object data, a missing topic, or a topic not configured', async () => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['no tenant_id', { topic: 'orders', data: { a: 1 } }, 'tenant_id'],
      ['no data', { tenant_id: 'shop', topic: 'orders' }, 'data'],
      ['data is a string', { tenant_id: 'shop', topic: 'orders', data: 'hello' }, 'data'],
      ['data is an array', { tenant_id: 'shop', topic: 'orders', data: [1, 2] }, 'data'],
      ['no topic', { tenant_id: 'shop', data: { a: 1 } }, 'topic'],
      ['a topic not in api.topics', { tenant_id: 'shop', topic: 'invoices', data: { a: 1 } }, 'topic'],
      [
        'metadata that is not a string map',
        { tenant_id: 'shop', topic: 'orders', data: { a: 1 }, metadata: { n: 1 } },
        'metadata',
      ],
      [
        'a time that is not RFC 3339',
        { tenant_id: 'shop', topic: 'orders', data: { a: 1 }, time: 'yesterday' },
        'time',
      ],
    ];
    for (const [what, body, field] of cases) {
      const res = await s.admin.post('/publish', body);
      assertValidation(res, [], what);
      assert.ok(
        res.body.data.some((p: unknown) => String(p).includes(field)),
        `${what}: a problem names ${field}: ${res.text}`,
      );
    }
    // not JSON at all: refused as the caller's mistake (400 or 422), with the error shape
    const broken = await s.admin.post('/publish', '{"tenant_id": "shop", ');
    assert.ok(
      broken.status === 400 || broken.status === 422,
      `a body that is not JSON: ${broken.status} ${broken.text}`,
    );
    assertError(broken, broken.status, 'a body that is not JSON');
  });

  test('an unknown tenant is 404', async () => {
    assertNotFound(await s.admin.post('/publish', { tenant_id: 'nobody', topic: 'orders', data: { a: 1 } }));
  });

  test('the same id twice: the second is acknowledged as a duplicate and the event is stored once', async () => {
    const event = { id: 'evt-dup-1', tenant_id: 'shop', topic: 'orders', data: { order_id: 'dup' } };
    const first = await s.admin.post('/publish', event);
    assert.equal(first.status, 202, first.text);
    assert.deepEqual({ id: first.body.id, duplicate: first.body.duplicate }, { id: 'evt-dup-1', duplicate: false });
    const second = await s.admin.post('/publish', event);
    assert.equal(second.status, 202, second.text);
    assert.deepEqual({ id: second.body.id, duplicate: second.body.duplicate }, { id: 'evt-dup-1', duplicate: true });

    const events = await s.admin.all('/events', { tenant_id: 'shop', limit: 1000 });
    assert.equal(events.filter((e) => e.id === 'evt-dup-1').length, 1, `stored once: ${JSON.stringify(ids(events))}`);
    // orders goes to d.orders and d.all (d.off is disabled), one attempt each (max_retries 0): wait for both,
    // then for a marker event published after, so that a second delivery of the duplicate would be there too
    const attemptsOf = (id: string) => s.admin.all('/attempts', { event_id: id, limit: 1000 });
    await s.sluice.until('the attempts of evt-dup-1', async () => (await attemptsOf('evt-dup-1')).length >= 2, 15_000);
    assert.equal(
      (
        await s.admin.post('/publish', {
          id: 'evt-dup-marker',
          tenant_id: 'shop',
          topic: 'orders',
          data: { order_id: 'marker' },
        })
      ).status,
      202,
    );
    await s.sluice.until(
      'the attempts of the marker',
      async () => (await attemptsOf('evt-dup-marker')).length >= 2,
      15_000,
    );
    const attempts = await attemptsOf('evt-dup-1');
    assert.deepEqual(
      sorted(attempts.map((a) => a.destination_id)),
      sorted([d.orders, d.all]),
      `one attempt per destination, not one per publish: ${JSON.stringify(attempts)}`,
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('events, attempts and retry', () => {
  const s = serve({ admin_key: ADMIN, retry: { max_retries: 0 } });
  const d = { t1orders: '', t1refunds: '', t2all: '' };
  const now = Date.now();
  const at = (secondsAgo: number) => new Date(now - secondsAgo * 1000).toISOString();
  // newest last; times increase in publish order, so "newest first" is one order either way
  const events = [
    { id: 'evt-1', tenant_id: 't1', topic: 'orders', time: at(180), data: { n: 1 }, metadata: { source: 'test' } },
    { id: 'evt-2', tenant_id: 't1', topic: 'orders', time: at(120), data: { n: 2 } },
    { id: 'evt-3', tenant_id: 't1', topic: 'refunds', time: at(60), data: { n: 3 } },
    { id: 'evt-4', tenant_id: 't2', topic: 'orders', time: at(30), data: { n: 4 } },
  ];

  before(async () => {
    await putTenant(s.admin, 't1');
    await putTenant(s.admin, 't2');
    d.t1orders = (await createDestination(s.admin, 't1', { topics: ['orders'] })).id;
    d.t1refunds = (await createDestination(s.admin, 't1', { topics: ['refunds'] })).id;
    d.t2all = (await createDestination(s.admin, 't2', { topics: ['*'] })).id;
    for (const e of events) {
      const res = await s.admin.post('/publish', e);
      assert.equal(res.status, 202, res.text);
    }
  });

  /** The attempts matching `query`, once there are at least `n` of them (bounded wait). */
  async function attemptsWhen(query: Record<string, string>, n: number): Promise<Json[]> {
    let models: Json[] = [];
    await s.sluice.until(
      `${n} attempts for ${JSON.stringify(query)}`,
      async () => {
        models = (await s.admin.page('/attempts', { ...query, limit: 1000 })).models;
        return models.length >= n;
      },
      15_000,
    );
    return models;
  }

  test('GET /events lists published events newest first, filtered by tenant_id, topic, destination_id and time', async () => {
    assert.deepEqual(ids((await s.admin.page('/events', { tenant_id: 't1' })).models), ['evt-3', 'evt-2', 'evt-1']);
    assert.deepEqual(ids((await s.admin.page('/events', { tenant_id: 't2' })).models), ['evt-4']);
    assert.deepEqual(ids((await s.admin.page('/events', { tenant_id: 't1', topic: 'orders' })).models), [
      'evt-2',
      'evt-1',
    ]);
    assert.deepEqual(ids((await s.admin.page('/events', { topic: 'refunds' })).models), ['evt-3']);
    assert.deepEqual(
      ids((await s.admin.page('/events')).models),
      ['evt-4', 'evt-3', 'evt-2', 'evt-1'],
      'the admin sees every tenant',
    );
    assert.deepEqual(ids((await s.admin.page('/events', { destination_id: d.t1refunds })).models), ['evt-3']);
    assert.deepEqual(ids((await s.admin.page('/events', { tenant_id: 't1', 'time[gte]': at(150) })).models), [
      'evt-3',
      'evt-2',
    ]);
    assert.deepEqual(ids((await s.admin.page('/events', { tenant_id: 't1', 'time[lte]': at(90) })).models), [
      'evt-2',
      'evt-1',
    ]);
    const first = (await s.admin.page('/events', { tenant_id: 't1' })).models[2];
    assert.equal(first.tenant_id, 't1');
    assert.equal(first.topic, 'orders');
  });

  test('GET /events pages with limit and next/prev cursors', async () => {
    const p1 = await s.admin.page('/events', { tenant_id: 't1', limit: 2 });
    assert.deepEqual(ids(p1.models), ['evt-3', 'evt-2']);
    assert.equal(p1.pagination.limit, 2);
    assert.equal(p1.pagination.prev, null, 'nothing newer than the first page');
    assert.notEqual(p1.pagination.next, null);
    const p2 = await s.admin.page('/events', { tenant_id: 't1', limit: 2, next: p1.pagination.next! });
    assert.deepEqual(ids(p2.models), ['evt-1']);
    assert.equal(p2.pagination.next, null, 'nothing older than the last page');
    assert.notEqual(p2.pagination.prev, null);
    const back = await s.admin.page('/events', { tenant_id: 't1', limit: 2, prev: p2.pagination.prev! });
    assert.deepEqual(ids(back.models), ['evt-3', 'evt-2']);
  });

  test('GET /events/{id} returns the event with its data; an unknown id is 404', async () => {
    const res = await s.admin.get('/events/evt-1');
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.id, 'evt-1');
    assert.equal(res.body.tenant_id, 't1');
    assert.equal(res.body.topic, 'orders');
    assert.deepEqual(res.body.data, { n: 1 });
    assert.equal(res.body.metadata?.source, 'test', `the event's metadata: ${res.text}`);
    assert.equal(Date.parse(res.body.time), Date.parse(events[0]!.time), 'the time it was published with');
    assert.ok(
      res.body.deliveries !== undefined && res.body.deliveries !== null,
      `per-destination deliveries: ${res.text}`,
    );
    assert.ok(JSON.stringify(res.body.deliveries).includes(d.t1orders), `deliveries name the destination: ${res.text}`);
    assertNotFound(await s.admin.get('/events/evt-never'), 'unknown event');
  });

  test("a tenant token sees only its own tenant's events", async () => {
    const token = (await s.admin.get('/tenants/t2/token')).body.token as string;
    const t2 = s.admin.as(token);
    assert.deepEqual(ids((await t2.page('/events')).models), ['evt-4']);
    // asking for another tenant's events: either refused, or the filter is forced to its own tenant
    const other = await t2.get('/events?tenant_id=t1');
    if (other.status === 403) assertError(other, 403, 'GET /events?tenant_id=<another tenant> with a tenant token');
    else {
      assert.equal(other.status, 200, other.text);
      assert.deepEqual(
        ids(other.body.models).filter((id) => id !== 'evt-4'),
        [],
        `t1's events stay hidden: ${other.text}`,
      );
    }
    assertError(
      await t2.get('/tenants/t1/destinations/' + d.t1orders + '/attempts'),
      403,
      "another tenant's destination attempts",
    );
    const foreignEvent = await t2.get('/events/evt-1');
    assert.ok(
      foreignEvent.status === 403 || foreignEvent.status === 404,
      `another tenant's event by id: ${foreignEvent.status} ${foreignEvent.text}`,
    );
    const t1Attempt = (await attemptsWhen({ event_id: 'evt-1' }, 1))[0];
    const foreignAttempt = await t2.get(`/attempts/${t1Attempt.id}`);
    assert.ok(
      foreignAttempt.status === 403 || foreignAttempt.status === 404,
      `another tenant's attempt by id: ${foreignAttempt.status} ${foreignAttempt.text}`,
    );
    const foreignRetry = await t2.post('/retry', { event_id: 'evt-1', destination_id: d.t1orders });
    assert.ok(
      foreignRetry.status === 403 || foreignRetry.status === 404,
      `retry of another tenant's event: ${foreignRetry.status} ${foreignRetry.text}`,
    );
    // evt-4's attempt (t2's only event, to t2all) exists before t2's list is read: "every" over nothing proves nothing
    await attemptsWhen({ event_id: 'evt-4' }, 1);
    const attempts = (await t2.page('/attempts', { limit: 1000 })).models;
    assert.ok(attempts.length > 0, 't2 sees its own attempts');
    assert.ok(
      attempts.every((a) => a.tenant_id === 't2'),
      `only t2's attempts: ${JSON.stringify(attempts)}`,
    );
  });

  test('GET /attempts lists the failed attempts with their fields, and filters them', async () => {
    const t1 = await attemptsWhen({ tenant_id: 't1' }, 3);
    assert.equal(t1.length, 3, `one attempt per event and destination (max_retries 0): ${JSON.stringify(t1)}`);
    assert.deepEqual(
      sorted(t1.map((a) => `${a.event_id}>${a.destination_id}`)),
      sorted([`evt-1>${d.t1orders}`, `evt-2>${d.t1orders}`, `evt-3>${d.t1refunds}`]),
    );
    for (const a of t1) {
      assert.equal(typeof a.id, 'string');
      assert.equal(a.tenant_id, 't1');
      assert.equal(a.status, 'failed', `nothing listens at ${DEAD_ENDPOINT}: ${JSON.stringify(a)}`);
      assert.equal(a.attempt_number, 1, JSON.stringify(a));
      assertTimestamp(a.time, 'attempt time');
    }

    const one = (await s.admin.page('/attempts', { event_id: 'evt-1' })).models;
    assert.deepEqual(
      one.map((a) => [a.event_id, a.destination_id]),
      [['evt-1', d.t1orders]],
    );
    assert.deepEqual(
      (await s.admin.page('/attempts', { destination_id: d.t1refunds })).models.map((a) => a.event_id),
      ['evt-3'],
    );
    assert.equal((await s.admin.page('/attempts', { tenant_id: 't1', status: 'success' })).models.length, 0);
    assert.equal((await s.admin.page('/attempts', { tenant_id: 't1', status: 'failed' })).models.length, 3);

    const byId = await s.admin.get(`/attempts/${one[0].id}`);
    assert.equal(byId.status, 200, byId.text);
    assert.equal(byId.body.id, one[0].id);
    assert.equal(byId.body.event_id, 'evt-1');
    assertNotFound(await s.admin.get('/attempts/att_never'), 'unknown attempt');

    const perDest = await s.admin.page(`/tenants/t1/destinations/${d.t1orders}/attempts`);
    assert.deepEqual(sorted(perDest.models.map((a) => a.event_id)), ['evt-1', 'evt-2']);

    // paging over attempts
    const p1 = await s.admin.page('/attempts', { tenant_id: 't1', limit: 2 });
    assert.equal(p1.models.length, 2);
    assert.notEqual(p1.pagination.next, null);
    const p2 = await s.admin.page('/attempts', { tenant_id: 't1', limit: 2, next: p1.pagination.next! });
    assert.equal(p2.models.length, 1);
    assert.equal(p2.pagination.next, null);
    assert.deepEqual(sorted([...ids(p1.models), ...ids(p2.models)]), sorted(ids(t1)), 'pages hold every attempt once');
  });

  test('POST /retry: 202 and a manual attempt; 404 without a prior attempt there; 400 once the destination is disabled', async () => {
    await attemptsWhen({ event_id: 'evt-1' }, 1);
    const retry = await s.admin.post('/retry', { event_id: 'evt-1', destination_id: d.t1orders });
    assert.equal(retry.status, 202, retry.text);
    const attempts = await attemptsWhen({ event_id: 'evt-1', destination_id: d.t1orders }, 2);
    assert.equal(attempts.length, 2, JSON.stringify(attempts));
    assert.ok(
      attempts.some((a) => a.manual === true),
      `the retry is a manual attempt: ${JSON.stringify(attempts)}`,
    );

    for (const [what, body, field] of [
      ['retry without destination_id', { event_id: 'evt-1' }, 'destination_id'],
      ['retry without event_id', { destination_id: d.t1orders }, 'event_id'],
    ] as const) {
      const res = await s.admin.post('/retry', body);
      assertValidation(res, [], what);
      assert.ok(
        res.body.data.some((p: unknown) => String(p).startsWith(field)),
        `${what}: a problem names ${field}: ${res.text}`,
      );
    }

    // evt-3 (refunds) never went to the orders destination; evt-never does not exist
    assertNotFound(
      await s.admin.post('/retry', { event_id: 'evt-3', destination_id: d.t1orders }),
      'no attempt of that event there',
    );
    assertNotFound(
      await s.admin.post('/retry', { event_id: 'evt-never', destination_id: d.t1orders }),
      'unknown event',
    );

    await attemptsWhen({ event_id: 'evt-2' }, 1);
    const off = await s.admin.put(`/tenants/t1/destinations/${d.t1orders}/disable`);
    assert.equal(off.status, 200, off.text);
    assertError(
      await s.admin.post('/retry', { event_id: 'evt-2', destination_id: d.t1orders }),
      400,
      'retry to a disabled destination',
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('stored credentials are the ones used (s3rver checks the access key id)', () => {
  const s = serve({ admin_key: ADMIN, retry: { max_retries: 0 } });
  const s3 = new TestS3(['creds']);
  before(() => s3.start());
  after(async () => {
    await s3.stop();
    rmSync(s3.directory, { recursive: true, force: true });
  });

  /** Publishes to one destination and returns the status of its (single) attempt. */
  async function deliver(tenant: string, destination: string, id: string): Promise<string> {
    const res = await s.admin.post('/publish', {
      id,
      tenant_id: tenant,
      destination_id: destination,
      topic: 'orders',
      data: { id },
    });
    assert.equal(res.status, 202, res.text);
    let models: Json[] = [];
    await s.sluice.until(
      `an attempt of ${id}`,
      async () => {
        models = (await s.admin.page('/attempts', { event_id: id })).models;
        return models.length > 0;
      },
      15_000,
    );
    return models[0].status as string;
  }

  // s3rver knows one access key id (S3RVER) and refuses any other; it does not check SigV4 signatures, so what
  // this shows for the key, the masked-value tests above can only show indirectly for the secret.
  test('PATCH with the masked values (or without credentials) keeps the stored access key', async () => {
    await putTenant(s.admin, 'keeper');
    const config = { bucket: 'creds', region: 'us-east-1', endpoint: s3.endpoint };
    const good = await createDestination(s.admin, 'keeper', {
      config,
      credentials: { key: S3_KEY, secret: S3_SECRET },
    });
    const bad = await createDestination(s.admin, 'keeper', {
      config,
      credentials: { key: 'AKIANOTTHEKEY0000000', secret: S3_SECRET },
    });
    // the control: s3rver refuses another key id, so a success below means the stored key is the right one
    assert.equal(await deliver('keeper', bad.id, 'evt-wrong-key'), 'failed');
    assert.equal(await deliver('keeper', good.id, 'evt-before-patch'), 'success');

    const masked = await s.admin.patch(`/tenants/keeper/destinations/${good.id}`, { credentials: good.credentials });
    assert.equal(masked.status, 200, masked.text);
    assert.deepEqual(masked.body.credentials, good.credentials);
    assert.equal(
      await deliver('keeper', good.id, 'evt-after-masked-patch'),
      'success',
      'the masked values did not replace the stored ones',
    );

    const other = await s.admin.patch(`/tenants/keeper/destinations/${good.id}`, {
      topics: ['orders', 'refunds'],
      config: { storage_class: 'STANDARD' },
    });
    assert.equal(other.status, 200, other.text);
    assert.equal(
      await deliver('keeper', good.id, 'evt-after-config-patch'),
      'success',
      'a PATCH without credentials keeps them',
    );

    // and the other way round: the right key sent to the failing destination fixes it
    const fixed = await s.admin.patch(`/keeper/destinations/${bad.id}`, {
      credentials: { key: S3_KEY, secret: S3_SECRET },
    });
    assert.equal(fixed.status, 200, fixed.text);
    assert.equal(await deliver('keeper', bad.id, 'evt-after-fix'), 'success');
  });
});
