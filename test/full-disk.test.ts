/**
 * The control plane on a full disk: event deliveries whose attempts cannot be recorded, restarts on a disk
 * that is still full, and the pending-delivery counts that quotas are checked against. Everything runs for
 * real: `node dist/cli.js serve` in its own process, on a data_dir that is a small tmpfs in a user and mount
 * namespace of its own (test/helpers/full-disk.ts), s3rver on 127.0.0.1.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeObject, s3For, S3_KEY, S3_SECRET } from './helpers/s3.js';
import { SluiceProcess } from './helpers/sluice.js';
import { closedPort, deliveryStatus, OutpostApi } from './helpers/outpost.js';
import { tmpfsDataDir, type TmpfsDataDir } from './helpers/full-disk.js';

const ADMIN_KEY = 'full-disk-test-admin-key';

async function diskFor(t: TestContext): Promise<TmpfsDataDir | undefined> {
  const disk = await tmpfsDataDir(t, 30);
  if ('skip' in disk) {
    t.skip(`no full disk to make: ${disk.skip}`);
    return undefined;
  }
  return disk;
}

function sluiceOn(t: TestContext, disk: TmpfsDataDir, api: Record<string, unknown>): SluiceProcess {
  const sluice = new SluiceProcess({
    config: {
      data_dir: disk.dataDir,
      outputs: [],
      shutdown_timeout: '2s',
      api: { admin_key: ADMIN_KEY, destinations: { allowed_endpoints: ['127.0.0.1/32'] }, ...api },
    },
    wrap: disk.wrap,
  });
  t.after(() => sluice.kill9());
  return sluice;
}

/** Fails at once, with the output, when the process is gone: what the tests below are about. */
function assertAlive(sluice: SluiceProcess, when: string): void {
  assert.equal(
    sluice.exitCode,
    undefined,
    `sluice exited (${sluice.exitCode}) ${when}:\n${sluice.output.slice(-4000)}`,
  );
}

async function status(url: string): Promise<number> {
  const res = await fetch(url);
  await res.arrayBuffer();
  return res.status;
}

async function ready(
  sluice: SluiceProcess,
): Promise<{ status: number; body: { events: { writable: boolean; pending_deliveries: number } } }> {
  const res = await fetch(`${sluice.url}/ready`);
  return {
    status: res.status,
    body: (await res.json()) as { events: { writable: boolean; pending_deliveries: number } },
  };
}

function destination(endpoint: string, config: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'aws_s3',
    topics: ['orders'],
    config: { bucket: 'events', region: 'us-east-1', endpoint, ...config },
    credentials: { key: S3_KEY, secret: S3_SECRET },
  };
}

