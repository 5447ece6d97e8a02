/**
 * The store a configuration opens: SQLite in data_dir by default; PostgreSQL with `store.type: postgres`,
 * which refuses to start without the secrets every node must share, and names each node once per data_dir.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { buildConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/problems.js';
import { openStore, StoreConfigError } from '../../src/store/open-store.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { dropSchema, POSTGRES_URL, schemaName, skipWithoutPostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/sluice.js';

const skip = await skipWithoutPostgres('store factory');

test('by default the store is SQLite in data_dir, with secrets generated there', async (t) => {
  const dir = tempDir('sluice-open-store-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const opened = await openStore(buildConfig({ data_dir: dir }, 'test', {}));
  t.after(() => opened.store.close());
  assert.equal(opened.type, 'sqlite');
  assert.ok(opened.store instanceof SqliteStore);
  assert.equal(opened.encryptionKey.generated, true);
});

test('store.type postgres needs a url; the url may come from the environment', () => {
  assert.throws(
    () => buildConfig({ store: { type: 'postgres' } }, 'test', {}),
    (err: unknown) => err instanceof ConfigError && /store\.url: is required with type: postgres/.test(err.message),
  );
  const config = buildConfig({ store: { type: 'postgres', url: '${SLUICE_STORE_URL}' } }, 'test', {
    SLUICE_STORE_URL: 'postgres://u:p@db:5432/sluice',
  });
  assert.equal(config.store.url, 'postgres://u:p@db:5432/sluice');
  assert.equal(config.store.pool, 10);
  assert.equal(config.store.schema, 'sluice');
  assert.throws(
    () => buildConfig({ store: { type: 'postgres', url: 'x', schema: 'a;b' } }, 'test', {}),
    /store\.schema/,
  );
});

test('store.type postgres refuses to start unless encryption_key and jwt_secret are set, the same on every node', async (t) => {
  const dir = tempDir('sluice-open-store-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = { type: 'postgres', url: 'postgres://postgres@127.0.0.1:1/none' };
  await assert.rejects(
    openStore(buildConfig({ data_dir: dir, store }, 'test', {})),
    (err: unknown) =>
      err instanceof StoreConfigError &&
      /api\.encryption_key and api\.jwt_secret are not set/.test(err.message) &&
      /SLUICE_ENCRYPTION_KEY/.test(err.message),
  );
  await assert.rejects(
    openStore(buildConfig({ data_dir: dir, store }, 'test', { SLUICE_ENCRYPTION_KEY: 'k' })),
    /api\.jwt_secret is not set/,
  );
});

test('store.type postgres opens the shared store, with a node id made once per data_dir', { skip }, async (t) => {
  const dir = tempDir('sluice-open-store-');
  const schema = schemaName('factory');
  t.after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await dropSchema(schema);
  });
  const config = buildConfig(
    { data_dir: dir, store: { type: 'postgres', url: POSTGRES_URL, schema, pool: 2 } },
    'test',
    {
      SLUICE_ENCRYPTION_KEY: 'shared-key',
      SLUICE_JWT_SECRET: 'shared-secret',
    },
  );
  const first = await openStore(config);
  assert.equal(first.type, 'postgres');
  assert.ok(first.store instanceof PostgresStore);
  const nodeId = first.store.nodeId;
  await first.store.close();
  assert.equal(readFileSync(path.join(dir, 'node-id'), 'utf8').trim(), nodeId);
  const again = await openStore(config);
  t.after(() => again.store.close());
  assert.equal((again.store as PostgresStore).nodeId, nodeId, 'the same node after a restart');
  assert.equal(again.jwtSecret.value, 'shared-secret');
});
