/**
 * Several Sluice nodes on one PostgreSQL store and one s3rver, as real processes: what one node creates the
 * others serve, any node delivers, a node killed with kill -9 leaves its claims to the others once their lease
 * is over, and every acknowledged event lands exactly once. Its own schema, dropped afterwards; skipped (in
 * one line) where PostgreSQL cannot be reached.
 *
 * 30,000 events go to a batched destination (one object per batch: each event's id is in exactly one object's
 * lines) and a smaller count to a per-event destination (one object per event: each event's key once), so the
 * suite stays within a few minutes on a loaded two-core machine.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { RecordingProxy } from './helpers/recording-proxy.js';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { OutpostApi } from './helpers/outpost.js';
import { dropSchema, POSTGRES_URL, schemaName, skipWithoutPostgres, sql } from './helpers/postgres.js';

const skip = await skipWithoutPostgres('multi-node');

const ADMIN_KEY = 'multi-node-admin-key';
const TENANT = 'acme';
const NODES = ['node-1', 'node-2', 'node-3'] as const;
/** Events published to the batched destination, and to the per-event one. */
const BULK_EVENTS = 30_000;
const SINGLE_EVENTS = 1_500;
/** At most KICKS times KICK_EVENTS more per-event events, until node 2 holds a claim to be killed with. */
const KICKS = 10;
const KICK_EVENTS = 100;
/** Publish rounds: each sends one /publish/batch to every live node at once. */
const ROUNDS = 30;
/** Short, so a takeover of the killed node's claims happens within the test. */
const LEASE = '3s';
/** api.delivery_concurrency as the nodes have it (the default). */
const DELIVERY_CONCURRENCY = 8;
/** A bound on everything landing after the last publish (on a loaded machine; it is seconds on an idle one). */
const LAND_BOUND_MS = 240_000;

const schema = schemaName('multi_node');
const cleanups: Array<() => Promise<unknown> | unknown> = [];
after(async () => {
  for (const c of cleanups.reverse())
    await Promise.resolve()
      .then(c)
      .catch(() => {});
});

function nodeConfig(nodeId: string, dir: string): Record<string, unknown> {
  return {
    data_dir: path.join(dir, 'data'),
    outputs: [],
    shutdown_timeout: '2s',
    store: { type: 'postgres', url: POSTGRES_URL, schema, pool: 5, lease: LEASE, node_id: nodeId },
    api: {
      admin_key: ADMIN_KEY,
      encryption_key: 'multi-node-encryption-key',
      jwt_secret: 'multi-node-jwt-secret',
      retry: { initial_backoff: '100ms', max_backoff: '500ms', max_retries: 100 },
      destinations: { allowed_endpoints: ['127.0.0.1/32'] },
    },
  };
}

function s3Destination(s3: TestS3, bucket: string, topic: string, config: Record<string, unknown> = {}) {
  return {
    type: 'aws_s3',
    topics: [topic],
    config: { bucket, region: 'us-east-1', endpoint: s3.endpoint, ...config },
    credentials: { key: S3_KEY, secret: S3_SECRET },
  };
}

/** The lines of every object of a bucket, by key. */
async function objectLines(s3: TestS3, bucket: string): Promise<Map<string, Array<Record<string, unknown>>>> {
  const out = new Map<string, Array<Record<string, unknown>>>();
  for (const key of await s3.keys(bucket)) {
    const { body } = await s3.object(key, bucket);
    const text = (key.endsWith('.gz') ? gunzipSync(body) : body).toString('utf8');
    out.set(
      key,
      text
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    );
  }
  return out;
}

/** Pending deliveries of the cluster, as a node's /ready tells them (the store's counter, shared by all). */
async function pendingDeliveries(node: SluiceProcess): Promise<number | null> {
  const ready = (await node.ready()) as unknown as { events?: { pending_deliveries: number | null } };
  return ready.events?.pending_deliveries ?? null;
}

