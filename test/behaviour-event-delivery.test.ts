/**
 * Settings of the Outpost-compatible side that bound or shape event delivery, as a user sees them through
 * `/api/v1` and the bucket: `api.idempotency_window` expiry, `api.retry.schedule`, `api.max_pending_deliveries`
 * (429), `api.log_retention.max_age`, and `ingest.tenants` mapped by bearer token. Against the real
 * `sluice serve` process and s3rver, on 127.0.0.1 only.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { decision, decisions, postDecisions } from './helpers/opa.js';
import { closedPort, deliveryStatus, OutpostApi } from './helpers/outpost.js';

const ADMIN_KEY = 'event-delivery-admin-key';
/** Keys from the environment of whoever runs the tests must not change what the server is configured with. */
const CLEAN_ENV: NodeJS.ProcessEnv = {
  SLUICE_ADMIN_KEY: undefined,
  SLUICE_JWT_SECRET: undefined,
  SLUICE_ENCRYPTION_KEY: undefined,
};
const WAIT_MS = 20_000;

const cleanups: Array<() => Promise<unknown> | unknown> = [];
after(async () => {
  for (const c of cleanups.reverse())
    await Promise.resolve()
      .then(c)
      .catch(() => {});
});

async function startS3(buckets: string[]): Promise<TestS3> {
  const s3 = new TestS3(buckets);
  await s3.start();
  cleanups.push(async () => {
    await s3.stop().catch(() => {});
    rmSync(s3.directory, { recursive: true, force: true });
  });
  return s3;
}

function config(api: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const dir = tempDir('sluice-event-delivery-');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return {
    data_dir: dir,
    outputs: [],
    shutdown_timeout: '2s',
    api: { admin_key: ADMIN_KEY, destinations: { allowed_endpoints: ['127.0.0.1/32'] }, ...api },
    ...extra,
  };
}

async function startSluice(cfg: Record<string, unknown>): Promise<{ sluice: SluiceProcess; api: OutpostApi }> {
  const sluice = new SluiceProcess({ config: cfg, env: CLEAN_ENV });
  cleanups.push(() => sluice.kill9());
  await sluice.start();
  return { sluice, api: new OutpostApi(sluice.url, ADMIN_KEY) };
}

function s3Destination(endpoint: string, bucket: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'aws_s3',
    topics: ['orders'],
    config: { bucket, region: 'us-east-1', endpoint },
    credentials: { key: S3_KEY, secret: S3_SECRET },
    ...over,
  };
}

async function tenant(api: OutpostApi, id: string): Promise<void> {
  const res = await api.putTenant(id);
  assert.ok(res.status === 201 || res.status === 200, `PUT /tenants/${id}: ${res.status} ${res.text}`);
}

/** Waits until the attempts matching `filters` satisfy `check`, and returns them. */
async function attemptsWhen(
  sluice: SluiceProcess,
  api: OutpostApi,
  filters: Record<string, string>,
  check: (attempts: any[]) => boolean,
  what: string,
): Promise<any[]> {
  let attempts: any[] = [];
  try {
    await sluice.until(
      what,
      async () => {
        attempts = await api.attempts(filters);
        return check(attempts);
      },
      WAIT_MS,
    );
  } catch (err) {
    throw new Error(
      `${(err as Error).message}\n--- last attempts ---\n${JSON.stringify(attempts, null, 1).slice(0, 3000)}`,
    );
  }
  return attempts;
}

const byNumber = (attempts: any[]) => [...attempts].sort((a, b) => a.attempt_number - b.attempt_number);

// ---------------------------------------------------------------------------------------------------------------

