/**
 * What only the SQLite store has: its database closed under it. Every case of the Store contract runs
 * against SqliteStore (and PostgresStore) in store-contract.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { CredentialsCipher } from '../../src/store/credentials-cipher.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { tempDir } from '../helpers/sluice.js';

test('ping: resolves while the database answers; rejects once it cannot (closed)', async (t) => {
  const dir = tempDir('sluice-store-unit-');
  const store = new SqliteStore(dir, new CredentialsCipher(randomBytes(32).toString('base64')));
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await store.ping();
  await store.close();
  await assert.rejects(store.ping(), /not open/);
  // a second close (the test's own cleanup) is harmless
  await store.close();
});
