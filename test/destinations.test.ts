/**
 * Delivery of published events to `aws_s3` destinations (the Outpost-compatible API under /api/v1): what lands in
 * the bucket, under which key, with which metadata, and how failures, retries, restarts, batching and decisions
 * behave. Everything runs for real: `node dist/cli.js serve` in its own process and s3rver on 127.0.0.1.
 *
 * Route validation, auth and paging are covered by test/api.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { decisions, postDecisions } from './helpers/opa.js';
import { closedPort, deliveryStatus, OutpostApi } from './helpers/outpost.js';

const ADMIN_KEY = 'destinations-test-admin-key';
/** Fast enough that a retry that should (not) happen does (not) happen within a second. */
const FAST_RETRY = { initial_backoff: '100ms', max_backoff: '200ms', max_retries: 50 };
/** Longer than several backoffs of FAST_RETRY: a retry that was going to happen has happened by then. */
const WAIT_MS = 15_000;

/** `2026-05-01T12:00:00Z` in Unix seconds. */
const MAY_FIRST_NOON = '1777636800';

/** `<RFC 3339 UTC, nanoseconds, trailing zeros dropped>_<event id>.json` */
const DEFAULT_KEY = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{0,8}[1-9])?Z)_(.+)\.json$/;

// ---------------------------------------------------------------------------------------------------------------
// Glue

const cleanups: Array<() => Promise<unknown> | unknown> = [];
after(async () => {
  for (const c of cleanups.reverse())
    await Promise.resolve()
      .then(c)
      .catch(() => {});
});

async function startS3(buckets: string[], opts: { running?: boolean } = {}): Promise<TestS3> {
  const s3 = new TestS3(buckets);
  await s3.start();
  if (opts.running === false) await s3.stop(); // keeps its port: start() again brings it back there
  cleanups.push(async () => {
    await s3.stop().catch(() => {});
    rmSync(s3.directory, { recursive: true, force: true });
  });
  return s3;
}

function dataDir(): string {
  const dir = tempDir('sluice-destinations-');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function sluiceConfig(
  dir: string,
  api: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    data_dir: dir,
    outputs: [],
    shutdown_timeout: '2s',
    log: { level: 'debug' },
    // the destinations write to s3rver on loopback, which tenant destinations may reach only when allowed
    api: { admin_key: ADMIN_KEY, retry: FAST_RETRY, destinations: { allowed_endpoints: ['127.0.0.1/32'] }, ...api },
    ...extra,
  };
}

async function startSluice(config: Record<string, unknown>): Promise<{ sluice: SluiceProcess; api: OutpostApi }> {
  const sluice = new SluiceProcess({ config });
  cleanups.push(() => sluice.kill9());
  await sluice.start();
  return { sluice, api: new OutpostApi(sluice.url, ADMIN_KEY) };
}

/** An aws_s3 destination body for a bucket of `s3` (config and top-level fields may be added or replaced). */
function s3Destination(
  s3: TestS3 | string,
  bucket: string,
  extra: { config?: Record<string, unknown>; [k: string]: unknown } = {},
): Record<string, unknown> {
  const { config, ...rest } = extra;
  const endpoint = typeof s3 === 'string' ? s3 : s3.endpoint;
  return {
    type: 'aws_s3',
    topics: ['orders'],
    config: { bucket, region: 'us-east-1', endpoint, ...config },
    credentials: { key: S3_KEY, secret: S3_SECRET },
    ...rest,
  };
}

async function tenant(api: OutpostApi, id: string): Promise<void> {
  const res = await api.putTenant(id);
  assert.ok(res.status === 201 || res.status === 200, `PUT /tenants/${id}: ${res.status} ${res.text}`);
}

/** Waits until a key matching `match` is in the bucket, and returns it. */
async function waitForKey(
  sluice: SluiceProcess,
  s3: TestS3,
  bucket: string,
  match: (key: string) => boolean,
  what: string,
  timeoutMs = WAIT_MS,
): Promise<string> {
  let found: string | undefined;
  await sluice.until(
    what,
    async () => {
      found = (await s3.keys(bucket)).find(match);
      return found !== undefined;
    },
    timeoutMs,
  );
  return found!;
}

/** Waits until the attempts matching `filters` satisfy `check`, and returns them. */
async function waitForAttempts(
  sluice: SluiceProcess,
  api: OutpostApi,
  filters: Record<string, string>,
  check: (attempts: any[]) => boolean,
  what: string,
  timeoutMs = WAIT_MS,
): Promise<any[]> {
  let attempts: any[] = [];
  try {
    await sluice.until(
      what,
      async () => {
        attempts = await api.attempts(filters);
        return check(attempts);
      },
      timeoutMs,
    );
  } catch (err) {
    throw new Error(
      `${(err as Error).message}\n--- last attempts ---\n${JSON.stringify(attempts, null, 1).slice(0, 3000)}`,
    );
  }
  return attempts;
}

const failed = (attempts: any[]) => attempts.filter((a) => a.status === 'failed');
const succeeded = (attempts: any[]) => attempts.filter((a) => a.status === 'success');

function json(body: Buffer): unknown {
  return JSON.parse(body.toString('utf8'));
}

/** The Unix seconds of an RFC 3339 time (the fraction is dropped: JS dates have only milliseconds). */
function unixSeconds(rfc3339: string): number {
  return Math.floor(Date.parse(rfc3339.replace(/\.\d+/, '')) / 1000);
}

/** GET /events/{id} shows the delivery to the destination as done (neither failed nor still pending). */
function assertDelivered(event: any, destinationId: string): void {
  const status = deliveryStatus(event, destinationId);
  assert.ok(
    status !== undefined && !/fail|pend|retry|queue/i.test(status),
    `the event shows as delivered to ${destinationId}: ${JSON.stringify(event.deliveries)}`,
  );
}

function assertJsonContentType(contentType: string | undefined): void {
  assert.match(contentType ?? '', /^application\/json(\s*;|$)/, `Content-Type is application/json: ${contentType}`);
}

// ---------------------------------------------------------------------------------------------------------------

