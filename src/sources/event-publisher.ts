import { randomUUID } from 'node:crypto';
import type { ApiConfig } from '../config/schema.js';
import { checkMetadataQuota } from '../http/validation.js';
import { HttpError } from '../http/http-error.js';
import {
  TenantGoneError,
  type Destination,
  type NewEvent,
  type PublishResult,
  type Store,
  type StringMap,
} from '../store/types.js';
import { eventTimeOf, parseEventTime } from '../time/event-time.js';
import { filterInput, matchesFilter } from './event-filter.js';

/** Seconds a publisher is asked to wait when too many deliveries are pending. */
const RETRY_AFTER_SECONDS = 5;

export interface PublishInput {
  id?: string;
  tenant_id: string;
  destination_id?: string;
  topic?: string;
  eligible_for_retry?: boolean;
  time?: string;
  metadata?: StringMap;
  /** The event's data as JSON text. */
  data: string;
}

/** Events published in one slice before the event loop is given back to other requests. */
const PUBLISH_SLICE = 1000;

/**
 * Turns published events (from `POST /api/v1/publish`, or decisions mapped to a tenant) into stored events
 * with a delivery to each matching destination, durably.
 *
 * The bounds `api.max_pending_deliveries` (all tenants) and `api.quotas.pending_deliveries_per_tenant` are
 * checked and reserved in one synchronous step, before anything is stored: the store counts a delivery only
 * once its transaction runs, so without the reservation two requests checked in the same moment would both
 * pass. The store's counts are read first (a promise: a network store may ask over its connection); the check
 * and the reservation then run together, without an await between them, against the reservations as they
 * are at that moment. A request over either bound stores nothing. The tenant's own bound comes first, so one tenant's
 * backlog answers 429 to that tenant while the others still have room under the shared one.
 */
export class EventPublisher {
  /** Deliveries of publishes that passed the bounds and are not yet counted by the store. */
  private reserved = 0;
  /** The same, per tenant (tenants with none are absent). */
  private readonly reservedByTenant = new Map<string, number>();
  /** Reservations whose store counts are being read: what is released meanwhile is added to them (see reserveAll). */
  private readonly reading = new Set<ReleasedMeanwhile>();

  constructor(
    private readonly store: Store,
    private readonly config: ApiConfig,
  ) {}

  /** Throws 404 (tenant or destination unknown), 422 (metadata over its quota) or 429 (too much pending); resolves once durable. */
  async publish(input: PublishInput): Promise<PublishResult & { id: string }> {
    const targets = await this.targetsOf(input.tenant_id, input.destination_id);
    checkMetadataQuota(this.config.quotas.metadata_bytes, { metadata: input.metadata });
    const event = this.eventOf(input);
    const ids = targets(event);
    const release = await this.reserve(input.tenant_id, ids.length);
    try {
      return { id: event.id, ...(await this.store.publish(event, ids, this.config.idempotency_window)) };
    } catch (err) {
      throw tenantGone(err);
    } finally {
      release();
    }
  }

  /**
   * Publishes a batch of events (`POST /publish/batch`), each as `publish` would, in one transaction and one
   * fsync: resolves, in their order, once every one is durable. Nothing is stored when any tenant or
   * destination is unknown, a metadata quota is passed or a pending bound is full (all checked first).
   */
  async publishMany(inputs: PublishInput[]): Promise<Array<PublishResult & { id: string }>> {
    const keyOf = (input: PublishInput) => `${input.tenant_id}\u0000${input.destination_id ?? ''}`;
    // each (tenant, destination) looked up once, all side by side; their 404s are thrown below in the order of
    // the batch (with the metadata checks), so the first element at fault is the one named, as before
    const lookups = new Map<string, Promise<(event: NewEvent) => string[]>>();
    inputs.forEach((input, i) => {
      const key = keyOf(input);
      if (lookups.has(key)) return;
      const lookup = atElement(i, () => this.targetsOf(input.tenant_id, input.destination_id));
      // awaited in the loop below, which an earlier element's error may end first: not an unhandled rejection
      lookup.catch(() => {});
      lookups.set(key, lookup);
    });
    const planned: Array<{ event: NewEvent; destinationIds: string[] }> = [];
    for (const [i, input] of inputs.entries()) {
      const targets = await lookups.get(keyOf(input))!;
      // the field's name says which event is over the quota: `[3].metadata is ... bytes`
      checkMetadataQuota(this.config.quotas.metadata_bytes, { [`${i}.metadata`]: input.metadata });
      const event = this.eventOf(input);
      planned.push({ event, destinationIds: targets(event) });
    }
    const perTenant = new Map<string, number>();
    for (const { event, destinationIds } of planned)
      perTenant.set(event.tenant_id, (perTenant.get(event.tenant_id) ?? 0) + destinationIds.length);
    // all or none, and the shared bound checked against the batch's total (one tenant at a time, a batch of
    // tenants over it together would be refused forever, even with nothing else pending)
    const release = await this.reserveAll(perTenant);
    try {
      // one write: stored all together or, when any fails (its tenant deleted meanwhile), not at all
      const results = await this.store.publishMany(planned, this.config.idempotency_window);
      return results.map((result, i) => ({ id: planned[i]!.event.id, ...result }));
    } catch (err) {
      throw tenantGone(err);
    } finally {
      release();
    }
  }

