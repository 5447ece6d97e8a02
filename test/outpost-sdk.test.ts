/**
 * Outpost's own TypeScript SDK (@hookdeck/outpost-sdk 1.6.0) against the real `sluice serve` and s3rver on
 * 127.0.0.1: every operation Sluice supports, called through the SDK only (serverURL .../api/v1), and each
 * answer parsed by the SDK's own response schemas (a ResponseValidationError fails the test with the body).
 *
 * The SDK's aws_s3 model has no `config.endpoint` (its zod schemas drop unknown fields), so the client adds it
 * with a beforeRequest hook of its HTTPClient, the way the README shows for S3-compatible stores.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { HTTPClient, Outpost } from '@hookdeck/outpost-sdk';
import { OutpostError, ResponseValidationError } from '@hookdeck/outpost-sdk/models/errors';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { SluiceProcess, tempDir } from './helpers/sluice.js';

const ADMIN_KEY = 'outpost-sdk-test-admin-key';
const BUCKET = 'sdk-events';
const WAIT_MS = 15_000;

let s3: TestS3;
let sluice: SluiceProcess;
let dir: string;
let admin: Outpost;

/** An HTTP client that adds `config.endpoint` to aws_s3 destinations the SDK creates (its model has no such field). */
function withEndpoint(endpoint: string): HTTPClient {
  const client = new HTTPClient({
    fetcher: (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(30_000) }),
  });
  client.addHook('beforeRequest', async (request) => {
    if (request.method !== 'POST' || !/\/tenants\/[^/]+\/destinations$/.test(new URL(request.url).pathname))
      return request;
    const body = (await request.clone().json()) as { type?: string; config?: Record<string, unknown> };
    if (body.type !== 'aws_s3' || !body.config || body.config.endpoint !== undefined) return request;
    return new Request(request, { body: JSON.stringify({ ...body, config: { ...body.config, endpoint } }) });
  });
  return client;
}

function sdk(token: string): Outpost {
  return new Outpost({
    apiKey: token,
    serverURL: `${sluice.url}/api/v1`,
    httpClient: withEndpoint(s3.endpoint),
    retryConfig: { strategy: 'none' },
  });
}

/** Runs an SDK call; a ResponseValidationError (the SDK could not parse Sluice's answer) fails with the raw body. */
async function call<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof ResponseValidationError)
      assert.fail(
        `${what}: the SDK could not parse the answer: ${err.message}\n${JSON.stringify(err.rawValue).slice(0, 2000)}`,
      );
    if (err instanceof OutpostError) assert.fail(`${what}: ${err.statusCode} ${err.body}`);
    throw err;
  }
}

/** The error answer an SDK call fails with (it must fail with one, not parse a success or break on the body). */
async function apiError(what: string, run: () => Promise<unknown>): Promise<OutpostError> {
  try {
    await run();
  } catch (err) {
    if (err instanceof ResponseValidationError)
      assert.fail(`${what}: the SDK could not parse the error answer: ${err.message}`);
    if (err instanceof OutpostError) return err;
    throw err;
  }
  assert.fail(`${what}: expected an error answer`);
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  await sluice.until(what, check, WAIT_MS);
}

before(async () => {
  s3 = new TestS3([BUCKET]);
  await s3.start();
  dir = tempDir('sluice-outpost-sdk-');
  sluice = new SluiceProcess({
    config: {
      data_dir: dir,
      outputs: [],
      shutdown_timeout: '2s',
      api: {
        admin_key: ADMIN_KEY,
        retry: { initial_backoff: '100ms', max_backoff: '200ms', max_retries: 2 },
        destinations: { allowed_endpoints: ['127.0.0.1/32'] },
      },
    },
  });
  await sluice.start();
  admin = sdk(ADMIN_KEY);
});

