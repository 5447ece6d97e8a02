import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { WalDatabase, type WalGroupCommit } from '../buffer/wal-group-commit.js';
import type { CredentialsCipher } from './credentials-cipher.js';
import { SqliteMetrics } from './sqlite-metrics.js';
import { countRows, readPage, type Filtered } from './sqlite-pages.js';
import { migrateStore, STORE_ADDED_COLUMNS, STORE_SCHEMA } from './sqlite-store-schema.js';
import { TenantGoneError } from './types.js';
import type {
  Attempt, AttemptFilter, CreateDestinationResult, Delivery, Destination, DueDelivery, EventBatch, EventFilter, MetricsQuery, MetricsRow, NewAttempt, NewEvent,
  OneOrMore, Page, PageQuery, PublishResult, Store, StoredEvent, StringMap, Tenant, TenantFilter, TimeRange, UnbatchedDelivery,
} from './types.js';

/** Due deliveries with their events, in one read. */
const DUE_SELECT = `SELECT d.seq AS delivery_seq, d.tenant_id AS delivery_tenant_id, d.destination_id, d.status, d.attempts, d.next_attempt_at, d.object_key, d.manual, e.*
  FROM deliveries d JOIN events e ON e.seq = d.event_seq
  WHERE d.status = 'pending' AND d.ready = 1 AND d.next_attempt_at <= ?`;

/** The meta key counting the batches sealed with a retry number in their key (see EventBatcher). */
const RETRIED_BATCHES = 'retried_batches';

/** Tenants with their token generation. */
const TENANTS_WITH_GENERATION = `(SELECT t.*, coalesce(g.generation, 0) AS generation FROM tenants t
  LEFT JOIN tenant_generations g ON g.id = t.id)`;

interface DueRow extends EventRow {
  delivery_seq: number; delivery_tenant_id: string; destination_id: string; status: Delivery['status']; attempts: number; next_attempt_at: number;
  object_key: string | null; manual: number;
}

interface TenantRow { seq: number; id: string; metadata: string; created_at: string; updated_at: string; generation: number }
interface DestinationRow {
  id: string; tenant_id: string; type: string; topics: string; config: string; credentials: string; delivery_metadata: string;
  metadata: string; batched: number; filter: string; disabled_at: string | null; created_at: string; updated_at: string;
}
interface EventRow {
  seq: number; tenant_id: string; id: string; topic: string; time: string; time_ms: number; eligible_for_retry: number;
  metadata: string; data: string; received_at: number;
}
interface DeliveryRow {
  seq: number; event_seq: number; tenant_id: string; destination_id: string; status: Delivery['status']; attempts: number; next_attempt_at: number;
  object_key: string | null; manual: number;
}
interface AttemptRow {
  seq: number; id: string; tenant_id: string; event_id: string | null; destination_id: string; status: Attempt['status'];
  code: string | null; response_data: string | null; error: string | null; attempt_number: number; manual: number; time: number; duration_ms: number;
}

/**
 * The control plane in an embedded SQLite database (`<data_dir>/store.sqlite`, WAL). Writes a client waits
 * for (tenants, destinations, publishes, retries) are group-committed and durable before they resolve;
 * delivery bookkeeping is committed at once and made durable by the next fsync (a crash repeats an attempt
 * at worst, to the same object key).
 */
export class SqliteStore implements Store {
  readonly id: string;
  private readonly wal: WalDatabase;
  private readonly db: Database.Database;
  private readonly commits: WalGroupCommit;
  private pending = 0;
  /** Pending deliveries per tenant, kept as `pending` is (tenants with none are absent). */
  private pendingByTenant = new Map<string, number>();
  /**
   * The changes to those counts made by the write running now (see write and writeNow): applied once its
   * transaction has committed, never before, so that a write rolled back (a full disk fails the COMMIT)
   * leaves the counts as the database does.
   */
  private pendingDelta: Map<string, number> | undefined;
  /**
   * Tenants and their destinations, read on every publish: cached, and dropped by every write that changes
   * them (this process is the only writer of this database).
   */
  private readonly tenantCache = new Map<string, Tenant>();
  private readonly destinationCache = new Map<string, Destination[]>();
  /** Statements of dueDeliveries by the number of destinations they leave out. */
  private readonly dueStatements = new Map<number, Database.Statement>();
  private readonly q;
  private readonly metrics: SqliteMetrics;