  /**
   * Publishes many events of one tenant, all or none past the pending bound: the decisions of one `/logs`
   * request mapped to a tenant. Stored in slices, yielding between them, so that a large request does not
   * hold the event loop; resolves once every event is durable.
   */
  async publishAll(tenant: string, inputs: Array<Omit<PublishInput, 'tenant_id'>>): Promise<void> {
    const targets = await this.targetsOf(tenant, undefined);
    const events = inputs.map((input) => this.eventOf({ ...input, tenant_id: tenant }));
    const perEvent = events.map(targets);
    const release = await this.reserve(
      tenant,
      perEvent.reduce((sum, ids) => sum + ids.length, 0),
    );
    try {
      const stored: Array<Promise<unknown>> = [];
      for (let i = 0; i < inputs.length; i++) {
        if (i > 0 && i % PUBLISH_SLICE === 0) await new Promise((resolve) => setImmediate(resolve));
        const publishing = this.store.publish(events[i]!, perEvent[i]!, this.config.idempotency_window);
        // handled by the Promise.all below, which a slice's failure (a disk error, the tenant deleted meanwhile)
        // may precede: not an unhandled rejection in between
        publishing.catch(() => {});
        stored.push(publishing);
      }
      await Promise.all(stored);
    } catch (err) {
      throw tenantGone(err);
    } finally {
      release();
    }
  }

  /**
   * The destinations an event goes to, for one tenant (and one destination, when named): enabled, of its
   * topic, and matching their filter. The event's data is parsed only when a destination of its topic has a filter.
   */
  private async targetsOf(tenantId: string, destinationId: string | undefined): Promise<(event: NewEvent) => string[]> {
    // A tenant deleted after this check is caught by the publish itself, which checks it again in its
    // transaction (TenantGoneError, a 404 as here).
    const [tenant, destinations] = await Promise.all([
      this.store.getTenant(tenantId),
      this.store.listDestinations(tenantId),
    ]);
    if (!tenant) throw new HttpError(404, `tenant ${tenantId} not found`, { reason: 'not_found' });
    if (destinationId !== undefined && !destinations.some((d) => d.id === destinationId)) {
      throw new HttpError(404, `destination ${destinationId} not found for tenant ${tenantId}`, {
        reason: 'not_found',
      });
    }
    const byTopic = new Map<string, Destination[]>();
    return (event) => {
      let candidates = byTopic.get(event.topic);
      if (!candidates) {
        candidates = destinations.filter(
          (d) =>
            d.disabled_at === null &&
            (destinationId === undefined || d.id === destinationId) &&
            (d.topics.includes('*') || d.topics.includes(event.topic)),
        );
        byTopic.set(event.topic, candidates);
      }
      if (candidates.every((d) => Object.keys(d.filter).length === 0)) return candidates.map((d) => d.id);
      const input = filterInput(event, JSON.parse(event.data));
      return candidates.filter((d) => matchesFilter(d.filter, input)).map((d) => d.id);
    };
  }

  /**
   * Reserves room for `deliveries` of a tenant under api.quotas.pending_deliveries_per_tenant and
   * api.max_pending_deliveries, or throws 429 having reserved nothing. A request larger than a whole bound
   * passes it only when nothing else is pending under it, so it cannot wait forever.
   */
  reserve(tenantId: string, deliveries: number): Promise<() => void> {
    return this.reserveAll(new Map([[tenantId, deliveries]]));
  }

