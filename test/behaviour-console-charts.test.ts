/**
 * What the console's charts show is what the service has: the real server, a known number of decisions sent
 * and events published, then the endpoint the charts read (GET /ui/api/overview: `history`) read as
 * ui/console.js reads it. The received rate adds up to the decisions and events accepted (re-sends and
 * duplicate event ids not counted again), the delivered rate to the decisions the output wrote and the events
 * that landed in destinations (one object per event, and batches), and the pending deliveries to those a
 * failing destination still holds. What landed is counted in the bucket and the output's directory too.
 * (test/console.test.ts drives the page itself in a browser: axes, legends, buttons.)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { decisions, postDecisions } from './helpers/opa.js';
import { OutpostApi } from './helpers/outpost.js';

const ADMIN_KEY = 'charts-admin-key';
const DECISIONS = 120;
const EVENTS = 15;

interface Sample {
  at: number;
  ingested: number;
  delivered: number;
  bufferBytes: number;
  pendingDeliveries: number;
}

/** The rates as ui/console.js's series() computes them: differences of running totals over the seconds between samples. */
function rates(history: Sample[]): { received: number[]; delivered: number[]; seconds: number[] } {
  const out = { received: [] as number[], delivered: [] as number[], seconds: [] as number[] };
  for (let i = 1; i < history.length; i++) {
    const a = history[i - 1]!;
    const b = history[i]!;
    const seconds = Math.max((b.at - a.at) / 1000, 0.001);
    out.seconds.push(seconds);
    out.received.push((b.ingested - a.ingested) / seconds);
    out.delivered.push((b.delivered - a.delivered) / seconds);
  }
  return out;
}

/** What a rate series adds up to over the chart (rate x seconds per sample). */
function total(rate: number[], seconds: number[]): number {
  return Math.round(rate.reduce((sum, r, i) => sum + r * seconds[i]!, 0));
}