after(async () => {
  await sluice?.stop().catch(() => {});
  await s3?.stop().catch(() => {});
  if (s3) rmSync(s3.directory, { recursive: true, force: true });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const awsS3 = (extra: Record<string, unknown> = {}) => ({
  type: 'aws_s3' as const,
  topics: '*' as const,
  config: { bucket: BUCKET, region: 'us-east-1' },
  credentials: { key: S3_KEY, secret: S3_SECRET },
  ...extra,
});

describe('health, schemas, topics, config', () => {
  test('health.check: healthy, with its workers', async () => {
    const health = await call('health.check', () => admin.health.check());
    assert.equal(health.status, 'healthy');
    assert.ok(health.timestamp instanceof Date && !Number.isNaN(health.timestamp.getTime()));
    assert.equal(health.workers.store?.status, 'healthy');
  });

  test('schemas.listDestinationTypes / getDestinationType: aws_s3 with batching as flat fields', async () => {
    const types = await call('schemas.listDestinationTypes', () => admin.schemas.listDestinationTypes());
    assert.deepEqual(
      types.map((t) => t.type),
      ['aws_s3'],
    );
    const s3Type = await call('schemas.getDestinationType', () => admin.schemas.getDestinationType('aws_s3'));
    const keys = (s3Type.configFields ?? []).map((f) => f.key);
    for (const key of [
      'bucket',
      'region',
      'key_template',
      'storage_class',
      'endpoint',
      'batching.max_events',
      'batching.max_bytes',
      'batching.max_age',
      'batching.format',
      'batching.compression',
    ]) {
      assert.ok(keys.includes(key), `${key} is described: ${keys.join(', ')}`);
    }
    const format = s3Type.configFields!.find((f) => f.key === 'batching.format')!;
    assert.equal(format.type, 'select');
    assert.deepEqual(
      format.options?.map((o) => o.value),
      ['ndjson', 'json_array', 'parquet'],
    );
    assert.deepEqual(
      (s3Type.credentialFields ?? []).filter((f) => f.required).map((f) => f.key),
      ['key', 'secret'],
    );
    const unknown = await apiError('getDestinationType(webhook)', () => admin.schemas.getDestinationType('webhook'));
    assert.equal(unknown.statusCode, 404);
  });

  test('topics.list and configuration.getManagedConfig; updateManagedConfig is 501', async () => {
    assert.deepEqual(await call('topics.list', () => admin.topics.list()), []);
    const config = await call('configuration.getManagedConfig', () => admin.configuration.getManagedConfig());
    assert.equal(config.maxDestinationsPerTenant, '20');
    assert.equal(config.maxRetryLimit, '2');
    assert.equal(config.topicsAllowWildcards, 'true');
    const patch = await apiError('updateManagedConfig', () =>
      admin.configuration.updateManagedConfig({ topics: 'a,b' }),
    );
    assert.equal(patch.statusCode, 501);
  });
});

describe('tenants', () => {
  test('upsert (created, then updated), get, list with count, id filter, dir and limits', async () => {
    const created = await call('tenants.upsert', () => admin.tenants.upsert('sdk-t1', { metadata: { plan: 'free' } }));
    assert.equal(created.id, 'sdk-t1');
    assert.deepEqual(created.metadata, { plan: 'free' });
    const updated = await call('tenants.upsert again', () =>
      admin.tenants.upsert('sdk-t1', { metadata: { plan: 'pro' } }),
    );
    assert.deepEqual(updated.metadata, { plan: 'pro' });
    await call('tenants.upsert t2', () => admin.tenants.upsert('sdk-t2'));
    await call('tenants.upsert t3', () => admin.tenants.upsert('sdk-t3'));

    const got = await call('tenants.get', () => admin.tenants.get('sdk-t1'));
    assert.equal(got.destinationsCount, 0);
    assert.ok(got.createdAt instanceof Date);

    const newest = await call('tenants.list', () => admin.tenants.list({ limit: 2 }));
    assert.equal(newest.pagination?.limit, 2);
    assert.equal(newest.pagination?.dir, 'desc');
    assert.equal(newest.pagination?.orderBy, 'created_at');
    assert.ok((newest.count ?? 0) >= 3, `count is every tenant: ${newest.count}`);
    assert.deepEqual(
      newest.models?.map((t) => t.id),
      ['sdk-t3', 'sdk-t2'],
      'newest first by default',
    );
    const oldest = await call('tenants.list asc', () => admin.tenants.list({ dir: 'asc', id: ['sdk-t3', 'sdk-t1'] }));
    assert.deepEqual(
      oldest.models?.map((t) => t.id),
      ['sdk-t1', 'sdk-t3'],
    );
    assert.equal(oldest.count, 2);
    assert.equal(oldest.pagination?.limit, 20, "Outpost's default page of tenants");
    const tooMany = await apiError('tenants.list limit 101', () => admin.tenants.list({ limit: 101 }));
    assert.equal(tooMany.statusCode, 422);
    assert.match(tooMany.body, /limit/);
  });

  test('getToken; a tenant token lists only itself, updates and deletes itself, and not another', async () => {
    await call('tenants.upsert', () => admin.tenants.upsert('sdk-self'));
    const token = await call('tenants.getToken', () => admin.tenants.getToken('sdk-self'));
    assert.equal(token.tenantId, 'sdk-self');
    const payload = JSON.parse(Buffer.from(token.token!.split('.')[1]!, 'base64url').toString()) as {
      iss: string;
      sub: string;
    };
    assert.equal(payload.iss, 'outpost', "Outpost's issuer");
    assert.equal(payload.sub, 'sdk-self');

    const self = sdk(token.token!);
    const listed = await call('tenants.list as tenant', () => self.tenants.list({}));
    assert.deepEqual(
      listed.models?.map((t) => t.id),
      ['sdk-self'],
    );
    assert.equal(listed.count, 1);
    const renamed = await call('tenants.upsert as tenant', () =>
      self.tenants.upsert('sdk-self', { metadata: { name: 'Self' } }),
    );
    assert.deepEqual(renamed.metadata, { name: 'Self' });
    assert.equal((await apiError('upsert another tenant', () => self.tenants.upsert('sdk-t2'))).statusCode, 403);
    assert.equal((await apiError('getToken as tenant', () => self.tenants.getToken('sdk-self'))).statusCode, 403);
    const deleted = await call('tenants.delete as tenant', () => self.tenants.delete('sdk-self'));
    assert.equal(deleted.success, true);
    assert.equal((await apiError('the deleted tenant', () => admin.tenants.get('sdk-self'))).statusCode, 404);
    assert.equal((await apiError('its token after the delete', () => self.tenants.list({}))).statusCode, 401);
  });

  test('getPortalUrl: 501 (Sluice has no tenant portal)', async () => {
    const portal = await apiError('tenants.getPortalUrl', () => admin.tenants.getPortalUrl('sdk-t1', 'dark'));
    assert.equal(portal.statusCode, 501);
    assert.match(portal.body, /no tenant portal/);
    assert.equal(
      (await apiError('portal of an unknown tenant', () => admin.tenants.getPortalUrl('sdk-none'))).statusCode,
      404,
    );
  });
});

describe('destinations, publish, events, attempts, metrics', () => {
  const tenant = 'sdk-shop';
  let everything = '';
  let bigOnly = '';
  const published: string[] = [];
  const start = new Date(Date.now() - 60_000);

  before(async () => {
    await call('tenants.upsert', () => admin.tenants.upsert(tenant));
  });

  test('create with topics "*" and a filter; get, list filters, update merges metadata, disable/enable', async () => {
    const all = await call('destinations.create', () =>
      admin.destinations.create(
        tenant,
        awsS3({ metadata: { team: 'a', drop: 'me' }, deliveryMetadata: { app: 'shop' } }),
      ),
    );
    assert.equal(all.type, 'aws_s3');
    assert.deepEqual(all.topics, ['*']);
    assert.equal(all.disabledAt, null);
    everything = all.id;
    const big = await call('destinations.create with filter', () =>
      admin.destinations.create(
        tenant,
        awsS3({
          topics: ['orders'],
          // its own keys: two destinations writing one key at once is a race s3rver does not survive
          config: {
            bucket: BUCKET,
            region: 'us-east-1',
            keyTemplate: `join('', ['big/', metadata."event-id", '.json'])`,
          },
          filter: { data: { amount: { $gte: 100 } }, $not: { metadata: { source: { $startsWith: 'test' } } } },
        }),
      ),
    );
    bigOnly = big.id;
    assert.deepEqual(big.filter, {
      data: { amount: { $gte: 100 } },
      $not: { metadata: { source: { $startsWith: 'test' } } },
    });

    const bad = await apiError('an unknown filter operator', () =>
      admin.destinations.create(tenant, awsS3({ filter: { data: { n: { $regex: 'x' } } } })),
    );
    assert.equal(bad.statusCode, 422);
    assert.match(bad.body, /filter\.data\.n\.\$regex/);

    const got = await call('destinations.get', () => admin.destinations.get(tenant, everything));
    assert.equal(got.id, everything);
    assert.equal((got as { config: { bucket: string } }).config.bucket, BUCKET);
    const byTopic = await call('destinations.list topics', () =>
      admin.destinations.list(tenant, 'aws_s3', ['refunds']),
    );
    assert.deepEqual(
      byTopic.map((d) => d.id),
      [everything],
      'only the "*" destination receives refunds',
    );
    const byType = await call('destinations.list type', () => admin.destinations.list(tenant, ['aws_sqs']));
    assert.deepEqual(byType, []);

    const changed = await call('destinations.update', () =>
      admin.destinations.update(tenant, everything, {
        type: 'aws_s3',
        metadata: { team: 'b', drop: null, added: 'x' },
        deliveryMetadata: { region: 'eu' },
      }),
    );
    assert.deepEqual(changed.metadata, { team: 'b', added: 'x' }, 'merged; null removed a key');
    assert.deepEqual(changed.deliveryMetadata, { app: 'shop', region: 'eu' });

    const disabled = await call('destinations.disable', () => admin.destinations.disable(tenant, everything));
    assert.ok(disabled.disabledAt instanceof Date);
    const enabled = await call('destinations.enable', () => admin.destinations.enable(tenant, everything));
    assert.equal(enabled.disabledAt, null);
  });

  test('publish: events routed by topic and filter, objects in the bucket', async () => {
    const events = [
      { id: 'sdk-e1', topic: 'orders', data: { amount: 150 }, metadata: { source: 'checkout' } },
      { id: 'sdk-e2', topic: 'orders', data: { amount: 20 }, metadata: { source: 'checkout' } },
      { id: 'sdk-e3', topic: 'refunds', data: { amount: 500 } },
      { id: 'sdk-e4', topic: 'orders', data: { amount: 900 }, metadata: { source: 'test-suite' } },
    ];
    const routed: Record<string, string[]> = {};
    for (const e of events) {
      const res = await call('publish', () => admin.publish({ ...e, tenantId: tenant }));
      assert.equal(res.id, e.id);
      assert.equal(res.duplicate, false);
      routed[e.id] = [...res.destinationIds].sort();
      published.push(e.id);
    }
    assert.deepEqual(
      routed,
      {
        'sdk-e1': [everything, bigOnly].sort(),
        'sdk-e2': [everything],
        'sdk-e3': [everything],
        'sdk-e4': [everything],
      },
      'the filter lets through orders of 100 or more that are not from a test source',
    );
    // a listing that fails (s3rver, mid-write) is asked again
    let keys: string[] = [];
    await until('5 objects in the bucket', async () => {
      keys = await s3.keys(BUCKET).catch(() => keys);
      return keys.length >= 5;
    });
    assert.equal(keys.length, 5, keys.join(', '));
    const e1 = keys.filter((k) => k.includes('sdk-e1'));
    assert.deepEqual(
      e1.filter((k) => k.startsWith('big/')),
      ['big/sdk-e1.json'],
      'one object per destination, under its key_template',
    );
    assert.equal(e1.length, 2);
    // s3rver may list an object a moment before it serves it
    let body = '';
    await until('the object of sdk-e1', async () => {
      body = await s3.object(e1[0]!, BUCKET).then(
        (o) => o.body.toString(),
        () => '',
      );
      return body !== '';
    });
    assert.deepEqual(JSON.parse(body), { amount: 150 });
  });

  test('events.list: matched_destination_ids, time[gt], topic=a&topic=b, dir; events.get with tenant_id', async () => {
    const page = await call('events.list', () => admin.events.list({ tenantId: tenant }));
    assert.deepEqual(
      page.models?.map((e) => e.id),
      [...published].reverse(),
      'newest first',
    );
    assert.equal(page.pagination?.orderBy, 'time');
    const e1 = page.models!.find((e) => e.id === 'sdk-e1')!;
    assert.deepEqual([...e1.matchedDestinationIds!].sort(), [everything, bigOnly].sort());
    assert.deepEqual(e1.data, { amount: 150 });

    const asc = await call('events.list dir asc', () => admin.events.list({ tenantId: tenant, dir: 'asc', limit: 2 }));
    assert.deepEqual(
      asc.models?.map((e) => e.id),
      published.slice(0, 2),
    );
    assert.equal(asc.pagination?.dir, 'asc');
    const rest = await call('events.list next', () =>
      admin.events.list({ tenantId: tenant, dir: 'asc', limit: 2, next: asc.pagination!.next! }),
    );
    assert.deepEqual(
      rest.models?.map((e) => e.id),
      published.slice(2, 4),
    );

    const topics = await call('events.list topic=a&topic=b', () =>
      admin.events.list({ tenantId: tenant, topic: ['refunds', 'nothing'] }),
    );
    assert.deepEqual(
      topics.models?.map((e) => e.id),
      ['sdk-e3'],
    );
    const since = await call('events.list time[gt]', () =>
      admin.events.list({ tenantId: tenant, time: { gt: new Date(Date.now() + 60_000) } }),
    );
    assert.deepEqual(since.models, [], 'nothing is newer than a minute from now');
    const window = await call('events.list time[gte]/[lt]', () =>
      admin.events.list({ tenantId: tenant, time: { gte: start, lt: new Date(Date.now() + 60_000) } }),
    );
    assert.equal(window.models?.length, 4);
    const byDestination = await call('events.list destination_id', () =>
      admin.events.list({ destinationId: bigOnly, tenantId: tenant }),
    );
    assert.deepEqual(
      byDestination.models?.map((e) => e.id),
      ['sdk-e1'],
    );

    const one = await call('events.get', () => admin.events.get('sdk-e1', tenant));
    assert.equal(one.id, 'sdk-e1');
    assert.equal(one.tenantId, tenant);
    assert.equal(
      (await apiError('events.get in another tenant', () => admin.events.get('sdk-e1', 'sdk-t1'))).statusCode,
      404,
    );
  });

  test('attempts.list/get with include, destinations.listAttempts/getAttempt, retry', async () => {
    await until(
      '5 successful attempts',
      async () => ((await admin.attempts.list({ tenantId: tenant, status: 'success' })).models?.length ?? 0) >= 5,
    );
    const list = await call('attempts.list include=event,destination', () =>
      admin.attempts.list({
        tenantId: tenant,
        include: ['event', 'destination'],
        topic: 'orders',
        destinationType: 'aws_s3',
      }),
    );
    assert.equal(list.models?.length, 4, 'the attempts of the orders events');
    for (const a of list.models!) {
      assert.equal(a.status, 'success');
      assert.equal(a.event?.topic, 'orders');
      assert.equal(a.event && 'data' in a.event ? a.event.data : undefined, undefined, 'include=event is the summary');
      assert.equal(a.destination?.id, a.destinationId);
    }
    const withData = await call('attempts.list include=event.data', () =>
      admin.attempts.list({ eventId: 'sdk-e3', include: 'event.data' }),
    );
    assert.deepEqual((withData.models?.[0]?.event as { data?: unknown } | undefined)?.data, { amount: 500 });
    const first = await call('attempts.list dir asc', () =>
      admin.attempts.list({ tenantId: tenant, dir: 'asc', limit: 1 }),
    );
    // attempts come in the order they were recorded: e1 and e2 go to two destinations at once, so which of
    // them is first is the deliveries' race; dir asc must give the oldest, the last of the default (desc) order
    const newestFirst = (await admin.attempts.list({ tenantId: tenant })).models ?? [];
    assert.equal(newestFirst.length >= 5, true, 'every attempt so far');
    assert.equal(first.models?.[0]?.id, newestFirst.at(-1)?.id, 'dir asc starts from the oldest attempt');
    assert.ok(['sdk-e1', 'sdk-e2'].includes(first.models![0]!.eventId!), 'one of the first batch of events');
    const none = await call('attempts.list time[lt]', () =>
      admin.attempts.list({ tenantId: tenant, time: { lt: start } }),
    );
    assert.deepEqual(none.models, []);

    const attempt = list.models![0]!;
    const got = await call('attempts.get', () => admin.attempts.get(attempt.id!, tenant, 'event'));
    assert.equal(got.id, attempt.id);
    assert.equal(got.event?.id, attempt.eventId);

    const ofDestination = await call('destinations.listAttempts', () =>
      admin.destinations.listAttempts({ tenantId: tenant, destinationId: bigOnly }),
    );
    assert.deepEqual(
      ofDestination.models?.map((a) => a.eventId),
      ['sdk-e1'],
    );
    const one = await call('destinations.getAttempt', () =>
      admin.destinations.getAttempt(tenant, bigOnly, ofDestination.models![0]!.id!, 'destination'),
    );
    assert.equal(one.destination?.id, bigOnly);
    assert.equal(
      (
        await apiError('an attempt of another destination', () =>
          admin.destinations.getAttempt(tenant, everything, ofDestination.models![0]!.id!),
        )
      ).statusCode,
      404,
    );

    const retried = await call('retry', () => admin.retry({ eventId: 'sdk-e1', destinationId: bigOnly }));
    assert.equal(retried.success, true);
    await until(
      'the manual attempt',
      async () =>
        ((await admin.destinations.listAttempts({ tenantId: tenant, destinationId: bigOnly })).models?.length ?? 0) >=
        2,
    );
    const again = await call('destinations.listAttempts after the retry', () =>
      admin.destinations.listAttempts({ tenantId: tenant, destinationId: bigOnly }),
    );
    assert.equal(again.models?.[0]?.manual, true);
  });

  test('metrics.getEventMetrics / getAttemptMetrics: counts by dimension and time bucket', async () => {
    const end = new Date(Date.now() + 60_000);
    const byTopic = await call('metrics.getEventMetrics', () =>
      admin.metrics.getEventMetrics({
        time: { start, end },
        measures: ['count', 'rate'],
        dimensions: ['topic'],
        filtersTenantId: tenant,
      }),
    );
    const counts = Object.fromEntries((byTopic.data ?? []).map((d) => [d.dimensions?.topic, d.metrics?.count]));
    assert.deepEqual(counts, { orders: 3, refunds: 1 });
    assert.equal(byTopic.metadata?.truncated, false);

    const byDestination = await call('metrics.getEventMetrics destination_id', () =>
      admin.metrics.getEventMetrics({
        time: { start, end },
        measures: 'count',
        dimensions: 'destination_id',
        filtersTenantId: tenant,
      }),
    );
    const perDestination = Object.fromEntries(
      (byDestination.data ?? []).map((d) => [d.dimensions?.destination_id, d.metrics?.count]),
    );
    assert.deepEqual(perDestination, { [everything]: 4, [bigOnly]: 1 });

    const bucketed = await call('metrics.getEventMetrics granularity', () =>
      admin.metrics.getEventMetrics({
        time: {
          start: new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000),
          end: new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 + 3_600_000),
        },
        granularity: '1h',
        measures: ['count'],
        filtersTenantId: tenant,
      }),
    );
    assert.equal(bucketed.data?.length, 2, 'both hours, the empty one filled in');
    assert.equal(
      bucketed.data!.reduce((n, d) => n + Number(d.metrics?.count), 0),
      4,
    );
    assert.ok(bucketed.data!.every((d) => d.timeBucket instanceof Date && d.timeBucket.getTime() % 3_600_000 === 0));

    const attempts = await call('metrics.getAttemptMetrics', () =>
      admin.metrics.getAttemptMetrics({
        time: { start, end },
        measures: ['count', 'successful_count', 'failed_count', 'error_rate', 'manual_retry_count'],
        dimensions: ['destination_id', 'manual'],
        filtersTenantId: tenant,
      }),
    );
    const big = (attempts.data ?? []).filter((d) => d.dimensions?.destination_id === bigOnly);
    assert.deepEqual(
      big.map((d) => [d.dimensions?.manual, d.metrics?.count, d.metrics?.manual_retry_count]).sort(),
      [
        ['false', 1, 0],
        ['true', 1, 1],
      ].sort(),
    );
    assert.ok((attempts.data ?? []).every((d) => d.metrics?.error_rate === 0 && d.metrics?.failed_count === 0));

    const token = await admin.tenants.getToken(tenant);
    const own = sdk(token.token!);
    const mine = await call('metrics as a tenant', () =>
      own.metrics.getEventMetrics({ time: { start, end }, measures: 'count' }),
    );
    assert.equal(mine.data?.[0]?.metrics?.count, 4);
    assert.equal(
      (
        await apiError('tenant_id dimension as a tenant', () =>
          own.metrics.getEventMetrics({ time: { start, end }, measures: 'count', dimensions: 'tenant_id' }),
        )
      ).statusCode,
      403,
    );
  });

  test('delete the destination and the tenant', async () => {
    assert.equal((await call('destinations.delete', () => admin.destinations.delete(tenant, bigOnly))).success, true);
    assert.equal(
      (await apiError('the deleted destination', () => admin.destinations.get(tenant, bigOnly))).statusCode,
      404,
    );
    assert.equal((await call('tenants.delete', () => admin.tenants.delete(tenant))).success, true);
  });
});

