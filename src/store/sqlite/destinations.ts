import type Database from 'better-sqlite3';
import type { CredentialsCipher } from '../credentials-cipher.js';
import { destinationOfRow, type DestinationColumns } from '../destination-row.js';
import type { CreateDestinationResult, Destination } from '../types.js';

interface DestinationRow extends DestinationColumns {
  batched: number;
}

/**
 * The `destinations` table. Credentials are encrypted here on the way in and decrypted on the way out, so
 * no other module sees them at rest. A tenant's destinations are read on every publish and every attempt:
 * cached per tenant, and dropped by every write that changes them. Writes run inside the caller's
 * transaction (see SqliteStore).
 */
export class SqliteDestinations {
  private readonly cache = new Map<string, Destination[]>();
  private readonly q;

  constructor(
    db: Database.Database,
    private readonly cipher: CredentialsCipher,
  ) {
    this.q = {
      withId: db.prepare('SELECT * FROM destinations WHERE id = ? ORDER BY tenant_id'),
      exists: db.prepare('SELECT 1 FROM destinations WHERE tenant_id = ? AND id = ?'),
      countOf: db.prepare('SELECT count(*) FROM destinations WHERE tenant_id = ?').pluck(),
      of: db.prepare('SELECT * FROM destinations WHERE tenant_id = ? ORDER BY created_at, id'),
      batched: db.prepare('SELECT * FROM destinations WHERE batched = 1 AND disabled_at IS NULL'),
      insert:
        db.prepare(`INSERT INTO destinations (id, tenant_id, type, topics, config, credentials, delivery_metadata, metadata, batched, filter, disabled_at, created_at, updated_at)
        VALUES (@id, @tenant_id, @type, @topics, @config, @credentials, @delivery_metadata, @metadata, @batched, @filter, @disabled_at, @created_at, @updated_at)`),
      update: db.prepare(`UPDATE destinations SET topics = @topics, config = @config, credentials = @credentials,
        delivery_metadata = @delivery_metadata, metadata = @metadata, batched = @batched, filter = @filter, disabled_at = @disabled_at, updated_at = @updated_at
        WHERE id = @id AND tenant_id = @tenant_id`),
      delete: db.prepare('DELETE FROM destinations WHERE tenant_id = ? AND id = ?'),
      deleteOf: db.prepare('DELETE FROM destinations WHERE tenant_id = ?'),
    };
  }

  /** Inserts it unless its tenant has it or already has `maxPerTenant` (its tenant's existence is the caller's to check). */
  create(destination: Destination, maxPerTenant: number): Exclude<CreateDestinationResult, 'no_tenant'> {
    const tenantId = destination.tenant_id;
    if (this.q.exists.get(tenantId, destination.id)) return 'exists';
    if ((this.q.countOf.get(tenantId) as number) >= maxPerTenant) return 'over_quota';
    this.cache.delete(tenantId);
    this.q.insert.run(this.params(destination));
    return 'created';
  }

  update(destination: Destination): void {
    this.cache.delete(destination.tenant_id);
    this.q.update.run(this.params(destination));
  }

  /** False when there was none. */
  delete(tenantId: string, id: string): boolean {
    this.cache.delete(tenantId);
    return this.q.delete.run(tenantId, id).changes > 0;
  }

  /** Every destination of the tenant (a deleted tenant's). */
  deleteAllOf(tenantId: string): void {
    this.cache.delete(tenantId);
    this.q.deleteOf.run(tenantId);
  }

  /** Drops the cached list of the tenant: the next read reads the table again. */
  forget(tenantId: string): void {
    this.cache.delete(tenantId);
  }

  get(tenantId: string, id: string): Destination | undefined {
    // from the tenant's cached list: the dispatcher asks for every attempt
    return this.of(tenantId).find((d) => d.id === id);
  }

  withId(id: string): Destination[] {
    return (this.q.withId.all(id) as DestinationRow[]).map((r) => this.toDestination(r));
  }

  of(tenantId: string): Destination[] {
    let destinations = this.cache.get(tenantId);
    if (!destinations) {
      destinations = (this.q.of.all(tenantId) as DestinationRow[]).map((r) => this.toDestination(r));
      this.cache.set(tenantId, destinations);
    }
    return destinations;
  }

  batched(): Destination[] {
    return (this.q.batched.all() as DestinationRow[]).map((r) => this.toDestination(r));
  }

  private params(d: Destination) {
    return {
      id: d.id,
      tenant_id: d.tenant_id,
      type: d.type,
      topics: JSON.stringify(d.topics),
      config: JSON.stringify(d.config),
      credentials: this.cipher.encrypt(d.credentials),
      delivery_metadata: JSON.stringify(d.delivery_metadata),
      metadata: JSON.stringify(d.metadata),
      batched: d.config.batching ? 1 : 0,
      filter: JSON.stringify(d.filter ?? {}),
      disabled_at: d.disabled_at,
      created_at: d.created_at,
      updated_at: d.updated_at,
    };
  }

  private toDestination(row: DestinationRow): Destination {
    return destinationOfRow(row, this.cipher);
  }
}
