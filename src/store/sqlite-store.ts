import { randomBytes } from 'node:crypto';
import type Database from 'better-sqlite3';
import { WalDatabase } from '../sqlite/wal-database.js';
import type { CredentialsCipher } from './credentials-cipher.js';
import { SqliteAttempts } from './sqlite/attempts.js';
import { SqliteBatches } from './sqlite/batches.js';
import { SqliteDeliveries } from './sqlite/deliveries.js';
import { SqliteDestinations } from './sqlite/destinations.js';
import { SqliteEvents } from './sqlite/events.js';
import { SqliteMetrics } from './sqlite/metrics.js';
import { PendingCounts } from './sqlite/pending-counts.js';
import { migrateStore, STORE_ADDED_COLUMNS, STORE_SCHEMA } from './sqlite/schema.js';
import { SqliteTenants } from './sqlite/tenants.js';
import { TenantGoneError } from './types.js';
import type {
  Attempt,
  AttemptFilter,
  CreateDestinationResult,
  Delivery,
  Destination,
  DueDelivery,
  EventBatch,
  EventFilter,
  MetricsQuery,
  MetricsRow,
  NewAttempt,
  NewEvent,
  Page,
  PageQuery,
  PublishResult,
  Store,
  StoredEvent,
  StringMap,
  Tenant,
  TenantFilter,
  UnbatchedDelivery,
} from './types.js';

/**
 * The control plane in an embedded SQLite database (`<data_dir>/store.sqlite`, WAL). Writes a client waits
 * for (tenants, destinations, publishes, retries) are group-committed and durable before they resolve;
 * delivery bookkeeping is committed at once and made durable by the next fsync (a crash repeats an attempt
 * at worst, to the same object key); a batch's seal fsyncs before it returns.
 *
 * This class is the Store contract over the modules of store/sqlite/, one per table with its SQL: it says
 * what one transaction holds (write, writeNow, commitNow) and which modules' steps go into it; they say how.
 * The modules are synchronous (better-sqlite3); the contract is asynchronous for stores on the network, so
 * each method here returns its module's answer as a promise, settled before it returns.
 */
export class SqliteStore implements Store {
  readonly id: string;
  private readonly wal: WalDatabase;
  private readonly pending = new PendingCounts();
  /**
   * Deliveries returned for an attempt and not yet recorded or given back: the claims of this one node, kept
   * in memory (what a restart loses is attempted again from the file). A re-publish of their event outside
   * the idempotency window gets a delivery of its own, as it does where PostgreSQL's claims say so.
   */
  private readonly readForAttempt = new Set<number>();
  private readonly tenants: SqliteTenants;
  private readonly destinations: SqliteDestinations;
  private readonly events: SqliteEvents;
  private readonly deliveries: SqliteDeliveries;
  private readonly batches: SqliteBatches;
  private readonly attempts: SqliteAttempts;
  private readonly metrics: SqliteMetrics;
  private readonly ping1: Database.Statement;

  constructor(dataDir: string, cipher: CredentialsCipher) {
    this.wal = new WalDatabase(dataDir, 'store.sqlite', STORE_SCHEMA, STORE_ADDED_COLUMNS);
    const db = this.wal.db;
    migrateStore(db);
    this.tenants = new SqliteTenants(db);
    this.destinations = new SqliteDestinations(db, cipher);
    this.events = new SqliteEvents(db);
    this.deliveries = new SqliteDeliveries(db, this.pending);
    this.batches = new SqliteBatches(db);
    this.attempts = new SqliteAttempts(db);
    this.metrics = new SqliteMetrics(db);
    this.pending.recount(this.deliveries.countPending());
    this.id = storeId(db);
    this.ping1 = db.prepare('SELECT 1');
  }

  // ---- tenants

  upsertTenant(id: string, metadata: StringMap): Promise<{ tenant: Tenant; created: boolean }> {
    return this.write(() => this.tenants.upsert(id, metadata));
  }

