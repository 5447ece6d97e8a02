import type { CredentialsCipher } from './credentials-cipher.js';
import { ChangeListener, PUBLISHED_CHANNEL } from './postgres/change-listener.js';
import { PgAttempts } from './postgres/attempts.js';
import { PgBatches } from './postgres/batches.js';
import { bound, hasNul, PgDatabase, type Prepared, type Sql } from './postgres/database.js';
import { PgDeliveries } from './postgres/deliveries.js';
import { PgDestinations } from './postgres/destinations.js';
import { checkStorable, PgEvents, type Stored } from './postgres/events.js';
import { GroupCommit, type Outcome } from './postgres/group-commit.js';
import { migrate, SchemaTooNewError } from './postgres/migrate.js';
import { PgMetrics } from './postgres/metrics.js';
import { addPending, PendingCounts, type PendingDelta } from './postgres/pending-counts.js';
import { PgTenants } from './postgres/tenants.js';
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

export interface PostgresStoreOptions {
  /** postgres://user:password@host:port/database (search_path in it is overridden by `schema`). */
  url: string;
  /** Connections at most. */
  pool: number;
  /** The schema of the store's tables, created if missing: one per cluster. */
  schema: string;
  /** This node: who claims deliveries and batches, and who made each attempt. */
  nodeId: string;
  /** How long a claim holds before another node may take the work (ms). */
  leaseMs: number;
  cipher: CredentialsCipher;
  /** How often the caches of tenants and destinations are dropped whatever was heard (ms). */
  refreshMs?: number;
}

/** Tells the other nodes of new deliveries (sent at the commit of the transaction it runs in). */
const NOTIFY: Prepared = { name: 'published_notify', text: 'SELECT pg_notify($1, $2)' };

/** Publish transactions under way at once on a node (see the constructor). */
const PUBLISH_GROUPS = 2;

/** How often the store is probed for writable() (the dispatcher attempts nothing while it cannot record). */
const PROBE_MS = 1000;
const PING_TIMEOUT_MS = 3000;

/**
 * The control plane in PostgreSQL, shared by the nodes of a cluster. Every write a client waits for commits
 * (durably, in one transaction) before it resolves. Due deliveries and batches are claimed per node with
 * leases, so any node delivers and a dead node's work is taken over once its leases end; tenants and
 * destinations are cached per node and dropped by changes on any node (LISTEN/NOTIFY, with a refresh every
 * few seconds besides).
 *
 * This class is the Store contract over the modules of store/postgres/, one per table with its SQL: it says
 * what one transaction holds and which modules' steps go into it; they say how.
 */
export class PostgresStore implements Store {
  readonly id: string;
  readonly nodeId: string;
  private readonly pending: PendingCounts;
  private readonly tenants: PgTenants;
  private readonly destinations: PgDestinations;
  private readonly events: PgEvents;
  private readonly deliveries: PgDeliveries;
  private readonly batches: PgBatches;
  private readonly attempts: PgAttempts;
  private readonly metrics: PgMetrics;
  private readonly publishes: GroupCommit<GroupWrite>;
  private readonly listeners: Array<() => void> = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private listener: ChangeListener | undefined;
  private reachable = true;

  private constructor(
    private readonly db: PgDatabase,
    clusterId: string,
    options: PostgresStoreOptions,
  ) {
    this.id = clusterId;
    this.nodeId = options.nodeId;
    this.pending = new PendingCounts(db);
    this.tenants = new PgTenants(db);
    this.destinations = new PgDestinations(db, options.cipher);
    this.events = new PgEvents(db);
    this.deliveries = new PgDeliveries(db, options.nodeId, options.leaseMs);
    this.batches = new PgBatches(db, db.schema, options.nodeId, options.leaseMs);
    this.attempts = new PgAttempts(db, options.nodeId);
    this.metrics = new PgMetrics(db);
    // Publishes of the same moment share a commit, two transactions at once (fewer if the pool is that small,
    // one connection being left for the dispatcher's claims and the reads): while one flushes its commit, the
    // next gathers what arrived meanwhile. A group costs the same few statements whatever its size, so more
    // at once would only split the same publishes into smaller groups (nine at once took ~3 publishes each,
    // two take ~10, and publish half as fast again).
    this.publishes = new GroupCommit<GroupWrite>(db, Math.max(1, Math.min(PUBLISH_GROUPS, options.pool - 1)), {
      lock: (tx, keys) => this.events.lockKeys(tx, db.schema, keys),
      write: (tx, writes) => this.writeGroup(tx, writes),
      beforeCommit: async (tx, delta) => {
        await this.pending.write(tx, delta);
        // new deliveries: every other node hears of them as this commits (NOTIFY is sent at the commit)
        if ([...delta.values()].some((n) => n > 0))
          await tx.query(
            bound(NOTIFY, [PUBLISHED_CHANNEL, JSON.stringify({ schema: db.schema, node: options.nodeId })]),
          );
      },
      committed: (delta) => {
        this.pending.applied(delta);
        this.wakeListeners();
      },
    });
  }

