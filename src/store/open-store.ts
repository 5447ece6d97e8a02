import type { Config } from '../config/schema.js';
import { CredentialsCipher } from './credentials-cipher.js';
import { resolveSecret } from './local-secret.js';
import { resolveNodeId } from './node-id.js';
import type { PostgresStore } from './postgres-store.js';
import { SqliteStore } from './sqlite-store.js';

/** A secret and whether it was generated in data_dir (the caller warns about that). */
export interface Secret {
  value: string;
  generated: boolean;
}

export type OpenedStore = {
  encryptionKey: Secret;
  jwtSecret: Secret;
} & ({ type: 'sqlite'; store: SqliteStore } | { type: 'postgres'; store: PostgresStore });

/** A configuration the store cannot start with, said in terms of the configuration. */
export class StoreConfigError extends Error {}

/**
 * Opens the store config.store names, with the secrets it needs: the SQLite one in data_dir, or the
 * PostgreSQL one (migrated, listening for changes) that the nodes of a cluster share.
 *
 * In PostgreSQL every node reads what the others stored: credentials one node encrypted and tenant tokens one
 * node signed. A secret generated per data_dir would differ per node, so there both must be configured
 * (api.encryption_key and api.jwt_secret, or SLUICE_ENCRYPTION_KEY and SLUICE_JWT_SECRET): the same on all.
 */
export async function openStore(config: Config): Promise<OpenedStore> {
  if (config.store.type === 'postgres') {
    const missing = (['encryption_key', 'jwt_secret'] as const).filter((name) => !config.api[name]);
    if (missing.length > 0)
      throw new StoreConfigError(
        `store.type is postgres, and ${missing.map((m) => `api.${m}`).join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not set: ` +
          'every node of the cluster must use the same ones (a key generated in each data_dir would differ per node). ' +
          `Set ${missing.map((m) => `api.${m} (or SLUICE_${m.toUpperCase()})`).join(' and ')} to the same value on every node`,
      );
    const encryptionKey = { value: config.api.encryption_key!, generated: false };
    const jwtSecret = { value: config.api.jwt_secret!, generated: false };
    // loaded only here: a node on SQLite (the default) never holds the PostgreSQL client's code
    const { PostgresStore } = await import('./postgres-store.js');
    const store = await PostgresStore.open({
      url: config.store.url!,
      pool: config.store.pool,
      schema: config.store.schema,
      nodeId: resolveNodeId(config.store.node_id, config.data_dir),
      leaseMs: config.store.lease,
      cipher: new CredentialsCipher(encryptionKey.value),
    });
    return { type: 'postgres', store, encryptionKey, jwtSecret };
  }
  const encryptionKey = resolveSecret('encryption_key', config.api.encryption_key, config.data_dir);
  const jwtSecret = resolveSecret('jwt_secret', config.api.jwt_secret, config.data_dir);
  const store = new SqliteStore(config.data_dir, new CredentialsCipher(encryptionKey.value));
  return { type: 'sqlite', store, encryptionKey, jwtSecret };
}