test('api.idempotency_window: the same event id inside the window is a duplicate; after it, a new publish that is delivered again', async () => {
  const s3 = await startS3(['idem']);
  const { sluice, api } = await startSluice(
    config({ idempotency_window: '1s', retry: { initial_backoff: '100ms', max_backoff: '200ms' } }),
  );
  await tenant(api, 'acme');
  const destination = await api.createDestination('acme', s3Destination(s3.endpoint, 'idem'));
  const id = randomUUID();
  const time = '2026-05-01T12:00:00Z';
  const published = Date.now();
  const first = await api.publish({ id, tenant_id: 'acme', topic: 'orders', time, data: { v: 1 } });
  assert.equal(first.duplicate, false);
  const inside = await api.publish({ id, tenant_id: 'acme', topic: 'orders', time, data: { v: 2 } });
  assert.equal(inside.duplicate, true, 'inside the window: acknowledged as a duplicate');
  assert.deepEqual(inside.destination_ids, [destination.id], 'a duplicate names the destinations of the stored event');

  // The same id, again and again, until it is taken as new: each answer inside the window is a duplicate.
  let outside: { duplicate: boolean; destination_ids: string[] } | undefined;
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const again = await api.publish({ id, tenant_id: 'acme', topic: 'orders', time, data: { v: 3 } });
    if (!again.duplicate) {
      outside = again;
      break;
    }
    await sleep(100);
  }
  const elapsed = Date.now() - published;
  assert.ok(outside, 'after the window the same id is published again');
  assert.deepEqual(outside.destination_ids, [destination.id]);
  assert.ok(elapsed > 1_000, `not before the window (1 s) has passed: ${elapsed} ms`);

  const attempts = await attemptsWhen(
    sluice,
    api,
    { event_id: id, destination_id: destination.id },
    (a) => a.filter((x) => x.status === 'success').length >= 2,
    'two deliveries of the event',
  );
  assert.equal(
    attempts.filter((a) => a.status === 'success').length,
    2,
    'delivered once per publish outside the window',
  );
  const event = await api.event(id);
  assert.deepEqual(event.data, { v: 3 }, 'the event is the one published after the window');
  const key = `${time}_${id}.json`;
  assert.deepEqual(await s3.keys('idem'), [key], 'the same key, overwritten');
  assert.deepEqual(
    JSON.parse((await s3.object(key, 'idem')).body.toString('utf8')),
    { v: 3 },
    'the object holds the later data',
  );
  await sluice.stop();
});

test('api.retry.schedule: attempts wait the listed times, in order, and stop after the last (max_retries is its length)', async () => {
  const dead = `http://127.0.0.1:${await closedPort()}`;
  const schedule = ['100ms', '1500ms', '300ms'];
  const waits = [100, 1500, 300];
  // max_retries says 1, initial_backoff 1h: only the schedule can give three retries within seconds
  const { sluice, api } = await startSluice(
    config({ retry: { schedule, max_retries: 1, initial_backoff: '1h', max_backoff: '1h' } }),
  );
  await tenant(api, 'acme');
  const destination = await api.createDestination('acme', s3Destination(dead, 'nowhere'));
  const { id } = await api.publish({ tenant_id: 'acme', topic: 'orders', data: { n: 1 } });
  await sluice.until(
    'the delivery to fail for good',
    async () => deliveryStatus(await api.event(id), destination.id) === 'failed',
    WAIT_MS,
  );

  const attempts = byNumber(await api.attempts({ event_id: id, destination_id: destination.id }));
  assert.deepEqual(
    attempts.map((a) => a.attempt_number),
    [1, 2, 3, 4],
    `the first attempt and one per scheduled wait: ${JSON.stringify(attempts)}`,
  );
  assert.ok(
    attempts.every((a) => a.status === 'failed'),
    'every attempt failed (nothing listens there)',
  );
  for (let i = 1; i < attempts.length; i++) {
    const gap = Date.parse(attempts[i].time) - Date.parse(attempts[i - 1].time);
    assert.ok(
      gap >= waits[i - 1]! - 5,
      `attempt ${i + 1} came at least ${waits[i - 1]} ms after attempt ${i}: ${gap} ms`,
    );
  }
  const managed = await api.call('GET', '/config');
  assert.equal(managed.status, 200, managed.text);
  assert.equal(
    String(managed.body.MAX_RETRY_LIMIT),
    '3',
    `GET /config: the retry limit is the schedule's length: ${managed.text}`,
  );
  await sluice.stop();
});

