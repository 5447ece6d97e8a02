/**
 * The pending deliveries of the store, in all and per tenant, kept in memory beside the database: read on
 * every publish and ingest (the bounds that answer 429), so never counted in SQL there.
 *
 * Only writes change them (see SqliteDeliveries, the one module that changes a delivery's status), and a
 * write's changes apply once its transaction has committed, never before: a write rolled back (its own error,
 * or a COMMIT that failed on a full disk) leaves the counts as the database does.
 */
export class PendingCounts {
  private total = 0;
  /** Tenants with none are absent. */
  private byTenant = new Map<string, number>();
  /** The changes made by the write running now (see counting); undefined outside a write. */
  private delta: Map<string, number> | undefined;

  /** Pending deliveries of every tenant, or of one. */
  of(tenantId?: string): number {
    return tenantId === undefined ? this.total : (this.byTenant.get(tenantId) ?? 0);
  }

  /** Starts again from counts read from the database (at start, and after a prune). */
  recount(rows: Array<{ tenant_id: string; n: number }>): void {
    this.byTenant = new Map();
    this.total = 0;
    for (const { tenant_id: tenant, n } of rows) this.applyOne(tenant, n);
  }

  /** A change by the write running now, applied when it commits. */
  add(tenantId: string, n: number): void {
    if (n === 0) return;
    const delta = this.delta;
    if (!delta) throw new Error('pending deliveries are counted only inside a write');
    delta.set(tenantId, (delta.get(tenantId) ?? 0) + n);
  }

  /** Runs `work` (a write's transaction body) collecting its changes in `delta`, to apply() once it has committed. */
  counting<T>(delta: Map<string, number>, work: () => T): T {
    const outer = this.delta;
    this.delta = delta;
    try {
      return work();
    } finally {
      this.delta = outer;
    }
  }

  /** The changes of a write that has committed. */
  apply(delta: Map<string, number>): void {
    for (const [tenantId, n] of delta) this.applyOne(tenantId, n);
  }

  private applyOne(tenantId: string, n: number): void {
    if (n === 0) return;
    this.total += n;
    const left = (this.byTenant.get(tenantId) ?? 0) + n;
    if (left > 0) this.byTenant.set(tenantId, left);
    else this.byTenant.delete(tenantId);
  }
}