  /**
   * `reserve` for deliveries of several tenants at once: each tenant's bound, then the shared one for their sum.
   *
   * The store's counts are read first, then checked and reserved in one synchronous step against the
   * reservations of that moment, so two requests can never both pass on the same room. A reservation released
   * while the counts were read (its publish done) may be missing from both what was read (committed after the
   * read) and what is reserved (released before the check): everything released meanwhile is added to the
   * counts read, which may count a publish twice (a 429 a moment early near the bound), never miss one.
   */
  private async reserveAll(perTenant: Map<string, number>): Promise<() => void> {
    const over = (pending: number, max: number, deliveries: number) =>
      pending >= max || (pending > 0 && pending + deliveries > max);
    const tenants = [...perTenant.keys()];
    const meanwhile: ReleasedMeanwhile = { total: 0, byTenant: new Map() };
    this.reading.add(meanwhile);
    let counts: number[];
    let allPending: number;
    try {
      [allPending, ...counts] = await Promise.all([
        this.store.pendingDeliveries(),
        ...tenants.map((t) => this.store.pendingDeliveries(t)),
      ]);
    } finally {
      this.reading.delete(meanwhile);
    }
    // from here to the return, no await: the check and the reservation are one step
    let total = 0;
    for (const [i, tenantId] of tenants.entries()) {
      const deliveries = perTenant.get(tenantId)!;
      total += deliveries;
      const tenantPending =
        counts[i]! + (meanwhile.byTenant.get(tenantId) ?? 0) + (this.reservedByTenant.get(tenantId) ?? 0);
      if (over(tenantPending, this.config.quotas.pending_deliveries_per_tenant, deliveries)) {
        throw new HttpError(
          429,
          `tenant ${tenantId} has too many deliveries pending (api.quotas.pending_deliveries_per_tenant): retry later; nothing of this request was stored`,
          {
            reason: 'tenant_backlog_full',
            quota: 'api.quotas.pending_deliveries_per_tenant',
            limit: this.config.quotas.pending_deliveries_per_tenant,
          },
          { 'retry-after': String(RETRY_AFTER_SECONDS) },
        );
      }
    }
    if (over(allPending + meanwhile.total + this.reserved, this.config.max_pending_deliveries, total)) {
      throw new HttpError(
        429,
        'too many deliveries are pending (api.max_pending_deliveries): retry later; nothing of this request was stored',
        { reason: 'backlog_full' },
        { 'retry-after': String(RETRY_AFTER_SECONDS) },
      );
    }
    this.reserved += total;
    for (const [tenantId, deliveries] of perTenant)
      this.reservedByTenant.set(tenantId, (this.reservedByTenant.get(tenantId) ?? 0) + deliveries);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.reserved -= total;
      for (const reading of this.reading) {
        reading.total += total;
        for (const [tenantId, deliveries] of perTenant)
          reading.byTenant.set(tenantId, (reading.byTenant.get(tenantId) ?? 0) + deliveries);
      }
      for (const [tenantId, deliveries] of perTenant) {
        const left = (this.reservedByTenant.get(tenantId) ?? 0) - deliveries;
        if (left > 0) this.reservedByTenant.set(tenantId, left);
        else this.reservedByTenant.delete(tenantId);
      }
    };
  }

  private eventOf(input: PublishInput): NewEvent {
    const time = input.time === undefined ? eventTimeOf(Date.now()) : parseEventTime(input.time)!;
    return {
      tenant_id: input.tenant_id,
      id: input.id ?? randomUUID(),
      topic: input.topic ?? '',
      time: time.rfc3339Nano,
      time_ms: time.ms,
      eligible_for_retry: input.eligible_for_retry ?? true,
      metadata: input.metadata ?? {},
      data: input.data,
    };
  }
}

/** Deliveries released (their publishes done) while a reservation read the store's counts. */
interface ReleasedMeanwhile {
  total: number;
  byTenant: Map<string, number>;
}

/** `check()`, its 404 (unknown tenant or destination) naming the batch element that names them. */
async function atElement<T>(index: number, check: () => Promise<T>): Promise<T> {
  try {
    return await check();
  } catch (err) {
    if (!(err instanceof HttpError) || Array.isArray(err.data)) throw err;
    throw new HttpError(err.statusCode, `[${index}]: ${err.message}`, { ...err.data, index }, err.headers);
  }
}

/** A tenant deleted while its publish waited for the store: 404, as if it had been gone before. */
function tenantGone(err: unknown): unknown {
  return err instanceof TenantGoneError
    ? new HttpError(404, `tenant ${err.tenantId} not found`, { reason: 'not_found' })
    : err;
}