  async getTenant(id: string): Promise<Tenant | undefined> {
    return this.tenants.get(id);
  }

  deleteTenant(id: string): Promise<boolean> {
    return this.write(() => {
      this.destinations.forget(id);
      if (!this.tenants.delete(id)) return false;
      // Its events and their log go with it: a tenant made again with this id starts empty, and sees nothing of the old one.
      this.destinations.deleteAllOf(id);
      this.deliveries.deleteAllOf(id);
      this.batches.deleteAllOf(id);
      this.events.deleteAllOf(id);
      this.attempts.deleteAllOf(id);
      this.tenants.raiseGeneration(id);
      return true;
    });
  }

  async listTenants(query: PageQuery, filter: TenantFilter = {}): Promise<Page<Tenant>> {
    return this.tenants.list(query, filter);
  }

  async countTenants(filter: TenantFilter = {}): Promise<number> {
    return this.tenants.count(filter);
  }

  // ---- destinations

  createDestination(destination: Destination, maxPerTenant: number): Promise<CreateDestinationResult> {
    return this.write((): CreateDestinationResult => {
      if (!this.tenants.exists(destination.tenant_id)) return 'no_tenant';
      return this.destinations.create(destination, maxPerTenant);
    });
  }

  updateDestination(destination: Destination): Promise<void> {
    return this.write(() => {
      this.destinations.update(destination);
      this.deliveries.followDestination(destination.tenant_id, destination.id);
    });
  }

  async getDestination(tenantId: string, id: string): Promise<Destination | undefined> {
    return this.destinations.get(tenantId, id);
  }

  async destinationsWithId(id: string): Promise<Destination[]> {
    return this.destinations.withId(id);
  }

  async listDestinations(tenantId: string): Promise<Destination[]> {
    return this.destinations.of(tenantId);
  }

  async batchedDestinations(): Promise<Destination[]> {
    return this.destinations.batched();
  }

  deleteDestination(tenantId: string, id: string): Promise<boolean> {
    return this.write(() => {
      const deleted = this.destinations.delete(tenantId, id);
      if (deleted) {
        // what it had pending goes with it; its attempts stay in the log until pruned
        this.deliveries.dropPendingOf(tenantId, id);
        this.batches.dropOf(tenantId, id);
      }
      return deleted;
    });
  }

  // ---- events

  publish(event: NewEvent, destinationIds: string[], windowMs: number): Promise<PublishResult> {
    return this.write(() => this.publishNow(event, destinationIds, windowMs));
  }

  publishMany(items: Array<{ event: NewEvent; destinationIds: string[] }>, windowMs: number): Promise<PublishResult[]> {
    // one write, so one savepoint: an event that throws rolls back the whole batch, not itself alone
    return this.write(() => items.map(({ event, destinationIds }) => this.publishNow(event, destinationIds, windowMs)));
  }

  private publishNow(event: NewEvent, destinationIds: string[], windowMs: number): PublishResult {
    // checked before the request was queued, but a delete may have run since: its events must not outlive it
    if (!this.tenants.exists(event.tenant_id)) throw new TenantGoneError(event.tenant_id);
    const now = Date.now();
    const existing = this.events.stored(event.tenant_id, event.id);
    if (existing && existing.received_at >= now - windowMs) {
      return { duplicate: true, destination_ids: this.deliveries.destinationsOf(existing.seq) };
    }
    // Outside the idempotency window the same id is a new publish of that event.
    const seq = this.events.put(event, now, existing?.seq);
    for (const destinationId of destinationIds) {
      // A pending delivery not yet read for an attempt will read the event as it is now: the new publish
      // needs no other. One being attempted, or in a sealed batch, may carry the event as it was: the new
      // publish gets a delivery of its own, or what it acknowledged might never be delivered.
      if (existing && this.deliveries.pendingUnbatched(seq, destinationId).some((d) => !this.readForAttempt.has(d)))
        continue;
      this.deliveries.add(seq, now, event.tenant_id, destinationId);
    }
    return { duplicate: false, destination_ids: destinationIds };
  }

