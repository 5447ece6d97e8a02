/**
 * The control plane's persistence: tenants, destinations, published events, their deliveries and the
 * attempt log. SQLite now (sqlite-store.ts over store/sqlite/); PostgreSQL later, for several nodes sharing one backlog.
 *
 * The contract is asynchronous: every method that reads or writes stored data returns a promise, because a
 * store on the network (PostgreSQL) answers each query over a connection. SQLite answers at once and resolves
 * them already settled. A caller therefore cannot count on a read and the write that depends on it running in
 * one tick: a guarantee that needs both (a quota, a duplicate, a tenant still there) belongs in the store's
 * own transaction, as the methods below say where they hold one.
 *
 * A published event is written together with one delivery per destination it goes to, in one durable
 * transaction; a delivery is the unit the dispatcher works on (pending -> success | failed), and every
 * try at it is an attempt in the log.
 */

/**
 * What every store rejects with for a page cursor it did not give out (the API answers 400). The SQLite
 * paging's own: a store that pages another way rejects with this one too.
 */
export { CursorError } from '../sqlite/paging.js';

export type StringMap = Record<string, string>;

export interface Tenant {
  id: string;
  metadata: StringMap;
  created_at: string;
  updated_at: string;
  /** Raised by every deletion of the id; a tenant token names the generation it was issued in (see ApiAuth). */
  generation: number;
}

/**
 * A destination is named by its tenant and its id: ids are unique per tenant only. One string for both, for
 * maps of destinations over all tenants (tenant ids cannot hold '/').
 */
export function destinationKey(tenantId: string, destinationId: string): string {
  return `${tenantId}/${destinationId}`;
}

/** A write for a tenant that is no longer there (deleted while the request was on its way). */
export class TenantGoneError extends Error {
  constructor(readonly tenantId: string) {
    super(`tenant ${tenantId} not found`);
  }
}

/** What createDestination did: created it, or not because the id is taken, the quota is reached or the tenant is gone. */
export type CreateDestinationResult = 'created' | 'exists' | 'over_quota' | 'no_tenant';

export interface Destination {
  id: string;
  tenant_id: string;
  type: string;
  topics: string[];
  config: Record<string, unknown>;
  /** Decrypted, in memory only: never put it in a response or a log line. */
  credentials: StringMap;
  delivery_metadata: StringMap;
  metadata: StringMap;
  /** Outpost's event filter (src/sources/event-filter.ts); {} = every event of its topics. */
  filter: Record<string, unknown>;
  disabled_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface NewEvent {
  tenant_id: string;
  id: string;
  topic: string;
  /** UTC RFC 3339 with up to nine fraction digits, as Go prints it. */
  time: string;
  time_ms: number;
  eligible_for_retry: boolean;
  metadata: StringMap;
  /** The event's data as JSON text: the object body of a per-event delivery. */
  data: string;
}

export interface StoredEvent extends NewEvent {
  seq: number;
  received_at: string;
}

export type DeliveryStatus = 'pending' | 'success' | 'failed';

export interface Delivery {
  seq: number;
  event_seq: number;
  tenant_id: string;
  destination_id: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: number;
  /** Fixed before the first attempt, so a retry overwrites the same object. */
  object_key: string | null;
  /** A manual retry: one attempt, not retried on failure. */
  manual: boolean;
}

/** A batch of a batched destination: its deliveries' events in one object, fixed before its upload. */
export interface EventBatch {
  key: string;
  tenant_id: string;
  destination_id: string;
  first_seq: number;
  last_seq: number;
  count: number;
  attempts: number;
  next_attempt_at: number;
}

export interface Attempt {
  id: string;
  tenant_id: string;
  /** null for a batch attempt, which covers many events. */
  event_id: string | null;
  destination_id: string;
  status: 'success' | 'failed';
  code: string | null;
  response_data: Record<string, unknown> | null;
  error: string | null;
  attempt_number: number;
  manual: boolean;
  time: string;
  duration_ms: number;
  /** The node that made the attempt (store.node_id), where several share the store (PostgreSQL); else absent. */
  node_id?: string;
}

export type NewAttempt = Omit<Attempt, 'id' | 'time' | 'node_id'>;

export interface PageQuery {
  limit: number;
  next?: string;
  prev?: string;
  /** The list's order: newest first (desc) unless asked otherwise. */
  dir?: 'asc' | 'desc';
}

/** Bounds on a time, in ms since the epoch; each optional. */
export interface TimeRange {
  gte?: number;
  gt?: number;
  lte?: number;
  lt?: number;
}

/** One value or any of several: a filter of the list routes (`topic=a&topic=b`). */
export type OneOrMore = string | string[];

export interface Page<T> {
  models: T[];
  next: string | null;
  prev: string | null;
}

export interface EventFilter {
  tenant_id?: OneOrMore;
  topic?: OneOrMore;
  /** Events with a delivery to one of them (in their tenant, when tenant_id names one). */
  destination_id?: OneOrMore;
  id?: OneOrMore;
  /** The event's own time. */
  time?: TimeRange;
}

export interface AttemptFilter {
  tenant_id?: OneOrMore;
  event_id?: OneOrMore;
  destination_id?: OneOrMore;
  /** The type of the attempt's destination. */
  destination_type?: OneOrMore;
  /** The topic of the attempt's event (a batch attempt has no event). */
  topic?: OneOrMore;
  status?: 'success' | 'failed';
  /** When the attempt was made. */
  time?: TimeRange;
}

export interface TenantFilter {
  id?: OneOrMore;
}

/** A metrics query (GET /metrics/events, /metrics/attempts), as Outpost's: a time range, optional buckets, groups and filters. */
export interface MetricsQuery {
  /** [start, end) in ms. */
  start: number;
  end: number;
  /** Outpost's granularity: `<value><unit>`, unit s, m, h, d, w or M; none = one row per group. */
  granularity?: { value: number; unit: 's' | 'm' | 'h' | 'd' | 'w' | 'M' };
  dimensions: string[];
  /** Each filter: one of these values. */
  filters: Record<string, string[]>;
  /** Rows beyond it are left out (truncated). */
  rowLimit: number;
}

/** One group of a metrics query: its time bucket (ms), its dimension values (as strings) and its counts. */
export interface MetricsRow {
  bucket: number | null;
  dimensions: Record<string, string>;
  counts: Record<string, number>;
}

export interface PublishResult {
  duplicate: boolean;
  destination_ids: string[];
}

/** A pending delivery that is due, with what is needed to attempt it. */
export interface DueDelivery {
  delivery: Delivery;
  event: StoredEvent;
}

/** What batching needs of a delivery: not the event's data, only its size. */
export interface UnbatchedDelivery {
  seq: number;
  topic: string;
  time_ms: number;
  received_at_ms: number;
  /** Bytes of the event's data. */
  bytes: number;
  /** 1 when POST /retry made it pending again: it was in a batch before. */
  retried: number;
}

export interface Store {
  /**
   * A stable id of this store, part of every batch name, so a wiped data_dir never overwrites old objects.
   * Known once the store is open (no query), as are onPublish and writable.
   */
  readonly id: string;