test('api.max_pending_deliveries: past it every tenant gets 429 + Retry-After and nothing is stored; room made, publishing goes on', async () => {
  const dead = `http://127.0.0.1:${await closedPort()}`;
  const { sluice, api } = await startSluice(
    config(
      {
        max_pending_deliveries: 2,
        // the per-tenant quota is far away: only the shared bound can refuse here
        quotas: { pending_deliveries_per_tenant: 1000 },
        retry: { initial_backoff: '1h', max_backoff: '1h' },
      },
      { ingest: { tenants: [{ tenant: 'beta', partition: 'beta' }] } },
    ),
  );
  await tenant(api, 'alpha');
  await tenant(api, 'beta');
  const alphaDestination = await api.createDestination('alpha', s3Destination(dead, 'nowhere', { topics: ['*'] }));
  await api.createDestination('beta', s3Destination(dead, 'nowhere', { topics: ['*'] }));
  await api.publish({ tenant_id: 'alpha', topic: 'orders', data: { n: 1 } });
  await api.publish({ tenant_id: 'beta', topic: 'orders', data: { n: 2 } });

  for (const tenantId of ['alpha', 'beta']) {
    const id = randomUUID();
    const refused = await api.call('POST', '/publish', { id, tenant_id: tenantId, topic: 'orders', data: { n: 3 } });
    assert.equal(refused.status, 429, `${tenantId}: ${refused.text}`);
    assert.match(String(refused.body.message), /api\.max_pending_deliveries/, 'the refusal names the setting');
    assert.ok(Number(refused.headers.get('retry-after')) > 0, `Retry-After: ${refused.headers.get('retry-after')}`);
    assert.equal(
      (await api.call('GET', `/events/${id}`)).status,
      404,
      `${tenantId}: nothing of the refused publish was stored`,
    );
  }
  const batch = await api.call('POST', '/publish/batch', [{ tenant_id: 'alpha', topic: 'orders', data: { n: 4 } }]);
  assert.equal(batch.status, 429, `a batch too: ${batch.text}`);
  const mapped = decisions(1);
  const logs = await postDecisions(sluice.url, mapped, { partition: 'beta' });
  assert.equal(logs.status, 429, 'decisions mapped to a tenant are refused too');
  assert.equal((await api.call('GET', `/events/${mapped[0]!.decision_id as string}`)).status, 404);
  const ready = (await (await fetch(`${sluice.url}/ready`)).json()) as { events: { pending_deliveries: number } };
  assert.equal(ready.events.pending_deliveries, 2, 'the refusals took no room');

  // a destination deleted takes its pending deliveries with it: room under the bound again
  assert.equal((await api.call('DELETE', `/tenants/alpha/destinations/${alphaDestination.id as string}`)).status, 200);
  await api.createDestination('alpha', s3Destination(dead, 'nowhere', { topics: ['*'] }));
  const accepted = await api.publish({ tenant_id: 'alpha', topic: 'orders', data: { n: 5 } });
  assert.equal(accepted.duplicate, false);
  assert.equal(
    (await api.call('POST', '/publish', { tenant_id: 'beta', topic: 'orders', data: { n: 6 } })).status,
    429,
    'and the bound holds again at 2',
  );
  await sluice.stop();
});

