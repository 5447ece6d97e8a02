/**
 * The Store contract, case by case, against every store: the embedded SQLite one and the PostgreSQL one
 * (skipped, in one line, where PostgreSQL is not reachable). Every call is awaited, so the same cases run on
 * a store whose methods answer at once and on one whose methods answer Promises. What each write changes
 * (and what it takes with it), the pending-delivery counts, credentials at rest, paging, the idempotency
 * window, and what a reopened store reads back.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { CredentialsCipher } from '../../src/store/credentials-cipher.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import {
  CursorError,
  TenantGoneError,
  type Destination,
  type NewAttempt,
  type NewEvent,
  type Store,
} from '../../src/store/types.js';
import { dropSchema, POSTGRES_URL, schemaName, skipWithoutPostgres, sql } from '../helpers/postgres.js';
import { tempDir } from '../helpers/sluice.js';

const HOUR = 3_600_000;

/** Either store: every case awaits every call, which works on both. */
type AnyStore = Store;

interface Opened {
  store: AnyStore;
  /** Closes the store and opens the same data again (with another key, if given). */
  reopen(withKey?: string): Promise<AnyStore>;
  /** The credentials column as stored, for the look at what is kept at rest. */
  storedCredentials(): Promise<string[]>;
}

type Open = (t: TestContext, key?: string) => Promise<Opened>;

