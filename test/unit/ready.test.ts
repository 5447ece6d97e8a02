/**
 * /ready with a store that does not answer: a real SQLite store and buffer in a temporary directory, the
 * store closed under the routes (its queries fail as a network store's do when its server is gone). /ready
 * answers 503 naming the store as unreachable and why, never a 500 or a hang; healthz says the store failed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import Fastify from 'fastify';
import { healthRoutes, readiness } from '../../src/api/health.js';
import { SqliteBuffer } from '../../src/buffer/sqlite.js';
import { CredentialsCipher } from '../../src/store/credentials-cipher.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { tempDir } from '../helpers/sluice.js';

test('a store that does not answer: /ready is 503 with store unreachable and its error; healthz says the store failed', async (t) => {
  const dir = tempDir('sluice-ready-');
  const buffer = new SqliteBuffer(dir, 1 << 20);
  const store = new SqliteStore(dir, new CredentialsCipher(randomBytes(32).toString('base64')));
  const app = Fastify();
  await app.register(healthRoutes, { buffer, store, workers: [], closing: () => false });
  t.after(async () => {
    await app.close();
    buffer.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const before = await readiness(buffer, store, [], false);
  assert.equal(before.writable, true);
  assert.deepEqual(before.body.store, { status: 'ok', error: null });

  await store.close();
  const res = await app.inject({ method: 'GET', url: '/ready' });
  assert.equal(res.statusCode, 503);
  const body = res.json() as {
    status: string;
    events: { writable: boolean };
    store: { status: string; error: string | null };
  };
  assert.equal(body.status, 'unavailable');
  assert.equal(body.store.status, 'unreachable');
  assert.match(body.store.error ?? '', /not open/);
  assert.equal(body.events.writable, false);

  const health = await app.inject({ method: 'GET', url: '/api/v1/healthz' });
  assert.equal(health.statusCode, 503);
  assert.equal((health.json() as { workers: Record<string, { status: string }> }).workers.store?.status, 'failed');
});