  upsertTenant(id: string, metadata: StringMap): Promise<{ tenant: Tenant; created: boolean }>;
  getTenant(id: string): Promise<Tenant | undefined>;
  /**
   * Removes the tenant with everything of it: destinations, events, deliveries, batches and attempts; raises
   * its generation (which outlives it), so its tokens are refused from then on.
   */
  deleteTenant(id: string): Promise<boolean>;
  /** Tenants in creation order (asc unless query.dir says desc). */
  listTenants(query: PageQuery, filter?: TenantFilter): Promise<Page<Tenant>>;
  countTenants(filter?: TenantFilter): Promise<number>;

  /**
   * Creates it unless its tenant has it (or is gone) or already has `maxPerTenant` destinations: checked in the
   * transaction that inserts it, so concurrent creates cannot pass the quota together.
   */
  createDestination(destination: Destination, maxPerTenant: number): Promise<CreateDestinationResult>;
  updateDestination(destination: Destination): Promise<void>;
  getDestination(tenantId: string, id: string): Promise<Destination | undefined>;
  /** The destinations with this id, in any tenant (an admin naming a destination without its tenant). */
  destinationsWithId(id: string): Promise<Destination[]>;
  listDestinations(tenantId: string): Promise<Destination[]>;
  /** Enabled destinations with config.batching. */
  batchedDestinations(): Promise<Destination[]>;
  deleteDestination(tenantId: string, id: string): Promise<boolean>;

  /**
   * Stores the event and a pending delivery to each destination, durably. The same (tenant, id) within
   * `windowMs` is a duplicate: nothing is stored and the first publish's destinations are returned.
   * Throws TenantGoneError, storing nothing, when the tenant was deleted meanwhile.
   */
  publish(event: NewEvent, destinationIds: string[], windowMs: number): Promise<PublishResult>;
  /**
   * Publishes each (as `publish`) in one write: every one stored, or none. (Separate `publish` calls may share
   * a transaction, but one whose tenant was deleted meanwhile fails alone: as those, a batch answered 404
   * would have stored the others.)
   */
  publishMany(items: Array<{ event: NewEvent; destinationIds: string[] }>, windowMs: number): Promise<PublishResult[]>;
  /**
   * Deliveries waiting (pending), of every tenant or of one, for the bounds that answer 429; only what has
   * committed. Read on every request that could get a 429, so it must be cheap: SQLite keeps the counts in memory.
   */
  pendingDeliveries(tenantId?: string): Promise<number>;
  getEvent(tenantId: string | undefined, id: string): Promise<StoredEvent | undefined>;
  eventDeliveries(eventSeq: number): Promise<Delivery[]>;
  listEvents(filter: EventFilter, query: PageQuery): Promise<Page<StoredEvent>>;