describe("what the console's charts show", () => {
  let dir: string;
  let s3: TestS3;
  let sluice: SluiceProcess;
  let api: OutpostApi;

  const overview = async (): Promise<{ history: Sample[]; ready: any }> => {
    const res = await fetch(`${sluice.url}/ui/api/overview`, {
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
      signal: AbortSignal.timeout(30_000),
    });
    assert.equal(res.status, 200);
    return (await res.json()) as { history: Sample[]; ready: any };
  };
  const latest = async (): Promise<Sample> => (await overview()).history.at(-1)!;

  /** Decisions in the file output's objects. */
  const decisionsWritten = (): number => {
    let n = 0;
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (!e.name.startsWith('.')) {
          const body = readFileSync(p);
          const text = (p.endsWith('.gz') ? gunzipSync(body) : body).toString('utf8');
          n += text.split('\n').filter((l) => l.trim() !== '').length;
        }
      }
    };
    try {
      walk(path.join(dir, 'archive'));
    } catch {
      return 0;
    }
    return n;
  };

  before(async () => {
    dir = tempDir('sluice-charts-');
    s3 = new TestS3(['events', 'batches', 'retried']);
    await s3.start();
    sluice = await new SluiceProcess({
      config: {
        data_dir: path.join(dir, 'data'),
        api: {
          admin_key: ADMIN_KEY,
          // a failed delivery waits an hour for its next attempt: it stays pending for the whole test
          retry: { schedule: ['1h', '1h'] },
          destinations: { allowed_endpoints: ['127.0.0.1/32'] },
        },
        outputs: [{ name: 'archive', type: 'file', path: path.join(dir, 'archive'), batch: { max_age: '200ms' } }],
      },
    }).start();
    api = new OutpostApi(sluice.url, ADMIN_KEY);
    await api.putTenant('acme');
    const connection = { region: 'us-east-1', endpoint: s3.endpoint };
    const credentials = { key: S3_KEY, secret: S3_SECRET };
    await api.createDestination('acme', {
      id: 'des_each',
      type: 'aws_s3',
      topics: ['orders'],
      config: { bucket: 'events', ...connection },
      credentials,
    });
    await api.createDestination('acme', {
      id: 'des_batched',
      type: 'aws_s3',
      topics: ['orders'],
      config: { bucket: 'batches', ...connection, batching: { max_age: '200ms', compression: 'none' } },
      credentials,
    });
    await api.createDestination('acme', {
      id: 'des_broken',
      type: 'aws_s3',
      topics: ['orders'],
      config: { bucket: 'no-such-bucket', ...connection },
      credentials,
    });
  });

  after(async () => {
    await sluice?.kill9();
    await s3?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('before anything is sent, every series is zero', async () => {
    const { history } = await overview();
    assert.ok(history.length >= 2, 'a recorded sample and the one taken now');
    for (const s of history) {
      assert.equal(s.ingested, 0, JSON.stringify(s));
      assert.equal(s.delivered, 0, JSON.stringify(s));
      assert.equal(s.pendingDeliveries, 0, JSON.stringify(s));
    }
  });

  test('received, delivered and pending deliveries add up to what was sent and what landed', async () => {
    const sent = decisions(DECISIONS);
    // two requests, one of them sent twice: OPA's re-send is acknowledged and not counted again
    const first = sent.slice(0, 50);
    assert.equal((await postDecisions(sluice.url, first)).status, 200);
    assert.equal((await postDecisions(sluice.url, first)).status, 200);
    assert.equal((await postDecisions(sluice.url, sent.slice(50))).status, 200);
    const ids: string[] = [];
    for (let i = 0; i < EVENTS; i++) {
      const published = await api.publish({
        id: `evt-${i}`,
        tenant_id: 'acme',
        topic: 'orders',
        data: { order_id: `o-${i}` },
      });
      ids.push(published.id);
    }
    // an event id published again is a duplicate: accepted, not received again
    assert.equal((await api.publish({ id: 'evt-0', tenant_id: 'acme', topic: 'orders', data: {} })).duplicate, true);

    await sluice.until('the decisions and events to land', async () => {
      const s = await latest();
      const batched = (await s3.keys('batches')).length;
      return (
        s.delivered >= DECISIONS + 2 * EVENTS &&
        s.pendingDeliveries === EVENTS &&
        (await s3.keys('events')).length === EVENTS &&
        batched > 0
      );
    });

    const { history, ready } = await overview();
    const now = history.at(-1)!;
    assert.equal(
      now.ingested,
      DECISIONS + EVENTS,
      `received: the decisions and events accepted (${JSON.stringify(now)})`,
    );
    assert.equal(
      now.delivered,
      DECISIONS + 2 * EVENTS,
      `delivered: the output's decisions and the events of both working destinations (${JSON.stringify(now)})`,
    );
    assert.equal(now.pendingDeliveries, EVENTS, 'pending: the failing destination holds every event');
    assert.equal(ready.events.pending_deliveries, EVENTS, 'the same figure as the page text beside the chart');

    // what the rates add up to over the chart is those totals, counted from zero
    const r = rates(history);
    assert.equal(total(r.received, r.seconds), DECISIONS + EVENTS);
    assert.equal(total(r.delivered, r.seconds), DECISIONS + 2 * EVENTS);
    for (let i = 1; i < history.length; i++) {
      assert.ok(history[i]!.at >= history[i - 1]!.at, 'samples in time order');
      assert.ok(history[i]!.ingested >= history[i - 1]!.ingested, 'running totals never go down');
      assert.ok(history[i]!.delivered >= history[i - 1]!.delivered, 'running totals never go down');
    }

    // and that is what landed: the decisions in the output, each event once per working destination
    assert.equal(decisionsWritten(), DECISIONS);
    assert.deepEqual(
      (await s3.keys('events')).map((k) => /_(evt-\d+)\.json$/.exec(k)?.[1]).sort(),
      [...ids].sort(),
      'one object per event, named by the default key',
    );
    let inBatches = 0;
    for (const key of await s3.keys('batches')) {
      const { body } = await s3.object(key, 'batches');
      inBatches += body
        .toString('utf8')
        .split('\n')
        .filter((l) => l !== '').length;
    }
    assert.equal(inBatches, EVENTS, 'every event in one batch');
    const broken = await api.attempts({ destination_id: 'des_broken' });
    assert.ok(broken.length >= EVENTS, 'the failing destination tried each event');
    assert.ok(
      broken.every((a) => a.status === 'failed'),
      'and failed',
    );
  });

  test('pending deliveries fall to zero once the failing destination is retried into a working bucket', async () => {
    // the keys are bound to the bucket: they come again with the new one
    const patched = await api.call('PATCH', '/tenants/acme/destinations/des_broken', {
      config: { bucket: 'retried', region: 'us-east-1', endpoint: s3.endpoint },
      credentials: { key: S3_KEY, secret: S3_SECRET },
    });
    assert.equal(patched.status, 200, patched.text);
    const retried = new Set((await api.attempts({ destination_id: 'des_broken' })).map((a) => a.event_id as string));
    assert.equal(retried.size, EVENTS);
    for (const id of retried) {
      const res = await api.call('POST', '/retry', { event_id: id, destination_id: 'des_broken' });
      assert.equal(res.status, 202, `retry: ${res.status} ${res.text}`);
    }
    await sluice.until('the retried deliveries to land', async () => (await latest()).pendingDeliveries === 0);
    assert.equal((await s3.keys('retried')).length, EVENTS, 'each retried event landed, under the key fixed before');
    const now = await latest();
    assert.equal(now.ingested, DECISIONS + EVENTS, 'a retry receives nothing');
    assert.equal(now.delivered, DECISIONS + 3 * EVENTS, 'each retried event landed once more');
  });
});