  async pendingDeliveries(tenantId?: string): Promise<number> {
    return this.pending.of(tenantId);
  }

  async getEvent(tenantId: string | undefined, id: string): Promise<StoredEvent | undefined> {
    return this.events.get(tenantId, id);
  }

  async eventDeliveries(eventSeq: number): Promise<Delivery[]> {
    return this.deliveries.ofEvent(eventSeq);
  }

  async listEvents(filter: EventFilter, query: PageQuery): Promise<Page<StoredEvent>> {
    return this.events.list(filter, query);
  }

  // ---- per-event delivery

  /** One node: the dispatcher's own count holds perDestination (nothing is claimed by another). */
  async dueDeliveries(
    now: number,
    limit: number,
    skipDestinations: string[],
    _perDestination: number,
  ): Promise<DueDelivery[]> {
    return this.readFor(this.deliveries.due(now, limit, skipDestinations));
  }

  async dueDeliveriesOf(
    tenantId: string,
    destinationId: string,
    now: number,
    limit: number,
    _perDestination: number,
  ): Promise<DueDelivery[]> {
    return this.readFor(this.deliveries.dueOf(tenantId, destinationId, now, limit));
  }

  /** What dueDeliveries(Of) returned is being attempted, until its attempt is recorded or it is given back. */
  private readFor(due: DueDelivery[]): DueDelivery[] {
    for (const item of due) this.readForAttempt.add(item.delivery.seq);
    return due;
  }

  /** One node: nothing is claimed for another to wait on; they are only no longer being attempted. */
  async releaseDeliveries(seqs: number[]): Promise<void> {
    for (const seq of seqs) this.readForAttempt.delete(seq);
  }

  async nextDueAt(): Promise<number | undefined> {
    return this.deliveries.nextDueAt();
  }

  async setObjectKey(deliverySeq: number, key: string): Promise<void> {
    this.writeNow(() => this.deliveries.setObjectKey(deliverySeq, key));
  }

  async recordAttempt(
    attempt: NewAttempt,
    delivery: Pick<Delivery, 'seq' | 'status' | 'attempts' | 'next_attempt_at'>,
  ): Promise<Attempt | undefined> {
    return this.writeNow(() => {
      // A delivery deleted while it was attempted (its destination or tenant deleted) is neither counted nor
      // logged: a deleted tenant's log stays empty. Its tenant and destination are matched too, as its seq
      // may since have been given to a delivery of another (seqs above the highest left are used again):
      // that one's mark of being attempted is not this attempt's to end.
      if (!this.deliveries.settle(delivery, attempt.tenant_id, attempt.destination_id)) return undefined;
      this.readForAttempt.delete(delivery.seq);
      return this.attempts.insert(attempt);
    });
  }

  retry(eventSeq: number, destinationId: string): Promise<boolean> {
    return this.write(() => {
      const event = this.events.bySeq(eventSeq);
      const delivery = this.deliveries.latest(eventSeq, destinationId);
      // batch attempts are logged per batch: a delivery's own count says it was attempted
      if (
        !event ||
        !delivery ||
        (delivery.attempts === 0 && !this.attempts.madeFor(event.id, event.tenant_id, destinationId))
      )
        return false;
      this.deliveries.requeue(delivery, event.tenant_id);
      return true;
    });
  }

  // ---- batched delivery

  async unbatched(
    tenantId: string,
    destinationId: string,
    afterSeq: number,
    limit: number,
  ): Promise<UnbatchedDelivery[]> {
    return this.batches.unbatched(tenantId, destinationId, afterSeq, limit);
  }

  async batchExists(key: string): Promise<boolean> {
    return this.batches.exists(key);
  }

