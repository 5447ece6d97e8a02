/**
 * What an operator reads: GET /metrics (Prometheus) and GET /openapi.json. The real process, with a file
 * output (no S3 needed), on 127.0.0.1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { decisions, postDecisions } from './helpers/opa.js';

/** Parses the Prometheus text format into `name{labels}` -> value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

async function scrape(url: string): Promise<{ contentType: string | null; text: string; values: Map<string, number> }> {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  const text = await res.text();
  return { contentType: res.headers.get('content-type'), text, values: samples(text) };
}

test('/metrics counts ingest by source, partition and status, rejections by reason, re-sends, buffer and outputs', async (t) => {
  const dir = tempDir('sluice-metrics-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sluice = await new SluiceProcess({
    config: {
      data_dir: path.join(dir, 'data'),
      ingest: { tokens: ['tok'] },
      outputs: [{ name: 'local', type: 'file', path: path.join(dir, 'objects'), batch: { max_age: '200ms' } }],
    },
  }).start();
  t.after(() => sluice.kill9());
  const auth = { authorization: 'Bearer tok' };
  const sent = decisions(5);
  assert.equal((await postDecisions(sluice.url, sent, { token: 'tok' })).status, 200);
  assert.equal((await postDecisions(sluice.url, sent.slice(0, 2), { partition: 'eu', token: 'tok' })).status, 200);
  assert.equal((await fetch(`${sluice.url}/logs`, { method: 'POST', headers: auth, body: 'not json' })).status, 400);
  assert.equal((await fetch(`${sluice.url}/logs`, { method: 'POST', body: '[]' })).status, 401);
  assert.equal(
    (await fetch(`${sluice.url}/logs`, { method: 'POST', headers: { ...auth, 'content-encoding': 'br' }, body: '[]' }))
      .status,
    415,
  );
  await sluice.until(
    'the output delivered the 5 distinct decisions',
    async () => (await scrape(sluice.url)).values.get('sluice_output_delivered_events_total{output="local"}') === 5,
  );

  const { contentType, text, values } = await scrape(sluice.url);
  assert.match(contentType ?? '', /^text\/plain; version=0\.0\.4/);
  assert.equal(values.get('sluice_ingest_requests_total{source="opa",partition="default",code="200"}'), 1);
  assert.equal(values.get('sluice_ingest_requests_total{source="opa",partition="eu",code="200"}'), 1);
  assert.equal(values.get('sluice_ingest_events_total{source="opa",partition="default"}'), 5);
  assert.equal(
    values.get('sluice_ingest_events_total{source="opa",partition="eu"}') ?? 0,
    0,
    'the two decisions again in eu were re-sends',
  );
  assert.equal(values.get('sluice_ingest_duplicates_total{kind="decision"}'), 2);
  assert.equal(values.get('sluice_ingest_rejected_requests_total{source="opa",reason="invalid_json",code="400"}'), 1);
  assert.equal(values.get('sluice_ingest_rejected_requests_total{source="opa",reason="unauthorized",code="401"}'), 1);
  assert.ok(
    [...values.keys()].some((k) => k.startsWith('sluice_ingest_rejected_requests_total{') && k.includes('code="415"')),
    text,
  );
  assert.ok((values.get('sluice_ingest_bytes_total{source="opa",partition="default"}') ?? 0) > 0);
  assert.equal(values.get('sluice_output_delivered_objects_total{output="local"}'), 1);
  assert.equal(values.get('sluice_output_up{output="local",type="file"}'), 1);
  assert.equal(values.get('sluice_output_lag_events{output="local"}'), 0);
  assert.equal(values.get('sluice_output_upload_duration_seconds_count{output="local"}'), 1);
  assert.equal(values.get('sluice_buffer_events'), 0, 'everything delivered: nothing left in the buffer');
  for (const name of [
    'sluice_buffer_bytes',
    'sluice_buffer_max_bytes',
    'sluice_buffer_oldest_age_seconds',
    'sluice_events_pending_deliveries',
    'process_cpu_seconds_total',
    'process_resident_memory_bytes',
  ]) {
    assert.ok(values.has(name), `${name} is exported`);
  }
  // counters end in _total, durations in seconds, sizes in bytes
  for (const line of text.split('\n').filter((l) => l.startsWith('# TYPE sluice_'))) {
    const [, , name, type] = line.split(' ');
    if (type === 'counter') assert.match(name!, /_total$/, line);
  }
});

test('/metrics keeps partition labels bounded: past 100 distinct partitions they count as _other', async (t) => {
  const dir = tempDir('sluice-metrics-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sluice = await new SluiceProcess({
    config: {
      data_dir: path.join(dir, 'data'),
      outputs: [{ name: 'local', type: 'file', path: path.join(dir, 'objects') }],
    },
  }).start();
  t.after(() => sluice.kill9());
  for (let i = 0; i < 105; i++)
    assert.equal((await postDecisions(sluice.url, decisions(1), { partition: `p${i}` })).status, 200);
  const { values } = await scrape(sluice.url);
  const partitions = new Set(
    [...values.keys()]
      .filter((k) => k.startsWith('sluice_ingest_requests_total{'))
      .map((k) => /partition="([^"]*)"/.exec(k)![1]),
  );
  assert.equal(partitions.size, 101, 'the first 100 partitions and _other');
  assert.equal(values.get('sluice_ingest_requests_total{source="opa",partition="_other",code="200"}'), 5);
});

test("/openapi.json describes every route from the routes' own schemas", async (t) => {
  const dir = tempDir('sluice-openapi-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sluice = await new SluiceProcess({
    config: { data_dir: path.join(dir, 'data'), api: { admin_key: 'k' } },
  }).start();
  t.after(() => sluice.kill9());
  const res = await fetch(`${sluice.url}/openapi.json`);
  assert.equal(res.status, 200);
  const doc = (await res.json()) as {
    openapi: string;
    paths: Record<
      string,
      Record<
        string,
        {
          summary?: string;
          requestBody?: {
            content: Record<string, { schema: { required?: string[]; properties?: Record<string, unknown> } }>;
          };
        }
      >
    >;
  };
  assert.match(doc.openapi, /^3\./);
  const routes = Object.entries(doc.paths).flatMap(([p, methods]) =>
    Object.keys(methods).map((m) => `${m.toUpperCase()} ${p}`),
  );
  for (const route of [
    'POST /logs',
    'POST /logs/{partition}',
    'GET /health',
    'GET /ready',
    'GET /metrics',
    'PUT /api/v1/tenants/{tenant_id}',
    'GET /api/v1/tenants',
    'GET /api/v1/tenants/{tenant_id}/token',
    'POST /api/v1/tenants/{tenant_id}/destinations',
    'PATCH /api/v1/tenants/{tenant_id}/destinations/{destination_id}',
    'POST /api/v1/{tenant_id}/destinations',
    'PUT /api/v1/tenants/{tenant_id}/destinations/{destination_id}/disable',
    'GET /api/v1/destination-types',
    'GET /api/v1/topics',
    'POST /api/v1/publish',
    'GET /api/v1/events',
    'GET /api/v1/events/{event_id}',
    'GET /api/v1/attempts',
    'GET /api/v1/attempts/{attempt_id}',
    'POST /api/v1/retry',
  ])
    assert.ok(routes.includes(route), `${route} is documented: ${routes.join(', ')}`);
  for (const [p, methods] of Object.entries(doc.paths)) {
    for (const [m, op] of Object.entries(methods)) assert.ok(op.summary, `${m} ${p} has a summary`);
  }
  const publish = doc.paths['/api/v1/publish']!.post!.requestBody!.content['application/json']!.schema;
  assert.deepEqual(
    [...(publish.required ?? [])].sort(),
    ['data', 'tenant_id'],
    'the publish body schema comes from the route',
  );
  assert.ok(publish.properties && 'eligible_for_retry' in publish.properties);
});

test('/metrics counts published events as source publish, and their rejections', async (t) => {
  const dir = tempDir('sluice-metrics-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sluice = await new SluiceProcess({
    config: { data_dir: path.join(dir, 'data'), api: { admin_key: 'k' } },
  }).start();
  t.after(() => sluice.kill9());
  const call = (method: string, route: string, body?: unknown) =>
    fetch(`${sluice.url}/api/v1${route}`, {
      method,
      headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  assert.equal((await call('PUT', '/tenants/acme')).status, 201);
  assert.equal(
    (await call('POST', '/publish', { id: 'e1', tenant_id: 'acme', topic: 'orders', data: { n: 1 } })).status,
    202,
  );
  assert.equal(
    (await call('POST', '/publish', { id: 'e1', tenant_id: 'acme', topic: 'orders', data: { n: 1 } })).status,
    202,
  );
  assert.equal((await call('POST', '/publish', { topic: 'orders' })).status, 422);
  assert.equal((await call('POST', '/publish', { tenant_id: 'nobody', data: {} })).status, 404);
  const { values } = await scrape(sluice.url);
  assert.equal(values.get('sluice_ingest_events_total{source="publish",partition="none"}'), 1);
  assert.equal(values.get('sluice_ingest_duplicates_total{kind="request"}'), 1);
  assert.equal(values.get('sluice_ingest_requests_total{source="publish",partition="none",code="202"}'), 2);
  assert.equal(values.get('sluice_ingest_rejected_requests_total{source="publish",reason="validation",code="422"}'), 1);
  assert.equal(values.get('sluice_ingest_rejected_requests_total{source="publish",reason="not_found",code="404"}'), 1);
});