  /**
   * Due per-event deliveries of enabled destinations, soonest first, leaving out the given (busy) destinations
   * (destinationKey). `perDestination` is api.delivery_concurrency: a store that several nodes share returns no
   * more of a destination than keeps its deliveries being attempted on all of them within it (this caller's
   * own included); a store of one node leaves that to its caller's count.
   */
  dueDeliveries(now: number, limit: number, skipDestinations: string[], perDestination: number): Promise<DueDelivery[]>;
  /** Due deliveries of one destination, soonest first (`perDestination` as in dueDeliveries). */
  dueDeliveriesOf(
    tenantId: string,
    destinationId: string,
    now: number,
    limit: number,
    perDestination: number,
  ): Promise<DueDelivery[]>;
  /**
   * Gives back deliveries dueDeliveries(Of) returned that the caller does not attempt now (its per-destination
   * or overall limit was reached): where the store claims them for this node (PostgreSQL), another node may
   * take them at once instead of after the lease. Nothing to do where nothing is claimed (SQLite).
   */
  releaseDeliveries(seqs: number[]): Promise<void>;
  /** When the next pending delivery of an enabled per-event destination is due, if any. */
  nextDueAt(): Promise<number | undefined>;
  setObjectKey(deliverySeq: number, key: string): Promise<void>;
  /** Records an attempt and the delivery's new state in one transaction; nothing (undefined) when the delivery is no longer there or pending. */
  recordAttempt(
    attempt: NewAttempt,
    delivery: Pick<Delivery, 'seq' | 'status' | 'attempts' | 'next_attempt_at'>,
  ): Promise<Attempt | undefined>;
  /** Makes an event's delivery to a destination pending again, as a manual retry; false if it never had an attempt. */
  retry(eventSeq: number, destinationId: string): Promise<boolean>;

  /**
   * Pending deliveries of a batched destination not yet in a batch, after `afterSeq`, in order; and, whatever
   * their seq, those made pending again by POST /retry (retried), so that a retry is batched at the next look.
   */
  unbatched(tenantId: string, destinationId: string, afterSeq: number, limit: number): Promise<UnbatchedDelivery[]>;
  /** Whether a batch with this key is recorded. */
  batchExists(key: string): Promise<boolean>;
  /**
   * The number the next batch sealed with `retried` puts in its key: 1, 2, ..., never the same twice in a
   * store, so that a batch of retried deliveries never takes the key of an earlier batch (the same first and
   * last deliveries), recorded or already written.
   */
  nextRetriedBatch(): Promise<number>;
  /** Records a batch and assigns its deliveries, durably, before its upload; `retried`: it took nextRetriedBatch()'s number. */
  sealBatch(batch: EventBatch, deliverySeqs: number[], retried?: boolean): Promise<void>;
  /** Batches of enabled destinations waiting for their upload that are due. */
  dueBatches(now: number): Promise<EventBatch[]>;
  /** Gives back batches dueBatches returned that the caller does not upload now (as releaseDeliveries). */
  releaseBatches(keys: string[]): Promise<void>;
  batchEvents(batch: EventBatch): Promise<StoredEvent[]>;
  /** Records a batch attempt; on success or final failure its deliveries take the same status. Nothing when the batch is gone. */
  recordBatchAttempt(
    attempt: NewAttempt,
    batch: Pick<EventBatch, 'key' | 'attempts' | 'next_attempt_at'>,
    status: 'pending' | 'success' | 'failed',
  ): Promise<Attempt | undefined>;

  getAttempt(tenantId: string | undefined, id: string): Promise<Attempt | undefined>;
  listAttempts(filter: AttemptFilter, query: PageQuery): Promise<Page<Attempt>>;
  /** Events grouped by query.dimensions (tenant_id, topic, destination_id) and time bucket; counts: `count`. */
  eventMetrics(query: MetricsQuery): Promise<{ rows: MetricsRow[]; truncated: boolean }>;
  /** Attempts grouped likewise; counts: count, successful_count, failed_count, first_attempt_count, retry_count, manual_retry_count, attempt_number_sum. */
  attemptMetrics(query: MetricsQuery): Promise<{ rows: MetricsRow[]; truncated: boolean }>;
  /** Forgets attempts and finished events older than maxAgeMs, and attempts beyond the newest maxCount. */
  prune(maxAgeMs: number, maxCount: number): Promise<void>;

  /** Called when new deliveries are durable. */
  onPublish(listener: () => void): void;
  /** Whether writes are taken, as last seen (no query: it is read on every request and by /ready). */
  writable(): boolean;
  /** Resolves once the store answers a trivial query; rejects when it cannot be reached (/ready reports it). */
  ping(): Promise<void>;
  /** Resolves once everything committed is durable and the connection (file or pool) is closed. */
  close(): Promise<void>;
}
