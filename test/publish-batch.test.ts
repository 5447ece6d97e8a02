/**
 * `POST /api/v1/publish/batch`, Sluice's extension of Outpost's publish: many events in one request, each
 * landing once with its data exactly as sent, all or none checked before anything is stored, and a re-sent
 * batch answered as duplicates. Against the real `sluice serve` process and s3rver, on 127.0.0.1 only.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import path from 'node:path';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { OutpostApi } from './helpers/outpost.js';

const ADMIN = 'publish-batch-admin';
const cleanups: Array<() => Promise<unknown> | unknown> = [];
after(async () => {
  for (const c of cleanups.reverse())
    await Promise.resolve()
      .then(c)
      .catch(() => {});
});

async function start(): Promise<{ sluice: SluiceProcess; api: OutpostApi; s3: TestS3; destination: { id: string } }> {
  const dir = tempDir('sluice-publish-batch-');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const s3 = new TestS3(['events']);
  await s3.start();
  cleanups.push(async () => {
    await s3.stop().catch(() => {});
    rmSync(s3.directory, { recursive: true, force: true });
  });
  const sluice = await new SluiceProcess({
    config: {
      data_dir: path.join(dir, 'data'),
      outputs: [],
      shutdown_timeout: '2s',
      api: {
        admin_key: ADMIN,
        jwt_secret: 'publish-batch-jwt',
        encryption_key: 'publish-batch-key',
        destinations: { allowed_endpoints: ['127.0.0.1/32'] },
      },
    },
  }).start();
  cleanups.push(() => sluice.kill9());
  const api = new OutpostApi(sluice.url, ADMIN);
  assert.equal((await api.putTenant('acme')).status, 201);
  const destination = await api.createDestination('acme', {
    type: 'aws_s3',
    topics: ['orders'],
    config: {
      bucket: 'events',
      region: 'us-east-1',
      endpoint: s3.endpoint,
      batching: { max_events: 1000, max_age: '200ms' },
    },
    credentials: { key: S3_KEY, secret: S3_SECRET },
  });
  return { sluice, api, s3, destination };
}

/** Every line of every object in the bucket, as text. */
async function landedLines(s3: TestS3): Promise<string[]> {
  const lines: string[] = [];
  for (const key of await s3.keys('events')) {
    const { body, contentEncoding } = await s3.object(key, 'events');
    const text = (contentEncoding === 'gzip' || key.endsWith('.gz') ? gunzipSync(body) : body).toString('utf8');
    lines.push(...text.split('\n').filter((l) => l !== ''));
  }
  return lines;
}

test('a batch of events: 202 with one result per event in order, each lands once with its data exactly as sent; a re-sent batch is all duplicates', async () => {
  const { sluice, api, s3, destination } = await start();
  // the raw body keeps number text and key order exactly: the data must land as this text, not as re-serialized JSON
  const datas = Array.from({ length: 50 }, (_, i) => `{"n":${i},"big":12345678901234567890123,"z":1,"a":[1.50,2e10]}`);
  const body = `[${datas.map((d, i) => `{"id":"evt-${i}","tenant_id":"acme","topic":"orders","data":${d}}`).join(',')}]`;
  const post = () =>
    fetch(`${sluice.url}/api/v1/publish/batch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body,
      signal: AbortSignal.timeout(30_000),
    });
  const res = await post();
  assert.equal(res.status, 202);
  const results = (await res.json()) as Array<{ id: string; duplicate: boolean; destination_ids: string[] }>;
  assert.deepEqual(
    results.map((r) => r.id),
    datas.map((_, i) => `evt-${i}`),
  );
  assert.ok(
    results.every((r) => !r.duplicate && r.destination_ids.length === 1 && r.destination_ids[0] === destination.id),
  );

  let lines: string[] = [];
  await sluice.until('all 50 events landed', async () => (lines = await landedLines(s3)).length >= 50, 30_000);
  // a batched destination writes each event's data, one per line
  for (const [i, d] of datas.entries())
    assert.equal(lines.filter((l) => l === d).length, 1, `evt-${i} landed once, its data exactly as sent`);
  assert.equal(lines.length, 50);

  const again = await post();
  assert.equal(again.status, 202);
  assert.ok(
    ((await again.json()) as Array<{ duplicate: boolean }>).every((r) => r.duplicate),
    'a re-sent batch is all duplicates',
  );
  // a marker published after the re-send lands only once the re-send would have: then count again
  await api.publish({ id: 'marker', tenant_id: 'acme', topic: 'orders', data: { marker: true } });
  await sluice.until(
    'the marker landed',
    async () => (lines = await landedLines(s3)).includes('{"marker":true}'),
    30_000,
  );
  assert.equal(lines.length, 51, 'the re-sent batch stored nothing');
});

test('a batch is checked whole before anything is stored: an unknown tenant is 404, a bad event 422 naming it, too many events 422, and nothing of them lands', async () => {
  const { sluice, api, s3 } = await start();
  const event = (i: number, extra: Record<string, unknown> = {}) => ({
    id: `e-${i}`,
    tenant_id: 'acme',
    topic: 'orders',
    data: { i },
    ...extra,
  });

  const unknownTenant = await api.call('POST', '/publish/batch', [event(1), event(2, { tenant_id: 'nobody' })]);
  assert.equal(unknownTenant.status, 404, unknownTenant.text);
  const invalid = await api.call('POST', '/publish/batch', [event(3), event(4, { data: 'not an object' })]);
  assert.equal(invalid.status, 422, invalid.text);
  assert.match(invalid.text, /\b1\b.*data|data.*\b1\b/, `the answer names the element and the field: ${invalid.text}`);
  const tooMany = await api.call(
    'POST',
    '/publish/batch',
    Array.from({ length: 1001 }, (_, i) => event(100 + i)),
  );
  assert.equal(tooMany.status, 422, tooMany.text);
  const empty = await api.call('POST', '/publish/batch', []);
  assert.equal(empty.status, 422, empty.text);

  await api.publish({ id: 'marker', tenant_id: 'acme', topic: 'orders', data: { marker: true } });
  let lines: string[] = [];
  await sluice.until(
    'the marker landed',
    async () => (lines = await landedLines(s3)).includes('{"marker":true}'),
    30_000,
  );
  assert.deepEqual(lines, ['{"marker":true}'], 'nothing of the refused batches was stored');
  const events = await api.expect(200, 'GET', '/events?tenant_id=acme&limit=100');
  assert.deepEqual(
    (events.models as Array<{ id: string }>).map((e) => e.id),
    ['marker'],
  );
});