  /** Tells the onPublish listeners that new deliveries are durable (this node's, or another's it heard of). */
  private wakeListeners(): void {
    for (const listener of this.listeners) {
      try {
        listener();
      } catch {
        // a listener's failure is its own: the writes committed, and resolve
      }
    }
  }

  /**
   * Connects, migrates the schema (refusing one newer than this version knows), and starts listening for
   * changes; rejects when the database cannot be reached.
   */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const db = new PgDatabase(options);
    try {
      await migrate(db);
      const { rows } = await db.query<{ value: string }>("SELECT value FROM meta WHERE key = 'cluster_id'");
      const store = new PostgresStore(db, rows[0]!.value, options);
      await store.start(options.refreshMs ?? 5000);
      return store;
    } catch (err) {
      await db.end().catch(() => {});
      if (err instanceof SchemaTooNewError) throw err;
      throw new Error(
        `cannot open the PostgreSQL store at ${withoutPassword(options.url)} (schema ${options.schema}): ${(err as Error).message}`,
      );
    }
  }

  private async start(refreshMs: number): Promise<void> {
    this.listener = new ChangeListener(
      this.db.clientConfig,
      this.db.schema,
      (tenantId) => this.forgetTenant(tenantId),
      (listening) => this.setCaching(listening),
      { nodeId: this.nodeId, heard: () => this.wakeListeners() },
    );
    await this.listener.start();
    await this.pending.refresh();
    // a notification lost (the listener reconnecting) is made good by this at the latest
    this.every(refreshMs, () => {
      this.tenants.cache.clear();
      this.destinations.cache.clear();
    });
    this.every(PROBE_MS, () => {
      this.ping().then(
        () => {
          this.reachable = true;
        },
        () => {
          this.reachable = false;
        },
      );
    });
  }

  // ---- tenants

  async upsertTenant(id: string, metadata: StringMap): Promise<{ tenant: Tenant; created: boolean }> {
    const result = await this.write((tx) => this.tenants.upsert(tx, id, metadata));
    this.forgetTenant(id);
    return result;
  }

  getTenant(id: string): Promise<Tenant | undefined> {
    return this.tenants.get(id);
  }

  async deleteTenant(id: string): Promise<boolean> {
    const deleted = await this.write(async (tx) => {
      if (!(await this.tenants.delete(tx, id))) return false;
      // Its events and their log go with it: a tenant made again with this id starts empty, and sees nothing of the old one.
      await this.destinations.deleteAllOf(tx, id);
      await this.deliveries.deleteAllOf(tx, id);
      await this.batches.deleteAllOf(tx, id);
      await this.events.deleteAllOf(tx, id);
      await this.attempts.deleteAllOf(tx, id);
      await this.tenants.raiseGeneration(tx, id);
      await this.pending.forget(tx, id);
      return true;
    });
    this.forgetTenant(id);
    if (deleted) this.pending.forgotten(id);
    return deleted;
  }

  listTenants(query: PageQuery, filter: TenantFilter = {}): Promise<Page<Tenant>> {
    return this.tenants.list(query, filter);
  }

  countTenants(filter: TenantFilter = {}): Promise<number> {
    return this.tenants.count(filter);
  }

  // ---- destinations

  async createDestination(destination: Destination, maxPerTenant: number): Promise<CreateDestinationResult> {
    const result = await this.write(async (tx): Promise<CreateDestinationResult> => {
      if (!(await this.tenants.holdForCreate(tx, destination.tenant_id))) return 'no_tenant';
      return this.destinations.create(tx, destination, maxPerTenant);
    });
    this.forgetTenant(destination.tenant_id);
    return result;
  }

  async updateDestination(destination: Destination): Promise<void> {
    await this.write(async (tx) => {
      await this.destinations.update(tx, destination);
      await this.deliveries.followDestination(tx, destination.tenant_id, destination.id);
    });
    this.forgetTenant(destination.tenant_id);
  }

  getDestination(tenantId: string, id: string): Promise<Destination | undefined> {
    return this.destinations.get(tenantId, id);
  }

  destinationsWithId(id: string): Promise<Destination[]> {
    return this.destinations.withId(id);
  }

  listDestinations(tenantId: string): Promise<Destination[]> {
    return this.destinations.of(tenantId);
  }

  batchedDestinations(): Promise<Destination[]> {
    return this.destinations.batched();
  }

  async deleteDestination(tenantId: string, id: string): Promise<boolean> {
    const deleted = await this.write(async (tx, delta) => {
      const gone = await this.destinations.delete(tx, tenantId, id);
      if (gone) {
        // what it had pending goes with it; its attempts stay in the log until pruned
        await this.deliveries.dropPendingOf(tx, delta, tenantId, id);
        await this.batches.dropOf(tx, tenantId, id);
      }
      return gone;
    });
    this.forgetTenant(tenantId);
    return deleted;
  }

  // ---- events

  /** Committed before it resolves, with the publishes of the same moment (see GroupCommit). */
  async publish(event: NewEvent, destinationIds: string[], windowMs: number): Promise<PublishResult> {
    const [result] = await this.publishes.run<PublishResult[]>(
      { kind: 'publish', items: [{ event, destinationIds }], windowMs },
      eventKeys([event]),
    );
    return result!;
  }

  /** One write of its group: an event that is refused refuses the whole batch, not itself alone. */
  publishMany(items: Array<{ event: NewEvent; destinationIds: string[] }>, windowMs: number): Promise<PublishResult[]> {
    return this.publishes.run({ kind: 'publish', items, windowMs }, eventKeys(items.map(({ event }) => event)));
  }

  /** The writes of one group (see GroupCommit): its publishes all together, then its retries one by one. */
  private async writeGroup(tx: Sql, writes: GroupWrite[]): Promise<Outcome[]> {
    const publishes = writes.filter((w): w is PublishWrite => w.kind === 'publish');
    const published = await this.publishAll(tx, publishes);
    const outcomes: Outcome[] = [];
    for (const write of writes) {
      if (write.kind === 'publish') {
        outcomes.push(published.shift()!);
        continue;
      }
      const delta: PendingDelta = new Map();
      outcomes.push({ ok: true, value: await this.retryIn(tx, delta, write.eventSeq, write.destinationId), delta });
    }
    return outcomes;
  }

  /**
   * Publishes in one statement per table whatever their number: their tenants held (checked once each), their
   * events stored, then their deliveries added. A publish whose tenant is gone (deleted since it was checked
   * before it was queued: its events must not outlive it), or whose text cannot be stored, is refused alone
   * and writes nothing. The same (tenant, id) twice in the group is stored in a later statement than the first,
   * which makes it a duplicate of the first, as if they had been published one after the other.
   */
  private async publishAll(tx: Sql, writes: PublishWrite[]): Promise<Outcome[]> {
    const held = await this.tenants.holdAll(tx, [
      ...new Set(writes.flatMap((w) => w.items.map(({ event }) => event.tenant_id))),
    ]);
    const outcomes: Outcome[] = [];
    /** The events to store, in the order of the writes, each in the round after the last with its key. */
    const rounds: Array<Map<number, Planned[]>> = [];
    const seen = new Map<string, number>();
    const results: PublishResult[][] = [];
    for (const [w, write] of writes.entries()) {
      results.push([]);
      try {
        for (const { event } of write.items) {
          if (!held.has(event.tenant_id)) throw new TenantGoneError(event.tenant_id);
          checkStorable(event);
        }
      } catch (error) {
        outcomes[w] = { ok: false, error };
        continue;
      }
      outcomes[w] = { ok: true, value: results[w], delta: new Map() };
      for (const [i, { event, destinationIds }] of write.items.entries()) {
        const key = `${event.tenant_id}\u0000${event.id}`;
        const round = seen.get(key) ?? 0;
        seen.set(key, round + 1);
        rounds[round] ??= new Map();
        // one statement per idempotency window: the window is the statement's
        const planned = rounds[round]!.get(write.windowMs) ?? [];
        planned.push({ write: w, item: i, event, destinationIds });
        rounds[round]!.set(write.windowMs, planned);
      }
    }
    const now = Date.now();
    for (const round of rounds) {
      for (const [windowMs, planned] of round) {
        const stored = await this.events.putAll(
          tx,
          planned.map((p) => p.event),
          now,
          now - windowMs,
        );
        await this.recordStored(tx, now, planned, stored, outcomes, results);
      }
    }
    return outcomes;
  }

  /** The deliveries of the events just stored, and what each publish is told (a duplicate: where it went). */
  private async recordStored(
    tx: Sql,
    now: number,
    planned: Planned[],
    stored: Stored[],
    outcomes: Outcome[],
    results: PublishResult[][],
  ): Promise<void> {
    // Outside the idempotency window the same id is a new publish of that event (its pending deliveries stay as they are).
    const fresh: Array<{ eventSeq: number; tenantId: string; destinationIds: string[] }> = [];
    const duplicateSeqs: number[] = [];
    for (const [i, p] of planned.entries()) {
      const s = stored[i]!;
      if ('duplicateOf' in s) duplicateSeqs.push(s.duplicateOf);
      else fresh.push({ eventSeq: s.seq, tenantId: p.event.tenant_id, destinationIds: p.destinationIds });
    }
    const added = await this.deliveries.addAll(tx, now, fresh);
    const routed = await this.deliveries.destinationsOfAll(tx, duplicateSeqs);
    for (const [i, p] of planned.entries()) {
      const s = stored[i]!;
      const outcome = outcomes[p.write] as Extract<Outcome, { ok: true }>;
      if ('duplicateOf' in s) {
        results[p.write]![p.item] = { duplicate: true, destination_ids: routed.get(s.duplicateOf)! };
      } else {
        addPending(outcome.delta, p.event.tenant_id, added.get(s.seq) ?? 0);
        results[p.write]![p.item] = { duplicate: false, destination_ids: p.destinationIds };
      }
    }
  }

  /** Pending deliveries of the cluster: see PendingCounts for how far behind the other nodes it may be. */
  pendingDeliveries(tenantId?: string): Promise<number> {
    return this.pending.of(tenantId);
  }

  getEvent(tenantId: string | undefined, id: string): Promise<StoredEvent | undefined> {
    return this.events.get(tenantId, id);
  }

  eventDeliveries(eventSeq: number): Promise<Delivery[]> {
    return this.deliveries.ofEvent(eventSeq);
  }

  listEvents(filter: EventFilter, query: PageQuery): Promise<Page<StoredEvent>> {
    return this.events.list(filter, query);
  }

  // ---- per-event delivery

  /**
   * Claimed for this node until the lease ends or the attempt is recorded, perDestination holding over all
   * nodes (see PgDeliveries.claim).
   */
  dueDeliveries(
    now: number,
    limit: number,
    skipDestinations: string[],
    perDestination: number,
  ): Promise<DueDelivery[]> {
    return this.db.transaction((tx) => this.deliveries.due(tx, now, limit, skipDestinations, perDestination));
  }

  dueDeliveriesOf(
    tenantId: string,
    destinationId: string,
    now: number,
    limit: number,
    perDestination: number,
  ): Promise<DueDelivery[]> {
    return this.db.transaction((tx) => this.deliveries.dueOf(tx, tenantId, destinationId, now, limit, perDestination));
  }

  releaseDeliveries(seqs: number[]): Promise<void> {
    return this.deliveries.release(seqs);
  }

  nextDueAt(): Promise<number | undefined> {
    return this.deliveries.nextDueAt();
  }

  setObjectKey(deliverySeq: number, key: string): Promise<void> {
    return this.deliveries.setObjectKey(deliverySeq, key);
  }

  recordAttempt(
    attempt: NewAttempt,
    delivery: Pick<Delivery, 'seq' | 'status' | 'attempts' | 'next_attempt_at'>,
  ): Promise<Attempt | undefined> {
    // the attempt's time is now, not when its write gets a connection: a retry's wait is counted from now too
    const time = Date.now();
    return this.write(async (tx, delta) => {
      // A delivery deleted while it was attempted (its destination or tenant deleted) is neither counted nor logged.
      if (!(await this.deliveries.settle(tx, delta, wholeMs(delivery), attempt.tenant_id, attempt.destination_id)))
        return undefined;
      return this.attempts.insert(tx, wholeDuration(attempt), time);
    });
  }

  /** Group-committed as publishes are: it makes a delivery due, and wakes the onPublish listeners. */
  retry(eventSeq: number, destinationId: string): Promise<boolean> {
    return this.publishes.run({ kind: 'retry', eventSeq, destinationId });
  }

  private async retryIn(tx: Sql, delta: PendingDelta, eventSeq: number, destinationId: string): Promise<boolean> {
    const event = await this.events.bySeq(tx, eventSeq);
    const delivery = event && (await this.deliveries.latest(tx, eventSeq, destinationId));
    // batch attempts are logged per batch: a delivery's own count says it was attempted
    if (
      !event ||
      !delivery ||
      (delivery.attempts === 0 && !(await this.attempts.madeFor(tx, event.id, event.tenant_id, destinationId)))
    )
      return false;
    await this.deliveries.requeue(tx, delta, delivery, event.tenant_id);
    return true;
  }

  // ---- batched delivery

  unbatched(tenantId: string, destinationId: string, afterSeq: number, limit: number): Promise<UnbatchedDelivery[]> {
    return this.batches.unbatched(tenantId, destinationId, afterSeq, limit);
  }

  batchExists(key: string): Promise<boolean> {
    return this.batches.exists(key);
  }

  nextRetriedBatch(): Promise<number> {
    return this.batches.nextRetried();
  }

  /**
   * Records the batch (committed before it resolves, so before the upload starts). Nothing is recorded when
   * another node sealed any of its deliveries first: they are in that batch. `retried` needs no count here:
   * nextRetriedBatch() used its number up.
   */
  async sealBatch(batch: EventBatch, deliverySeqs: number[], _retried = false): Promise<void> {
    await this.write((tx) => this.batches.seal(tx, batch, deliverySeqs));
  }

  /** Claimed for this node until the lease ends or the attempt is recorded. */
  dueBatches(now: number): Promise<EventBatch[]> {
    return this.batches.due(now);
  }

  releaseBatches(keys: string[]): Promise<void> {
    return this.batches.release(keys);
  }

  batchEvents(batch: EventBatch): Promise<StoredEvent[]> {
    return this.batches.events(batch);
  }

  recordBatchAttempt(
    attempt: NewAttempt,
    batch: Pick<EventBatch, 'key' | 'attempts' | 'next_attempt_at'>,
    status: 'pending' | 'success' | 'failed',
  ): Promise<Attempt | undefined> {
    const time = Date.now();
    return this.write(async (tx, delta) => {
      // a batch deleted while it was uploaded (its destination or tenant deleted) is not logged, as in recordAttempt
      if (!(await this.batches.record(tx, wholeMs(batch), status))) return undefined;
      if (status !== 'pending')
        await this.deliveries.settleBatch(tx, delta, batch.key, status, batch.attempts, attempt.tenant_id);
      return this.attempts.insert(tx, wholeDuration(attempt), time);
    });
  }

  // ---- the delivery log

  getAttempt(tenantId: string | undefined, id: string): Promise<Attempt | undefined> {
    return this.attempts.get(tenantId, id);
  }

  listAttempts(filter: AttemptFilter, query: PageQuery): Promise<Page<Attempt>> {
    return this.attempts.list(filter, query);
  }

  eventMetrics(query: MetricsQuery): Promise<{ rows: MetricsRow[]; truncated: boolean }> {
    return this.metrics.events(query);
  }

  attemptMetrics(query: MetricsQuery): Promise<{ rows: MetricsRow[]; truncated: boolean }> {
    return this.metrics.attempts(query);
  }

  /** On one node at a time: a node that finds another pruning skips its turn (the next one is a minute away). */
  async prune(maxAgeMs: number, maxCount: number): Promise<void> {
    const before = Date.now() - maxAgeMs;
    await this.db.transaction(async (tx) => {
      const { rows } = await tx.query<{ locked: boolean }>(
        "SELECT pg_try_advisory_xact_lock(hashtext('sluice'), hashtext($1 || ':prune')) AS locked",
        [this.db.schema],
      );
      if (!rows[0]!.locked) return;
      await this.attempts.prune(tx, before, maxCount);
      await this.deliveries.prune(tx, before);
      await this.events.prune(tx, before);
      await this.batches.prune(tx);
    });
  }

  // ---- the database

  onPublish(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Whether the last probe (every second) reached the database. */
  writable(): boolean {
    return this.reachable;
  }

  async ping(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the PostgreSQL store did not answer within ${PING_TIMEOUT_MS} ms`)),
        PING_TIMEOUT_MS,
      );
    });
    try {
      await Promise.race([this.db.query('SELECT 1'), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    await this.listener?.stop();
    await this.db.end();
  }

  /** One transaction with its changes to the pending counts, which this node's counts take once it has committed. */
  private async write<T>(work: (tx: Sql, delta: PendingDelta) => Promise<T>): Promise<T> {
    let delta: PendingDelta = new Map();
    const result = await this.db.transaction(async (tx) => {
      // a transaction run again (a deadlock) counts afresh
      delta = new Map();
      const value = await work(tx, delta);
      await this.pending.write(tx, delta);
      return value;
    });
    this.pending.applied(delta);
    return result;
  }

  /** A tenant or its destinations changed, here or on another node. */
  private forgetTenant(tenantId: string): void {
    this.tenants.cache.invalidate(tenantId);
    this.destinations.cache.invalidate(tenantId);
  }

  /** While changes may go unheard, nothing is served from the caches. */
  private setCaching(listening: boolean): void {
    for (const cache of [this.tenants.cache, this.destinations.cache]) {
      cache.clear();
      cache.enabled = listening;
    }
  }

  private every(ms: number, task: () => void): void {
    const timer = setInterval(task, ms);
    timer.unref();
    this.timers.push(timer);
  }
}

/** A write of the publishes' group commit: events published (one request), or a delivery retried. */
type GroupWrite = PublishWrite | { kind: 'retry'; eventSeq: number; destinationId: string };

interface PublishWrite {
  kind: 'publish';
  items: Array<{ event: NewEvent; destinationIds: string[] }>;
  windowMs: number;
}

/** An event of a group's publish on its way to a statement: which write and which of its items it is. */
interface Planned {
  write: number;
  item: number;
  event: NewEvent;
  destinationIds: string[];
}

/** The url as it can be shown (in a log line, an error): without its password. */
function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = 'redacted';
    return parsed.toString();
  } catch {
    return '(a url that does not parse)';
  }
}

/** What publishes lock (see PgEvents.lockKeys): none for text PostgreSQL cannot hold, which the publish refuses. */
function eventKeys(events: NewEvent[]): string[] {
  return events.map((e) => `${e.tenant_id}/${e.id}`).filter((key) => !hasNul(key));
}

/**
 * Times are whole ms in PostgreSQL (bigint), where SQLite keeps whatever number it is given: a retry's wait is a
 * random fraction of its backoff, so its due time is rounded up (never due before the wait is over).
 */
function wholeMs<T extends { next_attempt_at: number }>(row: T): T {
  return { ...row, next_attempt_at: Math.ceil(row.next_attempt_at) };
}

/** An attempt's duration in whole ms, as its bigint column keeps it. */
function wholeDuration(attempt: NewAttempt): NewAttempt {
  return { ...attempt, duration_ms: Math.round(attempt.duration_ms) };
}