test('a full disk while deliveries fail: the process stays up (/health 200, /ready 503), restarts on the still full disk and answers 503 to writes, and once space is back every event is delivered', async (t) => {
  const disk = await diskFor(t);
  if (!disk) return;
  const s3 = await s3For(t, ['events', 'batches']);
  const first = sluiceOn(t, disk, { retry: { schedule: Array.from({ length: 20 }, () => '1s') } });
  await first.start();
  const api = new OutpostApi(first.url, ADMIN_KEY);
  assert.equal((await api.putTenant('acme')).status, 201);
  // allow-listed, but nothing listens there: every attempt fails at once, and is recorded
  const refusing = `http://127.0.0.1:${await closedPort()}`;
  const dest = await api.createDestination('acme', destination(refusing));
  // and a batched one: its batch's attempts fail (and go unrecorded) the same way; its three events make one
  // batch (sealed at the third, not by age), so nothing is left to seal once the disk is full
  const batched = await api.createDestination(
    'acme',
    destination(refusing, { bucket: 'batches', batching: { max_events: 3, max_age: '1h' } }),
  );
  const ids: string[] = [];
  for (let n = 0; n < 3; n++) ids.push((await api.publish({ tenant_id: 'acme', topic: 'orders', data: { n } })).id);
  await first.until('a failed attempt of each event, and of the batch', async () => {
    const attempts = await api.attempts({ tenant_id: 'acme' });
    return (
      ids.every((id) => attempts.some((a) => a.event_id === id && a.status === 'failed')) &&
      attempts.some((a) => a.destination_id === batched.id && a.status === 'failed')
    );
  });

  assert.ok(disk.fill() > 0, 'the tmpfs takes the filler until it is full');
  // the attempts go on failing every second; now their recording fails too
  await first.until('an attempt that could not be recorded to be logged', () => {
    assertAlive(first, 'once attempts could not be recorded');
    return first.logLines().some((l) => /attempt could not be recorded/.test(String(l.msg)));
  });
  const line = first.logLines().find((l) => /attempt could not be recorded/.test(String(l.msg)))!;
  assert.equal(line.level, 50, 'logged at error');
  assert.match(String(line.code), /^SQLITE_(FULL|IOERR)/, `the line names the SQLite code: ${JSON.stringify(line)}`);
  // a few more rounds of the schedule: still up, and the line is not repeated for each of them
  await sleep(3_000);
  assertAlive(first, 'while the disk stays full');
  assert.equal(await status(`${first.url}/health`), 200, '/health: the process answers');
  const notReady = await ready(first);
  assert.equal(notReady.status, 503, '/ready: the store cannot take writes');
  assert.equal(notReady.body.events.writable, false);
  assert.equal(
    first.logLines().filter((l) => /attempt could not be recorded/.test(String(l.msg))).length,
    1,
    'one line, not one per attempt',
  );
  assert.ok(!first.output.includes('unhandled rejection'), 'nothing reached the unhandledRejection handler');
  const refused = await api.call('POST', '/publish', { tenant_id: 'acme', topic: 'orders', data: { n: 'refused' } });
  assert.equal(refused.status, 503, `a publish is refused while the disk is full: ${refused.text}`);

  // A crash (or a supervisor's kill) while the disk is full: the next start must not need space to begin.
  await first.kill9();
  const second = sluiceOn(t, disk, { retry: { schedule: Array.from({ length: 20 }, () => '1s') } });
  await second.start();
  const api2 = new OutpostApi(second.url, ADMIN_KEY);
  assert.equal(await status(`${second.url}/health`), 200);
  const write = await api2.call('PUT', '/tenants/globex');
  assert.equal(write.status, 503, `a write on the still full disk is a 503: ${write.text}`);
  assert.equal(write.body.data.reason, 'storage_unavailable');
  assert.equal((await ready(second)).status, 503, '/ready 503 once a write has failed');
  assert.ok((await api2.event(ids[0]!)).id === ids[0], 'what was stored reads back');

  // Space is back: writable again by itself, the destination is pointed at s3rver, every event lands once.
  disk.free();
  await second.until('/ready to answer 200 again', async () => (await ready(second)).status === 200);
  for (const d of [dest, batched]) {
    const patched = await api2.call('PATCH', `/tenants/acme/destinations/${d.id}`, {
      config: { endpoint: s3.endpoint },
      credentials: { key: S3_KEY, secret: S3_SECRET },
    });
    assert.equal(patched.status, 200, `PATCH the endpoint: ${patched.text}`);
  }
  await second.until('the three events in the bucket', async () => {
    const keys = await s3.keys('events');
    return ids.every((id) => keys.some((k) => k.endsWith(`_${id}.json`)));
  });
  const keys = await s3.keys('events');
  assert.equal(keys.length, 3, `one object per event: ${keys.join(', ')}`);
  for (const id of ids) {
    await second.until(
      `event ${id} shown delivered`,
      async () => deliveryStatus(await api2.event(id), dest.id) === 'success',
    );
  }
  await second.until('the batch in its bucket', async () => (await s3.keys('batches')).length > 0);
  const batches = await s3.keys('batches');
  assert.equal(batches.length, 1, `one batch: ${batches.join(', ')}`);
  assert.deepEqual(
    decodeObject(batches[0]!, (await s3.object(batches[0]!, 'batches')).body),
    [{ n: 0 }, { n: 1 }, { n: 2 }],
    'each event once',
  );
  assertAlive(second, 'at the end');
  assert.ok(!second.output.includes('unhandled rejection'));
});

