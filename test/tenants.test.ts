/**
 * Tenants are isolated from one another (issue 11, "Tenants"): per-tenant quotas, deletion that takes the
 * tenant's events and attempts with it and revokes its tokens (across a re-creation and a restart), and
 * destination ids scoped per tenant, also in a database made before they were. Against the real
 * `sluice serve` process and s3rver, on 127.0.0.1 only.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SignJWT } from 'jose';
import { SluiceProcess, TEST_STORE_IS_POSTGRES, tempDir } from './helpers/sluice.js';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { ApiClient, assertError, assertNotFound, type Json } from './helpers/api.js';
import { closedPort } from './helpers/outpost.js';
import { decisions, postDecisions } from './helpers/opa.js';
import { CredentialsCipher } from '../src/store/credentials-cipher.js';

const ADMIN = 'tenants-test-admin';
const JWT_SECRET = 'tenants-test-jwt-secret';
const ENCRYPTION_KEY = 'tenants-test-encryption-key';
/** Keys from the environment of whoever runs the tests must not change what the server is configured with. */
const CLEAN_ENV: NodeJS.ProcessEnv = {
  SLUICE_ADMIN_KEY: undefined,
  SLUICE_JWT_SECRET: undefined,
  SLUICE_ENCRYPTION_KEY: undefined,
};
/** Destinations here point at s3rver or a closed port on 127.0.0.1, which the endpoint guard refuses unless opened. */
const LOOPBACK = { allowed_endpoints: ['127.0.0.1/32'] };
const WAIT_MS = 20_000;

const cleanups: Array<() => Promise<unknown> | unknown> = [];
after(async () => {
  for (const c of cleanups.reverse())
    await Promise.resolve()
      .then(c)
      .catch(() => {});
});

function dir(prefix: string): string {
  const d = tempDir(prefix);
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function startS3(buckets: string[]): Promise<TestS3> {
  const s3 = new TestS3(buckets);
  await s3.start();
  cleanups.push(async () => {
    await s3.stop().catch(() => {});
    rmSync(s3.directory, { recursive: true, force: true });
  });
  return s3;
}

function config(
  dataDir: string,
  api: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    data_dir: dataDir,
    outputs: [],
    shutdown_timeout: '2s',
    api: { admin_key: ADMIN, jwt_secret: JWT_SECRET, encryption_key: ENCRYPTION_KEY, destinations: LOOPBACK, ...api },
    ...extra,
  };
}

async function startSluice(cfg: Record<string, unknown>): Promise<{ sluice: SluiceProcess; admin: ApiClient }> {
  const sluice = new SluiceProcess({ config: cfg, env: CLEAN_ENV });
  cleanups.push(() => sluice.kill9());
  await sluice.start();
  return { sluice, admin: new ApiClient(sluice.url, ADMIN) };
}

async function putTenant(admin: ApiClient, id: string, body: Record<string, unknown> = {}): Promise<void> {
  const res = await admin.put(`/tenants/${id}`, body);
  assert.ok(res.status === 201 || res.status === 200, `PUT /tenants/${id}: ${res.status} ${res.text}`);
}

async function tokenOf(admin: ApiClient, tenant: string): Promise<string> {
  const res = await admin.get(`/tenants/${tenant}/token`);
  assert.equal(res.status, 200, res.text);
  return res.body.token as string;
}

/** An aws_s3 destination at `endpoint` (s3rver, or a closed port where every upload fails at once). */
function destination(endpoint: string, bucket: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'aws_s3',
    topics: ['orders'],
    config: { bucket, region: 'us-east-1', endpoint },
    credentials: { key: S3_KEY, secret: S3_SECRET },
    ...over,
  };
}

async function create(api: ApiClient, tenant: string, body: Record<string, unknown>): Promise<Json> {
  const res = await api.post(`/tenants/${tenant}/destinations`, body);
  assert.equal(res.status, 201, `create a destination for ${tenant}: ${res.text}`);
  return res.body;
}

async function publish(admin: ApiClient, event: Record<string, unknown>): Promise<Json> {
  const res = await admin.post('/publish', { topic: 'orders', data: { n: 1 }, ...event });
  assert.equal(res.status, 202, `publish ${JSON.stringify(event)}: ${res.text}`);
  return res.body;
}

/** A map of `bytes` bytes as api.quotas.metadata_bytes counts them (keys and values). */
function metadataOf(bytes: number): Record<string, string> {
  return { k: 'x'.repeat(bytes - 1) };
}

