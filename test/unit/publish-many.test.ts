/**
 * EventPublisher.publishMany (`POST /publish/batch`) against a real store in a temp directory: a batch is
 * stored whole or not at all (also when a tenant of it is deleted between the checks and the write), the
 * shared pending bound is checked against the batch's total, reservations are released on every path, and a
 * refusal names the element it is about.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { CredentialsCipher } from '../../src/store/credentials-cipher.js';
import { EventPublisher, type PublishInput } from '../../src/sources/event-publisher.js';
import { HttpError } from '../../src/http/http-error.js';
import type { ApiConfig } from '../../src/config/schema.js';
import { tempDir } from '../helpers/sluice.js';

async function setup(t: { after: (fn: () => Promise<void>) => void }, bounds: { max: number; perTenant: number }) {
  const dir = tempDir('sluice-publish-many-');
  const store = new SqliteStore(dir, new CredentialsCipher(randomBytes(32).toString('base64')));
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const now = new Date().toISOString();
  for (const tenant of ['acme', 'beta']) {
    await store.upsertTenant(tenant, {});
    await store.createDestination(
      {
        id: `des_${tenant}`,
        tenant_id: tenant,
        type: 'aws_s3',
        topics: ['*'],
        config: { bucket: 'b', region: 'us-east-1' },
        credentials: { key: 'k', secret: 's' },
        delivery_metadata: {},
        metadata: {},
        filter: {},
        disabled_at: null,
        created_at: now,
        updated_at: now,
      },
      20,
    );
  }
  const config = {
    idempotency_window: 3_600_000,
    max_pending_deliveries: bounds.max,
    quotas: { metadata_bytes: 64, pending_deliveries_per_tenant: bounds.perTenant },
  } as unknown as ApiConfig;
  const publisher = new EventPublisher(store, config);
  /** Deliveries reserved and not yet released (none once a publish has settled). */
  const reserved = () => (publisher as unknown as { reserved: number }).reserved;
  return { store, publisher, reserved };
}

const event = (tenant: string, id: string, extra: Partial<PublishInput> = {}): PublishInput => ({
  id,
  tenant_id: tenant,
  topic: 't',
  data: `{"id":"${id}"}`,
  ...extra,
});

test('a tenant of the batch deleted before the batch is written: 404, and no event of the batch is stored', async (t) => {
  const { store, publisher, reserved } = await setup(t, { max: 1000, perTenant: 1000 });
  // queued first, in the same turn: it runs in the same group commit, before the batch's events
  const deleted = store.deleteTenant('beta');
  const publishing = publisher.publishMany([event('acme', 'a1'), event('beta', 'b1'), event('acme', 'a2')]);
  await assert.rejects(publishing, (err: unknown) => err instanceof HttpError && err.statusCode === 404);
  assert.equal(await deleted, true);
  assert.equal(await store.getEvent('acme', 'a1'), undefined, 'an event of the refused batch was stored');
  assert.equal(await store.getEvent('acme', 'a2'), undefined, 'an event of the refused batch was stored');
  assert.equal(await store.pendingDeliveries(), 0);
  assert.equal(reserved(), 0);
});

test('a batch over the shared bound with nothing else pending passes, as a single publish would (not refused forever)', async (t) => {
  const { store, publisher, reserved } = await setup(t, { max: 3, perTenant: 100 });
  const results = await publisher.publishMany([
    event('acme', 'a1'),
    event('acme', 'a2'),
    event('beta', 'b1'),
    event('beta', 'b2'),
  ]);
  assert.deepEqual(
    results.map((r) => [r.id, r.duplicate, r.destination_ids]),
    [
      ['a1', false, ['des_acme']],
      ['a2', false, ['des_acme']],
      ['b1', false, ['des_beta']],
      ['b2', false, ['des_beta']],
    ],
  );
  assert.equal((await store.getEvent('beta', 'b2'))?.data, '{"id":"b2"}', 'each event keeps its own data text');
  assert.equal(await store.pendingDeliveries(), 4);
  assert.equal(reserved(), 0);
  // now something is pending: the next batch over the bound waits
  await assert.rejects(
    publisher.publishMany([event('acme', 'a3')]),
    (err: unknown) => err instanceof HttpError && err.statusCode === 429,
  );
  assert.equal(reserved(), 0);
});

test('a refused batch names the element: an unknown tenant or destination, metadata over its quota', async (t) => {
  const { store, publisher, reserved } = await setup(t, { max: 1000, perTenant: 1000 });
  const refusal = async (inputs: PublishInput[], status: number, message: RegExp) => {
    await assert.rejects(publisher.publishMany(inputs), (err: unknown) => {
      assert.ok(err instanceof HttpError, String(err));
      assert.equal(err.statusCode, status);
      assert.match(err.message, message);
      return true;
    });
    assert.equal(reserved(), 0);
  };
  await refusal(
    [event('acme', 'a1'), event('acme', 'a2'), event('nobody', 'n1')],
    404,
    /^\[2\]: tenant nobody not found/,
  );
  await refusal(
    [event('acme', 'a1'), event('beta', 'b1', { destination_id: 'des_acme' })],
    404,
    /^\[1\]: destination des_acme not found/,
  );
  await refusal(
    [event('acme', 'a1'), event('acme', 'a2', { metadata: { big: 'x'.repeat(100) } })],
    422,
    /^1\.metadata is \d+ bytes/,
  );
  assert.equal(await store.getEvent('acme', 'a1'), undefined);
});