/** A SQLite store in its own directory, closed and removed after the test. */
const openSqlite: Open = async (t, key = randomBytes(32).toString('base64')) => {
  const dir = tempDir('sluice-store-contract-');
  const make = (withKey: string) => new SqliteStore(dir, new CredentialsCipher(withKey));
  const ref = { store: make(key) };
  t.after(() => {
    ref.store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    store: ref.store,
    async reopen(withKey = key) {
      ref.store.close();
      ref.store = make(withKey);
      return ref.store;
    },
    async storedCredentials() {
      const raw = new Database(path.join(dir, 'store.sqlite'), { readonly: true });
      try {
        return raw.prepare('SELECT credentials FROM destinations').pluck().all() as string[];
      } finally {
        raw.close();
      }
    },
  };
};

/** A PostgreSQL store in a schema of its own, closed and dropped after the test. */
const openPostgres: Open = async (t, key = randomBytes(32).toString('base64')) => {
  const schema = schemaName('contract');
  const make = (withKey: string) =>
    PostgresStore.open({
      url: POSTGRES_URL,
      pool: 4,
      schema,
      nodeId: 'node-1',
      leaseMs: 30_000,
      cipher: new CredentialsCipher(withKey),
    });
  const ref = { store: await make(key) };
  t.after(async () => {
    await ref.store.close();
    await dropSchema(schema);
  });
  return {
    store: ref.store,
    async reopen(withKey = key) {
      await ref.store.close();
      ref.store = await make(withKey);
      return ref.store;
    },
    async storedCredentials() {
      return (await sql(schema, 'SELECT credentials FROM destinations')).rows.map((r) => r.credentials as string);
    },
  };
};

const postgresSkip = await skipWithoutPostgres('store contract');
const STORES: Array<{ name: string; open: Open; skip: string | false }> = [
  { name: 'sqlite', open: openSqlite, skip: false },
  { name: 'postgres', open: openPostgres, skip: postgresSkip },
];

/** One case of the contract, run against each store. */
function contract(name: string, body: (t: TestContext, open: Open) => Promise<void>): void {
  for (const { name: store, open, skip } of STORES) test(`${store}: ${name}`, { skip }, (t) => body(t, open));
}

function destination(tenantId: string, id: string, overrides: Partial<Destination> = {}): Destination {
  const now = new Date().toISOString();
  return {
    id,
    tenant_id: tenantId,
    type: 'aws_s3',
    topics: ['*'],
    config: { bucket: 'b', region: 'us-east-1' },
    credentials: { key: 'AKIA-test', secret: 'very-secret-value' },
    delivery_metadata: {},
    metadata: {},
    filter: {},
    disabled_at: null,
    created_at: now,
    updated_at: now,
    ...overrides,
  };
}

function event(tenantId: string, id: string, topic = 'orders'): NewEvent {
  return {
    tenant_id: tenantId,
    id,
    topic,
    time: new Date().toISOString(),
    time_ms: Date.now(),
    eligible_for_retry: true,
    metadata: { m: '1' },
    data: `{"id":"${id}"}`,
  };
}

function attempt(
  tenantId: string,
  destinationId: string,
  eventId: string | null,
  status: 'success' | 'failed',
  attemptNumber = 1,
): NewAttempt {
  return {
    tenant_id: tenantId,
    event_id: eventId,
    destination_id: destinationId,
    status,
    code: status === 'success' ? '200' : '500',
    response_data: null,
    error: status === 'failed' ? 'refused' : null,
    attempt_number: attemptNumber,
    manual: false,
    duration_ms: 3,
  };
}

contract(
  'tenants: upsert creates then updates, reads see each write, the list pages by creation order',
  async (t, open) => {
    const { store } = await open(t);
    const created = await store.upsertTenant('acme', { plan: 'free' });
    assert.equal(created.created, true);
    assert.deepEqual(created.tenant.metadata, { plan: 'free' });
    assert.equal((await store.getTenant('acme'))?.metadata.plan, 'free');
    const updated = await store.upsertTenant('acme', { plan: 'pro' });
    assert.equal(updated.created, false);
    assert.equal((await store.getTenant('acme'))?.metadata.plan, 'pro', 'the cached tenant is dropped by its update');
    assert.equal(await store.getTenant('nobody'), undefined);

    await store.upsertTenant('beta', {});
    await store.upsertTenant('gamma', {});
    const first = await store.listTenants({ limit: 2 });
    assert.deepEqual(
      first.models.map((m) => m.id),
      ['acme', 'beta'],
    );
    assert.equal(first.prev, null);
    assert.ok(first.next);
    const second = await store.listTenants({ limit: 2, next: first.next });
    assert.deepEqual(
      second.models.map((m) => m.id),
      ['gamma'],
    );
    assert.equal(second.next, null);
    assert.deepEqual(
      (await store.listTenants({ limit: 2, prev: second.prev! })).models.map((m) => m.id),
      ['acme', 'beta'],
    );
    assert.deepEqual(
      (await store.listTenants({ limit: 10 }, { id: ['gamma', 'acme'] })).models.map((m) => m.id),
      ['acme', 'gamma'],
    );
    assert.equal(await store.countTenants(), 3);
    assert.equal(await store.countTenants({ id: 'beta' }), 1);
    await assert.rejects(async () => store.listTenants({ limit: 2, next: 'not-a-cursor' }), CursorError);
  },
);

contract(
  'tenants: a deletion takes destinations, events, deliveries and attempts with it, and raises the generation',
  async (t, open) => {
    const { store } = await open(t);
    await store.upsertTenant('acme', {});
    await store.upsertTenant('other', {});
    assert.equal(await store.createDestination(destination('acme', 'des_a'), 10), 'created');
    assert.equal(await store.createDestination(destination('other', 'des_a'), 10), 'created');
    await store.publish(event('acme', 'e1'), ['des_a'], HOUR);
    await store.publish(event('other', 'e1'), ['des_a'], HOUR);
    const [due] = await store.dueDeliveriesOf('acme', 'des_a', Date.now(), 10, 10);
    await store.recordAttempt(attempt('acme', 'des_a', 'e1', 'failed'), {
      seq: due!.delivery.seq,
      status: 'pending',
      attempts: 1,
      next_attempt_at: Date.now(),
    });
    assert.equal(await store.pendingDeliveries('acme'), 1);
    assert.equal((await store.getTenant('acme'))?.generation, 0);

    assert.equal(await store.deleteTenant('acme'), true);
    assert.equal(await store.deleteTenant('acme'), false, 'gone already');
    assert.equal(await store.getTenant('acme'), undefined);
    assert.deepEqual(await store.listDestinations('acme'), []);
    assert.equal(await store.getEvent('acme', 'e1'), undefined);
    assert.deepEqual((await store.listAttempts({ tenant_id: 'acme' }, { limit: 10 })).models, []);
    assert.equal(await store.pendingDeliveries('acme'), 0);
    assert.equal(await store.pendingDeliveries(), 1, "the other tenant's delivery is still pending");
    assert.ok(await store.getEvent('other', 'e1'), 'the same ids in another tenant stay');

    await store.upsertTenant('acme', {});
    assert.equal(
      (await store.getTenant('acme'))?.generation,
      1,
      'tokens of the deleted tenant are refused by the new one',
    );
    await assert.rejects(async () => store.publish(event('gone', 'e2'), [], HOUR), TenantGoneError);
    assert.equal(await store.pendingDeliveries(), 1, 'a refused publish changes no count');
  },
);

contract(
  'destinations: created once per tenant and id, within the quota; credentials encrypted at rest',
  async (t, open) => {
    const key = randomBytes(32).toString('base64');
    const { store, reopen, storedCredentials } = await open(t, key);
    assert.equal(await store.createDestination(destination('acme', 'des_a'), 2), 'no_tenant');
    await store.upsertTenant('acme', {});
    await store.upsertTenant('other', {});
    assert.equal(await store.createDestination(destination('acme', 'des_a'), 2), 'created');
    assert.equal(await store.createDestination(destination('acme', 'des_a'), 2), 'exists');
    assert.equal(
      await store.createDestination(destination('other', 'des_a'), 2),
      'created',
      'ids are unique per tenant only',
    );
    assert.equal(await store.createDestination(destination('acme', 'des_b'), 2), 'created');
    assert.equal(await store.createDestination(destination('acme', 'des_c'), 2), 'over_quota');
    assert.deepEqual(
      (await store.listDestinations('acme')).map((d) => d.id),
      ['des_a', 'des_b'],
    );
    assert.deepEqual(
      (await store.destinationsWithId('des_a')).map((d) => d.tenant_id),
      ['acme', 'other'],
    );
    assert.equal((await store.getDestination('acme', 'des_a'))?.credentials.secret, 'very-secret-value');

    // each store's own look at what it keeps at rest
    const stored = await storedCredentials();
    assert.equal(stored.length, 3);
    for (const text of stored) {
      assert.match(text, /^v1:/);
      assert.ok(!text.includes('very-secret-value') && !text.includes('AKIA-test'), 'no credential in plaintext');
    }

    await store.updateDestination({ ...(await store.getDestination('acme', 'des_b'))!, metadata: { team: 'x' } });
    assert.deepEqual(
      (await store.getDestination('acme', 'des_b'))?.metadata,
      { team: 'x' },
      'the cached list is dropped by the update',
    );
    assert.equal(await store.deleteDestination('acme', 'des_b'), true);
    assert.equal(await store.deleteDestination('acme', 'des_b'), false);
    assert.deepEqual(
      (await store.listDestinations('acme')).map((d) => d.id),
      ['des_a'],
    );

    const wrongKey = await reopen(randomBytes(32).toString('base64'));
    await assert.rejects(async () => wrongKey.listDestinations('acme'), /not the key they were stored with/);
    const rightKey = await reopen(key);
    assert.equal((await rightKey.getDestination('acme', 'des_a'))?.credentials.key, 'AKIA-test');
  },
);

contract(
  'events and deliveries: a publish stores one pending delivery per destination; a re-publish in the window is a duplicate',
  async (t, open) => {
    const { store, reopen } = await open(t);
    await store.upsertTenant('acme', {});
    await store.upsertTenant('other', {});
    for (const id of ['des_a', 'des_b']) await store.createDestination(destination('acme', id), 10);
    await store.createDestination(destination('other', 'des_a'), 10);

    assert.deepEqual(await store.publish(event('acme', 'e1'), ['des_a', 'des_b'], HOUR), {
      duplicate: false,
      destination_ids: ['des_a', 'des_b'],
    });
    await store.publish(event('other', 'e1'), ['des_a'], HOUR);
    assert.equal(await store.pendingDeliveries(), 3);
    assert.equal(await store.pendingDeliveries('acme'), 2);
    assert.equal(await store.pendingDeliveries('other'), 1);
    assert.deepEqual(await store.publish(event('acme', 'e1'), ['des_a'], HOUR), {
      duplicate: true,
      destination_ids: ['des_a', 'des_b'],
    });
    assert.equal(await store.pendingDeliveries(), 3, 'a duplicate stores nothing');

    const stored = (await store.getEvent('acme', 'e1'))!;
    assert.equal(stored.data, '{"id":"e1"}');
    assert.deepEqual(stored.metadata, { m: '1' });
    assert.equal(
      (await store.getEvent(undefined, 'e1'))?.tenant_id,
      'other',
      'without a tenant: the newest with the id',
    );
    assert.deepEqual(
      (await store.eventDeliveries(stored.seq)).map((d) => [d.destination_id, d.status]),
      [
        ['des_a', 'pending'],
        ['des_b', 'pending'],
      ],
    );
    assert.deepEqual(
      (await store.listEvents({ tenant_id: 'acme', destination_id: 'des_b' }, { limit: 10 })).models.map((e) => e.id),
      ['e1'],
    );
    assert.deepEqual((await store.listEvents({ topic: 'other-topic' }, { limit: 10 })).models, []);

    // due, soonest first; a busy destination is left out
    const now = Date.now();
    assert.equal((await store.dueDeliveries(now, 10, [], 10)).length, 3);
    assert.deepEqual(
      (await store.dueDeliveries(now, 10, ['acme/des_a'], 10))
        .map((d) => `${d.delivery.tenant_id}/${d.delivery.destination_id}`)
        .sort(),
      ['acme/des_b', 'other/des_a'],
    );
    assert.ok((await store.nextDueAt())! <= now);

    // the counts are read again from the database at start
    const again = await reopen();
    assert.equal(await again.pendingDeliveries(), 3);
    assert.equal(await again.pendingDeliveries('acme'), 2);
  },
);

contract(
  'deliveries: an attempt settles a delivery and is logged; a retry makes it pending again; a disabled destination is not due',
  async (t, open) => {
    const { store } = await open(t);
    await store.upsertTenant('acme', {});
    await store.createDestination(destination('acme', 'des_a'), 10);
    await store.publish(event('acme', 'e1'), ['des_a'], HOUR);
    const [due] = await store.dueDeliveriesOf('acme', 'des_a', Date.now(), 10, 10);
    assert.ok(due);
    assert.equal(await store.retry(due.event.seq, 'des_a'), false, 'never attempted: nothing to retry');
    await store.setObjectKey(due.delivery.seq, 'objects/e1.json');
    const logged = await store.recordAttempt(attempt('acme', 'des_a', 'e1', 'success'), {
      seq: due.delivery.seq,
      status: 'success',
      attempts: 1,
      next_attempt_at: Date.now(),
    });
    assert.ok(logged?.id.startsWith('atm_'));
    assert.equal(await store.pendingDeliveries(), 0);
    const [settled] = await store.eventDeliveries(due.event.seq);
    assert.equal(settled?.status, 'success');
    assert.equal(settled?.object_key, 'objects/e1.json');
    assert.equal(
      await store.recordAttempt(attempt('acme', 'des_a', 'e1', 'success'), {
        seq: due.delivery.seq,
        status: 'success',
        attempts: 2,
        next_attempt_at: Date.now(),
      }),
      undefined,
      'no longer pending: not counted nor logged twice',
    );

    assert.equal(await store.retry(due.event.seq, 'des_a'), true);
    assert.equal(await store.pendingDeliveries('acme'), 1);
    const [manual] = await store.dueDeliveriesOf('acme', 'des_a', Date.now(), 10, 10);
    assert.equal(manual?.delivery.manual, true);

    await store.updateDestination({
      ...(await store.getDestination('acme', 'des_a'))!,
      disabled_at: new Date().toISOString(),
    });
    assert.deepEqual(
      await store.dueDeliveries(Date.now(), 10, [], 10),
      [],
      "a disabled destination's deliveries are not due",
    );
    assert.equal(await store.nextDueAt(), undefined);
    assert.equal(await store.pendingDeliveries('acme'), 1, 'but still pending');
    await store.updateDestination({ ...(await store.getDestination('acme', 'des_a'))!, disabled_at: null });
    assert.equal((await store.dueDeliveries(Date.now(), 10, [], 10)).length, 1);

    assert.equal(await store.deleteDestination('acme', 'des_a'), true);
    assert.equal(await store.pendingDeliveries(), 0, "a deleted destination's pending deliveries go with it");
    assert.equal(
      await store.recordAttempt(attempt('acme', 'des_a', 'e1', 'success'), {
        seq: due.delivery.seq,
        status: 'success',
        attempts: 2,
        next_attempt_at: Date.now(),
      }),
      undefined,
      'an attempt of a delivery deleted meanwhile is not logged',
    );
  },
);

contract(
  'deliveries: a retry due after a wait of a fraction of a ms (full jitter) is recorded, and due only once the wait is over',
  async (t, open) => {
    const { store } = await open(t);
    await store.upsertTenant('acme', {});
    await store.createDestination(destination('acme', 'des_a'), 10);
    await store.publish(event('acme', 'e1'), ['des_a'], HOUR);
    const [due] = await store.dueDeliveriesOf('acme', 'des_a', Date.now(), 10, 10);
    assert.ok(due);
    const retryAt = Date.now() + HOUR + 0.666;
    const logged = await store.recordAttempt(
      { ...attempt('acme', 'des_a', 'e1', 'failed'), duration_ms: 12.5 },
      { seq: due.delivery.seq, status: 'pending', attempts: 1, next_attempt_at: retryAt },
    );
    assert.ok(logged, 'the failed attempt is logged');
    assert.equal(await store.pendingDeliveries('acme'), 1, 'still pending, for its retry');
    assert.deepEqual(await store.dueDeliveries(Math.floor(retryAt), 10, [], 10), [], 'not due before its wait is over');
    assert.equal((await store.dueDeliveries(Math.ceil(retryAt), 10, [], 10)).length, 1, 'due once it is');
  },
);

contract(
  'batches: deliveries of a batched destination wait for a batch; its final attempt settles them',
  async (t, open) => {
    const { store } = await open(t);
    await store.upsertTenant('acme', {});
    const batching = { max_events: 100, max_bytes: 1 << 20, max_age: 1000 };
    await store.createDestination(
      destination('acme', 'des_b', { config: { bucket: 'b', region: 'us-east-1', batching } }),
      10,
    );
    assert.deepEqual(
      (await store.batchedDestinations()).map((d) => d.id),
      ['des_b'],
    );
    for (const id of ['e1', 'e2', 'e3']) await store.publish(event('acme', id), ['des_b'], HOUR);
    assert.deepEqual(await store.dueDeliveries(Date.now(), 10, [], 10), [], 'not for the per-event dispatcher');
    const unbatched = await store.unbatched('acme', 'des_b', 0, 10);
    assert.equal(unbatched.length, 3);
    assert.equal(unbatched[0]!.bytes, '{"id":"e1"}'.length);
    assert.deepEqual(
      (await store.unbatched('acme', 'des_b', unbatched[0]!.seq, 10)).map((u) => u.seq),
      unbatched.slice(1).map((u) => u.seq),
    );

    const seqs = unbatched.slice(0, 2).map((u) => u.seq);
    const batch = {
      key: 'acme/batch-1',
      tenant_id: 'acme',
      destination_id: 'des_b',
      first_seq: seqs[0]!,
      last_seq: seqs[1]!,
      count: 2,
      attempts: 0,
      next_attempt_at: Date.now(),
    };
    assert.equal(await store.nextRetriedBatch(), 1);
    await store.sealBatch(batch, seqs, true);
    assert.equal(await store.nextRetriedBatch(), 2, 'a retry number is used up by the seal that took it');
    assert.equal(await store.batchExists(batch.key), true);
    assert.deepEqual(
      (await store.unbatched('acme', 'des_b', 0, 10)).map((u) => u.seq),
      [unbatched[2]!.seq],
    );
    assert.deepEqual(
      (await store.dueBatches(Date.now())).map((b) => b.key),
      [batch.key],
    );
    assert.deepEqual(
      (await store.batchEvents(batch)).map((e) => e.id),
      ['e1', 'e2'],
    );

    assert.ok(
      await store.recordBatchAttempt(
        attempt('acme', 'des_b', null, 'failed'),
        { key: batch.key, attempts: 1, next_attempt_at: Date.now() + HOUR },
        'pending',
      ),
    );
    assert.equal(await store.pendingDeliveries(), 3, 'a failed attempt that will be retried settles nothing');
    assert.deepEqual(await store.dueBatches(Date.now()), [], 'due again only at its next attempt');
    assert.ok(
      await store.recordBatchAttempt(
        attempt('acme', 'des_b', null, 'success', 2),
        { key: batch.key, attempts: 2, next_attempt_at: Date.now() },
        'success',
      ),
    );
    assert.equal(await store.pendingDeliveries(), 1, 'its two deliveries succeeded with it');
    const first = (await store.getEvent('acme', 'e1'))!;
    assert.deepEqual(
      (await store.eventDeliveries(first.seq)).map((d) => [d.status, d.attempts]),
      [['success', 2]],
    );
    assert.equal(
      await store.recordBatchAttempt(
        attempt('acme', 'des_b', null, 'success'),
        { key: 'no-such-batch', attempts: 1, next_attempt_at: 0 },
        'success',
      ),
      undefined,
    );
  },
);

contract(
  'attempts: read back by id within their tenant, listed newest first with filters, pruned to the newest',
  async (t, open) => {
    const { store } = await open(t);
    await store.upsertTenant('acme', {});
    await store.createDestination(destination('acme', 'des_a'), 10);
    await store.publish(event('acme', 'e1'), ['des_a'], HOUR);
    const [due] = await store.dueDeliveriesOf('acme', 'des_a', Date.now(), 10, 10);
    const ids: string[] = [];
    for (let n = 1; n <= 3; n++) {
      const status = n === 3 ? 'success' : 'pending';
      const logged = await store.recordAttempt(attempt('acme', 'des_a', 'e1', n === 3 ? 'success' : 'failed', n), {
        seq: due!.delivery.seq,
        status,
        attempts: n,
        next_attempt_at: Date.now(),
      });
      ids.push(logged!.id);
    }
    assert.equal((await store.getAttempt('acme', ids[0]!))?.attempt_number, 1);
    assert.equal(await store.getAttempt('other', ids[0]!), undefined, "another tenant's attempt is not found");
    assert.equal((await store.getAttempt(undefined, ids[2]!))?.status, 'success');
    assert.deepEqual(
      (await store.listAttempts({ tenant_id: 'acme' }, { limit: 10 })).models.map((a) => a.id),
      [...ids].reverse(),
    );
    assert.deepEqual(
      (await store.listAttempts({ status: 'failed' }, { limit: 10, dir: 'asc' })).models.map((a) => a.attempt_number),
      [1, 2],
    );
    assert.deepEqual(
      (await store.listAttempts({ topic: 'orders', destination_type: 'aws_s3' }, { limit: 1 })).models.map((a) => a.id),
      [ids[2]],
    );

    await store.prune(HOUR, 1);
    assert.deepEqual(
      (await store.listAttempts({}, { limit: 10 })).models.map((a) => a.id),
      [ids[2]],
      'only the newest attempt is kept',
    );
    assert.ok(await store.getEvent('acme', 'e1'), 'a recent event stays');
    await store.prune(-HOUR, 10);
    assert.equal(
      await store.getEvent('acme', 'e1'),
      undefined,
      'a finished event older than the bound goes, with its deliveries',
    );
    assert.deepEqual((await store.listAttempts({}, { limit: 10 })).models, []);
  },
);

contract(
  'events: outside the idempotency window the same id is published again, over the same event',
  async (t, open) => {
    const { store } = await open(t);
    await store.upsertTenant('acme', {});
    for (const id of ['des_a', 'des_b']) await store.createDestination(destination('acme', id), 10);
    await store.publish(event('acme', 'e1'), ['des_a', 'des_b'], HOUR);
    const first = (await store.getEvent('acme', 'e1'))!;
    const [toA] = await store.dueDeliveriesOf('acme', 'des_a', Date.now(), 10, 10);
    await store.recordAttempt(attempt('acme', 'des_a', 'e1', 'success'), {
      seq: toA!.delivery.seq,
      status: 'success',
      attempts: 1,
      next_attempt_at: Date.now(),
    });
    // a window of 1 ms, once the clock has moved past it
    const receivedAt = Date.parse(first.received_at);
    for (let i = 0; i < 1000 && Date.now() <= receivedAt + 1; i++) await new Promise((r) => setImmediate(r));
    const again = await store.publish({ ...event('acme', 'e1'), data: '{"v":2}' }, ['des_a', 'des_b'], 1);
    assert.deepEqual(again, { duplicate: false, destination_ids: ['des_a', 'des_b'] });
    const stored = (await store.getEvent('acme', 'e1'))!;
    assert.equal(stored.seq, first.seq, 'the same event');
    assert.equal(stored.data, '{"v":2}', 'with what was published last');
    assert.deepEqual(
      (await store.eventDeliveries(first.seq)).map((d) => [d.destination_id, d.status]),
      [
        ['des_a', 'success'],
        ['des_b', 'pending'],
        ['des_a', 'pending'],
      ],
      'a new delivery where the last one finished, none beside one still pending',
    );
    assert.equal(await store.pendingDeliveries('acme'), 2);
  },
);

contract(
  'events: published again outside the window while its delivery is being attempted, it gets a delivery of its own (the attempt may carry the old data)',
  async (t, open) => {
    const { store } = await open(t);
    await store.upsertTenant('acme', {});
    await store.createDestination(destination('acme', 'des_a'), 10);
    const publishAgain = async (data: string) => {
      // a window of 1 ms: bounded, it is a matter of the clock moving on
      for (let i = 0; i < 1000; i++) {
        if (!(await store.publish({ ...event('acme', 'e1'), data }, ['des_a'], 1)).duplicate) return;
        await new Promise((r) => setTimeout(r, 1));
      }
      assert.fail('the window did not end');
    };
    await store.publish({ ...event('acme', 'e1'), data: '{"v":1}' }, ['des_a'], 1);
    const [inFlight] = await store.dueDeliveries(Date.now(), 10, [], 10);
    assert.equal(inFlight?.event.data, '{"v":1}', 'being attempted with the first data');
    await publishAgain('{"v":2}');
    assert.equal(await store.pendingDeliveries('acme'), 2, 'the one being attempted and one for the new publish');
    await store.recordAttempt(attempt('acme', 'des_a', 'e1', 'success'), {
      seq: inFlight.delivery.seq,
      status: 'success',
      attempts: 1,
      next_attempt_at: 0,
    });
    const next = await store.dueDeliveries(Date.now(), 10, [], 10);
    assert.deepEqual(
      next.map((d) => d.event.data),
      ['{"v":2}'],
      'the new publish is delivered with its own data',
    );
    // its attempt failed and waits for a retry (no longer being attempted): a third publish rides on it
    await store.recordAttempt(attempt('acme', 'des_a', 'e1', 'failed'), {
      seq: next[0]!.delivery.seq,
      status: 'pending',
      attempts: 1,
      next_attempt_at: Date.now() + HOUR,
    });
    await publishAgain('{"v":3}');
    assert.equal(
      await store.pendingDeliveries('acme'),
      1,
      'one pending delivery, not being attempted, carries the latest',
    );
    // read for an attempt and given back unattempted (a limit was reached): it too carries the latest
    const [readBack] = await store.dueDeliveries(Date.now() + HOUR, 10, [], 10);
    await store.releaseDeliveries([readBack!.delivery.seq]);
    await publishAgain('{"v":4}');
    assert.equal(await store.pendingDeliveries('acme'), 1);
    assert.deepEqual(
      (await store.dueDeliveries(Date.now() + HOUR, 10, [], 10)).map((d) => d.event.data),
      ['{"v":4}'],
    );
  },
);

contract('events: publishMany stores every event or none; a duplicate within it is one', async (t, open) => {
  const { store } = await open(t);
  await store.upsertTenant('acme', {});
  await store.createDestination(destination('acme', 'des_a'), 10);
  await assert.rejects(
    async () =>
      store.publishMany(
        [
          { event: event('acme', 'e1'), destinationIds: ['des_a'] },
          { event: event('gone', 'e2'), destinationIds: [] },
        ],
        HOUR,
      ),
    TenantGoneError,
  );
  assert.equal(await store.getEvent('acme', 'e1'), undefined, 'rolled back with the event of the gone tenant');
  assert.equal(await store.pendingDeliveries(), 0);
  const results = await store.publishMany(
    [
      { event: event('acme', 'e1'), destinationIds: ['des_a'] },
      { event: event('acme', 'e1'), destinationIds: [] },
      { event: event('acme', 'e2'), destinationIds: ['des_a', 'des_missing'] },
    ],
    HOUR,
  );
  assert.deepEqual(results, [
    { duplicate: false, destination_ids: ['des_a'] },
    { duplicate: true, destination_ids: ['des_a'] },
    { duplicate: false, destination_ids: ['des_a', 'des_missing'] },
  ]);
  assert.equal(await store.pendingDeliveries('acme'), 2, 'no delivery to a destination that is not there');
});

contract('events: listed by their own time, newest first, paged both ways with filters', async (t, open) => {
  const { store } = await open(t);
  await store.upsertTenant('acme', {});
  await store.upsertTenant('other', {});
  const base = Date.UTC(2024, 0, 1);
  // published out of time order: the list follows the events' time, not the order they came in
  for (const [id, offset] of [
    ['e2', 2],
    ['e1', 1],
    ['e4', 4],
    ['e3', 3],
  ] as const) {
    await store.publish({ ...event('acme', id), time_ms: base + offset * 1000 }, [], HOUR);
  }
  await store.publish({ ...event('other', 'x1'), time_ms: base + 2500 }, [], HOUR);
  const first = await store.listEvents({ tenant_id: 'acme' }, { limit: 3 });
  assert.deepEqual(
    first.models.map((e) => e.id),
    ['e4', 'e3', 'e2'],
  );
  assert.equal(first.prev, null);
  const second = await store.listEvents({ tenant_id: 'acme' }, { limit: 3, next: first.next! });
  assert.deepEqual(
    second.models.map((e) => e.id),
    ['e1'],
  );
  assert.equal(second.next, null);
  assert.deepEqual(
    (await store.listEvents({ tenant_id: 'acme' }, { limit: 3, prev: second.prev! })).models.map((e) => e.id),
    ['e4', 'e3', 'e2'],
  );
  assert.deepEqual(
    (await store.listEvents({ time: { gte: base + 2000, lt: base + 4000 } }, { limit: 10, dir: 'asc' })).models.map(
      (e) => e.id,
    ),
    ['e2', 'x1', 'e3'],
  );
  assert.deepEqual(
    (await store.listEvents({ id: ['e1', 'x1'] }, { limit: 10 })).models.map((e) => e.id),
    ['x1', 'e1'],
  );
  await assert.rejects(async () => store.listEvents({}, { limit: 2, next: first.prev ?? 'czE' }), CursorError);
});

contract('metrics: events and attempts grouped by time bucket and dimension', async (t, open) => {
  const { store } = await open(t);
  await store.upsertTenant('acme', {});
  await store.createDestination(destination('acme', 'des_a'), 10);
  const hour = Date.UTC(2024, 0, 1, 10);
  await store.publish({ ...event('acme', 'e1', 'orders'), time_ms: hour + 60_000 }, ['des_a'], HOUR);
  await store.publish({ ...event('acme', 'e2', 'orders'), time_ms: hour + HOUR + 1 }, ['des_a'], HOUR);
  await store.publish({ ...event('acme', 'e3', 'refunds'), time_ms: hour + 2 }, [], HOUR);
  const events = await store.eventMetrics({
    start: hour,
    end: hour + 2 * HOUR,
    granularity: { value: 1, unit: 'h' },
    dimensions: ['topic'],
    filters: {},
    rowLimit: 10,
  });
  assert.deepEqual(events, {
    rows: [
      { bucket: hour, dimensions: { topic: 'orders' }, counts: { count: 1 } },
      { bucket: hour, dimensions: { topic: 'refunds' }, counts: { count: 1 } },
      { bucket: hour + HOUR, dimensions: { topic: 'orders' }, counts: { count: 1 } },
    ],
    truncated: false,
  });
  const byDestination = await store.eventMetrics({
    start: hour,
    end: hour + 2 * HOUR,
    dimensions: ['destination_id'],
    filters: { destination_id: ['des_a'] },
    rowLimit: 1,
  });
  assert.deepEqual(byDestination, {
    rows: [{ bucket: null, dimensions: { destination_id: 'des_a' }, counts: { count: 2 } }],
    truncated: false,
  });
  const weeks = await store.eventMetrics({
    start: hour,
    end: hour + 2 * HOUR,
    granularity: { value: 1, unit: 'M' },
    dimensions: [],
    filters: {},
    rowLimit: 10,
  });
  assert.deepEqual(weeks.rows, [{ bucket: Date.UTC(2024, 0, 1), dimensions: {}, counts: { count: 3 } }]);

  const due = await store.dueDeliveriesOf('acme', 'des_a', Date.now(), 10, 10);
  const started = Date.now();
  await store.recordAttempt(attempt('acme', 'des_a', 'e1', 'failed'), {
    seq: due[0]!.delivery.seq,
    status: 'pending',
    attempts: 1,
    next_attempt_at: 0,
  });
  await store.recordAttempt(attempt('acme', 'des_a', 'e1', 'success', 2), {
    seq: due[0]!.delivery.seq,
    status: 'success',
    attempts: 2,
    next_attempt_at: 0,
  });
  const attempts = await store.attemptMetrics({
    start: started - 1000,
    end: Date.now() + 1000,
    dimensions: ['destination_type', 'topic'],
    filters: { status: ['success', 'failed'] },
    rowLimit: 10,
  });
  assert.deepEqual(attempts, {
    rows: [
      {
        bucket: null,
        dimensions: { destination_type: 'aws_s3', topic: 'orders' },
        counts: {
          count: 2,
          successful_count: 1,
          failed_count: 1,
          first_attempt_count: 1,
          retry_count: 1,
          manual_retry_count: 0,
          attempt_number_sum: 3,
        },
      },
    ],
    truncated: false,
  });
});

contract(
  'deliveries: a seq is never used twice, not after the newest were deleted, nor after a reopen',
  async (t, open) => {
    const { store: opened, reopen } = await open(t);
    let store = opened;
    await store.upsertTenant('acme', {});
    await store.createDestination(destination('acme', 'des_a'), 20);
    const publish = async (id: string) => {
      await store.publish(event('acme', id), ['des_a'], HOUR);
      const stored = (await store.getEvent('acme', id))!;
      return (await store.eventDeliveries(stored.seq)).map((d) => d.seq);
    };
    const first = [...(await publish('e1')), ...(await publish('e2'))];
    // the destination goes, and its pending deliveries (the newest rows) with it
    assert.ok(await store.deleteDestination('acme', 'des_a'));
    await store.createDestination(destination('acme', 'des_a'), 20);
    const second = await publish('e3');
    assert.ok(Math.min(...second) > Math.max(...first), `new seqs ${second} come after the deleted ${first}`);
    store = await reopen();
    assert.ok(await store.deleteDestination('acme', 'des_a'));
    await store.createDestination(destination('acme', 'des_a'), 20);
    const third = await publish('e4');
    assert.ok(Math.min(...third) > Math.max(...second), `after a reopen too: ${third} after ${second}`);
  },
);

contract('events: publishes at once commit together, but one whose tenant is gone fails alone', async (t, open) => {
  const { store } = await open(t);
  await store.upsertTenant('acme', {});
  await store.createDestination(destination('acme', 'des_a'), 10);
  const outcomes = await Promise.allSettled([
    ...Array.from({ length: 30 }, (_, i) => store.publish(event('acme', `e${i}`), ['des_a'], HOUR)),
    store.publish(event('gone', 'x'), ['des_a'], HOUR),
    store.publish(event('acme', 'e0'), ['des_a'], HOUR),
  ]);
  assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 31);
  const refused = outcomes[30]!;
  assert.ok(refused.status === 'rejected' && refused.reason instanceof TenantGoneError);
  const last = outcomes[31]!;
  assert.ok(last.status === 'fulfilled' && last.value.duplicate, 'the same id again in the same moment is a duplicate');
  assert.equal(await store.pendingDeliveries('acme'), 30);
  assert.equal((await store.listEvents({ tenant_id: 'acme' }, { limit: 100 })).models.length, 30);
});