describe('three nodes on one PostgreSQL store', { skip }, () => {
  let s3: TestS3;
  const nodes: SluiceProcess[] = [];
  const apis: OutpostApi[] = [];
  let bulkDestination: string;
  let singleDestination: string;

  before(async () => {
    cleanups.push(() => dropSchema(schema));
    s3 = new TestS3(['bulk', 'single', 'slow']);
    await s3.start();
    cleanups.push(async () => {
      await s3.stop().catch(() => {});
      rmSync(s3.directory, { recursive: true, force: true });
    });
    // started together: the migrations run once, under their advisory lock
    await Promise.all(
      NODES.map(async (id, i) => {
        const dir = tempDir(`sluice-${id}-`);
        cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
        const node = new SluiceProcess({ config: nodeConfig(id, dir), cwd: dir });
        cleanups.push(() => node.kill9());
        nodes[i] = node;
        await node.start();
        apis[i] = new OutpostApi(node.url, ADMIN_KEY);
      }),
    );
    const node1 = apis[0]!;
    const created = await node1.putTenant(TENANT);
    assert.equal(created.status, 201, created.text);
    bulkDestination = (
      await node1.createDestination(
        TENANT,
        s3Destination(s3, 'bulk', 'bulk', { batching: { max_events: 1000, max_age: '1s' } }),
      )
    ).id;
    singleDestination = (await node1.createDestination(TENANT, s3Destination(s3, 'single', 'single'))).id;
    // created on node 1, served by the others (their caches hear of it, or read it)
    for (const api of apis.slice(1)) {
      const list = await api.expect<Array<{ id: string }>>(200, 'GET', `/tenants/${TENANT}/destinations`);
      assert.deepEqual(list.map((d) => d.id).sort(), [bulkDestination, singleDestination].sort());
    }
  });

  test('events published round-robin through three nodes, one killed -9 halfway: each lands exactly once', async () => {
    const acknowledged = { bulk: new Set<string>(), single: new Set<string>() };
    const perNode = [0, 0, 0];
    let killedWithClaims = { deliveries: 0, batches: 0 };
    /** Per-event events published besides SINGLE_EVENTS, to give node 2 work to hold when it is killed. */
    let kicked = 0;
    const bulkPerRequest = BULK_EVENTS / ROUNDS / NODES.length;
    const singlePerRequest = SINGLE_EVENTS / ROUNDS / NODES.length;
    let serial = 0;
    const started = Date.now();
    for (let round = 0; round < ROUNDS; round++) {
      if (round === ROUNDS / 2) {
        // the worst moment: while node 2 holds claims (a delivery or batch it may be uploading). The nodes
        // share each destination's limit, and the rounds so far may all be delivered: a few more per-event
        // events through node 1 give every node due work to claim, until node 2 is seen holding some.
        const node2Holds = async () => {
          const { rows } = await sql(
            schema,
            `SELECT (SELECT count(*) FROM deliveries WHERE claimed_by = 'node-2' AND status = 'pending')::int AS deliveries,
                    (SELECT count(*) FROM event_batches WHERE claimed_by = 'node-2')::int AS batches`,
          );
          killedWithClaims = rows[0] as typeof killedWithClaims;
          return killedWithClaims.deliveries + killedWithClaims.batches > 0;
        };
        let held = await node2Holds();
        for (let kick = 0; kick < KICKS && !held; kick++) {
          const events = Array.from({ length: KICK_EVENTS }, () => ({ id: `single-${serial++}` }));
          const res = await apis[0]!.call(
            'POST',
            '/publish/batch',
            events.map((e) => ({ id: e.id, tenant_id: TENANT, topic: 'single', data: { event: e.id, kick } })),
          );
          assert.equal(res.status, 202, `publish to node-1: ${res.status} ${res.text.slice(0, 500)}`);
          for (const e of events) acknowledged.single.add(e.id);
          perNode[0]! += events.length;
          kicked += events.length;
          const until = Date.now() + 5_000;
          for (let i = 0; i < 200 && Date.now() < until && !held; i++) {
            held = await node2Holds();
            if (!held) await new Promise((r) => setTimeout(r, 20));
          }
        }
        // what it held when last looked at: a claim may end between that look and the kill, as it may at any time
        assert.ok(held, `node 2 held no claim after ${kicked} more events`);
        await nodes[1]!.kill9();
      }
      const live = [0, 1, 2].filter((i) => nodes[i]!.exitCode === undefined);
      // the events of this round, spread over the live nodes so that the counts stay what they are
      const share = NODES.length / live.length;
      await Promise.all(
        live.map(async (i, k) => {
          const bulk = Math.round(bulkPerRequest * share * (k + 1)) - Math.round(bulkPerRequest * share * k);
          const single = Math.round(singlePerRequest * share * (k + 1)) - Math.round(singlePerRequest * share * k);
          const events = [
            ...Array.from({ length: bulk }, () => ({ kind: 'bulk' as const, id: `bulk-${serial++}` })),
            ...Array.from({ length: single }, () => ({ kind: 'single' as const, id: `single-${serial++}` })),
          ];
          for (let from = 0; from < events.length; from += 1000) {
            const chunk = events.slice(from, from + 1000);
            const res = await apis[i]!.call<Array<{ id: string; duplicate: boolean }>>(
              'POST',
              '/publish/batch',
              chunk.map((e) => ({
                id: e.id,
                tenant_id: TENANT,
                topic: e.kind,
                data: { event: e.id, node: NODES[i], round },
              })),
            );
            assert.equal(res.status, 202, `publish to ${NODES[i]}: ${res.status} ${res.text.slice(0, 500)}`);
            assert.equal(res.body.length, chunk.length);
            for (const [j, r] of res.body.entries()) {
              assert.equal(r.id, chunk[j]!.id);
              assert.equal(r.duplicate, false);
              acknowledged[chunk[j]!.kind].add(r.id);
            }
            perNode[i]! += chunk.length;
          }
        }),
      );
    }
    assert.equal(acknowledged.bulk.size, BULK_EVENTS);
    assert.equal(acknowledged.single.size, SINGLE_EVENTS + kicked);
    assert.ok(
      perNode.every((n) => n > 0),
      `every node took publishes: ${perNode}`,
    );

    const published = Date.now();
    console.log(
      `# multi-node: ${BULK_EVENTS + SINGLE_EVENTS + kicked} events published in ${((published - started) / 1000).toFixed(1)} s`,
    );
    const survivors = [nodes[0]!, nodes[2]!];
    for (const node of survivors)
      await node.until(
        'no delivery pending in the cluster',
        async () => (await pendingDeliveries(node)) === 0,
        LAND_BOUND_MS,
      );

    console.log(
      `# multi-node: every delivery done ${((Date.now() - published) / 1000).toFixed(1)} s after the last publish`,
    );
    // per-event objects: each event's key exactly once (default key: <time>_<event id>.json)
    const singleKeys = await s3.keys('single');
    const keysOf = new Map<string, string[]>();
    for (const key of singleKeys) {
      const m = /_(single-\d+)\.json$/.exec(key);
      assert.ok(m, `a per-event key names its event: ${key}`);
      keysOf.set(m[1]!, [...(keysOf.get(m[1]!) ?? []), key]);
    }
    const missingSingle = [...acknowledged.single].filter((id) => !keysOf.has(id));
    const twiceSingle = [...keysOf].filter(([, keys]) => keys.length > 1);
    assert.deepEqual(missingSingle, [], 'every acknowledged per-event event has its object');
    assert.deepEqual(twiceSingle, [], 'no per-event event has two objects');
    assert.equal(singleKeys.length, SINGLE_EVENTS + kicked);

    // batched objects: each event's id in exactly one object's lines, once
    const bulkObjects = await objectLines(s3, 'bulk');
    const seen = new Map<string, number>();
    for (const lines of bulkObjects.values())
      for (const line of lines) seen.set(String(line.event), (seen.get(String(line.event)) ?? 0) + 1);
    const missingBulk = [...acknowledged.bulk].filter((id) => !seen.has(id));
    const twiceBulk = [...seen].filter(([, n]) => n > 1).slice(0, 20);
    assert.deepEqual(missingBulk.slice(0, 20), [], `${missingBulk.length} acknowledged batched events in no object`);
    assert.deepEqual(twiceBulk, [], 'no batched event in two objects, nor twice in one');
    assert.equal(seen.size, BULK_EVENTS);

    // GET /events on the survivors: all of them, whichever node took them
    for (const api of [apis[0]!, apis[2]!]) {
      const ids = new Set<string>();
      let next: string | null = null;
      for (let page = 0; page < 100; page++) {
        const q = new URLSearchParams({ tenant_id: TENANT, limit: '1000', ...(next ? { next } : {}) });
        const body: { models: Array<{ id: string }>; pagination: { next: string | null } } = await api.expect(
          200,
          'GET',
          `/events?${q}`,
        );
        for (const e of body.models) ids.add(e.id);
        next = body.pagination.next;
        if (!next) break;
      }
      assert.equal(ids.size, BULK_EVENTS + SINGLE_EVENTS + kicked, `GET /events on ${api.baseUrl} shows every event`);
    }

    // attempts say which node made them; the survivors delivered, and a success of each per-event event
    const attempts = [
      ...(await apis[0]!.attempts({ destination_id: bulkDestination })),
      ...(await apis[2]!.attempts({ destination_id: singleDestination })),
    ] as Array<{ node_id?: string; status: string; event_id?: string; destination_id: string }>;
    const unnamed = attempts.filter((a) => !NODES.includes(a.node_id as (typeof NODES)[number]));
    assert.deepEqual(unnamed.slice(0, 5), [], 'every attempt names a node of the cluster');
    const successes = attempts.filter((a) => a.status === 'success');
    const byNode = Object.fromEntries(NODES.map((n) => [n, successes.filter((a) => a.node_id === n).length]));
    assert.ok(byNode['node-1']! > 0 && byNode['node-3']! > 0, `the survivors delivered: ${JSON.stringify(byNode)}`);
    const singleSuccesses = new Set(
      successes.filter((a) => a.destination_id === singleDestination).map((a) => a.event_id),
    );
    assert.equal(singleSuccesses.size, SINGLE_EVENTS + kicked, 'a successful attempt of every per-event event');
    console.log(
      `# multi-node: node 2 killed holding ${killedWithClaims.deliveries} deliveries and ${killedWithClaims.batches} batches; ` +
        `successful attempts by node ${JSON.stringify(byNode)}; ${bulkObjects.size} batched objects`,
    );
  });

  test('the same event id published on two nodes at the same moment: one event, one object, the other duplicate', async () => {
    const [a, b] = [apis[0]!, apis[2]!];
    const ids = Array.from({ length: 20 }, (_, i) => `race-${i}`);
    for (const id of ids) {
      const body = { id, tenant_id: TENANT, topic: 'single', data: { event: id } };
      const answers = await Promise.all([a.call('POST', '/publish', body), b.call('POST', '/publish', body)]);
      for (const res of answers) assert.equal(res.status, 202, res.text);
      const duplicates = answers.map((r) => r.body.duplicate as boolean).sort();
      assert.deepEqual(duplicates, [false, true], `${id}: one was first, the other a duplicate`);
      assert.deepEqual(answers[0]!.body.destination_ids, [singleDestination]);
      assert.deepEqual(answers[1]!.body.destination_ids, [singleDestination]);
    }
    const keysOf = async (id: string) => (await s3.keys('single')).filter((k) => k.endsWith(`_${id}.json`));
    await nodes[0]!.until('every raced event has its object', async () => {
      const keys = await s3.keys('single');
      return ids.every((id) => keys.some((k) => k.endsWith(`_${id}.json`)));
    });
    await nodes[0]!.until('no delivery pending', async () => (await pendingDeliveries(nodes[0]!)) === 0);
    for (const id of ids) {
      assert.equal((await keysOf(id)).length, 1, `${id}: one object`);
      for (const api of [a, b]) {
        const event = await api.event(id);
        assert.equal(event.id, id);
      }
    }
    const { rows } = await sql(schema, 'SELECT count(*)::int AS n FROM events WHERE id = ANY($1)', [ids]);
    assert.equal(rows[0].n, ids.length, 'one stored event per id');
  });

  test("a destination's uploads in flight stay within api.delivery_concurrency over all the nodes together", async () => {
    // each PUT held 200 ms on its way to s3rver: every node has due deliveries of the destination at once
    const proxy = await new RecordingProxy(s3.port, 200).start();
    cleanups.push(() => proxy.stop());
    const [a, b] = [apis[0]!, apis[2]!];
    const slow = (
      await a.createDestination(TENANT, {
        ...s3Destination(s3, 'slow', 'slow'),
        config: { bucket: 'slow', region: 'us-east-1', endpoint: proxy.endpoint },
      })
    ).id;
    await nodes[2]!.until(
      `node 3 serves ${slow}`,
      async () => (await b.call('GET', `/tenants/${TENANT}/destinations/${slow}`)).status === 200,
    );
    const EVENTS = 60;
    await Promise.all(
      [a, b].map(async (api, n) => {
        const res = await api.call(
          'POST',
          '/publish/batch',
          Array.from({ length: EVENTS / 2 }, (_, i) => ({
            id: `slow-${n}-${i}`,
            tenant_id: TENANT,
            topic: 'slow',
            data: { event: i, node: n },
          })),
        );
        assert.equal(res.status, 202, res.text.slice(0, 500));
      }),
    );
    await nodes[0]!.until(
      'every slow event has its object',
      async () => (await s3.keys('slow')).length >= EVENTS,
      LAND_BOUND_MS,
    );
    assert.equal((await s3.keys('slow')).length, EVENTS, 'one object per event');
    assert.ok(proxy.maxPutsInFlight > 1, `uploads ran side by side (${proxy.maxPutsInFlight} at most)`);
    assert.ok(
      proxy.maxPutsInFlight <= DELIVERY_CONCURRENCY,
      `at most ${DELIVERY_CONCURRENCY} uploads at once over two nodes, not ${proxy.maxPutsInFlight}`,
    );

    // node 3 stopped (SIGTERM) while its uploads are held: it ends cleanly, nothing it did after the stop
    // reached a closed store, and node 1 delivers what it gave up once the lease is over
    const STOPPED = 16;
    const res = await b.call(
      'POST',
      '/publish/batch',
      Array.from({ length: STOPPED }, (_, i) => ({
        id: `stopped-${i}`,
        tenant_id: TENANT,
        topic: 'slow',
        data: { i },
      })),
    );
    assert.equal(res.status, 202, res.text.slice(0, 500));
    await nodes[2]!.until('node 3 is uploading', () => proxy.putsInFlight > 0, 60_000);
    const logged = nodes[2]!.logLines().length;
    assert.equal(await nodes[2]!.stop(), 0, 'a clean exit');
    const afterStop = nodes[2]!.logLines().slice(logged);
    assert.deepEqual(
      afterStop.filter((l) => (l.level ?? 0) >= 50 || /pool/i.test(JSON.stringify(l))).map((l) => JSON.stringify(l)),
      [],
      'no error while stopping',
    );
    await nodes[0]!.until(
      'every event published before the stop has its object',
      async () => (await s3.keys('slow')).length >= EVENTS + STOPPED,
      LAND_BOUND_MS,
    );
    const keys = await s3.keys('slow');
    assert.equal(keys.length, EVENTS + STOPPED, 'one object per event');
    for (let i = 0; i < STOPPED; i++)
      assert.equal(keys.filter((k) => k.endsWith(`_stopped-${i}.json`)).length, 1, `stopped-${i} once`);
  });
});