const MAX_AGE_MS = 15_000;
test('api.log_retention.max_age: at start, events and attempts older than it are pruned; younger ones stay', async () => {
  const s3 = await startS3(['kept']);
  // max_age leaves the young event's stop and restart 15 s: a bound for a loaded machine, not a timing target
  const cfg = config({
    log_retention: { max_age: `${MAX_AGE_MS}ms`, max_count: 100_000 },
    retry: { initial_backoff: '100ms', max_backoff: '200ms' },
  });
  const first = await startSluice(cfg);
  await tenant(first.api, 'acme');
  const destination = await first.api.createDestination('acme', s3Destination(s3.endpoint, 'kept'));
  const old = await first.api.publish({ tenant_id: 'acme', topic: 'orders', data: { age: 'old' } });
  const oldAttempts = await attemptsWhen(
    first.sluice,
    first.api,
    { event_id: old.id },
    (a) => a.some((x) => x.status === 'success'),
    'the old event delivered',
  );
  // the old event and its attempt must pass max_age; the young one is published just before the restart
  const oldTime = Math.max(...oldAttempts.map((a) => Date.parse(a.time)));
  await sleep(Math.max(0, oldTime + MAX_AGE_MS + 500 - Date.now()));
  const young = await first.api.publish({ tenant_id: 'acme', topic: 'orders', data: { age: 'young' } });
  await attemptsWhen(
    first.sluice,
    first.api,
    { event_id: young.id },
    (a) => a.some((x) => x.status === 'success'),
    'the young event delivered',
  );
  await first.sluice.stop();

  const second = await startSluice(cfg);
  assert.equal((await second.api.call('GET', `/events/${old.id}`)).status, 404, 'the old event is pruned');
  assert.deepEqual(await second.api.attempts({ event_id: old.id }), [], 'and its attempts');
  assert.equal((await second.api.call('GET', `/events/${young.id}`)).status, 200, 'the young event stays');
  const youngAttempts = await second.api.attempts({ event_id: young.id });
  assert.equal(youngAttempts.length, 1, `and its attempt: ${JSON.stringify(youngAttempts)}`);
  assert.equal(youngAttempts[0].destination_id, destination.id);
  assert.equal((await s3.keys('kept')).length, 2, 'pruning the log never touches the objects');
  await second.sluice.stop();
});

test('ingest.tenants by token: decisions sent with a mapped token become events of that tenant; other tokens feed the outputs only', async () => {
  const { sluice, api } = await startSluice(
    config(
      {},
      {
        ingest: {
          tokens: ['acme-opa-token', 'plain-opa-token'],
          tenants: [{ tenant: 'acme', token: 'acme-opa-token' }],
        },
      },
    ),
  );
  await tenant(api, 'acme');
  const unmapped = decisions(2);
  assert.equal((await postDecisions(sluice.url, unmapped, { token: 'plain-opa-token' })).status, 200);
  const mapped = decisions(3, { timestamp: '2026-05-01T12:00:00.5Z' });
  const res = await postDecisions(sluice.url, mapped, { token: 'acme-opa-token', partition: 'eu' });
  assert.equal(res.status, 200, await res.text());

  // acknowledged means stored as events too: no wait needed
  for (const d of mapped) {
    const event = await api.event(d.decision_id as string);
    assert.equal(event.tenant_id, 'acme');
    assert.equal(event.topic, 'decisions');
    assert.deepEqual(event.data, d, 'the event data is the decision as sent');
    assert.equal(
      Date.parse(event.time),
      Date.parse('2026-05-01T12:00:00.5Z'),
      `the event time is the decision's timestamp: ${event.time}`,
    );
    assert.deepEqual(event.metadata, { partition: 'eu' });
  }
  const events = (await api.expect(200, 'GET', '/events?tenant_id=acme&limit=100')).models as any[];
  assert.deepEqual(
    events.map((e) => e.id).sort(),
    mapped.map((d) => d.decision_id as string).sort(),
    'only the decisions of the mapped token',
  );
  for (const d of unmapped)
    assert.equal(
      (await api.call('GET', `/events/${d.decision_id as string}`)).status,
      404,
      'decisions of another token are no events',
    );

  // a mapped tenant that does not exist: the decisions still reach the outputs (200), with a warning
  await api.call('DELETE', '/tenants/acme');
  const orphan = [decision()];
  assert.equal(
    (await postDecisions(sluice.url, orphan, { token: 'acme-opa-token' })).status,
    200,
    'decisions of a missing tenant are still accepted',
  );
  assert.equal((await api.call('GET', `/events/${orphan[0]!.decision_id as string}`)).status, 404);
  await sluice.until('a warning about the missing tenant', () =>
    sluice.logLines().some((l) => l.level === 40 && l.tenant === 'acme' && /does not exist/.test(l.msg ?? '')),
  );
  await sluice.stop();
});