describe('aws_s3: one object per event (s3 up)', () => {
  const BUCKETS = [
    'my-events-bucket',
    'times',
    'meta',
    'tmpl',
    'nullkey',
    'idem',
    'disabled',
    'disabled-control',
    'creds',
    'batched',
    'routing-a',
    'routing-b',
  ];
  let s3: TestS3;
  let sluice: SluiceProcess;
  let api: OutpostApi;

  before(async () => {
    s3 = await startS3(BUCKETS);
    ({ sluice, api } = await startSluice(sluiceConfig(dataDir())));
  });

  test('the seed end to end: destination from the curl example (old path), publish, the object as documented', async () => {
    await tenant(api, 'seed');
    // The seed's curl body, with s3rver's bucket, endpoint and credentials.
    const seed = {
      type: 'aws_s3',
      topics: ['orders'],
      config: { bucket: 'my-events-bucket', region: 'us-east-1', endpoint: s3.endpoint },
      credentials: { key: S3_KEY, secret: S3_SECRET },
    };
    const res = await fetch(`${sluice.url}/api/v1/seed/destinations`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ADMIN_KEY}` },
      body: JSON.stringify(seed),
    });
    const text = await res.text();
    assert.equal(res.status, 201, `POST /api/v1/seed/destinations: ${text}`);
    const destination = JSON.parse(text);
    assert.equal(typeof destination.id, 'string');
    assert.equal(destination.type, 'aws_s3');

    const before = Date.now();
    const published = await api.publish({
      tenant_id: 'seed',
      topic: 'orders',
      data: { order_id: '123', status: 'created' },
      metadata: { source: 'checkout-service' },
    });
    const after = Date.now();
    assert.equal(typeof published.id, 'string');
    assert.ok(published.id.length > 0, 'the server makes an event id');
    assert.equal(published.duplicate, false);
    assert.deepEqual(published.destination_ids, [destination.id]);

    const key = await waitForKey(
      sluice,
      s3,
      'my-events-bucket',
      (k) => k.endsWith(`_${published.id}.json`),
      `the seed event's object`,
    );
    assert.deepEqual(await s3.keys('my-events-bucket'), [key], 'one object for one event');
    const m = DEFAULT_KEY.exec(key);
    assert.ok(m, `default key is <RFC3339 nano UTC>_<event-id>.json: ${key}`);
    assert.equal(m[2], published.id);

    const object = await s3.object(key, 'my-events-bucket');
    assert.equal(object.body.toString('utf8').length > 0, true);
    assert.deepEqual(json(object.body), { order_id: '123', status: 'created' }, 'the body is the event data only');
    assertJsonContentType(object.contentType);
    const meta = object.metadata ?? {};
    assert.equal(meta['event-id'], published.id);
    assert.equal(meta.topic, 'orders');
    assert.equal(meta.source, 'checkout-service');
    assert.match(meta.timestamp ?? '', /^\d+$/, `timestamp is Unix seconds: ${meta.timestamp}`);
    const ts = Number(meta.timestamp);
    assert.equal(ts, unixSeconds(m[1]!), 'the timestamp metadata and the key name the same time');
    assert.ok(
      ts >= Math.floor(before / 1000) - 1 && ts <= Math.ceil(after / 1000) + 1,
      `timestamp ${ts} is the publish time (${before}..${after} ms)`,
    );
  });

  test('default key: the event time in UTC RFC 3339 with nanoseconds, trailing zeros dropped', async () => {
    await tenant(api, 'times');
    await api.createDestination('times', s3Destination(s3, 'times'));
    const cases: Array<[time: string, keyTime: string]> = [
      ['2026-05-01T12:00:00.123456789Z', '2026-05-01T12:00:00.123456789Z'],
      ['2026-05-01T12:00:00Z', '2026-05-01T12:00:00Z'],
      ['2026-05-01T12:00:00.120Z', '2026-05-01T12:00:00.12Z'],
      ['2026-05-01T14:00:00.5+02:00', '2026-05-01T12:00:00.5Z'],
    ];
    const expected: Array<{ key: string; id: string; time: string }> = [];
    for (const [time, keyTime] of cases) {
      const { id } = await api.publish({ tenant_id: 'times', topic: 'orders', time, data: { time } });
      expected.push({ key: `${keyTime}_${id}.json`, id, time });
    }
    await sluice.until('every timed event in s3://times', async () => (await s3.keys('times')).length >= cases.length);
    assert.deepEqual(
      await s3.keys('times'),
      expected.map((e) => e.key).sort(),
      'each object is under <UTC time>_<event-id>.json',
    );
    for (const e of expected) {
      const object = await s3.object(e.key, 'times');
      assert.deepEqual(json(object.body), { time: e.time });
      assert.equal(object.metadata?.['event-id'], e.id);
      assert.equal(object.metadata?.timestamp, MAY_FIRST_NOON, `timestamp of ${e.time} is Unix seconds`);
    }
  });

  test('delivery_metadata goes into the object metadata; event metadata wins on the same key', async () => {
    await tenant(api, 'meta');
    const destination = await api.createDestination(
      'meta',
      s3Destination(s3, 'meta', {
        delivery_metadata: { team: 'payments', source: 'from-destination' },
      }),
    );
    const withMeta = await api.publish({
      tenant_id: 'meta',
      topic: 'orders',
      data: { n: 1 },
      metadata: { source: 'checkout-service', region: 'eu-west-1' },
    });
    const without = await api.publish({ tenant_id: 'meta', topic: 'orders', data: { n: 2 } });
    assert.deepEqual(withMeta.destination_ids, [destination.id]);

    const k1 = await waitForKey(
      sluice,
      s3,
      'meta',
      (k) => k.endsWith(`_${withMeta.id}.json`),
      'the object of the event with metadata',
    );
    const k2 = await waitForKey(
      sluice,
      s3,
      'meta',
      (k) => k.endsWith(`_${without.id}.json`),
      'the object of the event without metadata',
    );
    const m1 = (await s3.object(k1, 'meta')).metadata ?? {};
    assert.equal(m1.team, 'payments', 'delivery_metadata is added');
    assert.equal(m1.source, 'checkout-service', 'event metadata overrides delivery_metadata');
    assert.equal(m1.region, 'eu-west-1', 'event metadata is added');
    assert.equal(m1['event-id'], withMeta.id);
    assert.equal(m1.topic, 'orders');
    assert.match(m1.timestamp ?? '', /^\d+$/);
    const m2 = (await s3.object(k2, 'meta')).metadata ?? {};
    assert.equal(m2.team, 'payments');
    assert.equal(m2.source, 'from-destination', 'delivery_metadata applies when the event does not override it');
    assert.equal(m2['event-id'], without.id);
  });

  test('key_template: the seed example and templates over time fields', async () => {
    await tenant(api, 'tmpl');
    const templates = {
      seed: `join('/', [data.customer_id, metadata."event-id", '.json'])`,
      ymd: `join('/', [time.year, time.month, time.day, join('', [metadata."event-id", '.json'])])`,
      dated: `join('/', ['orders', time.date, time.hour, join('', [metadata."event-id", '.json'])])`,
      number: 'data.n', // a number is formatted as the key
    };
    for (const key_template of Object.values(templates)) {
      await api.createDestination('tmpl', s3Destination(s3, 'tmpl', { config: { key_template } }));
    }
    const data = { customer_id: 'c-42', order_id: '123', n: 42 };
    const { id, destination_ids } = await api.publish({
      tenant_id: 'tmpl',
      topic: 'orders',
      time: '2026-01-02T03:04:05.678Z',
      data,
    });
    assert.equal(destination_ids.length, 4);
    const expected = [`c-42/${id}/.json`, `2026/01/02/${id}.json`, `orders/2026-01-02/03/${id}.json`, '42'].sort();
    await sluice.until('four templated objects in s3://tmpl', async () => (await s3.keys('tmpl')).length >= 4);
    await sleep(200);
    assert.deepEqual(await s3.keys('tmpl'), expected);
    for (const key of expected) {
      const object = await s3.object(key, 'tmpl');
      assert.deepEqual(json(object.body), data, `${key} holds the event data`);
      assert.equal(object.metadata?.['event-id'], id);
    }
  });

  test('a key_template that yields null, "" or a key over 1024 bytes makes one failed attempt saying so, no object, no retry', async () => {
    await tenant(api, 'nullkey');
    const destination = await api.createDestination(
      'nullkey',
      s3Destination(s3, 'nullkey', { config: { key_template: 'data.missing' } }),
    );
    const absent = await api.publish({ tenant_id: 'nullkey', topic: 'orders', data: { order_id: '1' } });
    const empty = await api.publish({ tenant_id: 'nullkey', topic: 'orders', data: { order_id: '2', missing: '' } });
    const present = await api.publish({
      tenant_id: 'nullkey',
      topic: 'orders',
      data: { order_id: '3', missing: 'present.json' },
    });
    const long = await api.publish({
      tenant_id: 'nullkey',
      topic: 'orders',
      data: { order_id: '4', missing: `${'k'.repeat(1025)}.json` },
    });
    assert.deepEqual(present.destination_ids, [destination.id]);

    await waitForKey(sluice, s3, 'nullkey', (k) => k === 'present.json', 'the object whose template yields a key');
    for (const e of [absent, empty]) {
      await waitForAttempts(
        sluice,
        api,
        { event_id: e.id, destination_id: destination.id },
        (a) => a.length >= 1,
        `an attempt for event ${e.id}`,
      );
    }
    // a delivery's status is 'failed' only once no attempt is left for it ('pending' while a retry is due):
    // that state, not a pause, says there will be no retry
    for (const e of [absent, empty]) {
      await sluice.until(
        `event ${e.id}: failed for good`,
        async () => deliveryStatus(await api.event(e.id), destination.id) === 'failed',
      );
    }
    for (const e of [absent, empty]) {
      const attempts = await api.attempts({ event_id: e.id, destination_id: destination.id });
      assert.equal(attempts.length, 1, `exactly one attempt, not retried: ${JSON.stringify(attempts)}`);
      const a = attempts[0];
      assert.equal(a.status, 'failed');
      assert.equal(a.event_id, e.id);
      assert.equal(a.destination_id, destination.id);
      assert.match(
        JSON.stringify({ error: a.error, message: a.message }),
        /template/i,
        `the error names the key template: ${JSON.stringify(a)}`,
      );
      assert.equal(
        deliveryStatus(await api.event(e.id), destination.id),
        'failed',
        'the event is failed for that destination',
      );
    }
    const longAttempts = await waitForAttempts(
      sluice,
      api,
      { event_id: long.id, destination_id: destination.id },
      (a) => a.length >= 1,
      'an attempt for the event with a long key',
    );
    assert.equal(longAttempts.length, 1, `a key over 1024 bytes is not retried: ${JSON.stringify(longAttempts)}`);
    assert.equal(longAttempts[0].status, 'failed');
    assert.match(
      JSON.stringify({ error: longAttempts[0].error, message: longAttempts[0].message }),
      /1024|too long|long/i,
      `the error says the key is too long: ${JSON.stringify(longAttempts[0])}`,
    );
    assert.deepEqual(await s3.keys('nullkey'), ['present.json'], 'no object for the events without a usable key');
  });

  test('routing: a destination gets only its topics ("*" = all); destination_id targets one destination', async () => {
    await tenant(api, 'routing');
    const orders = await api.createDestination('routing', s3Destination(s3, 'routing-a'));
    const all = await api.createDestination('routing', s3Destination(s3, 'routing-b', { topics: ['*'] }));
    const refund = await api.publish({ tenant_id: 'routing', topic: 'refunds', data: { n: 'refund' } });
    assert.deepEqual(refund.destination_ids, [all.id]);
    const targeted = await api.publish({
      tenant_id: 'routing',
      topic: 'orders',
      destination_id: orders.id,
      data: { n: 'targeted' },
    });
    assert.deepEqual(targeted.destination_ids, [orders.id]);
    const both = await api.publish({ tenant_id: 'routing', topic: 'orders', data: { n: 'both' } });
    assert.deepEqual([...both.destination_ids].sort(), [orders.id, all.id].sort());

    const a1 = await waitForKey(
      sluice,
      s3,
      'routing-a',
      (k) => k.endsWith(`_${both.id}.json`),
      'the orders destination to get the untargeted event',
    );
    const a2 = await waitForKey(
      sluice,
      s3,
      'routing-a',
      (k) => k.endsWith(`_${targeted.id}.json`),
      'the targeted event',
    );
    const b1 = await waitForKey(
      sluice,
      s3,
      'routing-b',
      (k) => k.endsWith(`_${both.id}.json`),
      'the "*" destination to get the orders event',
    );
    const b2 = await waitForKey(
      sluice,
      s3,
      'routing-b',
      (k) => k.endsWith(`_${refund.id}.json`),
      'the "*" destination to get the refunds event',
    );
    await sleep(300);
    assert.deepEqual(
      await s3.keys('routing-a'),
      [a1, a2].sort(),
      'the orders destination got neither the refund nor anything else',
    );
    assert.deepEqual(
      await s3.keys('routing-b'),
      [b1, b2].sort(),
      'the "*" destination did not get the event targeted elsewhere',
    );
    assert.equal((await s3.object(b2, 'routing-b')).metadata?.topic, 'refunds');
  });

  test('publishing the same event id twice makes one object; the second answer is duplicate:true', async () => {
    await tenant(api, 'idem');
    const destination = await api.createDestination('idem', s3Destination(s3, 'idem'));
    const id = randomUUID();
    const event = { id, tenant_id: 'idem', topic: 'orders', time: '2026-05-01T12:00:00Z', data: { order_id: 'once' } };
    const first = await api.publish(event);
    assert.equal(first.id, id);
    assert.equal(first.duplicate, false);
    assert.deepEqual(first.destination_ids, [destination.id]);
    const key = `2026-05-01T12:00:00Z_${id}.json`;
    await waitForKey(sluice, s3, 'idem', (k) => k === key, 'the first publish');
    const second = await api.publish(event);
    assert.equal(second.id, id);
    assert.equal(second.duplicate, true, 'the same id again is acknowledged as a duplicate');

    // A later event landing shows the destination went on; the duplicate must not have made anything.
    const marker = await api.publish({ tenant_id: 'idem', topic: 'orders', data: { order_id: 'marker' } });
    await waitForKey(sluice, s3, 'idem', (k) => k.endsWith(`_${marker.id}.json`), 'the marker event');
    await sleep(300);
    const keys = await s3.keys('idem');
    assert.equal(keys.length, 2, `one object for the event published twice, one for the marker: ${keys}`);
    assert.ok(keys.includes(key));
    const attempts = await api.attempts({ event_id: id, destination_id: destination.id });
    assert.equal(attempts.length, 1, `delivered once: ${JSON.stringify(attempts)}`);
    assert.equal(attempts[0].status, 'success');
  });

  test('a disabled destination gets nothing published while it is disabled, and new events once enabled', async () => {
    await tenant(api, 'dis');
    const disabled = await api.createDestination('dis', s3Destination(s3, 'disabled'));
    const control = await api.createDestination('dis', s3Destination(s3, 'disabled-control'));
    const off = await api.call('PUT', `/tenants/dis/destinations/${disabled.id}/disable`);
    assert.equal(off.status, 200, `disable: ${off.text}`);
    assert.ok(off.body.disabled_at, 'disabled_at is set');

    const whileDisabled = await api.publish({ tenant_id: 'dis', topic: 'orders', data: { n: 'while-disabled' } });
    assert.ok(
      !whileDisabled.destination_ids.includes(disabled.id),
      `the disabled destination is not a target: ${whileDisabled.destination_ids}`,
    );
    assert.ok(whileDisabled.destination_ids.includes(control.id));
    await waitForKey(
      sluice,
      s3,
      'disabled-control',
      (k) => k.endsWith(`_${whileDisabled.id}.json`),
      'the enabled destination to get the event',
    );
    await sleep(300);
    assert.deepEqual(await s3.keys('disabled'), [], 'nothing for the disabled destination');

    const on = await api.call('PUT', `/tenants/dis/destinations/${disabled.id}/enable`);
    assert.equal(on.status, 200, `enable: ${on.text}`);
    const afterEnable = await api.publish({ tenant_id: 'dis', topic: 'orders', data: { n: 'after-enable' } });
    assert.ok(afterEnable.destination_ids.includes(disabled.id));
    const key = await waitForKey(
      sluice,
      s3,
      'disabled',
      (k) => k.endsWith(`_${afterEnable.id}.json`),
      'the re-enabled destination to get a new event',
    );
    await sleep(300);
    assert.deepEqual(await s3.keys('disabled'), [key], 'the event published while disabled never reaches it');
  });

  test('credentials never appear in a log line (debug) nor in any API response', async () => {
    const secrets = {
      key: 'AKIAUNIQUELEAKCHECK7',
      secret: 'wJalrXUtnFEMI/K7MDENG/LEAKCHECKxRfiCYzEXAMPLEKEY',
      session: 'FwoGZXIvYXdzELEAKCHECKSESSIONTOKENaDJ8fQ2yGm0Gq',
    };
    await tenant(api, 'creds');
    const working = await api.createDestination('creds', s3Destination(s3, 'creds'));
    const port = await closedPort();
    const broken = await api.createDestination(
      'creds',
      s3Destination(`http://127.0.0.1:${port}`, 'creds', { credentials: secrets }),
    );
    const published = await api.publish({ tenant_id: 'creds', topic: 'orders', data: { n: 1 } });
    assert.deepEqual([...published.destination_ids].sort(), [working.id, broken.id].sort());

    await waitForKey(
      sluice,
      s3,
      'creds',
      (k) => k.endsWith(`_${published.id}.json`),
      'the working destination to deliver',
    );
    await waitForAttempts(
      sluice,
      api,
      { destination_id: broken.id },
      (a) => failed(a).length >= 2,
      'two failed attempts of the broken destination',
    );

    // Read everything that could echo a credential.
    for (const path of [
      '/tenants/creds',
      '/tenants/creds/destinations',
      '/creds/destinations',
      `/tenants/creds/destinations/${broken.id}`,
      `/creds/destinations/${broken.id}`,
      `/tenants/creds/destinations/${working.id}`,
      `/tenants/creds/destinations/${broken.id}/attempts`,
      `/attempts?destination_id=${broken.id}`,
      `/events?tenant_id=creds`,
      `/events/${published.id}`,
    ]) {
      const res = await api.call('GET', path);
      assert.equal(res.status, 200, `GET ${path}: ${res.text}`);
    }
    const attempt = (await api.attempts({ destination_id: broken.id }))[0];
    await api.expect(200, 'GET', `/attempts/${attempt.id}`);
    await api.call('DELETE', `/tenants/creds/destinations/${broken.id}`); // stop its retries

    const answers = api.transcript.join('\n');
    for (const [name, value] of Object.entries({ ...secrets, s3rver: S3_SECRET })) {
      assert.ok(!sluice.output.includes(value), `credential ${name} appears in sluice's log output`);
      assert.ok(!answers.includes(value), `credential ${name} appears in an API response`);
    }
  });

  test('batched destination: events gathered into .ndjson.gz objects under {topic}/dt=/hour=, each event once', async () => {
    await tenant(api, 'batched');
    const destination = await api.createDestination(
      'batched',
      s3Destination(s3, 'batched', { config: { batching: { max_events: 5, max_age: '500ms' } } }),
    );
    const hours = new Set<string>();
    const hourOf = (d: Date) => d.toISOString().slice(0, 13); // YYYY-MM-DDTHH (UTC)
    hours.add(hourOf(new Date()));
    const published: Array<Record<string, unknown>> = [];
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const data = { n: i, order_id: `b-${i}` };
      const res = await api.publish({ tenant_id: 'batched', topic: 'orders', data });
      assert.deepEqual(res.destination_ids, [destination.id]);
      published.push(data);
      ids.push(res.id);
    }

    const lines = async () => {
      const out: Array<{ key: string; rows: unknown[] }> = [];
      for (const key of await s3.keys('batched')) {
        const { body } = await s3.object(key, 'batched');
        const text = key.endsWith('.gz') ? gunzipSync(body).toString('utf8') : body.toString('utf8');
        out.push({
          key,
          rows: text
            .split('\n')
            .filter((l) => l.length > 0)
            .map((l) => JSON.parse(l)),
        });
      }
      return out;
    };
    await sluice.until(
      '12 events in batched objects',
      async () => (await lines()).reduce((n, o) => n + o.rows.length, 0) >= 12,
    );
    // every delivery done: nothing of these events can be written again after this
    await sluice.until('every delivery of the 12 events succeeded', async () => {
      for (const id of ids) if (deliveryStatus(await api.event(id), destination.id) !== 'success') return false;
      return true;
    });
    hours.add(hourOf(new Date()));
    const objects = await lines();

    const all = objects.flatMap((o) => o.rows) as Array<{ n: number }>;
    assert.equal(
      all.length,
      12,
      `exactly the 12 events, no duplicates: ${objects.map((o) => `${o.key}: ${o.rows.length}`).join(', ')}`,
    );
    assert.deepEqual(
      [...all].sort((a, b) => a.n - b.n),
      published,
      'the objects hold the data of each event',
    );
    assert.ok(objects.length >= 3, `max_events 5: at least 3 objects for 12 events, got ${objects.length}`);
    const ranges: Array<[number, number]> = [];
    const misnamed: string[] = [];
    for (const { key, rows } of objects) {
      const m = /^orders\/dt=(\d{4}-\d{2}-\d{2})\/hour=(\d{2})\/(.+)-[0-9a-f]{8}-(\d{16})-(\d{16})\.ndjson\.gz$/.exec(
        key,
      );
      assert.ok(m, `key is orders/dt=YYYY-MM-DD/hour=HH/{destination}-{store id}-{first}-{last}.ndjson.gz: ${key}`);
      assert.ok(hours.has(`${m[1]}T${m[2]}`), `dt/hour of ${key} is the UTC hour of publishing (${[...hours]})`);
      if (m[3] !== destination.id) misnamed.push(key); // checked last, after the content checks
      assert.ok(rows.length <= 5, `max_events 5: ${key} has ${rows.length}`);
      const first = Number(m[4]);
      const last = Number(m[5]);
      assert.equal(last - first + 1, rows.length, `${key}: {first}-{last} spans its ${rows.length} events`);
      ranges.push([first, last]);
    }
    ranges.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < ranges.length; i++)
      assert.ok(ranges[i]![0] > ranges[i - 1]![1], `batches overlap: ${JSON.stringify(ranges)}`);

    const attempts = await api.attempts({ destination_id: destination.id });
    assert.equal(attempts.length, objects.length, `one attempt per batch: ${JSON.stringify(attempts)}`);
    assert.deepEqual(
      succeeded(attempts)
        .map((a) => a.response_data?.key)
        .sort(),
      objects.map((o) => o.key).sort(),
    );
    assert.deepEqual(
      misnamed,
      [],
      `the documented name is {destination}-{store id}-{first}-{last}.ndjson.gz with {destination} = ${destination.id}`,
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('aws_s3: failures and retries (s3 goes down and comes back)', () => {
  let s3: TestS3;

  before(async () => {
    s3 = await startS3(['retry', 'noretry', 'manual', 'pending', 'pending-control', 'batch-outage', 'deleted'], {
      running: false,
    });
  });
  after(async () => {
    await s3.stop();
  });

  test('the attempt log is pruned to log_retention.max_count at start: the newest attempts are kept, the events stay', async () => {
    await s3.stop();
    const dir = dataDir();
    const config = sluiceConfig(dir, {
      retry: { ...FAST_RETRY, max_retries: 0 },
      log_retention: { max_age: '7d', max_count: 3 },
    });
    const first = await startSluice(config);
    await tenant(first.api, 'pruned');
    const destination = await first.api.createDestination('pruned', s3Destination(s3, 'retry'));
    for (let n = 0; n < 6; n++) await first.api.publish({ tenant_id: 'pruned', topic: 'orders', data: { n } });
    await waitForAttempts(
      first.sluice,
      first.api,
      { destination_id: destination.id },
      (a) => failed(a).length >= 6,
      'six failed attempts',
    );
    await first.sluice.stop();

    const second = await startSluice(config);
    const kept = await second.api.attempts({ destination_id: destination.id });
    assert.equal(
      kept.length,
      3,
      `the newest 3 attempts are kept: ${JSON.stringify(kept.map((a) => a.attempt_number))}`,
    );
    const events = await second.api.call('GET', '/events?tenant_id=pruned');
    assert.equal(events.body.models.length, 6, 'events younger than max_age stay in the log');
    await second.sluice.stop();
  });

  test('S3 down: failed attempts are logged and retried; once it is back the object lands once, with a success attempt', async () => {
    await s3.stop();
    const { sluice, api } = await startSluice(sluiceConfig(dataDir()));
    await tenant(api, 'retry');
    const destination = await api.createDestination('retry', s3Destination(s3, 'retry'));
    const { id } = await api.publish({
      tenant_id: 'retry',
      topic: 'orders',
      time: '2026-05-01T12:00:00.123456789Z',
      data: { order_id: 'r-1' },
    });
    const filters = { event_id: id, destination_id: destination.id };

    const failures = await waitForAttempts(
      sluice,
      api,
      filters,
      (a) => failed(a).length >= 2,
      'two failed attempts while S3 is down',
    );
    for (const a of failures) {
      assert.equal(a.status, 'failed');
      assert.equal(a.event_id, id);
      assert.equal(a.destination_id, destination.id);
      assert.equal(a.tenant_id, 'retry');
      assert.ok(a.error, `a failed attempt says why: ${JSON.stringify(a)}`);
    }

    await s3.start();
    const key = `2026-05-01T12:00:00.123456789Z_${id}.json`;
    await waitForKey(sluice, s3, 'retry', (k) => k === key, 'the object once S3 is back');
    await waitForAttempts(sluice, api, filters, (a) => succeeded(a).length >= 1, 'a success attempt');
    // 'success' is final: no attempt of this delivery is left to make (its status, not a pause, says so)
    await sluice.until(
      'the delivery to be done',
      async () => deliveryStatus(await api.event(id), destination.id) === 'success',
    );
    const attempts = await api.attempts(filters);
    assert.deepEqual(await s3.keys('retry'), [key], 'exactly one object: a retry rewrites the same key');
    const final = await api.attempts(filters);
    assert.equal(succeeded(final).length, 1, `one success: ${JSON.stringify(final)}`);
    assert.equal(final.length, attempts.length, 'no attempt after the success');
    const success = succeeded(final)[0];
    assert.deepEqual(success.response_data, { bucket: 'retry', key });
    assert.equal(success.manual, false);
    assert.ok(failed(final).length >= 2);
    assert.deepEqual(
      final.map((a) => a.attempt_number).sort((a, b) => a - b),
      final.map((_, i) => i + 1),
      'attempts are numbered 1..n',
    );
    assert.equal(success.attempt_number, final.length, 'the success is the last attempt');
    assertDelivered(await api.event(id), destination.id);
    assert.deepEqual(json((await s3.object(key, 'retry')).body), { order_id: 'r-1' });
    await sluice.stop();
  });

  test('eligible_for_retry false: exactly one attempt, nothing more even after S3 is back', async () => {
    await s3.stop();
    const { sluice, api } = await startSluice(sluiceConfig(dataDir()));
    await tenant(api, 'noretry');
    const destination = await api.createDestination('noretry', s3Destination(s3, 'noretry'));
    const once = await api.publish({
      tenant_id: 'noretry',
      topic: 'orders',
      eligible_for_retry: false,
      data: { order_id: 'once' },
    });
    const filters = { event_id: once.id, destination_id: destination.id };
    await waitForAttempts(sluice, api, filters, (a) => a.length >= 1, 'the one attempt');
    // 'failed' is final ('pending' while a retry is due): no retry is left to come
    await sluice.until(
      'the delivery to be failed for good',
      async () => deliveryStatus(await api.event(once.id), destination.id) === 'failed',
    );
    const attempts = await api.attempts(filters);
    assert.equal(attempts.length, 1, `not retried: ${JSON.stringify(attempts)}`);
    assert.equal(attempts[0].status, 'failed');

    await s3.start();
    const control = await api.publish({ tenant_id: 'noretry', topic: 'orders', data: { order_id: 'control' } });
    // the control event, published after, has landed: the destination delivers again, and the ineligible
    // event (failed for good, above) is not among what it delivered
    await waitForKey(
      sluice,
      s3,
      'noretry',
      (k) => k.endsWith(`_${control.id}.json`),
      'an eligible event once S3 is back',
    );
    assert.equal(
      (await s3.keys('noretry')).some((k) => k.includes(once.id)),
      false,
      'the ineligible event is not delivered later',
    );
    assert.equal((await api.attempts(filters)).length, 1);
    assert.equal(deliveryStatus(await api.event(once.id), destination.id), 'failed');
    await sluice.stop();
  });

  test('max_retries 1: two attempts then failed; POST /retry delivers it with a manual attempt', async () => {
    await s3.stop();
    const { sluice, api } = await startSluice(
      sluiceConfig(dataDir(), { retry: { initial_backoff: '100ms', max_backoff: '200ms', max_retries: 1 } }),
    );
    await tenant(api, 'manual');
    const destination = await api.createDestination('manual', s3Destination(s3, 'manual'));
    const { id } = await api.publish({ tenant_id: 'manual', topic: 'orders', data: { order_id: 'm-1' } });
    const filters = { event_id: id, destination_id: destination.id };

    // 'failed' is final: the retries (max_retries 1) are used up
    await sluice.until(
      'the event to be failed for the destination',
      async () => deliveryStatus(await api.event(id), destination.id) === 'failed',
    );
    const attempts = await api.attempts(filters);
    assert.equal(attempts.length, 2, `the first attempt and max_retries 1: ${JSON.stringify(attempts)}`);
    assert.deepEqual(
      attempts.map((a) => a.status),
      ['failed', 'failed'],
    );
    assert.ok(attempts.every((a) => a.manual === false));

    await s3.start();
    // a control event to the same destination lands once S3 is back; the failed one stays undelivered
    const control = await api.publish({ tenant_id: 'manual', topic: 'orders', data: { order_id: 'control' } });
    const controlKey = await waitForKey(
      sluice,
      s3,
      'manual',
      (k) => k.endsWith(`_${control.id}.json`),
      'the control event once S3 is back',
    );
    assert.deepEqual(await s3.keys('manual'), [controlKey], 'a failed event is not delivered by itself');
    assert.equal(deliveryStatus(await api.event(id), destination.id), 'failed');
    assert.equal((await api.attempts(filters)).length, 2);

    const retry = await api.call('POST', '/retry', { event_id: id, destination_id: destination.id });
    assert.equal(retry.status, 202, `POST /retry: ${retry.text}`);
    const key = await waitForKey(
      sluice,
      s3,
      'manual',
      (k) => k.endsWith(`_${id}.json`),
      'the object after POST /retry',
    );
    const final = await waitForAttempts(sluice, api, filters, (a) => a.length >= 3, 'the manual attempt');
    assert.equal(final.length, 3, JSON.stringify(final));
    const manual = final.filter((a) => a.manual === true);
    assert.equal(manual.length, 1, `one manual attempt: ${JSON.stringify(final)}`);
    assert.equal(manual[0].status, 'success');
    assert.deepEqual(manual[0].response_data, { bucket: 'manual', key });
    assert.deepEqual(
      await s3.keys('manual'),
      [controlKey, key].sort(),
      'the retried event once, beside the control event',
    );
    assert.deepEqual(json((await s3.object(key, 'manual')).body), { order_id: 'm-1' });
    assertDelivered(await api.event(id), destination.id);
    await sluice.stop();
  });

  test('a delivery pending when its destination is disabled waits, and lands once it is enabled again', async () => {
    await s3.stop();
    const { sluice, api } = await startSluice(sluiceConfig(dataDir()));
    await tenant(api, 'pending');
    const destination = await api.createDestination('pending', s3Destination(s3, 'pending'));
    // a control destination gets the same event, failing and retrying on the same schedule while S3 is down
    const control = await api.createDestination('pending', s3Destination(s3, 'pending-control'));
    const { id } = await api.publish({ tenant_id: 'pending', topic: 'orders', data: { order_id: 'p-1' } });
    await waitForAttempts(
      sluice,
      api,
      { event_id: id },
      (a) =>
        failed(a).some((x) => x.destination_id === destination.id) &&
        failed(a).some((x) => x.destination_id === control.id),
      'a failed attempt to each destination while S3 is down',
    );
    assert.equal((await api.call('PUT', `/tenants/pending/destinations/${destination.id}/disable`)).status, 200);
    await s3.start();
    // once the control's retry has landed, the disabled destination's retry was due too: it must not have run
    await waitForKey(
      sluice,
      s3,
      'pending-control',
      (k) => k.endsWith(`_${id}.json`),
      'the control destination to get the event',
    );
    assert.deepEqual(await s3.keys('pending'), [], 'nothing is delivered to a disabled destination');
    assert.equal((await api.call('PUT', `/tenants/pending/destinations/${destination.id}/enable`)).status, 200);
    const key = await waitForKey(
      sluice,
      s3,
      'pending',
      (k) => k.endsWith(`_${id}.json`),
      'the pending event once the destination is enabled',
    );
    await sleep(300);
    assert.deepEqual(await s3.keys('pending'), [key]);
    await sluice.stop();
  });

  test('deleting a destination drops what it had pending: nothing lands once S3 is back', async () => {
    await s3.stop();
    const { sluice, api } = await startSluice(sluiceConfig(dataDir()));
    await tenant(api, 'deleted');
    const doomed = await api.createDestination(
      'deleted',
      s3Destination(s3, 'deleted', { config: { key_template: `join('', ['doomed-', metadata."event-id"])` } }),
    );
    const kept = await api.createDestination(
      'deleted',
      s3Destination(s3, 'deleted', { config: { key_template: `join('', ['kept-', metadata."event-id"])` } }),
    );
    const { id } = await api.publish({ tenant_id: 'deleted', topic: 'orders', data: { order_id: 'd-1' } });
    await waitForAttempts(
      sluice,
      api,
      { event_id: id, destination_id: doomed.id },
      (a) => failed(a).length >= 1,
      'a failed attempt while S3 is down',
    );
    const del = await api.call('DELETE', `/tenants/deleted/destinations/${doomed.id}`);
    assert.equal(del.status, 200, `DELETE destination: ${del.text}`);
    await s3.start();
    // the same event, delivered by the other destination once S3 is back, is the marker: the deleted one's
    // deliveries went with it (DELETE drops them), so there is nothing left that could still land
    await waitForKey(sluice, s3, 'deleted', (k) => k === `kept-${id}`, 'the other destination to deliver');
    assert.deepEqual(await s3.keys('deleted'), [`kept-${id}`], 'the deleted destination delivered nothing');
    await sluice.stop();
  });

  test('batched destination through an outage: the batches keep the keys they failed under, each event once', async () => {
    await s3.stop();
    const { sluice, api } = await startSluice(sluiceConfig(dataDir()));
    await tenant(api, 'outage');
    const destination = await api.createDestination(
      'outage',
      s3Destination(s3, 'batch-outage', { config: { batching: { max_events: 5, max_age: '200ms' } } }),
    );
    const sent: number[] = [];
    for (let n = 0; n < 7; n++) {
      await api.publish({ tenant_id: 'outage', topic: 'orders', data: { n } });
      sent.push(n);
    }
    // {first}-{last} of a batch's key spans its events: wait until failed batches cover all 7.
    const span = (key: string) => {
      const m = /-(\d+)-(\d+)\.ndjson\.gz$/.exec(key);
      return m ? Number(m[2]) - Number(m[1]) + 1 : 0;
    };
    const failures = await waitForAttempts(
      sluice,
      api,
      { destination_id: destination.id },
      (a) => {
        const keys = new Set<string>(failed(a).map((x) => x.response_data?.key));
        return [...keys].reduce((n, k) => n + span(k), 0) >= sent.length;
      },
      'failed attempts of every batch while S3 is down',
    );
    const failedKeys = [...new Set(failed(failures).map((a) => a.response_data?.key as string))].sort();

    await s3.start();
    await sluice.until(
      'the batches after S3 is back',
      async () => (await s3.keys('batch-outage')).length >= failedKeys.length,
    );
    // nothing pending any more: no object can be written after this
    await sluice.until(
      'no delivery pending',
      async () =>
        ((await (await fetch(`${sluice.url}/ready`)).json()) as { events: { pending_deliveries: number } }).events
          .pending_deliveries === 0,
    );
    const keys = await s3.keys('batch-outage');
    assert.deepEqual(keys, failedKeys, 'the objects are under the keys fixed before the first upload');
    const rows: number[] = [];
    for (const key of keys) {
      const text = gunzipSync((await s3.object(key, 'batch-outage')).body).toString('utf8');
      for (const line of text.split('\n').filter((l) => l.length > 0)) rows.push((JSON.parse(line) as { n: number }).n);
    }
    assert.deepEqual(
      rows.sort((a, b) => a - b),
      sent,
      'each event exactly once',
    );
    const attempts = await api.attempts({ destination_id: destination.id });
    assert.equal(
      succeeded(attempts).length,
      keys.length,
      `one success per batch: ${JSON.stringify(succeeded(attempts))}`,
    );
    await sluice.stop();
  });
});

// ---------------------------------------------------------------------------------------------------------------

test('restart: an event acknowledged while S3 was down lands after SIGTERM and a restart on the same data_dir', async () => {
  const s3 = await startS3(['restart'], { running: false });
  const dir = dataDir();
  const config = sluiceConfig(dir);
  const first = await startSluice(config);
  await tenant(first.api, 'restart');
  const destination = await first.api.createDestination('restart', s3Destination(s3, 'restart'));
  const { id } = await first.api.publish({
    tenant_id: 'restart',
    topic: 'orders',
    time: '2026-05-01T12:00:00Z',
    data: { order_id: 'durable' },
  });
  await waitForAttempts(
    first.sluice,
    first.api,
    { event_id: id },
    (a) => failed(a).length >= 1,
    'a failed attempt while S3 is down',
  );
  const code = await first.sluice.stop('SIGTERM', 15_000);
  assert.equal(code, 0, `sluice exits 0 on SIGTERM (null: it had to be killed):\n${first.sluice.output.slice(-2000)}`);

  await s3.start();
  const second = await startSluice(config);
  const key = `2026-05-01T12:00:00Z_${id}.json`;
  await waitForKey(second.sluice, s3, 'restart', (k) => k === key, 'the object after the restart');
  await waitForAttempts(
    second.sluice,
    second.api,
    { event_id: id, destination_id: destination.id },
    (a) => succeeded(a).length === 1,
    'the success attempt',
  );
  await second.sluice.until(
    'the delivery to be done',
    async () => deliveryStatus(await second.api.event(id), destination.id) === 'success',
  );
  assert.deepEqual(await s3.keys('restart'), [key], 'exactly one object');
  assert.deepEqual(json((await s3.object(key, 'restart')).body), { order_id: 'durable' });
  await second.sluice.stop();
});

// ---------------------------------------------------------------------------------------------------------------

test('POST /retry of every event of a failed batch: the new batch gets a key of its own (-r<n>) and lands, and batching goes on', async () => {
  const s3 = await startS3(['retried', 'other'], { running: false });
  const { sluice, api } = await startSluice(
    sluiceConfig(dataDir(), { retry: { initial_backoff: '100ms', max_backoff: '200ms', max_retries: 0 } }),
  );
  await tenant(api, 'again');
  const destination = await api.createDestination(
    'again',
    // three events make a batch (max_events); max_age is long enough that three retries POSTed one after
    // another on a slow machine still meet in one batch (at 200 ms a batch of two was sealed once)
    s3Destination(s3, 'retried', { config: { batching: { max_events: 3, max_age: '10s' } } }),
  );
  const ids: string[] = [];
  for (let n = 0; n < 3; n++) ids.push((await api.publish({ tenant_id: 'again', topic: 'orders', data: { n } })).id);
  // S3 is down and no retry is left: the batch of the three fails, and so do its events
  await sluice.until('the three events failed', async () => {
    for (const id of ids) if (deliveryStatus(await api.event(id), destination.id) !== 'failed') return false;
    return true;
  });
  const failedKeys = [
    ...new Set(
      failed(await api.attempts({ destination_id: destination.id })).map((a) => a.response_data?.key as string),
    ),
  ];
  assert.equal(failedKeys.length, 1, `one failed batch: ${failedKeys.join(', ')}`);

  await s3.start();
  for (const id of ids) {
    const retry = await api.call('POST', '/retry', { event_id: id, destination_id: destination.id });
    assert.equal(retry.status, 202, `POST /retry: ${retry.text}`);
  }
  // the retried deliveries are read at the batcher's next look (not only at its 10 s rescan) and sealed anew
  const retriedKey = await waitForKey(sluice, s3, 'retried', () => true, 'the retried batch to land', 30_000);
  assert.notEqual(retriedKey, failedKeys[0], 'not the key of the failed batch');
  assert.equal(
    retriedKey,
    failedKeys[0]!.replace(/\.ndjson\.gz$/, '-r1.ndjson.gz'),
    "the failed batch's name with -r1",
  );
  const lines = (key: string) =>
    s3.object(key, 'retried').then(({ body }) =>
      gunzipSync(body)
        .toString('utf8')
        .split('\n')
        .filter((l) => l.length > 0),
    );
  assert.deepEqual(await lines(retriedKey), ['{"n":0}', '{"n":1}', '{"n":2}'], 'each retried event once');
  for (const id of ids)
    await sluice.until(
      `event ${id} delivered`,
      async () => deliveryStatus(await api.event(id), destination.id) === 'success',
    );
  // and batching goes on: a batched destination made now seals and uploads
  const other = await api.createDestination(
    'again',
    s3Destination(s3, 'other', { topics: ['refunds'], config: { batching: { max_events: 1, max_age: '200ms' } } }),
  );
  await api.publish({ tenant_id: 'again', topic: 'refunds', data: { refund: 1 } });
  await waitForKey(sluice, s3, 'other', (k) => k.includes(`/${other.id}-`), 'the other batched destination to deliver');

  // retried once more after their success: again a key never used before, and the earlier object stays as it was
  for (const id of ids)
    assert.equal((await api.call('POST', '/retry', { event_id: id, destination_id: destination.id })).status, 202);
  const again = await waitForKey(
    sluice,
    s3,
    'retried',
    (k) => k !== retriedKey,
    'the second retried batch to land',
    30_000,
  );
  assert.equal(again, failedKeys[0]!.replace(/\.ndjson\.gz$/, '-r2.ndjson.gz'));
  assert.deepEqual(await lines(again), ['{"n":0}', '{"n":1}', '{"n":2}']);
  assert.deepEqual(await s3.keys('retried'), [retriedKey, again].sort());
  assert.ok(!/batch delivery failed to read|sealing a batch failed/.test(sluice.output), 'no pass failed meanwhile');
  await sluice.stop();
});

// ---------------------------------------------------------------------------------------------------------------

test('decisions to tenants: each decision POSTed to /logs/acme is one object, once, even when re-sent', async () => {
  const s3 = await startS3(['decisions']);
  const { sluice, api } = await startSluice(
    sluiceConfig(dataDir(), {}, { ingest: { tenants: [{ tenant: 'acme', partition: 'acme' }] } }),
  );
  await tenant(api, 'acme');
  const destination = await api.createDestination('acme', s3Destination(s3, 'decisions', { topics: ['decisions'] }));

  const sent = decisions(3);
  const res = await postDecisions(sluice.url, sent, { partition: 'acme' });
  assert.equal(res.status, 200, `POST /logs/acme: ${await res.text()}`);
  const expected = sent.map((d) => `${d.timestamp as string}_${d.decision_id as string}.json`).sort();
  // The helper's timestamps have 9 fraction digits ending in 6: the default key prints them unchanged.
  for (const key of expected) assert.match(key, DEFAULT_KEY);
  await sluice.until('three decision objects', async () => (await s3.keys('decisions')).length >= 3);
  assert.deepEqual(
    await s3.keys('decisions'),
    expected,
    'one object per decision, under <timestamp>_<decision_id>.json',
  );
  for (const d of sent) {
    const key = `${d.timestamp as string}_${d.decision_id as string}.json`;
    const object = await s3.object(key, 'decisions');
    assert.deepEqual(json(object.body), d, 'the body is the decision as OPA sent it');
    assertJsonContentType(object.contentType);
    assert.equal(object.metadata?.['event-id'], d.decision_id);
    assert.equal(object.metadata?.topic, 'decisions');
    assert.equal(object.metadata?.partition, 'acme');
    assert.equal(object.metadata?.timestamp, String(unixSeconds(d.timestamp as string)));
  }

  // The same decisions again (OPA re-sends after a lost 200): acknowledged, not delivered again.
  const again = await postDecisions(sluice.url, sent, { partition: 'acme' });
  assert.equal(again.status, 200, `re-sent: ${await again.text()}`);
  const marker = decisions(1);
  assert.equal((await postDecisions(sluice.url, marker, { partition: 'acme' })).status, 200);
  await waitForKey(
    sluice,
    s3,
    'decisions',
    (k) => k.endsWith(`_${marker[0]!.decision_id as string}.json`),
    'a later decision',
  );
  assert.equal((await s3.keys('decisions')).length, 4, 'the re-sent decisions made no new objects');
  for (const d of sent) {
    const attempts = await api.attempts({ event_id: d.decision_id as string, destination_id: destination.id });
    assert.equal(
      attempts.length,
      1,
      `decision ${d.decision_id as string} was delivered once: ${JSON.stringify(attempts)}`,
    );
  }
  await sluice.stop();
});