  constructor(dataDir: string, private readonly cipher: CredentialsCipher) {
    this.wal = new WalDatabase(dataDir, 'store.sqlite', STORE_SCHEMA, STORE_ADDED_COLUMNS);
    this.db = this.wal.db;
    migrateStore(this.db);
    this.commits = this.wal.commits;
    const db = this.db;
    this.q = {
      tenant: db.prepare(`SELECT * FROM ${TENANTS_WITH_GENERATION} WHERE id = ?`),
      insertTenant: db.prepare('INSERT INTO tenants (id, metadata, created_at, updated_at) VALUES (?, ?, ?, ?)'),
      updateTenant: db.prepare('UPDATE tenants SET metadata = ?, updated_at = ? WHERE id = ?'),
      deleteTenant: db.prepare('DELETE FROM tenants WHERE id = ?'),
      raiseGeneration: db.prepare(`INSERT INTO tenant_generations (id, generation) VALUES (?, 1)
        ON CONFLICT (id) DO UPDATE SET generation = generation + 1`),
      deleteEventsOf: db.prepare('DELETE FROM events WHERE tenant_id = ?'),
      deleteDeliveriesOf: db.prepare('DELETE FROM deliveries WHERE tenant_id = ?'),
      deleteBatchesOf: db.prepare('DELETE FROM event_batches WHERE tenant_id = ?'),
      deleteAttemptsOf: db.prepare('DELETE FROM attempts WHERE tenant_id = ?'),
      destinationsWithId: db.prepare('SELECT * FROM destinations WHERE id = ? ORDER BY tenant_id'),
      destinationExists: db.prepare('SELECT 1 FROM destinations WHERE tenant_id = ? AND id = ?'),
      countDestinations: db.prepare('SELECT count(*) FROM destinations WHERE tenant_id = ?').pluck(),
      tenantExists: db.prepare('SELECT 1 FROM tenants WHERE id = ?'),
      destinations: db.prepare('SELECT * FROM destinations WHERE tenant_id = ? ORDER BY created_at, id'),
      batchedDestinations: db.prepare('SELECT * FROM destinations WHERE batched = 1 AND disabled_at IS NULL'),
      insertDestination: db.prepare(`INSERT INTO destinations (id, tenant_id, type, topics, config, credentials, delivery_metadata, metadata, batched, filter, disabled_at, created_at, updated_at)
        VALUES (@id, @tenant_id, @type, @topics, @config, @credentials, @delivery_metadata, @metadata, @batched, @filter, @disabled_at, @created_at, @updated_at)`),
      updateDestination: db.prepare(`UPDATE destinations SET topics = @topics, config = @config, credentials = @credentials,
        delivery_metadata = @delivery_metadata, metadata = @metadata, batched = @batched, filter = @filter, disabled_at = @disabled_at, updated_at = @updated_at
        WHERE id = @id AND tenant_id = @tenant_id`),
      deleteDestination: db.prepare('DELETE FROM destinations WHERE tenant_id = ? AND id = ?'),
      deleteDestinationsOf: db.prepare('DELETE FROM destinations WHERE tenant_id = ?'),
      dropDeliveriesOf: db.prepare("DELETE FROM deliveries WHERE tenant_id = ? AND destination_id = ? AND status = 'pending'"),
      dropBatchesOf: db.prepare('DELETE FROM event_batches WHERE tenant_id = ? AND destination_id = ?'),
      eventByKey: db.prepare('SELECT * FROM events WHERE tenant_id = ? AND id = ?'),
      eventById: db.prepare('SELECT * FROM events WHERE id = ? ORDER BY seq DESC LIMIT 1'),
      eventBySeq: db.prepare('SELECT * FROM events WHERE seq = ?'),
      insertEvent: db.prepare(`INSERT INTO events (tenant_id, id, topic, time, time_ms, eligible_for_retry, metadata, data, received_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      replaceEvent: db.prepare(`UPDATE events SET topic = ?, time = ?, time_ms = ?, eligible_for_retry = ?, metadata = ?, data = ?, received_at = ?
        WHERE seq = ?`),
      deliveryDestinations: db.prepare('SELECT DISTINCT destination_id FROM deliveries WHERE event_seq = ? ORDER BY seq').pluck(),
      pendingFor: db.prepare("SELECT 1 FROM deliveries WHERE event_seq = ? AND destination_id = ? AND status = 'pending'"),
      // seq above every seq ever used (see the deliveries_seq_floor trigger)
      insertDelivery: db.prepare(`INSERT INTO deliveries (seq, event_seq, tenant_id, destination_id, status, next_attempt_at, ready)
        SELECT max(coalesce((SELECT max(seq) FROM deliveries), 0),
                   coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'delivery_seq_floor'), 0)) + 1,
          ?, tenant_id, id, 'pending', ?, (disabled_at IS NULL AND batched = 0) FROM destinations WHERE tenant_id = ? AND id = ?`),
      setReady: db.prepare(`UPDATE deliveries SET ready = (SELECT disabled_at IS NULL AND batched = 0 FROM destinations WHERE tenant_id = @tenant_id AND id = @id)
        WHERE tenant_id = @tenant_id AND destination_id = @id AND status = 'pending'`),
      eventDeliveries: db.prepare('SELECT * FROM deliveries WHERE event_seq = ? ORDER BY seq'),
      countPending: db.prepare("SELECT tenant_id, count(*) AS n FROM deliveries WHERE status = 'pending' GROUP BY tenant_id"),
      countPendingOf: db.prepare("SELECT count(*) FROM deliveries WHERE tenant_id = ? AND status = 'pending'").pluck(),
      dueFor: db.prepare(`${DUE_SELECT} AND d.tenant_id = ? AND d.destination_id = ? ORDER BY d.next_attempt_at LIMIT ?`),
      nextDue: db.prepare("SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending' AND ready = 1").pluck(),
      setKey: db.prepare('UPDATE deliveries SET object_key = ? WHERE seq = ?'),
      setDelivery: db.prepare(`UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, manual = 0
        WHERE seq = ? AND tenant_id = ? AND destination_id = ? AND status = 'pending'`),
      latestDelivery: db.prepare('SELECT * FROM deliveries WHERE event_seq = ? AND destination_id = ? ORDER BY seq DESC LIMIT 1'),
      attemptedAt: db.prepare('SELECT 1 FROM attempts WHERE event_id = ? AND tenant_id = ? AND destination_id = ? LIMIT 1'),
      requeue: db.prepare(`UPDATE deliveries SET status = 'pending', next_attempt_at = ?, manual = 1, batch = NULL,
        ready = (SELECT disabled_at IS NULL AND batched = 0 FROM destinations t
          WHERE t.tenant_id = deliveries.tenant_id AND t.id = deliveries.destination_id) WHERE seq = ?`),
      insertAttempt: db.prepare(`INSERT INTO attempts (id, tenant_id, event_id, destination_id, status, code, response_data, error, attempt_number, manual, time, duration_ms)
        VALUES (@id, @tenant_id, @event_id, @destination_id, @status, @code, @response_data, @error, @attempt_number, @manual, @time, @duration_ms)`),
      attempt: db.prepare('SELECT * FROM attempts WHERE id = ?'),
      unbatched: db.prepare(`SELECT d.seq, d.manual AS retried, e.topic, e.time_ms, e.received_at AS received_at_ms, length(CAST(e.data AS BLOB)) AS bytes
        FROM deliveries d JOIN events e ON e.seq = d.event_seq
        WHERE d.tenant_id = ? AND d.destination_id = ? AND d.status = 'pending' AND d.batch IS NULL AND d.seq > ? ORDER BY d.seq LIMIT ?`),
      insertBatch: db.prepare(`INSERT INTO event_batches (key, tenant_id, destination_id, first_seq, last_seq, count, status, next_attempt_at)
        VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)`),
      assignBatch: db.prepare('UPDATE deliveries SET batch = ? WHERE seq = ?'),
      batchExists: db.prepare('SELECT 1 FROM event_batches WHERE key = ?'),
      retriedBatches: db.prepare(`SELECT CAST(value AS INTEGER) FROM meta WHERE key = '${RETRIED_BATCHES}'`).pluck(),
      countRetriedBatch: db.prepare(`INSERT INTO meta (key, value) VALUES ('${RETRIED_BATCHES}', '1')
        ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1`),
      dueBatches: db.prepare(`SELECT b.* FROM event_batches b JOIN destinations t ON t.tenant_id = b.tenant_id AND t.id = b.destination_id
        WHERE b.status = 'pending' AND b.next_attempt_at <= ? AND t.disabled_at IS NULL ORDER BY b.next_attempt_at`),
      batchEvents: db.prepare('SELECT e.* FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.batch = ? ORDER BY d.seq'),
      setBatch: db.prepare('UPDATE event_batches SET status = ?, attempts = ?, next_attempt_at = ? WHERE key = ?'),
      settleBatch: db.prepare('UPDATE deliveries SET status = ?, attempts = ? WHERE batch = ?'),
      pruneAttemptsByAge: db.prepare('DELETE FROM attempts WHERE time < ?'),
      pruneAttemptsByCount: db.prepare('DELETE FROM attempts WHERE seq <= (SELECT max(seq) FROM attempts) - ?'),
      pruneBatches: db.prepare(`DELETE FROM event_batches WHERE status != 'pending'
        AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.batch = event_batches.key)`),
      pruneDeliveries: db.prepare(`DELETE FROM deliveries WHERE status != 'pending'
        AND event_seq IN (SELECT seq FROM events WHERE received_at < ?)`),
      pruneEvents: db.prepare(`DELETE FROM events WHERE received_at < ?
        AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = events.seq)`),
    };
    this.metrics = new SqliteMetrics(db);
    this.countPending();
    const getMeta = db.prepare('SELECT value FROM meta WHERE key = ?').pluck();
    let id = getMeta.get('store_id') as string | undefined;
    if (!id) {
      id = randomBytes(4).toString('hex');
      db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('store_id', id);
    }
    this.id = id;
  }

  // ---- tenants

  upsertTenant(id: string, metadata: StringMap): Promise<{ tenant: Tenant; created: boolean }> {
    return this.write(() => {
      const now = new Date().toISOString();
      const existing = this.q.tenant.get(id) as TenantRow | undefined;
      this.tenantCache.delete(id);
      if (existing) this.q.updateTenant.run(JSON.stringify(metadata), now, id);
      else this.q.insertTenant.run(id, JSON.stringify(metadata), now, now);
      return { tenant: toTenant(this.q.tenant.get(id) as TenantRow), created: !existing };
    });
  }

  getTenant(id: string): Tenant | undefined {
    const cached = this.tenantCache.get(id);
    if (cached) return cached;
    const row = this.q.tenant.get(id) as TenantRow | undefined;
    if (!row) return undefined;
    const tenant = toTenant(row);
    this.tenantCache.set(id, tenant);
    return tenant;
  }

  deleteTenant(id: string): Promise<boolean> {
    return this.write(() => {
      this.tenantCache.delete(id);
      this.destinationCache.delete(id);
      if (this.q.deleteTenant.run(id).changes === 0) return false;
      // Its events and their log go with it: a tenant made again with this id starts empty, and sees nothing of the old one.
      this.q.deleteDestinationsOf.run(id);
      // counted inside this transaction: publishes queued before it in the same group commit are among them
      this.addPending(id, -(this.q.countPendingOf.get(id) as number));
      this.q.deleteDeliveriesOf.run(id);
      this.q.deleteBatchesOf.run(id);
      this.q.deleteEventsOf.run(id);
      this.q.deleteAttemptsOf.run(id);
      this.q.raiseGeneration.run(id);
      return true;
    });
  }

  listTenants(query: PageQuery, filter: TenantFilter = {}): Page<Tenant> {
    // seq is the order tenants were made in: created_at order
    return readPage(this.db, TENANTS_WITH_GENERATION, tenantConditions(filter), query, query.dir ?? 'asc', toTenant);
  }

  countTenants(filter: TenantFilter = {}): number {
    return countRows(this.db, 'tenants', tenantConditions(filter));
  }

  // ---- destinations

  createDestination(destination: Destination, maxPerTenant: number): Promise<CreateDestinationResult> {
    return this.write((): CreateDestinationResult => {
      const tenantId = destination.tenant_id;
      if (!this.q.tenantExists.get(tenantId)) return 'no_tenant';
      if (this.q.destinationExists.get(tenantId, destination.id)) return 'exists';
      if ((this.q.countDestinations.get(tenantId) as number) >= maxPerTenant) return 'over_quota';
      this.destinationCache.delete(tenantId);
      this.q.insertDestination.run(this.destinationParams(destination));
      return 'created';
    });
  }

  updateDestination(destination: Destination): Promise<void> {
    return this.write(() => {
      this.destinationCache.delete(destination.tenant_id);
      this.q.updateDestination.run(this.destinationParams(destination));
      // enabled, disabled, batched or not: its pending deliveries follow
      this.q.setReady.run({ tenant_id: destination.tenant_id, id: destination.id });
    });
  }

  getDestination(tenantId: string, id: string): Destination | undefined {
    // from the tenant's cached list: the dispatcher asks for every attempt
    return this.listDestinations(tenantId).find((d) => d.id === id);
  }

  destinationsWithId(id: string): Destination[] {
    return (this.q.destinationsWithId.all(id) as DestinationRow[]).map((r) => this.toDestination(r));
  }

  listDestinations(tenantId: string): Destination[] {
    let destinations = this.destinationCache.get(tenantId);
    if (!destinations) {
      destinations = (this.q.destinations.all(tenantId) as DestinationRow[]).map((r) => this.toDestination(r));
      this.destinationCache.set(tenantId, destinations);
    }
    return destinations;
  }

  batchedDestinations(): Destination[] {
    return (this.q.batchedDestinations.all() as DestinationRow[]).map((r) => this.toDestination(r));
  }

  deleteDestination(tenantId: string, id: string): Promise<boolean> {
    return this.write(() => {
      this.destinationCache.delete(tenantId);
      const deleted = this.q.deleteDestination.run(tenantId, id).changes > 0;
      if (deleted) {
        // what it had pending goes with it; its attempts stay in the log until pruned
        this.addPending(tenantId, -this.q.dropDeliveriesOf.run(tenantId, id).changes);
        this.q.dropBatchesOf.run(tenantId, id);
      }
      return deleted;
    });
  }

  /** Counts every pending delivery again, per tenant. */
  private countPending(): void {
    this.pendingByTenant = new Map();
    this.pending = 0;
    for (const { tenant_id: tenant, n } of this.q.countPending.all() as Array<{ tenant_id: string; n: number }>) this.applyPending(tenant, n);
  }

  /** A change to the pending counts by the write running now, applied when it commits. */
  private addPending(tenantId: string, n: number): void {
    if (n === 0) return;
    const delta = this.pendingDelta;
    if (!delta) throw new Error('pending deliveries are counted only inside a write');
    delta.set(tenantId, (delta.get(tenantId) ?? 0) + n);
  }

  /** A group-committed write (durable when it resolves); its changes to the pending counts apply once it has committed. */
  private write<T>(work: () => T): Promise<T> {
    let delta = new Map<string, number>();
    return this.commits.run(() => {
      delta = new Map();
      return this.counting(delta, work);
    }, () => this.applyDelta(delta));
  }

  /**
   * A write committed at once (durable with the next fsync), as the delivery bookkeeping is; a disk error makes
   * the store not writable (503s, /ready) until a write succeeds again. Its counts apply once it has committed.
   */
  private writeNow<T>(work: () => T): T {
    const delta = new Map<string, number>();
    const result = this.wal.writeNow(() => this.counting(delta, work));
    this.applyDelta(delta);
    return result;
  }

  private counting<T>(delta: Map<string, number>, work: () => T): T {
    const outer = this.pendingDelta;
    this.pendingDelta = delta;
    try {
      return work();
    } finally {
      this.pendingDelta = outer;
    }
  }

  private applyDelta(delta: Map<string, number>): void {
    for (const [tenantId, n] of delta) this.applyPending(tenantId, n);
  }

  private applyPending(tenantId: string, n: number): void {
    if (n === 0) return;
    this.pending += n;
    const left = (this.pendingByTenant.get(tenantId) ?? 0) + n;
    if (left > 0) this.pendingByTenant.set(tenantId, left);
    else this.pendingByTenant.delete(tenantId);
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
    if (!this.q.tenantExists.get(event.tenant_id)) throw new TenantGoneError(event.tenant_id);
    const now = Date.now();
    const existing = this.q.eventByKey.get(event.tenant_id, event.id) as EventRow | undefined;
    if (existing && existing.received_at >= now - windowMs) {
      return { duplicate: true, destination_ids: this.q.deliveryDestinations.all(existing.seq) as string[] };
    }
    const values = [event.topic, event.time, event.time_ms, event.eligible_for_retry ? 1 : 0, JSON.stringify(event.metadata), event.data, now] as const;
    let seq: number;
    if (existing) {
      // Outside the idempotency window the same id is a new publish of that event.
      this.q.replaceEvent.run(...values, existing.seq);
      seq = existing.seq;
    } else {
      seq = Number(this.q.insertEvent.run(event.tenant_id, event.id, ...values).lastInsertRowid);
    }
    for (const destinationId of destinationIds) {
      if (existing && this.q.pendingFor.get(seq, destinationId)) continue;
      this.addPending(event.tenant_id, this.q.insertDelivery.run(seq, now, event.tenant_id, destinationId).changes);
    }
    return { duplicate: false, destination_ids: destinationIds };
  }

  pendingDeliveries(tenantId?: string): number {
    return tenantId === undefined ? this.pending : this.pendingByTenant.get(tenantId) ?? 0;
  }

  getEvent(tenantId: string | undefined, id: string): StoredEvent | undefined {
    const row = (tenantId === undefined ? this.q.eventById.get(id) : this.q.eventByKey.get(tenantId, id)) as EventRow | undefined;
    return row && toEvent(row);
  }

  eventDeliveries(eventSeq: number): Delivery[] {
    return (this.q.eventDeliveries.all(eventSeq) as DeliveryRow[]).map(toDelivery);
  }

  listEvents(filter: EventFilter, query: PageQuery): Page<StoredEvent> {
    const f: Filtered = { where: [], params: [] };
    anyOf(f, 'tenant_id', filter.tenant_id);
    anyOf(f, 'topic', filter.topic);
    anyOf(f, 'id', filter.id);
    within(f, 'time_ms', filter.time);
    const destinations = list(filter.destination_id);
    if (destinations) {
      // a destination id names one destination of each tenant: deliveries of the event's own tenant
      f.where.push(`seq IN (SELECT event_seq FROM deliveries d WHERE d.tenant_id = events.tenant_id AND d.destination_id IN (${marks(destinations)}))`);
      f.params.push(...destinations);
    }
    // by the event's own time, as Outpost orders them (a publish may name a time in the past)
    return readPage(this.db, 'events', f, query, query.dir ?? 'desc', toEvent, 'time_ms');
  }

  // ---- per-event delivery

  dueDeliveries(now: number, limit: number, skipDestinations: string[]): DueDelivery[] {
    // Busy destinations are left out in SQL: a long backlog of one must not hide the due deliveries of others.
    // (destinationKey: tenant ids cannot hold '/')
    const skip = skipDestinations.length > 0 ? ` AND (d.tenant_id || '/' || d.destination_id) NOT IN (${skipDestinations.map(() => '?').join(', ')})` : '';
    let statement = this.dueStatements.get(skipDestinations.length);
    if (!statement) {
      statement = this.db.prepare(`${DUE_SELECT}${skip} ORDER BY d.next_attempt_at LIMIT ?`);
      this.dueStatements.set(skipDestinations.length, statement);
    }
    return (statement.all(now, ...skipDestinations, limit) as DueRow[]).map(toDue);
  }

  dueDeliveriesOf(tenantId: string, destinationId: string, now: number, limit: number): DueDelivery[] {
    return (this.q.dueFor.all(now, tenantId, destinationId, limit) as DueRow[]).map(toDue);
  }

  nextDueAt(): number | undefined {
    return (this.q.nextDue.get() as number | null) ?? undefined;
  }

  setObjectKey(deliverySeq: number, key: string): void {
    this.writeNow(() => this.q.setKey.run(key, deliverySeq));
  }

  recordAttempt(attempt: NewAttempt, delivery: Pick<Delivery, 'seq' | 'status' | 'attempts' | 'next_attempt_at'>): Attempt | undefined {
    return this.writeNow(() => {
      // A delivery deleted while it was attempted (its destination or tenant deleted) is neither counted nor
      // logged: a deleted tenant's log stays empty. Its tenant and destination are matched too, as its seq
      // may since have been given to a delivery of another (seqs above the highest left are used again).
      const changed = this.q.setDelivery.run(delivery.status, delivery.attempts, delivery.next_attempt_at, delivery.seq, attempt.tenant_id, attempt.destination_id).changes;
      if (changed === 0) return undefined;
      if (delivery.status !== 'pending') this.addPending(attempt.tenant_id, -1);
      return this.insertAttempt(attempt);
    });
  }

  retry(eventSeq: number, destinationId: string): Promise<boolean> {
    return this.write(() => {
      const event = this.q.eventBySeq.get(eventSeq) as EventRow | undefined;
      const delivery = this.q.latestDelivery.get(eventSeq, destinationId) as DeliveryRow | undefined;
      // batch attempts are logged per batch: a delivery's own count says it was attempted
      if (!event || !delivery || (delivery.attempts === 0 && !this.q.attemptedAt.get(event.id, event.tenant_id, destinationId))) return false;
      if (delivery.status !== 'pending') this.addPending(event.tenant_id, 1);
      this.q.requeue.run(Date.now(), delivery.seq);
      return true;
    });
  }

  // ---- batched delivery

  unbatched(tenantId: string, destinationId: string, afterSeq: number, limit: number): UnbatchedDelivery[] {
    return this.q.unbatched.all(tenantId, destinationId, afterSeq, limit) as UnbatchedDelivery[];
  }

  batchExists(key: string): boolean {
    return this.q.batchExists.get(key) !== undefined;
  }

  nextRetriedBatch(): number {
    return ((this.q.retriedBatches.get() as number | undefined) ?? 0) + 1;
  }

  sealBatch(batch: EventBatch, deliverySeqs: number[], retried = false): void {
    // The batch must be on disk before its upload starts: this commit fsyncs.
    this.wal.commitNow(() => {
      // the number is used up with the seal that took it: the next retried batch gets the next one
      if (retried) this.q.countRetriedBatch.run();
      this.q.insertBatch.run(batch.key, batch.tenant_id, batch.destination_id, batch.first_seq, batch.last_seq, batch.count, batch.next_attempt_at);
      for (const seq of deliverySeqs) this.q.assignBatch.run(batch.key, seq);
    });
  }

  dueBatches(now: number): EventBatch[] {
    return this.q.dueBatches.all(now) as EventBatch[];
  }

  batchEvents(batch: EventBatch): StoredEvent[] {
    return (this.q.batchEvents.all(batch.key) as EventRow[]).map(toEvent);
  }

  recordBatchAttempt(attempt: NewAttempt, batch: Pick<EventBatch, 'key' | 'attempts' | 'next_attempt_at'>, status: 'pending' | 'success' | 'failed'): Attempt | undefined {
    return this.writeNow(() => {
      // a batch deleted while it was uploaded (its destination or tenant deleted) is not logged, as in recordAttempt
      if (this.q.setBatch.run(status, batch.attempts, batch.next_attempt_at, batch.key).changes === 0) return undefined;
      if (status !== 'pending') this.addPending(attempt.tenant_id, -this.q.settleBatch.run(status, batch.attempts, batch.key).changes);
      return this.insertAttempt(attempt);
    });
  }

  // ---- attempts

  private insertAttempt(attempt: NewAttempt): Attempt {
    const time = Date.now();
    const id = `atm_${randomBytes(10).toString('hex')}`;
    this.q.insertAttempt.run({
      ...attempt,
      id,
      response_data: attempt.response_data ? JSON.stringify(attempt.response_data) : null,
      manual: attempt.manual ? 1 : 0,
      time,
    });
    return { ...attempt, id, time: new Date(time).toISOString() };
  }

  getAttempt(tenantId: string | undefined, id: string): Attempt | undefined {
    const row = this.q.attempt.get(id) as AttemptRow | undefined;
    if (!row || (tenantId !== undefined && row.tenant_id !== tenantId)) return undefined;
    return toAttempt(row);
  }

  listAttempts(filter: AttemptFilter, query: PageQuery): Page<Attempt> {
    const f: Filtered = { where: [], params: [] };
    anyOf(f, 'tenant_id', filter.tenant_id);
    anyOf(f, 'event_id', filter.event_id);
    anyOf(f, 'destination_id', filter.destination_id);
    anyOf(f, 'status', filter.status);
    within(f, 'time', filter.time);
    const types = list(filter.destination_type);
    if (types) {
      f.where.push(`EXISTS (SELECT 1 FROM destinations t WHERE t.tenant_id = attempts.tenant_id AND t.id = attempts.destination_id AND t.type IN (${marks(types)}))`);
      f.params.push(...types);
    }
    const topics = list(filter.topic);
    if (topics) {
      f.where.push(`EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = attempts.tenant_id AND e.id = attempts.event_id AND e.topic IN (${marks(topics)}))`);
      f.params.push(...topics);
    }
    // seq is the order attempts were made in (their time is taken as they are recorded)
    return readPage(this.db, 'attempts', f, query, query.dir ?? 'desc', toAttempt);
  }

  eventMetrics(query: MetricsQuery): { rows: MetricsRow[]; truncated: boolean } {
    return this.metrics.events(query);
  }

  attemptMetrics(query: MetricsQuery): { rows: MetricsRow[]; truncated: boolean } {
    return this.metrics.attempts(query);
  }

  prune(maxAgeMs: number, maxCount: number): void {
    const before = Date.now() - maxAgeMs;
    this.writeNow(() => {
      this.q.pruneAttemptsByAge.run(before);
      this.q.pruneAttemptsByCount.run(maxCount);
      this.q.pruneDeliveries.run(before);
      this.q.pruneEvents.run(before);
      this.q.pruneBatches.run();
    });
    this.countPending();
  }

  onPublish(listener: () => void): void {
    this.commits.onDurable(listener);
  }

  writable(): boolean {
    return this.wal.writable();
  }

  close(): void {
    this.wal.close();
  }

  private destinationParams(d: Destination) {
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
    return {
      id: row.id,
      tenant_id: row.tenant_id,
      type: row.type,
      topics: JSON.parse(row.topics) as string[],
      config: JSON.parse(row.config) as Record<string, unknown>,
      credentials: this.cipher.decrypt(row.credentials),
      delivery_metadata: JSON.parse(row.delivery_metadata) as StringMap,
      metadata: JSON.parse(row.metadata) as StringMap,
      filter: JSON.parse(row.filter ?? '{}') as Record<string, unknown>,
      disabled_at: row.disabled_at,
      created_at: row.created_at,
      updated_at: row.updated_at,
    };
  }
}

function list(value: OneOrMore | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'string' ? [value] : value;
}

function marks(values: unknown[]): string {
  return values.map(() => '?').join(', ');
}

/** `column IN (...)` for a filter of one value or several (column names are this module's own, never a caller's). */
function anyOf(f: Filtered, column: string, value: OneOrMore | undefined): void {
  const values = list(value);
  if (!values) return;
  f.where.push(values.length === 1 ? `${column} = ?` : `${column} IN (${marks(values)})`);
  f.params.push(...values);
}

function within(f: Filtered, column: string, range: TimeRange | undefined): void {
  if (!range) return;
  for (const [op, sql] of [['gte', '>='], ['gt', '>'], ['lte', '<='], ['lt', '<']] as const) {
    if (range[op] === undefined) continue;
    f.where.push(`${column} ${sql} ?`);
    f.params.push(range[op]);
  }
}

function tenantConditions(filter: TenantFilter): Filtered {
  const f: Filtered = { where: [], params: [] };
  anyOf(f, 'id', filter.id);
  return f;
}

function toTenant(row: TenantRow): Tenant {
  return {
    id: row.id, metadata: JSON.parse(row.metadata) as StringMap, created_at: row.created_at, updated_at: row.updated_at, generation: row.generation ?? 0,
  };
}

function toEvent(row: EventRow): StoredEvent {
  return {
    seq: row.seq,
    tenant_id: row.tenant_id,
    id: row.id,
    topic: row.topic,
    time: row.time,
    time_ms: row.time_ms,
    eligible_for_retry: row.eligible_for_retry === 1,
    metadata: JSON.parse(row.metadata) as StringMap,
    data: row.data,
    received_at: new Date(row.received_at).toISOString(),
  };
}

function toDue(row: DueRow): DueDelivery {
  return { delivery: toDelivery({ ...row, seq: row.delivery_seq, event_seq: row.seq, tenant_id: row.delivery_tenant_id }), event: toEvent(row) };
}

function toDelivery(row: DeliveryRow): Delivery {
  return {
    seq: row.seq,
    event_seq: row.event_seq,
    tenant_id: row.tenant_id,
    destination_id: row.destination_id,
    status: row.status,
    attempts: row.attempts,
    next_attempt_at: row.next_attempt_at,
    object_key: row.object_key,
    manual: row.manual === 1,
  };
}

function toAttempt(row: AttemptRow): Attempt {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    event_id: row.event_id,
    destination_id: row.destination_id,
    status: row.status,
    code: row.code,
    response_data: row.response_data ? JSON.parse(row.response_data) as Record<string, unknown> : null,
    error: row.error,
    attempt_number: row.attempt_number,
    manual: row.manual === 1,
    time: new Date(row.time).toISOString(),
    duration_ms: row.duration_ms,
  };
}