test('a SIGTERM on a full disk, and a start on it: it starts, answers 503 to writes, and takes them once space is back', async (t) => {
  const disk = await diskFor(t);
  if (!disk) return;
  const first = sluiceOn(t, disk, {});
  await first.start();
  const api = new OutpostApi(first.url, ADMIN_KEY);
  assert.equal((await api.putTenant('acme')).status, 201);
  assert.ok(disk.fill() > 0);
  assert.equal((await api.call('PUT', '/tenants/globex')).status, 503);
  const code = await first.stop('SIGTERM', 15_000);
  assert.equal(code, 0, `it stops cleanly on SIGTERM:\n${first.output.slice(-2000)}`);

  const second = sluiceOn(t, disk, {});
  await second.start();
  const api2 = new OutpostApi(second.url, ADMIN_KEY);
  const refused = await api2.call('PUT', '/tenants/globex');
  assert.equal(refused.status, 503, `a write on the full disk: ${refused.text}`);
  assert.equal((await api2.call('GET', '/tenants/acme')).status, 200, 'reads are answered');
  disk.free();
  await second.until('/ready to answer 200 again', async () => (await ready(second)).status === 200);
  assert.equal((await api2.call('PUT', '/tenants/globex')).status, 201);
});

test("the pending-delivery count stays the database's across publishes refused on a full disk: the per-tenant quota is not used up by them", async (t) => {
  const disk = await diskFor(t);
  if (!disk) return;
  // a destination that takes the connection and never answers: the one attempt hangs, nothing is recorded meanwhile
  const sockets = new Set<Socket>();
  const hanging = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    hanging.close();
  });
  const port = (hanging.address() as { port: number }).port;

  const sluice = sluiceOn(t, disk, { quotas: { pending_deliveries_per_tenant: 5 } });
  await sluice.start();
  const api = new OutpostApi(sluice.url, ADMIN_KEY);
  assert.equal((await api.putTenant('acme')).status, 201);
  await api.createDestination('acme', destination(`http://127.0.0.1:${port}`));
  await api.publish({ tenant_id: 'acme', topic: 'orders', data: { n: 0 } });
  await sluice.until('the attempt to be hanging on the destination', () => sockets.size > 0);
  assert.equal((await ready(sluice)).body.events.pending_deliveries, 1);

  assert.ok(disk.fill() > 0);
  for (let n = 1; n <= 20; n++) {
    const res = await api.call('POST', '/publish', { tenant_id: 'acme', topic: 'orders', data: { n } });
    assert.equal(res.status, 503, `publish ${n} on the full disk: ${res.text}`);
  }
  disk.free();
  await sluice.until('/ready to answer 200 again', async () => (await ready(sluice)).status === 200);
  assert.equal(
    (await ready(sluice)).body.events.pending_deliveries,
    1,
    'the refused publishes are not counted: the database holds one pending delivery',
  );

  // the quota (5) counts what is stored: four more are taken, the sixth is refused
  for (let n = 0; n < 4; n++) {
    const res = await api.call('POST', '/publish', { tenant_id: 'acme', topic: 'orders', data: { after: n } });
    assert.equal(res.status, 202, `publish ${n} after space is back: ${res.text}`);
  }
  assert.equal((await ready(sluice)).body.events.pending_deliveries, 5);
  const over = await api.call('POST', '/publish', { tenant_id: 'acme', topic: 'orders', data: { after: 'over' } });
  assert.equal(over.status, 429, `over the quota: ${over.text}`);
});
