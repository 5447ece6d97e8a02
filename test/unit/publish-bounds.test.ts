/**
 * The pending bounds when the store's counts come late, as a network store's do: a real SQLite store whose
 * pendingDeliveries answers are held back (each is the count when it was asked, delivered when the test lets
 * it through, as a reply in flight). A publish that ends while another's counts are on their way is in neither
 * what was read (it committed after) nor what is reserved (it released before the check): it must still count.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { CredentialsCipher } from '../../src/store/credentials-cipher.js';
import { EventPublisher } from '../../src/sources/event-publisher.js';
import { HttpError } from '../../src/http/http-error.js';
import type { ApiConfig } from '../../src/config/schema.js';
import type { Store } from '../../src/store/types.js';
import { tempDir } from '../helpers/sluice.js';

test('a publish that ends while the counts of another are read is counted: the bound holds (429), never passed', async (t) => {
  const dir = tempDir('sluice-publish-bounds-');
  const real = new SqliteStore(dir, new CredentialsCipher(randomBytes(32).toString('base64')));
  t.after(async () => {
    await real.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await real.upsertTenant('acme', {});
  const now = new Date().toISOString();
  await real.createDestination(
    {
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
    },
    20,
  );
  let release: () => void = () => {};
  let held: Promise<void> | undefined;
  const asked: number[] = [];
  const store = new Proxy(real, {
    get(target, name, receiver) {
      if (name === 'pendingDeliveries')
        return (tenantId?: string) => {
          const answer = target.pendingDeliveries(tenantId);
          void answer.then((n) => asked.push(n));
          return held ? held.then(() => answer) : answer;
        };
      const value = Reflect.get(target, name, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as Store;
  const config = {
    idempotency_window: 3_600_000,
    max_pending_deliveries: 1,
    quotas: { metadata_bytes: 1024, pending_deliveries_per_tenant: 100 },
  } as unknown as ApiConfig;
  const publisher = new EventPublisher(store, config);
  const reserved = () => (publisher as unknown as { reserved: number }).reserved;

  // the first publish has reserved its delivery and waits for its commit
  const first = publisher.publish({ id: 'e1', tenant_id: 'acme', topic: 't', data: '{}' });
  await new Promise<void>((resolve) => {
    const check = () => (reserved() === 1 ? resolve() : setImmediate(check));
    check();
  });
  // the second asks for the counts now (nothing committed yet: 0), and its answers are held back ...
  held = new Promise((resolve) => (release = resolve));
  const second = publisher.publish({ id: 'e2', tenant_id: 'acme', topic: 't', data: '{}' });
  second.catch(() => {});
  // ... while the first commits and releases its reservation
  assert.equal((await first).duplicate, false);
  assert.equal(reserved(), 0);
  assert.equal(await real.pendingDeliveries(), 1);
  release();
  await assert.rejects(second, (err: unknown) => err instanceof HttpError && err.statusCode === 429);
  assert.ok(asked.includes(0), `the second read the counts before the first committed: ${asked}`);
  assert.equal(await real.pendingDeliveries(), 1, 'the bound of 1 was not passed');
  assert.equal(await real.getEvent('acme', 'e2'), undefined);
  assert.equal(reserved(), 0);
});
