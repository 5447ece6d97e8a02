/**
 * Delivery seqs name batched objects, so they must never be handed out twice, also after the newest
 * deliveries were deleted (a destination removed) or pruned (the log's retention).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { CredentialsCipher } from '../../src/store/credentials-cipher.js';
import { tempDir } from '../helpers/sluice.js';

test('a delivery seq is never used twice: not after the newest deliveries are deleted, nor after a restart', async (t) => {
  const dir = tempDir('sluice-store-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const key = randomBytes(32).toString('base64');
  let store = new SqliteStore(dir, new CredentialsCipher(key));
  const now = new Date().toISOString();
  const destination = {
    id: 'des_a',
    tenant_id: 'acme',
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
  };
  await store.upsertTenant('acme', {});
  await store.createDestination(destination, 20);
  const publish = async (id: string) => {
    await store.publish(
      {
        tenant_id: 'acme',
        id,
        topic: 't',
        time: now,
        time_ms: Date.now(),
        eligible_for_retry: true,
        metadata: {},
        data: '{}',
      },
      ['des_a'],
      3_600_000,
    );
    const event = (await store.getEvent('acme', id))!;
    return (await store.eventDeliveries((event as unknown as { seq: number }).seq)).map((d) => d.seq);
  };
  const first = await publish('e1');
  const second = await publish('e2');
  // the destination goes, and its pending deliveries (the newest rows) with it
  assert.ok(await store.deleteDestination('acme', 'des_a'));
  await store.createDestination(destination, 20);
  const third = await publish('e3');
  assert.ok(
    Math.min(...third) > Math.max(...first, ...second),
    `new seqs ${third} come after the deleted ${[...first, ...second]}`,
  );
  await store.close();
  store = new SqliteStore(dir, new CredentialsCipher(key));
  assert.ok(await store.deleteDestination('acme', 'des_a'));
  await store.createDestination(destination, 20);
  const fourth = await publish('e4');
  assert.ok(Math.min(...fourth) > Math.max(...third), `after a restart too: ${fourth} after ${third}`);
  await store.close();
});