  async nextRetriedBatch(): Promise<number> {
    return this.batches.nextRetried();
  }

  async sealBatch(batch: EventBatch, deliverySeqs: number[], retried = false): Promise<void> {
    // The batch must be on disk before its upload starts: this commit fsyncs.
    this.wal.commitNow(() => this.batches.seal(batch, deliverySeqs, retried));
  }

  async dueBatches(now: number): Promise<EventBatch[]> {
    return this.batches.due(now);
  }

  /** Nothing is claimed in SQLite (one node): nothing to give back. */
  async releaseBatches(_keys: string[]): Promise<void> {}

  async batchEvents(batch: EventBatch): Promise<StoredEvent[]> {
    return this.batches.events(batch);
  }

  async recordBatchAttempt(
    attempt: NewAttempt,
    batch: Pick<EventBatch, 'key' | 'attempts' | 'next_attempt_at'>,
    status: 'pending' | 'success' | 'failed',
  ): Promise<Attempt | undefined> {
    return this.writeNow(() => {
      // a batch deleted while it was uploaded (its destination or tenant deleted) is not logged, as in recordAttempt
      if (!this.batches.record(batch, status)) return undefined;
      if (status !== 'pending') this.deliveries.settleBatch(batch.key, status, batch.attempts, attempt.tenant_id);
      return this.attempts.insert(attempt);
    });
  }

  // ---- the delivery log

  async getAttempt(tenantId: string | undefined, id: string): Promise<Attempt | undefined> {
    return this.attempts.get(tenantId, id);
  }

  async listAttempts(filter: AttemptFilter, query: PageQuery): Promise<Page<Attempt>> {
    return this.attempts.list(filter, query);
  }

  async eventMetrics(query: MetricsQuery): Promise<{ rows: MetricsRow[]; truncated: boolean }> {
    return this.metrics.events(query);
  }

  async attemptMetrics(query: MetricsQuery): Promise<{ rows: MetricsRow[]; truncated: boolean }> {
    return this.metrics.attempts(query);
  }

  async prune(maxAgeMs: number, maxCount: number): Promise<void> {
    const before = Date.now() - maxAgeMs;
    this.writeNow(() => {
      this.attempts.prune(before, maxCount);
      this.deliveries.prune(before);
      this.events.prune(before);
      this.batches.prune();
    });
    this.pending.recount(this.deliveries.countPending());
  }

  // ---- the database

  onPublish(listener: () => void): void {
    this.wal.commits.onDurable(listener);
  }

  writable(): boolean {
    return this.wal.writable();
  }

  async ping(): Promise<void> {
    // throws when the database is closed or its file cannot be read
    this.ping1.get();
  }

  async close(): Promise<void> {
    this.wal.close();
  }

  /** A group-committed write (durable when it resolves); its changes to the pending counts apply once it has committed. */
  private write<T>(work: () => T): Promise<T> {
    let delta = new Map<string, number>();
    return this.wal.commits.run(
      () => {
        delta = new Map();
        return this.pending.counting(delta, work);
      },
      () => this.pending.apply(delta),
    );
  }

  /**
   * A write committed at once (durable with the next fsync), as the delivery bookkeeping is; a disk error makes
   * the store not writable (503s, /ready) until a write succeeds again. Its counts apply once it has committed.
   */
  private writeNow<T>(work: () => T): T {
    const delta = new Map<string, number>();
    const result = this.wal.writeNow(() => this.pending.counting(delta, work));
    this.pending.apply(delta);
    return result;
  }
}

/** The store's id, made once and kept in its meta table. */
function storeId(db: Database.Database): string {
  const id = db.prepare("SELECT value FROM meta WHERE key = 'store_id'").pluck().get() as string | undefined;
  if (id) return id;
  const made = randomBytes(4).toString('hex');
  db.prepare("INSERT INTO meta (key, value) VALUES ('store_id', ?)").run(made);
  return made;
}
