import { bound, type Prepared, type Sql } from './database.js';

/** Slots per tenant in pending_counts: concurrent writes for one tenant add to different rows. */
const SLOTS = 16;

/** How long a read of the counts is served to callers before the next one reads the table again. */
const MAX_AGE_MS = 250;

/** Adds changes to the counters, see PendingCounts.write. */
const ADD: Prepared = {
  name: 'pending_counts_add',
  text: `INSERT INTO pending_counts (tenant_id, slot, n) SELECT t, $1, n FROM unnest($2::text[], $3::bigint[]) AS c(t, n)
    ON CONFLICT (tenant_id, slot) DO UPDATE SET n = pending_counts.n + excluded.n`,
};

/** Changes to pending deliveries made by one transaction, by tenant, written with it (see `write`). */
export type PendingDelta = Map<string, number>;

export function addPending(delta: PendingDelta, tenantId: string, n: number): void {
  if (n !== 0) delta.set(tenantId, (delta.get(tenantId) ?? 0) + n);
}

/**
 * The pending deliveries of the cluster, in all and per tenant, asked on every publish (the bounds that answer
 * 429), so never counted over the deliveries there. The `pending_counts` table holds them: every transaction
 * that changes how many are pending adds its changes to it (`write`, last in the transaction, in tenant order,
 * so that two transactions never wait for each other's counter rows in opposite orders), so the table is as
 * exact as the deliveries are.
 *
 * Reads are served from a snapshot of the table read at most MAX_AGE_MS before, to which this node adds its
 * own changes as they commit: a count is exact for this node's own writes and at most ~250 ms (plus a query)
 * behind the other nodes'. The bound it enforces is a soft one: for that long the other nodes may accept a
 * few publishes past it.
 */
export class PendingCounts {
  private total = 0;
  private byTenant = new Map<string, number>();
  private readAt = -Infinity;
  private reading: Promise<void> | undefined;

  constructor(private readonly sql: Sql) {}

  async of(tenantId?: string): Promise<number> {
    if (Date.now() - this.readAt > MAX_AGE_MS) await this.refresh();
    return tenantId === undefined ? this.total : (this.byTenant.get(tenantId) ?? 0);
  }

  /** Reads the table again (one read at a time: callers meanwhile wait for the one under way). */
  refresh(): Promise<void> {
    this.reading ??= this.read().finally(() => {
      this.reading = undefined;
    });
    return this.reading;
  }

  /** Adds a transaction's changes to the counter table; runs last in that transaction. */
  async write(tx: Sql, delta: PendingDelta): Promise<void> {
    const changes = [...delta].filter(([, n]) => n !== 0).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (changes.length === 0) return;
    const slot = Math.floor(Math.random() * SLOTS);
    await tx.query(bound(ADD, [slot, changes.map(([t]) => t), changes.map(([, n]) => n)]));
  }

  /** After the transaction of `delta` committed: this node's snapshot counts it at once. */
  applied(delta: PendingDelta): void {
    for (const [tenantId, n] of delta) {
      if (n === 0) continue;
      this.total += n;
      const left = (this.byTenant.get(tenantId) ?? 0) + n;
      if (left > 0) this.byTenant.set(tenantId, left);
      else this.byTenant.delete(tenantId);
    }
  }

  /** A deleted tenant's rows, inside the transaction that deletes its deliveries. */
  async forget(tx: Sql, tenantId: string): Promise<void> {
    await tx.query('DELETE FROM pending_counts WHERE tenant_id = $1', [tenantId]);
  }

  /** After the deletion of a tenant committed. */
  forgotten(tenantId: string): void {
    this.total -= this.byTenant.get(tenantId) ?? 0;
    this.byTenant.delete(tenantId);
  }

  private async read(): Promise<void> {
    const startedAt = Date.now();
    const { rows } = await this.sql.query<{ tenant_id: string; n: number }>(
      'SELECT tenant_id, sum(n) AS n FROM pending_counts GROUP BY tenant_id HAVING sum(n) <> 0',
    );
    const byTenant = new Map<string, number>();
    let total = 0;
    for (const { tenant_id: tenant, n } of rows) {
      byTenant.set(tenant, n);
      total += n;
    }
    this.byTenant = byTenant;
    this.total = total;
    this.readAt = startedAt;
  }
}