describe('query parameters and the OpenAPI document', () => {
  test('an unknown query parameter is 400 naming it; bracketed arrays are accepted', async () => {
    const headers = { authorization: `Bearer ${ADMIN_KEY}` };
    const unknown = await fetch(`${sluice.url}/api/v1/events?colour=red`, {
      headers,
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(unknown.status, 400);
    assert.match(await unknown.text(), /colour/);
    const bracketed = await fetch(`${sluice.url}/api/v1/events?topic[0]=a&topic[1]=b&tenant_id[]=x`, {
      headers,
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(bracketed.status, 200, await bracketed.text());
  });

  test('GET /openapi.json: every /api/v1 route has its success answer with a schema, its errors and its credential', async () => {
    const doc = (await (await fetch(`${sluice.url}/openapi.json`, { signal: AbortSignal.timeout(10_000) })).json()) as {
      paths: Record<
        string,
        Record<
          string,
          { responses?: Record<string, { content?: Record<string, { schema?: unknown }> }>; security?: unknown[] }
        >
      >;
    };
    const expected: Record<string, string> = {
      'post /api/v1/tenants/{tenant_id}/destinations': '201',
      'post /api/v1/publish': '202',
      'post /api/v1/retry': '202',
      'put /api/v1/tenants/{tenant_id}': '201',
    };
    let routes = 0;
    for (const [path, methods] of Object.entries(doc.paths)) {
      if (!path.startsWith('/api/v1/')) continue;
      for (const [method, op] of Object.entries(methods)) {
        routes++;
        const codes = Object.keys(op.responses ?? {});
        const success = codes.filter((c) => c.startsWith('2'));
        const notImplemented = path.endsWith('/portal') || (path === '/api/v1/config' && method === 'patch');
        if (!notImplemented) {
          assert.ok(success.length > 0, `${method} ${path} has a success answer: ${codes.join(', ')}`);
          for (const code of success)
            assert.ok(
              op.responses![code]!.content?.['application/json']?.schema,
              `${method} ${path} ${code} has a body schema`,
            );
        }
        if (expected[`${method} ${path}`])
          assert.ok(
            success.includes(expected[`${method} ${path}`]!),
            `${method} ${path} answers ${expected[`${method} ${path}`]}: ${codes.join(', ')}`,
          );
        if (path !== '/api/v1/healthz') {
          assert.ok(codes.includes('401'), `${method} ${path} documents 401`);
          assert.ok(Array.isArray(op.security) && op.security.length > 0, `${method} ${path} names its credential`);
        }
      }
    }
    assert.ok(routes >= 30, `the /api/v1 routes are described (${routes})`);
  });
});
