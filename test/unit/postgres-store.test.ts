/**
 * What the PostgreSQL store adds to the Store contract (store-contract.test.ts runs the contract itself):
 * several stores, one per node, on one schema. One event per (tenant, id) however many nodes publish it at
 * once; claims with leases, taken over when a node stops renewing them (killed); seals of one destination
 * from two nodes at once; caches kept true across nodes; the retention on one node at a time; migrations that
 * refuse a newer schema and run once when nodes start together. Skipped, in one line, without PostgreSQL.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { CredentialsCipher } from '../../src/store/credentials-cipher.js';
import { truncateTime, type Granularity } from '../../src/store/metrics-buckets.js';
import { PostgresStore, type PostgresStoreOptions } from '../../src/store/postgres-store.js';
import { PgDatabase } from '../../src/store/postgres/database.js';
import { migrate, SchemaTooNewError } from '../../src/store/postgres/migrate.js';
import { MIGRATIONS } from '../../src/store/postgres/migrations/index.js';
import { TenantGoneError, type Destination, type NewAttempt, type NewEvent } from '../../src/store/types.js';
import { dropSchema, POSTGRES_URL, schemaName, skipWithoutPostgres, sql } from '../helpers/postgres.js';

const HOUR = 3_600_000;
const skip = await skipWithoutPostgres('PostgreSQL store');

/** A cluster in a schema of its own: `node(n)` opens a store for node n; all closed and the schema dropped after the test. */
function cluster(t: TestContext, overrides: Partial<PostgresStoreOptions> = {}) {
  const schema = schemaName('nodes');
  const key = randomBytes(32).toString('base64');
  const open: PostgresStore[] = [];
  t.after(async () => {
    for (const store of open) await store.close().catch(() => {});
    await dropSchema(schema);
  });
  return {
    schema,
    async node(n: number, more: Partial<PostgresStoreOptions> = {}): Promise<PostgresStore> {
      const store = await PostgresStore.open({
        url: POSTGRES_URL,
        pool: 4,
        schema,
        nodeId: `node-${n}`,
        leaseMs: 30_000,
        cipher: new CredentialsCipher(key),
        ...overrides,
        ...more,
      });
      open.push(store);
      return store;
    },
  };
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

function event(tenantId: string, id: string): NewEvent {
  return {
    tenant_id: tenantId,
    id,
    topic: 'orders',
    time: new Date().toISOString(),
    time_ms: Date.now(),
    eligible_for_retry: true,
    metadata: {},
    data: `{"id":"${id}"}`,
  };
}

/** An attempt of acme's, as the dispatcher records it. */
function attempt(destinationId: string, eventId: string | null, status: 'success' | 'failed'): NewAttempt {
  return {
    tenant_id: 'acme',
    event_id: eventId,
    destination_id: destinationId,
    status,
    code: status === 'success' ? '200' : '500',
    response_data: null,
    error: status === 'failed' ? 'refused' : null,
    attempt_number: 1,
    manual: false,
    duration_ms: 1,
  };
}

/** Waits for `check` to hold, looking every 20 ms, at most `ms`; fails with `what` otherwise. */
async function eventually(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('two nodes publishing the same (tenant, id) at once store one event; the other is told duplicate with its destinations', {
  skip,
}, async (t) => {
  const c = cluster(t);
  const [a, b] = [await c.node(1), await c.node(2)];
  await a.upsertTenant('acme', {});
  for (const id of ['des_a', 'des_b']) await a.createDestination(destination('acme', id), 10);
  for (let round = 0; round < 20; round++) {
    const id = `e${round}`;
    const [fromA, fromB] = await Promise.all([
      a.publish(event('acme', id), ['des_a', 'des_b'], HOUR),
      b.publish(event('acme', id), ['des_b'], HOUR),
    ]);
    assert.equal(Number(fromA.duplicate) + Number(fromB.duplicate), 1, `round ${round}: one of them is the duplicate`);
    const [winner, loser] = fromA.duplicate ? [fromB, fromA] : [fromA, fromB];
    assert.deepEqual(
      loser.destination_ids,
      winner.destination_ids,
      "the duplicate answers the first publish's destinations",
    );
    const stored = (await a.getEvent('acme', id))!;
    assert.equal((await b.eventDeliveries(stored.seq)).length, winner.destination_ids.length);
  }
  const { rows } = await sql(c.schema, "SELECT count(*)::int AS n FROM events WHERE tenant_id = 'acme'");
  assert.equal(rows[0].n, 20);
});

test('a claimed delivery is not given to another node until its lease ends; then the other takes it, with its object key', {
  skip,
}, async (t) => {
  const c = cluster(t, { leaseMs: 1500 });
  const [a, b] = [await c.node(1), await c.node(2)];
  await a.upsertTenant('acme', {});
  await a.createDestination(destination('acme', 'des_a'), 10);
  for (const id of ['e1', 'e2', 'e3']) await a.publish(event('acme', id), ['des_a'], HOUR);
  const claimedByA = await a.dueDeliveries(Date.now(), 10, [], 10);
  assert.equal(claimedByA.length, 3);
  for (const item of claimedByA) await a.setObjectKey(item.delivery.seq, `objects/${item.event.id}.json`);
  // node A is killed here: it never records its attempts, nor claims again
  assert.deepEqual(await b.dueDeliveries(Date.now(), 10, [], 10), [], 'held by A');
  assert.deepEqual(await b.dueDeliveriesOf('acme', 'des_a', Date.now(), 10, 10), [], 'held by A, by destination too');
  assert.equal((await a.dueDeliveries(Date.now(), 10, [], 10)).length, 3, "A's own claims come back to A (in flight)");
  let takenOver: Awaited<ReturnType<typeof b.dueDeliveries>> = [];
  await eventually("B takes over A's deliveries once A's lease is over", 10_000, async () => {
    takenOver = await b.dueDeliveries(Date.now(), 10, [], 10);
    return takenOver.length === 3;
  });
  assert.deepEqual(
    takenOver.map((d) => [d.event.id, d.delivery.object_key]).sort(),
    [
      ['e1', 'objects/e1.json'],
      ['e2', 'objects/e2.json'],
      ['e3', 'objects/e3.json'],
    ],
    'the takeover writes the same objects',
  );
  assert.deepEqual(await a.dueDeliveries(Date.now(), 10, [], 10), [], "now B's");
  const first = takenOver[0]!;
  const logged = await b.recordAttempt(attempt('des_a', first.event.id, 'success'), {
    seq: first.delivery.seq,
    status: 'success',
    attempts: 1,
    next_attempt_at: 0,
  });
  assert.ok(logged);
  const { rows } = await sql(c.schema, 'SELECT node_id FROM attempts WHERE id = $1', [logged.id]);
  assert.equal(rows[0].node_id, 'node-2', 'the attempt says which node made it');
  assert.equal(await a.pendingDeliveries(), 2);
});

test('api.delivery_concurrency holds over all nodes: a destination never has more deliveries claimed at once than its limit', {
  skip,
}, async (t) => {
  const c = cluster(t);
  const [a, b, third] = [await c.node(1), await c.node(2), await c.node(3)];
  await a.upsertTenant('acme', {});
  await a.createDestination(destination('acme', 'des_a'), 10);
  await a.createDestination(destination('acme', 'des_b'), 10);
  for (let i = 0; i < 20; i++) await a.publish(event('acme', `e${i}`), ['des_a', 'des_b'], HOUR);
  const LIMIT = 3;
  const claimed = await a.dueDeliveries(Date.now(), 100, [], LIMIT);
  const count = (items: typeof claimed, id: string) => items.filter((d) => d.delivery.destination_id === id).length;
  assert.deepEqual([count(claimed, 'des_a'), count(claimed, 'des_b')], [LIMIT, LIMIT], 'the limit per destination');
  assert.deepEqual(await b.dueDeliveries(Date.now(), 100, [], LIMIT), [], "A's claims use up both limits");
  assert.deepEqual(await b.dueDeliveriesOf('acme', 'des_a', Date.now(), 100, LIMIT), [], 'by destination too');
  assert.equal(
    (await a.dueDeliveries(Date.now(), 100, [], LIMIT)).length,
    2 * LIMIT,
    'A is given its own claims again, and nothing more',
  );
  // one of A's ends: one slot of des_a, which the first node to ask takes
  const done = claimed.find((d) => d.delivery.destination_id === 'des_a')!;
  await a.recordAttempt(attempt('des_a', done.event.id, 'success'), {
    seq: done.delivery.seq,
    status: 'success',
    attempts: 1,
    next_attempt_at: 0,
  });
  const next = await b.dueDeliveries(Date.now(), 100, [], LIMIT);
  assert.deepEqual(
    next.map((d) => d.delivery.destination_id),
    ['des_a'],
    'B gets the one slot freed, of that destination',
  );
  // what a node gives back is free for the others at once
  await a.releaseDeliveries(claimed.filter((d) => d.delivery.destination_id === 'des_b').map((d) => d.delivery.seq));
  assert.equal(count(await third.dueDeliveries(Date.now(), 100, [], LIMIT), 'des_b'), LIMIT);

  // claims made at the same moment on three nodes: counted one after the other, never past the limit
  await sql(c.schema, "UPDATE deliveries SET claimed_by = NULL, lease_until = NULL WHERE status = 'pending'");
  for (let round = 0; round < 10; round++) {
    const answers = await Promise.all(
      [a, b, third].flatMap((node) => [
        node.dueDeliveries(Date.now(), 100, [], LIMIT),
        node.dueDeliveriesOf('acme', 'des_a', Date.now(), 100, LIMIT),
      ]),
    );
    const held = await sql(
      c.schema,
      `SELECT destination_id, count(*)::int AS n FROM deliveries
       WHERE status = 'pending' AND claimed_by IS NOT NULL GROUP BY destination_id ORDER BY destination_id`,
    );
    assert.deepEqual(
      held.rows.map((r) => [r.destination_id, r.n]),
      [
        ['des_a', LIMIT],
        ['des_b', LIMIT],
      ],
      `round ${round}: ${answers.map((x) => x.length).join(' ')} claimed; never more than the limit in all`,
    );
    await sql(c.schema, "UPDATE deliveries SET claimed_by = NULL, lease_until = NULL WHERE status = 'pending'");
  }
});

test('two nodes sealing batches of one destination at once never put a delivery in two batches', {
  skip,
}, async (t) => {
  const c = cluster(t);
  const [a, b] = [await c.node(1), await c.node(2)];
  await a.upsertTenant('acme', {});
  const batching = { max_events: 100, max_bytes: 1 << 20, max_age: 1000 };
  await a.createDestination(
    destination('acme', 'des_b', { config: { bucket: 'b', region: 'us-east-1', batching } }),
    10,
  );
  await a.publishMany(
    Array.from({ length: 200 }, (_, i) => ({ event: event('acme', `e${i}`), destinationIds: ['des_b'] })),
    HOUR,
  );
  const seal = async (store: PostgresStore, name: string, seqs: number[]) =>
    seqs.length > 0 &&
    store.sealBatch(
      {
        key: `acme/${name}-${seqs[0]}-${seqs.at(-1)}`,
        tenant_id: 'acme',
        destination_id: 'des_b',
        first_seq: seqs[0]!,
        last_seq: seqs.at(-1)!,
        count: seqs.length,
        attempts: 0,
        next_attempt_at: Date.now(),
      },
      seqs,
    );
  // each round both nodes read what is unbatched and seal groups of it that overlap, at once
  // (at least 10 deliveries are sealed a round, whichever seal wins: 200 need at most 20 rounds)
  for (let round = 0; round < 40; round++) {
    const [seenByA, seenByB] = await Promise.all([
      a.unbatched('acme', 'des_b', 0, 15),
      b.unbatched('acme', 'des_b', 0, 12),
    ]);
    if (seenByA.length === 0) break;
    await Promise.all([
      seal(
        a,
        'a',
        seenByA.map((u) => u.seq),
      ),
      seal(
        b,
        'b',
        seenByB.map((u) => u.seq),
      ),
      seal(
        b,
        'b2',
        seenByA.slice(5).map((u) => u.seq),
      ),
    ]);
  }
  const { rows } = await sql(
    c.schema,
    `SELECT b.key, b.count, (SELECT count(*)::int FROM deliveries d WHERE d.batch = b.key) AS assigned
     FROM event_batches b`,
  );
  assert.ok(rows.length > 0);
  for (const row of rows) assert.equal(row.assigned, row.count, `batch ${row.key} holds exactly its own deliveries`);
  const total = rows.reduce((n, r) => n + r.count, 0);
  const batched = await sql(c.schema, 'SELECT count(*)::int AS n FROM deliveries WHERE batch IS NOT NULL');
  assert.equal(batched.rows[0].n, total, 'no delivery is counted in two batches');
  assert.equal(total, 200, 'and every one was batched');
});

test('sealed batches are claimed by one node at a time', { skip }, async (t) => {
  const c = cluster(t);
  const [a, b] = [await c.node(1), await c.node(2)];
  await a.upsertTenant('acme', {});
  const batching = { max_events: 100, max_bytes: 1 << 20, max_age: 1000 };
  await a.createDestination(
    destination('acme', 'des_b', { config: { bucket: 'b', region: 'us-east-1', batching } }),
    10,
  );
  await a.publish(event('acme', 'e1'), ['des_b'], HOUR);
  const [u] = await a.unbatched('acme', 'des_b', 0, 10);
  const batch = {
    key: 'acme/batch-1',
    tenant_id: 'acme',
    destination_id: 'des_b',
    first_seq: u!.seq,
    last_seq: u!.seq,
    count: 1,
    attempts: 0,
    next_attempt_at: Date.now(),
  };
  await a.sealBatch(batch, [u!.seq]);
  const [forA, forB] = await Promise.all([a.dueBatches(Date.now()), b.dueBatches(Date.now())]);
  assert.equal(forA.length + forB.length, 1, 'one node has it');
  const [holder, other] = forA.length === 1 ? [a, b] : [b, a];
  assert.equal((await holder.dueBatches(Date.now())).length, 1, "the holder's claim comes back to it");
  assert.deepEqual(await other.dueBatches(Date.now()), []);
  // given back unstarted: the other node may take it at once, and then the first may not
  await holder.releaseBatches([batch.key]);
  assert.equal((await other.dueBatches(Date.now())).length, 1, 'released: the other node takes it');
  assert.deepEqual(await holder.dueBatches(Date.now()), [], "now the other's");
  await other.releaseBatches([batch.key]);
  assert.equal((await holder.dueBatches(Date.now())).length, 1);
  await holder.recordBatchAttempt(
    attempt('des_b', null, 'failed'),
    { key: batch.key, attempts: 1, next_attempt_at: Date.now() },
    'pending',
  );
  assert.equal(
    (await other.dueBatches(Date.now())).length,
    1,
    'its attempt recorded, the claim is over: any node may take it',
  );
});

test('changes on one node are seen by the others through notifications (the periodic refresh is out of play here)', {
  skip,
}, async (t) => {
  const c = cluster(t, { refreshMs: 600_000 });
  const [a, b] = [await c.node(1), await c.node(2)];
  await a.upsertTenant('acme', { plan: 'free' });
  await a.createDestination(destination('acme', 'des_a'), 10);
  // B reads both, and caches them
  assert.equal((await b.getTenant('acme'))?.metadata.plan, 'free');
  assert.equal((await b.getDestination('acme', 'des_a'))?.disabled_at, null);

  await a.upsertTenant('acme', { plan: 'pro' });
  await eventually("B sees A's tenant update", 5000, async () => (await b.getTenant('acme'))?.metadata.plan === 'pro');
  const disabledAt = new Date().toISOString();
  await a.updateDestination({ ...(await a.getDestination('acme', 'des_a'))!, disabled_at: disabledAt });
  await eventually(
    "B sees A's destination disabled",
    5000,
    async () => (await b.getDestination('acme', 'des_a'))?.disabled_at === disabledAt,
  );
  await b.createDestination(destination('acme', 'des_b'), 10);
  await eventually(
    "A sees B's new destination",
    5000,
    async () => (await a.listDestinations('acme')).map((d) => d.id).join() === 'des_a,des_b',
  );
  // revocation: the generation raised on A holds on B (a token of generation 0 is refused there)
  assert.equal((await b.getTenant('acme'))?.generation, 0);
  await a.deleteTenant('acme');
  await eventually('B no longer knows the deleted tenant', 5000, async () => (await b.getTenant('acme')) === undefined);
  await b.upsertTenant('acme', {});
  assert.equal((await a.getTenant('acme'))?.generation, 1, 'the new tenant of the same id has a new generation on A');
});

test('a publish on one node for a tenant deleted on another stores nothing', { skip }, async (t) => {
  const c = cluster(t);
  const [a, b] = [await c.node(1), await c.node(2)];
  await a.upsertTenant('acme', {});
  await a.createDestination(destination('acme', 'des_a'), 10);
  // B publishes while A deletes, many times over: whatever the order, no event outlives its tenant
  for (let round = 0; round < 10; round++) {
    await a.upsertTenant('acme', {});
    await a.createDestination(destination('acme', 'des_a'), 10);
    await Promise.allSettled([b.publish(event('acme', `e${round}`), ['des_a'], HOUR), a.deleteTenant('acme')]);
    const left = await sql(c.schema, "SELECT count(*)::int AS n FROM events WHERE tenant_id = 'acme'");
    assert.equal(left.rows[0].n, 0, `round ${round}`);
  }
  const pending = await sql(
    c.schema,
    "SELECT coalesce(sum(n), 0)::int AS n FROM pending_counts WHERE tenant_id = 'acme'",
  );
  assert.equal(pending.rows[0].n, 0, 'the pending count of the gone tenant is gone too');
});

test('the retention runs on one node at a time: a node that finds it held skips its turn', { skip }, async (t) => {
  const c = cluster(t);
  const a = await c.node(1);
  await a.upsertTenant('acme', {});
  await a.createDestination(destination('acme', 'des_a'), 10);
  await a.publish(event('acme', 'e1'), ['des_a'], HOUR);
  const [due] = await a.dueDeliveries(Date.now(), 10, [], 10);
  await a.recordAttempt(attempt('des_a', 'e1', 'success'), {
    seq: due!.delivery.seq,
    status: 'success',
    attempts: 1,
    next_attempt_at: 0,
  });
  // another node is pruning: it holds the lock
  const other = new pg.Client({ connectionString: POSTGRES_URL });
  await other.connect();
  t.after(() => other.end());
  await other.query("SELECT pg_advisory_lock(hashtext('sluice'), hashtext($1 || ':prune'))", [c.schema]);
  await a.prune(-HOUR, 10);
  assert.ok(await a.getEvent('acme', 'e1'), 'skipped: nothing pruned');
  await other.query("SELECT pg_advisory_unlock(hashtext('sluice'), hashtext($1 || ':prune'))", [c.schema]);
  await a.prune(-HOUR, 10);
  assert.equal(await a.getEvent('acme', 'e1'), undefined, 'its turn: pruned');
});

test('migrations: nodes starting at once apply each once; a schema newer than this version knows is refused', {
  skip,
}, async (t) => {
  const c = cluster(t);
  const nodes = await Promise.all([c.node(1), c.node(2), c.node(3)]);
  assert.equal(new Set(nodes.map((n) => n.id)).size, 1, 'one cluster id, made once, for all nodes');
  const applied = await sql(c.schema, 'SELECT version FROM sluice_migrations ORDER BY version');
  assert.deepEqual(
    applied.rows.map((r) => r.version),
    MIGRATIONS.map((m) => m.version),
    'every migration, once each',
  );
  // a schema a version 1 made (001 alone) is brought up to the newest when a node of this version starts
  const older = cluster(t);
  const db = new PgDatabase({ url: POSTGRES_URL, pool: 1, schema: older.schema });
  await migrate(db, MIGRATIONS.slice(0, 1));
  await db.end();
  await older.node(1);
  const upgraded = await sql(older.schema, 'SELECT version FROM sluice_migrations ORDER BY version');
  assert.deepEqual(
    upgraded.rows.map((r) => r.version),
    MIGRATIONS.map((m) => m.version),
  );
  const index = await sql(
    older.schema,
    "SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND indexname = 'deliveries_claimed'",
    [older.schema],
  );
  assert.equal(index.rows.length, 1, 'the claims are indexed by destination (002)');
  await sql(c.schema, "INSERT INTO sluice_migrations (version, name) VALUES (999, 'from the future')");
  await assert.rejects(
    c.node(4),
    (err: unknown) =>
      err instanceof SchemaTooNewError &&
      err.message.includes(`version 999, newer than this version of Sluice knows (${MIGRATIONS.at(-1)!.version})`),
  );
});

test('a store that cannot reach its database fails to open, saying so', { skip }, async () => {
  await assert.rejects(
    PostgresStore.open({
      url: 'postgres://postgres@127.0.0.1:1/test',
      pool: 1,
      schema: 'sluice_unreachable',
      nodeId: 'n',
      leaseMs: 1000,
      cipher: new CredentialsCipher('k'),
    }),
    /ECONNREFUSED/,
  );
  await assert.rejects(
    PostgresStore.open({
      url: POSTGRES_URL,
      pool: 1,
      schema: 'x; DROP SCHEMA public',
      nodeId: 'n',
      leaseMs: 1000,
      cipher: new CredentialsCipher('k'),
    }),
    /store.schema "x; DROP SCHEMA public" must be/,
    'a schema name is never put in SQL unchecked',
  );
});

test('metrics_bucket in SQL is truncateTime, for every unit, around the epoch and far from it', { skip }, async (t) => {
  const c = cluster(t);
  await c.node(1);
  const granularities: Granularity[] = [
    { unit: 's', value: 7 },
    { unit: 'm', value: 5 },
    { unit: 'h', value: 3 },
    { unit: 'd', value: 2 },
    { unit: 'w', value: 1 },
    { unit: 'w', value: 3 },
    { unit: 'M', value: 1 },
    { unit: 'M', value: 5 },
  ];
  const times = [0, -1, 1, 86_399_999, -86_400_001, Date.UTC(1969, 11, 28), Date.UTC(2024, 1, 29, 23, 59, 59, 999)];
  for (let i = 0; i < 40; i++) times.push(Math.floor((Math.random() - 0.3) * 4e12));
  const { rows } = await sql(
    c.schema,
    `SELECT t, u, v, metrics_bucket(t, u, v) AS bucket
     FROM unnest($1::bigint[]) AS t, unnest($2::text[], $3::int[]) AS g(u, v)`,
    [times, granularities.map((g) => g.unit), granularities.map((g) => g.value)],
  );
  assert.equal(rows.length, times.length * granularities.length);
  for (const row of rows) {
    const t0 = Number(row.t);
    const g = { unit: row.u, value: row.v } as Granularity;
    assert.equal(Number(row.bucket), truncateTime(t0, g), `${t0} by ${g.value}${g.unit}`);
  }
});

test('hostile text: a NUL character in a key finds nothing, and an event holding one is refused, never stored altered', {
  skip,
}, async (t) => {
  const c = cluster(t);
  const a = await c.node(1);
  await a.upsertTenant('acme', {});
  await a.createDestination(destination('acme', 'des_a'), 10);
  assert.equal(await a.getTenant('ac\u0000me'), undefined);
  assert.equal(await a.getEvent('acme', 'e\u0000'), undefined);
  assert.equal(await a.getEvent(undefined, 'e\u0000'), undefined);
  assert.equal(await a.getDestination('acme\u0000', 'des_a'), undefined);
  assert.deepEqual(await a.destinationsWithId('des\u0000a'), []);
  assert.equal(await a.getAttempt(undefined, 'atm_\u0000'), undefined);
  assert.deepEqual((await a.listEvents({ id: ['e\u0000'] }, { limit: 10 })).models, []);
  assert.deepEqual((await a.listAttempts({ tenant_id: 'a\u0000', topic: 'x' }, { limit: 10 })).models, []);
  await assert.rejects(a.publish(event('ac\u0000me', 'e1'), ['des_a'], HOUR), TenantGoneError);
  await assert.rejects(a.publish(event('acme', 'e\u00001'), ['des_a'], HOUR), /event's id contains a NUL character/);
  await assert.rejects(
    a.publish({ ...event('acme', 'e2'), topic: 't\u0000' }, ['des_a'], HOUR),
    /event's topic contains a NUL character/,
  );
  assert.equal(await a.pendingDeliveries(), 0);
  // publishes of the same moment share a transaction: a refused one fails alone
  const together = await Promise.allSettled([
    a.publish(event('acme', 'ok1'), ['des_a'], HOUR),
    a.publish(event('acme', 'bad\u0000'), ['des_a'], HOUR),
    a.publish(event('ac\u0000me', 'x'), ['des_a'], HOUR),
    a.publish(event('acme', 'ok2'), ['des_a'], HOUR),
  ]);
  assert.deepEqual(
    together.map((o) => o.status),
    ['fulfilled', 'rejected', 'rejected', 'fulfilled'],
  );
  assert.equal(await a.pendingDeliveries(), 2);
  // metadata and data are JSON text: a NUL in them is escaped, and comes back as it went in
  await a.publish({ ...event('acme', 'e3'), metadata: { k: 'v\u0000w' }, data: '{"s":"a\\u0000b"}' }, ['des_a'], HOUR);
  const stored = (await a.getEvent('acme', 'e3'))!;
  assert.equal(stored.metadata.k, 'v\u0000w');
  assert.equal(stored.data, '{"s":"a\\u0000b"}');
});

test('publishes of one group are written together; one that PostgreSQL refuses fails alone, the others commit', {
  skip,
}, async (t) => {
  // one transaction at a time: while the first publish commits alone, the others gather into one group
  const c = cluster(t, { pool: 2 });
  const a = await c.node(1);
  await a.upsertTenant('acme', {});
  await a.createDestination(destination('acme', 'des_a'), 10);
  // past bigint: a value no JavaScript check here refuses, which the statement storing the group's events does
  const refused = (id: string): NewEvent => ({ ...event('acme', id), time_ms: 1e20 });
  const outcomes = await Promise.allSettled([
    a.publish(event('acme', 'first'), ['des_a'], HOUR),
    a.publish(event('acme', 'ok1'), ['des_a'], HOUR),
    a.publish(refused('bad'), ['des_a'], HOUR),
    a.publishMany(
      [
        { event: event('acme', 'in-batch'), destinationIds: ['des_a'] },
        { event: refused('bad-in-batch'), destinationIds: ['des_a'] },
      ],
      HOUR,
    ),
    a.publish(event('acme', 'ok2'), ['des_a'], HOUR),
    a.publish(event('acme', 'ok1'), ['des_a'], HOUR),
  ]);
  assert.deepEqual(
    outcomes.map((o) => o.status),
    ['fulfilled', 'fulfilled', 'rejected', 'rejected', 'fulfilled', 'fulfilled'],
  );
  assert.equal(((outcomes[2] as PromiseRejectedResult).reason as { code?: string }).code, '22003');
  const again = outcomes[5] as PromiseFulfilledResult<{ duplicate: boolean; destination_ids: string[] }>;
  assert.deepEqual(again.value, { duplicate: true, destination_ids: ['des_a'] }, 'the same id later in the group');
  const stored = (await a.listEvents({ tenant_id: 'acme' }, { limit: 10 })).models.map((e) => e.id).sort();
  assert.deepEqual(stored, ['first', 'ok1', 'ok2'], 'a batch with a refused event stores none of its events');
  assert.equal(await a.pendingDeliveries(), 3);
  const { rows } = await sql(c.schema, 'SELECT sum(n)::int AS n FROM pending_counts');
  assert.equal(rows[0]!.n, 3, 'the counters count what committed');
});

test('two nodes publishing the same ids in opposite orders at once wait for each other, never deadlock: each event stored once', {
  skip,
}, async (t) => {
  const c = cluster(t);
  const [a, b] = [await c.node(1), await c.node(2)];
  await a.upsertTenant('acme', {});
  await a.createDestination(destination('acme', 'des_a'), 10);
  for (let round = 0; round < 15; round++) {
    const ids = Array.from({ length: 20 }, (_, i) => `r${round}-e${i}`);
    const many = (store: PostgresStore, order: string[]) =>
      store.publishMany(
        order.map((id) => ({ event: event('acme', id), destinationIds: ['des_a'] })),
        HOUR,
      );
    const singles = (store: PostgresStore, order: string[]) =>
      Promise.all(order.map((id) => store.publish(event('acme', id), ['des_a'], HOUR)));
    const [fromA, fromB, alone] = await Promise.all([
      many(a, ids),
      many(b, [...ids].reverse()),
      singles(b, ids.slice(5, 15)),
    ]);
    for (let i = 0; i < ids.length; i++) {
      const fresh = [fromA[i]!, fromB[ids.length - 1 - i]!, ...(i >= 5 && i < 15 ? [alone[i - 5]!] : [])].filter(
        (r) => !r.duplicate,
      );
      assert.equal(fresh.length, 1, `${ids[i]}: stored once`);
    }
  }
  const { rows } = await sql(
    c.schema,
    'SELECT count(*)::int AS n, count(DISTINCT event_seq)::int AS e FROM deliveries',
  );
  assert.deepEqual(rows[0], { n: 300, e: 300 }, 'one delivery per event');
  // a's own deliveries at once, b's once a reads the counters again (at most ~250 ms later)
  await eventually("a counts both nodes' deliveries", 5000, async () => (await a.pendingDeliveries()) === 300);
});

test('three nodes claiming, attempting, recording and giving back at once, beside publishes, seals, destination updates and the retention: a destination never has more claimed than its limit, each delivery is attempted by one node at a time and settled once, no error surfaces', {
  skip,
}, async (t) => {
  const c = cluster(t);
  const nodes = [await c.node(1), await c.node(2), await c.node(3)];
  const [a] = nodes as [PostgresStore];
  await a.upsertTenant('acme', {});
  const ids = ['des_a', 'des_b', 'des_c', 'des_d'];
  for (const id of ids) await a.createDestination(destination('acme', id), 10);
  const batching = { max_events: 100, max_bytes: 1 << 20, max_age: 1000 };
  await a.createDestination(
    destination('acme', 'des_batched', { config: { bucket: 'b', region: 'us-east-1', batching } }),
    10,
  );
  const LIMIT = 3;
  const EVENTS = 50; // to each of 4 destinations: 200 deliveries, and as many more published meanwhile
  await a.publishMany(
    Array.from({ length: EVENTS }, (_, i) => ({
      event: event('acme', `e${i}`),
      destinationIds: [...ids, 'des_batched'],
    })),
    HOUR,
  );
  const deadlocksBefore = await sql(
    c.schema,
    'SELECT deadlocks::int AS n FROM pg_stat_database WHERE datname = current_database()',
  );
  const deadline = Date.now() + 60_000;
  const attempting = new Map<number, number>(); // delivery seq -> the node attempting it
  const violations: string[] = [];
  const errors: unknown[] = [];
  let maxClaimed = 0;
  let attempts = 0;
  let done = false;
  let publishedAll = false;
  const settled = async () => {
    const { rows } = await sql(
      c.schema,
      "SELECT count(*)::int AS n FROM deliveries WHERE status = 'pending' AND batch IS NULL AND ready",
    );
    return rows[0].n === 0;
  };
  const run = async (n: number, store: PostgresStore) => {
    const local = new Map<string, number>();
    const inflight = new Set<Promise<void>>();
    for (let pass = 0; pass < 5000 && !done && Date.now() < deadline; pass++) {
      const busy = [...local].filter(([, k]) => k >= LIMIT).map(([id]) => `acme/${id}`);
      const due =
        pass % 3 === 2
          ? await store.dueDeliveriesOf('acme', ids[pass % ids.length]!, Date.now(), 10, LIMIT)
          : await store.dueDeliveries(Date.now(), 20, busy, LIMIT);
      const giveBack: number[] = [];
      for (const item of due) {
        const { seq, destination_id: id } = item.delivery;
        if (attempting.get(seq) === n) continue; // in flight here: its claim comes back
        if ((local.get(id) ?? 0) >= LIMIT || Math.random() < 0.1) {
          giveBack.push(seq);
          continue;
        }
        if (attempting.has(seq))
          violations.push(`delivery ${seq} given to node ${n} while node ${attempting.get(seq)} attempts it`);
        attempting.set(seq, n);
        local.set(id, (local.get(id) ?? 0) + 1);
        const attempt = (async () => {
          await new Promise((r) => setTimeout(r, Math.random() * 5));
          const retry = Math.random() < 0.25;
          attempts++;
          // the record ends the attempt: between the two, the delivery is this node's alone
          attempting.delete(seq);
          await store.recordAttempt(
            {
              tenant_id: 'acme',
              event_id: item.event.id,
              destination_id: id,
              status: retry ? 'failed' : 'success',
              code: retry ? '500' : '200',
              response_data: null,
              error: null,
              attempt_number: item.delivery.attempts + 1,
              manual: false,
              duration_ms: 1,
            },
            {
              seq,
              status: retry ? 'pending' : 'success',
              attempts: item.delivery.attempts + 1,
              next_attempt_at: retry ? Date.now() : 0,
            },
          );
          local.set(id, (local.get(id) ?? 1) - 1);
        })().catch((err: unknown) => {
          errors.push(err);
        });
        inflight.add(attempt);
        void attempt.finally(() => inflight.delete(attempt));
      }
      await store.releaseDeliveries(giveBack);
      if (due.length === 0) await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(inflight);
  };
  // beside the claims: publishes, seals of the batched destination, updates of the destinations, the retention
  const chaos = async () => {
    for (let round = 0; round < 2000 && !done && Date.now() < deadline; round++) {
      const store = nodes[round % 3]!;
      const id = ids[round % ids.length]!;
      if (round < EVENTS) await store.publish(event('acme', `late${round}`), [...ids, 'des_batched'], HOUR);
      else publishedAll = true;
      const updated = (await store.getDestination('acme', id))!;
      await store.updateDestination({ ...updated, updated_at: new Date().toISOString() });
      const open = await store.unbatched('acme', 'des_batched', 0, 7);
      if (open.length > 0)
        await store.sealBatch(
          {
            key: `acme/s${round}-${open[0]!.seq}`,
            tenant_id: 'acme',
            destination_id: 'des_batched',
            first_seq: open[0]!.seq,
            last_seq: open.at(-1)!.seq,
            count: open.length,
            attempts: 0,
            next_attempt_at: Date.now(),
          },
          open.map((u) => u.seq),
        );
      if (round % 10 === 0) await store.prune(HOUR, 1_000_000);
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  const sample = async () => {
    for (let round = 0; round < 20_000 && !done && Date.now() < deadline; round++) {
      const { rows } = await sql(
        c.schema,
        `SELECT coalesce(max(n), 0)::int AS n FROM (SELECT count(*) AS n FROM deliveries
         WHERE status = 'pending' AND claimed_by IS NOT NULL AND lease_until > (extract(epoch from clock_timestamp()) * 1000)::bigint
         GROUP BY destination_id) held`,
      );
      maxClaimed = Math.max(maxClaimed, rows[0].n);
      if (publishedAll && (await settled())) done = true;
    }
  };
  await Promise.all([
    ...nodes.map((s, i) => run(i + 1, s).catch((err: unknown) => errors.push(err))),
    chaos().catch((err: unknown) => errors.push(err)),
    sample(),
  ]);
  done = true;
  const deadlocksAfter = await sql(
    c.schema,
    'SELECT deadlocks::int AS n FROM pg_stat_database WHERE datname = current_database()',
  );
  t.diagnostic(
    `${attempts} attempts; at most ${maxClaimed} claimed of a destination; deadlocks in the database meanwhile: ${deadlocksAfter.rows[0].n - deadlocksBefore.rows[0].n}`,
  );
  assert.deepEqual(errors, [], 'no error surfaced');
  assert.deepEqual(violations, [], 'one node at a time');
  assert.ok(maxClaimed <= LIMIT, `at most ${LIMIT} claimed at once of a destination, seen ${maxClaimed}`);
  assert.ok(await settled(), 'every delivery settled within the time');
  const { rows } = await sql(
    c.schema,
    `SELECT count(*)::int AS deliveries, count(*) FILTER (WHERE s.n <> 1)::int AS not_once FROM deliveries d
     LEFT JOIN LATERAL (SELECT count(*) AS n FROM attempts a JOIN events e ON e.id = a.event_id
       WHERE e.seq = d.event_seq AND a.destination_id = d.destination_id AND a.status = 'success') s ON true
     WHERE d.destination_id <> 'des_batched'`,
  );
  assert.deepEqual(rows[0], { deliveries: 2 * EVENTS * ids.length, not_once: 0 }, 'each delivered once, logged once');
});

test("a destination whose limit other nodes hold, with a long backlog, does not hide another destination's due deliveries", {
  skip,
}, async (t) => {
  const c = cluster(t);
  const [a, b] = [await c.node(1), await c.node(2)];
  await a.upsertTenant('acme', {});
  for (const id of ['des_a', 'des_b']) await a.createDestination(destination('acme', id), 10);
  await a.publishMany(
    Array.from({ length: 500 }, (_, i) => ({ event: event('acme', `a${i}`), destinationIds: ['des_a'] })),
    HOUR,
  );
  for (const id of ['b1', 'b2', 'b3']) await a.publish(event('acme', id), ['des_b'], HOUR);
  const LIMIT = 2;
  // each node holds one of des_a's two: neither is at the limit on its own, so neither leaves des_a out as busy
  assert.equal((await a.dueDeliveriesOf('acme', 'des_a', Date.now(), 1, LIMIT)).length, 1);
  assert.equal((await b.dueDeliveriesOf('acme', 'des_a', Date.now(), 1, LIMIT)).length, 1);
  const byA = await a.dueDeliveries(Date.now(), 100, [], LIMIT);
  const of = (items: typeof byA, id: string) => items.filter((d) => d.delivery.destination_id === id).length;
  assert.deepEqual([of(byA, 'des_a'), of(byA, 'des_b')], [1, LIMIT], "A: its own claim of des_a again, and des_b's");
  const byB = await b.dueDeliveries(Date.now(), 100, [], LIMIT);
  assert.deepEqual([of(byB, 'des_a'), of(byB, 'des_b')], [1, 0], "B: its own of des_a; des_b's limit is A's now");
});

test('a node restarted with the same node_id gets its claims back as its own; a lower limit than it holds gives nobody more; its lease running out during an attempt, the node that takes over keeps its claim', {
  skip,
}, async (t) => {
  const c = cluster(t, { leaseMs: 1500 });
  const [a, b] = [await c.node(1), await c.node(2)];
  await a.upsertTenant('acme', {});
  await a.createDestination(destination('acme', 'des_a'), 10);
  for (let i = 0; i < 10; i++) await a.publish(event('acme', `e${i}`), ['des_a'], HOUR);
  const held = await a.dueDeliveries(Date.now(), 100, [], 4);
  assert.equal(held.length, 4);
  await a.close();
  const again = await c.node(1);
  // restarted with api.delivery_concurrency lowered to 2: what it held is its own, and no one gets more
  const back = await again.dueDeliveries(Date.now(), 100, [], 2);
  assert.deepEqual(
    back.map((d) => d.delivery.seq).sort(),
    held.map((d) => d.delivery.seq).sort(),
    'its claims come back to it',
  );
  assert.deepEqual(await b.dueDeliveries(Date.now(), 100, [], 2), [], 'four held, above the limit of two');
  await again.releaseDeliveries(back.slice(0, 2).map((d) => d.delivery.seq));
  assert.deepEqual(await b.dueDeliveries(Date.now(), 100, [], 2), [], 'two held: the limit');
  await again.releaseDeliveries(back.slice(2, 3).map((d) => d.delivery.seq));
  assert.equal((await b.dueDeliveries(Date.now(), 100, [], 2)).length, 1, 'one slot free: B takes it');

  // the last one A holds: its lease runs out while A attempts it, and B takes it over
  const slow = back[3]!;
  let takenOver: Awaited<ReturnType<typeof b.dueDeliveries>> = [];
  await eventually("B takes over A's claim once its lease is over", 10_000, async () => {
    takenOver = await b.dueDeliveriesOf('acme', 'des_a', Date.now(), 10, 10);
    return takenOver.some((d) => d.delivery.seq === slow.delivery.seq);
  });
  const record = (store: PostgresStore, status: 'failed' | 'success') =>
    store.recordAttempt(
      {
        tenant_id: 'acme',
        event_id: slow.event.id,
        destination_id: 'des_a',
        status,
        code: status === 'failed' ? '500' : '200',
        response_data: null,
        error: null,
        attempt_number: 1,
        manual: false,
        duration_ms: 1,
      },
      {
        seq: slow.delivery.seq,
        status: status === 'failed' ? 'pending' : 'success',
        attempts: 1,
        next_attempt_at: Date.now(),
      },
    );
  // A's attempt ends (failed, to be retried): B's attempt of it is still on its way, and its claim holds
  assert.ok(await record(again, 'failed'));
  const { rows } = await sql(c.schema, 'SELECT claimed_by FROM deliveries WHERE seq = $1', [slow.delivery.seq]);
  assert.equal(rows[0].claimed_by, 'node-2', "B's claim is not ended by A's record");
  assert.equal(
    (await again.dueDeliveriesOf('acme', 'des_a', Date.now(), 10, 10)).filter(
      (d) => d.delivery.seq === slow.delivery.seq,
    ).length,
    0,
    'nor given to A again while B attempts it',
  );
  assert.ok(await record(b, 'success'));
});