/** The error says which setting refused it, in its message and in data.quota. */
function assertNamesQuota(
  res: { status: number; text: string; body: Json },
  status: number,
  setting: string,
  what: string,
): void {
  assertError(res as never, status, what);
  assert.ok(String(res.body.message).includes(setting), `${what}: the message names ${setting}; got ${res.text}`);
  assert.equal(res.body.data?.quota, setting, `${what}: data.quota; got ${res.text}`);
}

// ---------------------------------------------------------------------------------------------------------------

describe('quotas', () => {
  const s = {} as { sluice: SluiceProcess; admin: ApiClient; dead: string };
  before(async () => {
    // uploads to a closed port fail at once and wait an hour for their retry: deliveries stay pending
    s.dead = `http://127.0.0.1:${await closedPort()}`;
    Object.assign(
      s,
      await startSluice(
        config(
          dir('sluice-quotas-'),
          {
            quotas: { destinations_per_tenant: 2, metadata_bytes: 64, pending_deliveries_per_tenant: 3 },
            max_pending_deliveries: 100,
            retry: { initial_backoff: '1h', max_backoff: '1h' },
          },
          {
            ingest: {
              tenants: [
                { tenant: 'greedy', partition: 'greedy' },
                { tenant: 'modest', partition: 'modest' },
              ],
            },
          },
        ),
      ),
    );
  });

  test('a tenant at api.quotas.destinations_per_tenant gets 422 naming it; other tenants, and room made by a delete, still create', async () => {
    await putTenant(s.admin, 'full');
    await putTenant(s.admin, 'roomy');
    const first = await create(s.admin, 'full', destination(s.dead, 'dead-bucket'));
    await create(s.admin, 'full', destination(s.dead, 'dead-bucket'));
    const refused = await s.admin.post('/tenants/full/destinations', destination(s.dead, 'dead-bucket'));
    assertNamesQuota(refused, 422, 'api.quotas.destinations_per_tenant', 'the third destination');
    const list = await s.admin.get('/tenants/full/destinations');
    assert.equal(list.body.length, 2, `the refused one was not stored: ${list.text}`);
    // the older path shape counts the same
    assertNamesQuota(
      await s.admin.post('/full/destinations', destination(s.dead, 'dead-bucket')),
      422,
      'api.quotas.destinations_per_tenant',
      'older path',
    );

    await create(s.admin, 'roomy', destination(s.dead, 'dead-bucket'));
    assert.equal((await s.admin.delete(`/tenants/full/destinations/${first.id}`)).status, 200);
    await create(s.admin, 'full', destination(s.dead, 'dead-bucket'));
  });

  test('metadata over api.quotas.metadata_bytes is 422 naming it, for tenants, destinations (create and PATCH) and events', async () => {
    const quota = 'api.quotas.metadata_bytes';
    assertNamesQuota(
      await s.admin.put('/tenants/meta', { metadata: metadataOf(65) }),
      422,
      quota,
      'tenant metadata of 65 bytes',
    );
    assertNotFound(await s.admin.get('/tenants/meta'), 'the refused tenant was not created');
    const exact = await s.admin.put('/tenants/meta', { metadata: metadataOf(64) });
    assert.equal(exact.status, 201, `64 bytes is within the quota: ${exact.text}`);
    // multi-byte characters count as their UTF-8 bytes: 'é' is two
    assertNamesQuota(
      await s.admin.put('/tenants/meta', { metadata: { k: 'é'.repeat(32) } }),
      422,
      quota,
      'tenant metadata of 65 UTF-8 bytes',
    );

    for (const field of ['metadata', 'delivery_metadata']) {
      const res = await s.admin.post(
        '/tenants/meta/destinations',
        destination(s.dead, 'dead-bucket', { [field]: metadataOf(65) }),
      );
      assertNamesQuota(res, 422, quota, `destination ${field} of 65 bytes`);
      assert.equal(res.body.data.field, field, res.text);
    }
    assert.deepEqual(
      (await s.admin.get('/tenants/meta/destinations')).body,
      [],
      'the refused destinations were not stored',
    );

    // each map counts alone: both at the quota together pass
    const d = await create(
      s.admin,
      'meta',
      destination(s.dead, 'dead-bucket', { metadata: metadataOf(64), delivery_metadata: metadataOf(64) }),
    );
    const patched = await s.admin.patch(`/tenants/meta/destinations/${d.id}`, { delivery_metadata: metadataOf(65) });
    assertNamesQuota(patched, 422, quota, 'PATCH delivery_metadata of 65 bytes');
    const after = await s.admin.get(`/tenants/meta/destinations/${d.id}`);
    assert.deepEqual(after.body.delivery_metadata, metadataOf(64), 'the refused PATCH changed nothing');

    const id = randomUUID();
    assertNamesQuota(
      await s.admin.post('/publish', {
        id,
        tenant_id: 'meta',
        topic: 'orders',
        data: { a: 1 },
        metadata: metadataOf(65),
      }),
      422,
      quota,
      'event metadata',
    );
    const events = await s.admin.page('/events', { tenant_id: 'meta', id });
    assert.deepEqual(events.models, [], 'the refused event was not stored');
    await publish(s.admin, { tenant_id: 'meta', metadata: metadataOf(64) });
  });

  test('a tenant at api.quotas.pending_deliveries_per_tenant gets 429 + Retry-After naming it; another tenant still publishes, also through /logs', async () => {
    await putTenant(s.admin, 'greedy');
    await putTenant(s.admin, 'modest');
    await create(s.admin, 'greedy', destination(s.dead, 'dead-bucket', { topics: ['*'] }));
    await create(s.admin, 'modest', destination(s.dead, 'dead-bucket', { topics: ['*'] }));
    for (let i = 0; i < 3; i++) await publish(s.admin, { tenant_id: 'greedy' });

    const id = randomUUID();
    const refused = await s.admin.post('/publish', { id, tenant_id: 'greedy', topic: 'orders', data: { a: 1 } });
    assertNamesQuota(refused, 429, 'api.quotas.pending_deliveries_per_tenant', 'the fourth pending delivery of greedy');
    assert.ok(
      Number(refused.headers.get('retry-after')) > 0,
      `Retry-After is set: ${JSON.stringify(Object.fromEntries(refused.headers))}`,
    );
    assert.deepEqual(
      (await s.admin.page('/events', { tenant_id: 'greedy', id })).models,
      [],
      'nothing of the refused publish was stored',
    );
    const mapped = await postDecisions(s.sluice.url, decisions(2), { partition: 'greedy' });
    assert.equal(mapped.status, 429, 'decisions mapped to greedy are refused too');
    assert.match(await mapped.text(), /api\.quotas\.pending_deliveries_per_tenant/);

    // the other tenant is far from the shared bound (100) and from its own
    await publish(s.admin, { tenant_id: 'modest' });
    const theirs = await postDecisions(s.sluice.url, decisions(2), { partition: 'modest' });
    assert.equal(theirs.status, 200, `decisions mapped to modest: ${await theirs.text()}`);
    const modest = await s.admin.all('/events', { tenant_id: 'modest' });
    assert.equal(modest.length, 3, 'modest has its published event and both decisions');
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('deleting a tenant', () => {
  test('takes its events and attempts with it and revokes its tokens: 401 after the delete, after a re-creation with the same id, and after a restart', async () => {
    const dataDir = dir('sluice-delete-');
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const cfg = config(dataDir, { retry: { initial_backoff: '1h', max_backoff: '1h' } });
    let { sluice, admin } = await startSluice(cfg);

    await putTenant(admin, 'gone');
    await putTenant(admin, 'stays');
    const doomed = await create(admin, 'gone', destination(dead, 'dead-bucket'));
    const kept = await create(admin, 'stays', destination(dead, 'dead-bucket'));
    const goneEvents = [await publish(admin, { tenant_id: 'gone' }), await publish(admin, { tenant_id: 'gone' })];
    const stayEvent = await publish(admin, { tenant_id: 'stays' });
    let attempts: Json[] = [];
    await sluice.until(
      'each event has its failed attempt',
      async () => {
        attempts = await admin.all('/attempts');
        return (
          attempts.filter((a) => a.tenant_id === 'gone').length >= 2 && attempts.some((a) => a.tenant_id === 'stays')
        );
      },
      WAIT_MS,
    );
    const oldToken = await tokenOf(admin, 'gone');
    const old = admin.as(oldToken);
    assert.equal((await old.get('/tenants/gone')).status, 200, 'the token works before the delete');

    assert.equal((await admin.delete('/tenants/gone')).status, 200);

    // events and attempts: gone from every route
    assert.deepEqual((await admin.page('/events', { tenant_id: 'gone' })).models, [], 'GET /events?tenant_id=gone');
    assert.deepEqual((await admin.page('/attempts', { tenant_id: 'gone' })).models, [], 'GET /attempts?tenant_id=gone');
    for (const e of goneEvents) assertNotFound(await admin.get(`/events/${e.id}`), `GET /events/${e.id}`);
    for (const a of attempts.filter((x) => x.tenant_id === 'gone'))
      assertNotFound(await admin.get(`/attempts/${a.id}`), `GET /attempts/${a.id}`);
    assert.ok(
      (await admin.all('/events')).every((e) => e.tenant_id !== 'gone'),
      'no event of gone in the unfiltered list',
    );
    assert.ok(
      (await admin.all('/attempts')).every((a) => a.tenant_id !== 'gone'),
      'no attempt of gone in the unfiltered list',
    );
    const ready = (await (await fetch(`${sluice.url}/ready`)).json()) as Json;
    assert.equal(
      ready.events.pending_deliveries,
      1,
      `only stays' delivery is still pending: ${JSON.stringify(ready.events)}`,
    );

    // the other tenant is untouched
    assert.equal((await admin.get(`/tenants/stays/destinations/${kept.id}`)).status, 200);
    assert.equal((await admin.get(`/events/${stayEvent.id}`)).status, 200);

    // its token: 401, and the same after the id is a tenant again
    assertError(await old.get('/tenants/gone'), 401, 'the old token after the delete');
    await putTenant(admin, 'gone');
    for (const [method, p] of [
      ['GET', '/tenants/gone'],
      ['GET', '/tenants/gone/destinations'],
      ['GET', '/events'],
      ['GET', '/attempts'],
      ['GET', `/tenants/gone/destinations/${doomed.id}`],
    ] as const) {
      assertError(await old.request(method, p), 401, `the old token on ${method} ${p} after the re-creation`);
    }
    assertError(
      await old.post('/tenants/gone/destinations', destination(dead, 'dead-bucket')),
      401,
      'the old token creating a destination',
    );
    assert.deepEqual(
      (await admin.page('/events', { tenant_id: 'gone' })).models,
      [],
      'the new tenant gone starts with no events',
    );
    assert.deepEqual((await admin.page('/attempts', { tenant_id: 'gone' })).models, [], 'and no attempts');
    const fresh = admin.as(await tokenOf(admin, 'gone'));
    assert.equal((await fresh.get('/tenants/gone')).status, 200, 'a token of the new tenant works');
    assert.deepEqual(
      (await fresh.get('/tenants/gone/destinations')).body,
      [],
      'the new tenant has none of the old destinations',
    );

    // a token of a tenant that never existed, signed with the server's own secret
    const never = await new SignJWT({ gen: 0 })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer('sluice')
      .setSubject('never-was')
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(JWT_SECRET));
    assertError(await admin.as(never).get('/tenants/never-was'), 401, 'a token of a tenant that never existed');

    // across a restart: the generation is in the store
    await sluice.stop();
    ({ sluice, admin } = await startSluice(cfg));
    assertError(await admin.as(oldToken).get('/tenants/gone'), 401, 'the old token after a restart');
    assert.equal(
      (await admin.as(fresh.token).get('/tenants/gone')).status,
      200,
      "the new tenant's token after a restart",
    );
    assert.deepEqual(
      (await admin.page('/events', { tenant_id: 'gone' })).models,
      [],
      'still no events of the old gone',
    );
    // deleted once more: the token of the second gone goes the same way
    assert.equal((await admin.delete('/tenants/gone')).status, 200);
    assertError(await admin.as(fresh.token).get('/tenants/gone'), 401, "the second tenant's token after its delete");
    await sluice.stop();
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('destination ids are per tenant', () => {
  test('the same id in two tenants: both 201, each sees and delivers to its own, and deleting one leaves the other delivering', async () => {
    const s3 = await startS3(['bucket-a', 'bucket-b']);
    const { sluice, admin } = await startSluice(
      config(dir('sluice-ids-'), { retry: { initial_backoff: '100ms', max_backoff: '200ms' } }),
    );
    await putTenant(admin, 'ta');
    await putTenant(admin, 'tb');
    const a = admin.as(await tokenOf(admin, 'ta'));
    const b = admin.as(await tokenOf(admin, 'tb'));

    const inA = await create(
      a,
      'ta',
      destination(s3.endpoint, 'bucket-a', { id: 'des_same', metadata: { owner: 'a' } }),
    );
    const inB = await create(
      b,
      'tb',
      destination(s3.endpoint, 'bucket-b', { id: 'des_same', metadata: { owner: 'b' } }),
    );
    assert.equal(inA.id, 'des_same');
    assert.equal(inB.id, 'des_same');
    assertError(
      await a.post('/tenants/ta/destinations', destination(s3.endpoint, 'bucket-a', { id: 'des_same' })),
      409,
      'the id twice in one tenant',
    );

    // each tenant sees its own
    for (const [api, tenant, owner, bucket] of [
      [a, 'ta', 'a', 'bucket-a'],
      [b, 'tb', 'b', 'bucket-b'],
    ] as const) {
      const one = await api.get(`/tenants/${tenant}/destinations/des_same`);
      assert.equal(one.status, 200, one.text);
      assert.deepEqual(one.body.metadata, { owner }, `${tenant} reads its own des_same`);
      assert.equal(one.body.config.bucket, bucket);
      const list = await api.get(`/${tenant}/destinations`);
      assert.deepEqual(
        list.body.map((d: Json) => d.metadata.owner),
        [owner],
        `${tenant} lists only its own`,
      );
    }

    // each publish goes to its tenant's des_same, and lands in that tenant's bucket only
    const evA = await publish(admin, { tenant_id: 'ta', destination_id: 'des_same', data: { for: 'a' } });
    const evB = await publish(admin, { tenant_id: 'tb', destination_id: 'des_same', data: { for: 'b' } });
    assert.deepEqual(evA.destination_ids, ['des_same']);
    assert.deepEqual(evB.destination_ids, ['des_same']);
    await sluice.until(
      'both events land',
      async () => {
        const [ka, kb] = [await s3.keys('bucket-a'), await s3.keys('bucket-b')];
        return ka.some((k) => k.includes(evA.id)) && kb.some((k) => k.includes(evB.id));
      },
      WAIT_MS,
    );
    assert.ok(!(await s3.keys('bucket-a')).some((k) => k.includes(evB.id)), "tb's event is not in ta's bucket");
    assert.ok(!(await s3.keys('bucket-b')).some((k) => k.includes(evA.id)), "ta's event is not in tb's bucket");

    // the log by destination id holds each tenant's own
    await sluice.until(
      'both attempts are logged',
      async () => (await admin.all('/attempts', { status: 'success' })).length >= 2,
      WAIT_MS,
    );
    const attemptsA = await a.all('/tenants/ta/destinations/des_same/attempts');
    assert.deepEqual(
      attemptsA.map((x) => [x.tenant_id, x.event_id]),
      [['ta', evA.id]],
      "ta's des_same attempts are ta's only",
    );
    const viaLog = await b.all('/attempts', { destination_id: 'des_same' });
    assert.deepEqual(
      viaLog.map((x) => [x.tenant_id, x.event_id]),
      [['tb', evB.id]],
      "tb's /attempts?destination_id is tb's only",
    );
    const eventsA = await a.all('/events', { destination_id: 'des_same' });
    assert.deepEqual(
      eventsA.map((e) => e.id),
      [evA.id],
      "ta's /events?destination_id is ta's only",
    );
    const adminB = await admin.all('/events', { tenant_id: 'tb', destination_id: 'des_same' });
    assert.deepEqual(
      adminB.map((e) => e.id),
      [evB.id],
      'the admin with tenant_id gets that tenant only',
    );

    // retry: the tenant's own; the admin names the tenant only when the ids are in both
    assert.equal(
      (await a.post('/retry', { event_id: evA.id, destination_id: 'des_same' })).status,
      202,
      'ta retries its own',
    );
    assertNotFound(
      await a.post('/retry', { event_id: evB.id, destination_id: 'des_same' }),
      "ta cannot retry tb's event on des_same",
    );
    assert.equal(
      (await admin.post('/retry', { event_id: evB.id, destination_id: 'des_same' })).status,
      202,
      'the event id says which tenant',
    );
    const twin = randomUUID();
    await publish(admin, { id: twin, tenant_id: 'ta', destination_id: 'des_same' });
    await publish(admin, { id: twin, tenant_id: 'tb', destination_id: 'des_same' });
    await sluice.until(
      'both twins are attempted',
      async () => (await admin.all('/attempts', { event_id: twin })).length >= 2,
      WAIT_MS,
    );
    const ambiguous = await admin.post('/retry', { event_id: twin, destination_id: 'des_same' });
    assertError(ambiguous, 422, 'the same event and destination ids in two tenants');
    assert.match(ambiguous.text, /tenant_id is required/);
    assert.equal(
      (await admin.post('/retry', { event_id: twin, destination_id: 'des_same', tenant_id: 'tb' })).status,
      202,
    );

    // disable, PATCH and delete reach one tenant's des_same only
    assert.equal((await a.put('/tenants/ta/destinations/des_same/disable')).status, 200);
    assert.equal(
      (await b.get('/tenants/tb/destinations/des_same')).body.disabled_at,
      null,
      "disabling ta's leaves tb's enabled",
    );
    assert.equal((await a.put('/tenants/ta/destinations/des_same/enable')).status, 200);
    assert.equal((await a.patch('/tenants/ta/destinations/des_same', { metadata: { owner: 'a2' } })).status, 200);
    assert.deepEqual(
      (await b.get('/tenants/tb/destinations/des_same')).body.metadata,
      { owner: 'b' },
      "PATCH of ta's leaves tb's",
    );
    assert.equal((await a.delete('/tenants/ta/destinations/des_same')).status, 200);
    assertNotFound(await a.get('/tenants/ta/destinations/des_same'), "ta's des_same after its delete");
    assert.equal((await b.get('/tenants/tb/destinations/des_same')).status, 200, "tb's des_same is still there");
    assertNotFound(
      await admin.post('/publish', { tenant_id: 'ta', destination_id: 'des_same', topic: 'orders', data: {} }),
      'publish to the deleted one',
    );

    const later = await publish(admin, { tenant_id: 'tb', destination_id: 'des_same', data: { later: true } });
    await sluice.until(
      "tb's des_same still delivers",
      async () => (await s3.keys('bucket-b')).some((k) => k.includes(later.id)),
      WAIT_MS,
    );

    // generated ids are unique too
    const generated = new Set<string>();
    for (let i = 0; i < 5; i++) generated.add((await create(a, 'ta', destination(s3.endpoint, 'bucket-a'))).id);
    assert.equal(generated.size, 5, `five generated ids: ${[...generated].join(', ')}`);
    await sluice.stop();
  });

  // An upgrade of a store.sqlite the previous version wrote, read back with SQLite: nothing of it is PostgreSQL's.
  test('a database made when ids were global: its destination, pending delivery and batch tenant are kept, and the id becomes free in other tenants', {
    skip: TEST_STORE_IS_POSTGRES && 'a store.sqlite migration: not the PostgreSQL store',
  }, async () => {
    const s3 = await startS3(['legacy']);
    const dataDir = dir('sluice-legacy-');
    const eventId = randomUUID();
    // a data_dir of a stopped server (its buffer is needed to start), whose store is then one of the old version
    const first = await startSluice(config(dataDir, {}));
    await first.sluice.stop();
    for (const f of ['store.sqlite', 'store.sqlite-wal', 'store.sqlite-shm'])
      rmSync(path.join(dataDir, f), { force: true });
    writeLegacyStore(dataDir, s3.endpoint, eventId);

    const { sluice, admin } = await startSluice(config(dataDir, {}));
    const token = admin.as(await tokenOf(admin, 'old'));
    const found = await token.get('/tenants/old/destinations/des_legacy');
    assert.equal(found.status, 200, `the destination survives the migration: ${found.text}`);
    assert.equal(found.body.credentials.secret, '****');
    // the delivery that was pending before the upgrade is delivered after it
    await sluice.until(
      'the pending delivery lands',
      async () => (await s3.keys('legacy')).some((k) => k.includes(eventId)),
      WAIT_MS,
    );
    const events = await token.all('/events', { destination_id: 'des_legacy' });
    assert.deepEqual(
      events.map((e) => e.id),
      [eventId],
      'the event is found by its destination within the tenant',
    );
    const attempts = await token.all('/tenants/old/destinations/des_legacy/attempts');
    assert.equal(attempts.length, 1, JSON.stringify(attempts));
    assert.equal(attempts[0].status, 'success');

    await putTenant(admin, 'newcomer');
    await create(admin, 'newcomer', destination(s3.endpoint, 'legacy', { id: 'des_legacy' }));
    assert.equal(
      (await token.get('/tenants/old/destinations/des_legacy')).body.config.bucket,
      'legacy',
      "old's destination is unchanged",
    );
    await sluice.stop();

    const db = new Database(path.join(dataDir, 'store.sqlite'), { readonly: true });
    try {
      assert.deepEqual(
        db.prepare("SELECT name FROM pragma_table_info('destinations') WHERE pk > 0 ORDER BY pk").pluck().all(),
        ['tenant_id', 'id'],
        'keyed by (tenant_id, id)',
      );
      assert.equal(
        db.prepare("SELECT tenant_id FROM event_batches WHERE key = 'k'").pluck().get(),
        'old',
        "the batch's tenant is filled in",
      );
      assert.deepEqual(
        db
          .prepare("SELECT DISTINCT tenant_id FROM deliveries WHERE destination_id = 'des_legacy' ORDER BY 1")
          .pluck()
          .all(),
        ['old'],
        "the old delivery has its event's tenant",
      );
    } finally {
      db.close();
    }
  });
});

/**
 * A store.sqlite as the version before per-tenant destination ids wrote it (its schema, verbatim where it
 * matters: destinations keyed by id alone, deliveries and batches without a tenant): a tenant `old` with
 * destination `des_legacy`, an event with a pending delivery to it, and a batch row of that destination.
 */
function writeLegacyStore(dataDir: string, endpoint: string, eventId: string): void {
  mkdirSync(dataDir, { recursive: true });
  const db = new Database(path.join(dataDir, 'store.sqlite'));
  db.exec(`
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE tenants (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, metadata TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE destinations (
      id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, type TEXT NOT NULL, topics TEXT NOT NULL, config TEXT NOT NULL, credentials TEXT NOT NULL,
      delivery_metadata TEXT NOT NULL, metadata TEXT NOT NULL, batched INTEGER NOT NULL, disabled_at TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX destinations_by_tenant ON destinations (tenant_id, created_at);
    CREATE TABLE events (
      seq INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, id TEXT NOT NULL, topic TEXT NOT NULL, time TEXT NOT NULL, time_ms INTEGER NOT NULL,
      eligible_for_retry INTEGER NOT NULL, metadata TEXT NOT NULL, data TEXT NOT NULL, received_at INTEGER NOT NULL, UNIQUE (tenant_id, id)
    );
    CREATE TABLE deliveries (
      seq INTEGER PRIMARY KEY, event_seq INTEGER NOT NULL, destination_id TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
      next_attempt_at INTEGER NOT NULL, object_key TEXT, batch TEXT, manual INTEGER NOT NULL DEFAULT 0, ready INTEGER NOT NULL
    );
    CREATE INDEX deliveries_due_by_destination ON deliveries (destination_id, next_attempt_at) WHERE status = 'pending' AND ready = 1;
    CREATE INDEX deliveries_by_destination ON deliveries (destination_id, status, seq);
    CREATE TABLE event_batches (
      key TEXT PRIMARY KEY, destination_id TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, count INTEGER NOT NULL,
      status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE attempts (
      seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, tenant_id TEXT NOT NULL, event_id TEXT, destination_id TEXT NOT NULL, status TEXT NOT NULL,
      code TEXT, response_data TEXT, error TEXT, attempt_number INTEGER NOT NULL, manual INTEGER NOT NULL, time INTEGER NOT NULL, duration_ms INTEGER NOT NULL
    );
    CREATE INDEX attempts_by_destination ON attempts (destination_id, seq);
  `);
  const now = new Date().toISOString();
  db.prepare('INSERT INTO tenants (id, metadata, created_at, updated_at) VALUES (?, ?, ?, ?)').run(
    'old',
    '{}',
    now,
    now,
  );
  db.prepare(
    `INSERT INTO destinations VALUES ('des_legacy', 'old', 'aws_s3', '["orders"]', ?, ?, '{}', '{}', 0, NULL, ?, ?)`,
  ).run(
    JSON.stringify({ bucket: 'legacy', region: 'us-east-1', endpoint }),
    new CredentialsCipher(ENCRYPTION_KEY).encrypt({ key: S3_KEY, secret: S3_SECRET }),
    now,
    now,
  );
  const seq = db
    .prepare(`INSERT INTO events (tenant_id, id, topic, time, time_ms, eligible_for_retry, metadata, data, received_at)
    VALUES ('old', ?, 'orders', ?, ?, 1, '{}', '{"legacy":true}', ?)`)
    .run(eventId, now, Date.parse(now), Date.now()).lastInsertRowid;
  db.prepare(
    `INSERT INTO deliveries (event_seq, destination_id, status, next_attempt_at, ready) VALUES (?, 'des_legacy', 'pending', 0, 1)`,
  ).run(seq);
  // a batch row of the destination, due in a day (des_legacy is not batched: nothing uploads it): its tenant is filled in too
  db.prepare(`INSERT INTO event_batches VALUES ('k', 'des_legacy', 1, 1, 1, 'pending', 0, ?)`).run(
    Date.now() + 86_400_000,
  );
  db.close();
}

test('POST /retry passes the pending quotas like a publish: a tenant cannot fill the shared backlog by retrying failures', async () => {
  const dead = `http://127.0.0.1:${await closedPort()}`;
  const { sluice, admin } = await startSluice(
    config(dir('sluice-tenants-retry-'), {
      retry: { max_retries: 0, initial_backoff: '1h', max_backoff: '1h' },
      quotas: { pending_deliveries_per_tenant: 3 },
    }),
  );
  await putTenant(admin, 'ta');
  const d = await create(admin, 'ta', destination(dead, 'nowhere'));
  const ids = Array.from({ length: 6 }, (_, i) => `q${i}`);
  // one at a time: each fails at once (a closed port, no retries) and leaves the pending count
  for (const id of ids) {
    await publish(admin, { tenant_id: 'ta', id });
    await sluice.until(
      `${id} failed`,
      async () =>
        (await admin.get(`/events/${id}`)).body?.status === 'failed' ||
        ((await sluice.ready()) as unknown as { events: { pending_deliveries: number } }).events.pending_deliveries ===
          0,
      WAIT_MS,
    );
  }
  await sluice.until(
    'every delivery failed',
    async () =>
      ((await sluice.ready()) as unknown as { events: { pending_deliveries: number } }).events.pending_deliveries === 0,
    WAIT_MS,
  );
  // the tenant points its destination at a listener that never answers, so retried deliveries stay pending
  const tarpit = createServer((socket) => {
    held.push(socket);
  });
  const held: Socket[] = [];
  await new Promise<void>((resolve) => tarpit.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    for (const s of held) s.destroy();
    tarpit.close();
  });
  const moved = await admin.patch(`/tenants/ta/destinations/${d.id as string}`, {
    config: { endpoint: `http://127.0.0.1:${(tarpit.address() as { port: number }).port}` },
    credentials: { key: S3_KEY, secret: S3_SECRET },
  });
  assert.equal(moved.status, 200, moved.text);
  const tenant = new ApiClient(sluice.url, await tokenOf(admin, 'ta'));
  const answers: number[] = [];
  for (const id of ids) answers.push((await tenant.post('/retry', { event_id: id, destination_id: d.id })).status);
  assert.ok(answers.filter((s) => s === 202).length <= 3, `at most the quota of retries pass: ${answers}`);
  const refused = await tenant.post('/retry', { event_id: ids[5]!, destination_id: d.id });
  assertNamesQuota(refused, 429, 'api.quotas.pending_deliveries_per_tenant', 'a retry past the quota');
  assert.ok(
    ((await sluice.ready()) as unknown as { events: { pending_deliveries: number } }).events.pending_deliveries <= 3,
  );
});

test('a tenant token must carry exp and sub: one signed with the right secret but without exp is refused', async () => {
  const { admin, sluice } = await startSluice(config(dir('sluice-tenants-exp-'), {}));
  await putTenant(admin, 'ta');
  const good = await tokenOf(admin, 'ta');
  const [, payload] = good.split('.');
  const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
  const { exp: _exp, ...forever } = claims;
  const noExp = await new SignJWT(forever)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .sign(new TextEncoder().encode(JWT_SECRET));
  assert.equal((await new ApiClient(sluice.url, good).get('/tenants/ta')).status, 200);
  assert.equal((await new ApiClient(sluice.url, noExp).get('/tenants/ta')).status, 401);
});

test('what a tenant stores per destination is bounded: at most 100 topics of 256 characters, 16 KiB of config', async () => {
  const { admin } = await startSluice(config(dir('sluice-tenants-size-'), {}));
  await putTenant(admin, 'ta');
  const endpoint = `http://127.0.0.1:${await closedPort()}`;
  const tooMany = await admin.post(
    '/tenants/ta/destinations',
    destination(endpoint, 'bucket', { topics: Array.from({ length: 101 }, (_, i) => `t${i}`) }),
  );
  assertError(tooMany as never, 422, '101 topics');
  const tooLong = await admin.post(
    '/tenants/ta/destinations',
    destination(endpoint, 'bucket', { topics: ['x'.repeat(257)] }),
  );
  assertError(tooLong as never, 422, 'a topic of 257 characters');
  const big = await admin.post(
    '/tenants/ta/destinations',
    destination(endpoint, 'bucket', {
      config: { bucket: 'bucket', region: 'us-east-1', endpoint, padding: 'x'.repeat(17_000) },
    }),
  );
  assertError(big as never, 422, '17 KB of config');
  const d = await create(
    admin,
    'ta',
    destination(endpoint, 'bucket', { topics: Array.from({ length: 100 }, (_, i) => `t${i}`) }),
  );
  const patched = await admin.patch(`/tenants/ta/destinations/${d.id as string}`, {
    topics: Array.from({ length: 101 }, (_, i) => `t${i}`),
  });
  assertError(patched as never, 422, 'PATCH to 101 topics');
});
