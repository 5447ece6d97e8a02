import type { CredentialsCipher } from '../credentials-cipher.js';
import { destinationOfRow, type DestinationColumns } from '../destination-row.js';
import type { CreateDestinationResult, Destination } from '../types.js';
import { hasNul, type Sql } from './database.js';
import { TenantCache } from './tenant-cache.js';

interface DestinationRow extends DestinationColumns {
  batched: boolean;
}

const COLUMNS =
  'id, tenant_id, type, topics, config, credentials, delivery_metadata, metadata, batched, filter, disabled_at, created_at, updated_at';

/**
 * The `destinations` table. Credentials are encrypted here on the way in and decrypted on the way out, so no
 * other module sees them at rest. A tenant's destinations are read on every publish and every attempt:
 * cached per tenant, and dropped by changes on any node (see TenantCache). Writes run in the caller's
 * transaction (see PostgresStore).
 */
export class PgDestinations {
  readonly cache = new TenantCache<Destination[]>();

  constructor(
    private readonly sql: Sql,
    private readonly cipher: CredentialsCipher,
  ) {}

  /**
   * Inserts it unless its tenant has it or already has `maxPerTenant`. The caller holds its tenant's row
   * (PgTenants.holdForCreate), so no other create of the tenant counts at the same time.
   */
  async create(
    tx: Sql,
    destination: Destination,
    maxPerTenant: number,
  ): Promise<Exclude<CreateDestinationResult, 'no_tenant'>> {
    const tenantId = destination.tenant_id;
    const { rows } = await tx.query<{ taken: boolean; n: number }>(
      `SELECT EXISTS (SELECT 1 FROM destinations WHERE tenant_id = $1 AND id = $2) AS taken,
        (SELECT count(*) FROM destinations WHERE tenant_id = $1) AS n`,
      [tenantId, destination.id],
    );
    if (rows[0]!.taken) return 'exists';
    if (rows[0]!.n >= maxPerTenant) return 'over_quota';
    this.cache.invalidate(tenantId);
    await tx.query(
      `INSERT INTO destinations (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
      this.values(destination),
    );
    return 'created';
  }

  async update(tx: Sql, destination: Destination): Promise<void> {
    this.cache.invalidate(destination.tenant_id);
    // type and created_at never change
    const [id, tenantId, , ...rest] = this.values(destination);
    await tx.query(
      `UPDATE destinations SET topics = $3, config = $4, credentials = $5, delivery_metadata = $6, metadata = $7,
        batched = $8, filter = $9, disabled_at = $10, updated_at = $11
       WHERE id = $1 AND tenant_id = $2`,
      [id, tenantId, ...rest.slice(0, 8), rest[9]],
    );
  }

  /** False when there was none. */
  async delete(tx: Sql, tenantId: string, id: string): Promise<boolean> {
    this.cache.invalidate(tenantId);
    const { rowCount } = await tx.query('DELETE FROM destinations WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
    return (rowCount ?? 0) > 0;
  }

  /** Every destination of the tenant (a deleted tenant's). */
  async deleteAllOf(tx: Sql, tenantId: string): Promise<void> {
    this.cache.invalidate(tenantId);
    await tx.query('DELETE FROM destinations WHERE tenant_id = $1', [tenantId]);
  }

  async get(tenantId: string, id: string): Promise<Destination | undefined> {
    // from the tenant's cached list: the dispatcher asks for every attempt
    return (await this.of(tenantId)).find((d) => d.id === id);
  }

  async withId(id: string): Promise<Destination[]> {
    if (hasNul(id)) return [];
    const { rows } = await this.sql.query<DestinationRow>(
      'SELECT * FROM destinations WHERE id = $1 ORDER BY tenant_id COLLATE "C"',
      [id],
    );
    return rows.map((r) => this.toDestination(r));
  }

  async of(tenantId: string): Promise<Destination[]> {
    if (hasNul(tenantId)) return [];
    return (
      (await this.cache.get(tenantId, async () => {
        const { rows } = await this.sql.query<DestinationRow>(
          'SELECT * FROM destinations WHERE tenant_id = $1 ORDER BY created_at COLLATE "C", id COLLATE "C"',
          [tenantId],
        );
        return rows.map((r) => this.toDestination(r));
      })) ?? []
    );
  }

  async batched(): Promise<Destination[]> {
    const { rows } = await this.sql.query<DestinationRow>(
      'SELECT * FROM destinations WHERE batched AND disabled_at IS NULL ORDER BY tenant_id COLLATE "C", id COLLATE "C"',
    );
    return rows.map((r) => this.toDestination(r));
  }

  /** The columns' values in COLUMNS order. */
  private values(d: Destination): unknown[] {
    return [
      d.id,
      d.tenant_id,
      d.type,
      JSON.stringify(d.topics),
      JSON.stringify(d.config),
      this.cipher.encrypt(d.credentials),
      JSON.stringify(d.delivery_metadata),
      JSON.stringify(d.metadata),
      Boolean(d.config.batching),
      JSON.stringify(d.filter ?? {}),
      d.disabled_at,
      d.created_at,
      d.updated_at,
    ];
  }

  private toDestination(row: DestinationRow): Destination {
    return destinationOfRow(row, this.cipher);
  }
}
