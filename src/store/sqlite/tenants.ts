import type Database from 'better-sqlite3';
import { countRows, readPage, type Filtered } from '../../sqlite/paging.js';
import type { Page, PageQuery, StringMap, Tenant, TenantFilter } from '../types.js';
import { anyOf } from './filters.js';

/** Tenants with their token generation. */
const TENANTS_WITH_GENERATION = `(SELECT t.*, coalesce(g.generation, 0) AS generation FROM tenants t
  LEFT JOIN tenant_generations g ON g.id = t.id)`;

interface TenantRow {
  seq: number;
  id: string;
  metadata: string;
  created_at: string;
  updated_at: string;
  generation: number;
}

/**
 * The `tenants` table and the token generations that outlive its rows. Writes run inside the caller's
 * transaction (see SqliteStore); reads are served from a cache of the tenants asked for (every publish
 * asks), which every write of a tenant drops (this process is the only writer of the database).
 */
export class SqliteTenants {
  private readonly cache = new Map<string, Tenant>();
  private readonly q;

  constructor(private readonly db: Database.Database) {
    this.q = {
      tenant: db.prepare(`SELECT * FROM ${TENANTS_WITH_GENERATION} WHERE id = ?`),
      exists: db.prepare('SELECT 1 FROM tenants WHERE id = ?'),
      insert: db.prepare('INSERT INTO tenants (id, metadata, created_at, updated_at) VALUES (?, ?, ?, ?)'),
      update: db.prepare('UPDATE tenants SET metadata = ?, updated_at = ? WHERE id = ?'),
      delete: db.prepare('DELETE FROM tenants WHERE id = ?'),
      raiseGeneration: db.prepare(`INSERT INTO tenant_generations (id, generation) VALUES (?, 1)
        ON CONFLICT (id) DO UPDATE SET generation = generation + 1`),
    };
  }

  upsert(id: string, metadata: StringMap): { tenant: Tenant; created: boolean } {
    const now = new Date().toISOString();
    const existing = this.q.tenant.get(id) as TenantRow | undefined;
    this.cache.delete(id);
    if (existing) this.q.update.run(JSON.stringify(metadata), now, id);
    else this.q.insert.run(id, JSON.stringify(metadata), now, now);
    return { tenant: toTenant(this.q.tenant.get(id) as TenantRow), created: !existing };
  }

  get(id: string): Tenant | undefined {
    const cached = this.cache.get(id);
    if (cached) return cached;
    const row = this.q.tenant.get(id) as TenantRow | undefined;
    if (!row) return undefined;
    const tenant = toTenant(row);
    this.cache.set(id, tenant);
    return tenant;
  }

  /** Read in the caller's transaction, not from the cache: whether a write for the tenant may go on. */
  exists(id: string): boolean {
    return this.q.exists.get(id) !== undefined;
  }

  /** Deletes the tenant's row (only that: see SqliteStore.deleteTenant); false when there was none. */
  delete(id: string): boolean {
    this.cache.delete(id);
    return this.q.delete.run(id).changes > 0;
  }

  /** Refuses the tokens issued so far for this id (see ApiAuth). */
  raiseGeneration(id: string): void {
    this.q.raiseGeneration.run(id);
  }

  list(query: PageQuery, filter: TenantFilter): Page<Tenant> {
    // seq is the order tenants were made in: created_at order
    return readPage(this.db, TENANTS_WITH_GENERATION, conditions(filter), query, query.dir ?? 'asc', toTenant);
  }

  count(filter: TenantFilter): number {
    return countRows(this.db, 'tenants', conditions(filter));
  }
}

function conditions(filter: TenantFilter): Filtered {
  const f: Filtered = { where: [], params: [] };
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
