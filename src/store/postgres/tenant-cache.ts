/**
 * What this node read of a tenant (the tenant itself, its destinations), kept until a change of that tenant
 * is heard of (ChangeListener) or the periodic refresh drops everything. A read that was under way when its
 * tenant changed is given to its caller but not kept: it may be from before the change.
 */
export class TenantCache<V> {
  private readonly entries = new Map<string, V>();
  /** Raised by every change of the tenant; a read keeps its answer only if it is unchanged since the read began. */
  private readonly versions = new Map<string, number>();
  private epoch = 0;
  /** Off while changes may go unheard (the listener is not connected): every read reads the database. */
  enabled = true;

  async get(tenantId: string, load: () => Promise<V | undefined>): Promise<V | undefined> {
    if (this.enabled) {
      const cached = this.entries.get(tenantId);
      if (cached !== undefined) return cached;
    }
    const epoch = this.epoch;
    const version = this.versions.get(tenantId) ?? 0;
    const value = await load();
    if (value !== undefined && this.enabled && epoch === this.epoch && version === (this.versions.get(tenantId) ?? 0))
      this.entries.set(tenantId, value);
    return value;
  }

  /** The tenant changed (here or on another node). */
  invalidate(tenantId: string): void {
    this.entries.delete(tenantId);
    this.versions.set(tenantId, (this.versions.get(tenantId) ?? 0) + 1);
  }

  /** Everything may have changed. */
  clear(): void {
    this.entries.clear();
    this.versions.clear();
    this.epoch++;
  }
}
