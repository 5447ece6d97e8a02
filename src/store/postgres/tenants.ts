import type { Page, PageQuery, StringMap, Tenant, TenantFilter } from '../types.js';
import { bound, hasNul, Params, type Prepared, type Sql } from './database.js';
import { anyOf, type Filtered } from './filters.js';
import { countRows, readPage } from './paging.js';
import { TenantCache } from './tenant-cache.js';

/** Tenants with their token generation. */
const TENANTS_WITH_GENERATION = `(SELECT t.*, coalesce(g.generation, 0) AS generation FROM tenants t
  LEFT JOIN tenant_generations g ON g.id = t.id) AS tenants_with_generation`;

/** Holds tenants for a write, see PgTenants.holdAll. */
const HOLD: Prepared = {
  name: 'tenants_hold',
  text: 'SELECT id FROM tenants WHERE id = ANY($1::text[]) ORDER BY id FOR KEY SHARE',
};

interface TenantRow {
  seq: number;
  id: string;
  metadata: string;
  created_at: string;
  updated_at: string;
  generation: number;
}

/**
 * The `tenants` table and the token generations that outlive its rows. Every publish and every tenant token
 * asks for its tenant: served from a cache, which changes on any node drop (see TenantCache), so a deletion
 * (a raised generation) refuses the old tokens on every node as soon as it is heard of. Writes run in the
 * caller's transaction (see PostgresStore).
 */
export class PgTenants {
  readonly cache = new TenantCache<Tenant>();

  constructor(private readonly sql: Sql) {}

  async upsert(tx: Sql, id: string, metadata: StringMap): Promise<{ tenant: Tenant; created: boolean }> {
    const now = new Date().toISOString();
    this.cache.invalidate(id);
    // xmax is 0 on a row this statement inserted, not on one it updated
    const { rows } = await tx.query<{ created: boolean }>(
      `INSERT INTO tenants (id, metadata, created_at, updated_at) VALUES ($1, $2, $3, $3)
       ON CONFLICT (id) DO UPDATE SET metadata = excluded.metadata, updated_at = excluded.updated_at
       RETURNING (xmax = 0) AS created`,
      [id, JSON.stringify(metadata), now],
    );
    const tenant = await this.read(tx, id);
    return { tenant: tenant!, created: rows[0]!.created };
  }

  get(id: string): Promise<Tenant | undefined> {
    if (hasNul(id)) return Promise.resolve(undefined);
    return this.cache.get(id, () => this.read(this.sql, id));
  }

  /**
   * In the caller's transaction, not from the cache: which of the tenants exist, so that writes for them may
   * go on. Their rows stay locked (KEY SHARE) until that transaction ends, so a deletion of a tenant waits for
   * it, and a write that comes after the deletion finds no tenant.
   */
  async holdAll(tx: Sql, ids: string[]): Promise<Set<string>> {
    const storable = ids.filter((id) => !hasNul(id));
    if (storable.length === 0) return new Set();
    const { rows } = await tx.query<{ id: string }>(bound(HOLD, [storable]));
    return new Set(rows.map((r) => r.id));
  }

  /**
   * As `holdAll` for one tenant, and the destinations of the tenant are created one at a time (NO KEY UPDATE conflicts with
   * itself, not with the publishes' KEY SHARE): the quota is checked with no other create under way.
   */
  async holdForCreate(tx: Sql, id: string): Promise<boolean> {
    const { rows } = await tx.query('SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE', [id]);
    return rows.length > 0;
  }

  /** Deletes the tenant's row (only that: see PostgresStore.deleteTenant); false when there was none. */
  async delete(tx: Sql, id: string): Promise<boolean> {
    this.cache.invalidate(id);
    const { rowCount } = await tx.query('DELETE FROM tenants WHERE id = $1', [id]);
    return (rowCount ?? 0) > 0;
  }

  /** Refuses the tokens issued so far for this id (see ApiAuth). */
  async raiseGeneration(tx: Sql, id: string): Promise<void> {
    await tx.query(
      `INSERT INTO tenant_generations (id, generation) VALUES ($1, 1)
       ON CONFLICT (id) DO UPDATE SET generation = tenant_generations.generation + 1`,
      [id],
    );
  }

  list(query: PageQuery, filter: TenantFilter): Promise<Page<Tenant>> {
    // seq is the order tenants were made in: created_at order
    return readPage(this.sql, TENANTS_WITH_GENERATION, conditions(filter), query, query.dir ?? 'asc', toTenant);
  }

  count(filter: TenantFilter): Promise<number> {
    return countRows(this.sql, 'tenants', conditions(filter));
  }

  private async read(sql: Sql, id: string): Promise<Tenant | undefined> {
    const { rows } = await sql.query<TenantRow>(`SELECT * FROM ${TENANTS_WITH_GENERATION} WHERE id = $1`, [id]);
    return rows[0] && toTenant(rows[0]);
  }
}

function conditions(filter: TenantFilter): Filtered {
  const f: Filtered = { where: [], params: new Params() };
  anyOf(f, 'id', filter.id);
  return f;
}

function toTenant(row: TenantRow): Tenant {
  return {
    id: row.id,
    metadata: JSON.parse(row.metadata) as StringMap,
    created_at: row.created_at,
    updated_at: row.updated_at,
    generation: row.generation ?? 0,
  };
}
