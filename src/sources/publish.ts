import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { hasZodFastifySchemaValidationErrors, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { ApiConfig } from '../config/schema.js';
import { requireAdmin } from '../api/auth.js';
import type { ControlPlaneRoutes } from '../api/control-plane.js';
import { checkMetadataQuota, required, validationError } from '../api/validation.js';
import { TenantGoneError, type PublishResult, type Store, type StringMap } from '../store/types.js';
import { eventTimeOf, parseEventTime } from './event-time.js';
import { HttpError } from './http-error.js';
import { memberOf, parseJson, toText } from '../json/source-tree.js';

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
 * pass. A request over either bound stores nothing. The tenant's own bound comes first, so one tenant's
 * backlog answers 429 to that tenant while the others still have room under the shared one.
 */
export class EventPublisher {
  /** Deliveries of publishes that passed the bounds and are not yet counted by the store. */
  private reserved = 0;
  /** The same, per tenant (tenants with none are absent). */
  private readonly reservedByTenant = new Map<string, number>();

  constructor(private readonly store: Store, private readonly config: ApiConfig) {}

  /** Throws 404 (tenant or destination unknown), 422 (metadata over its quota) or 429 (too much pending); resolves once durable. */
  async publish(input: PublishInput): Promise<PublishResult & { id: string }> {
    const targets = this.targetsOf(input.tenant_id, input.destination_id);
    checkMetadataQuota(this.config, { metadata: input.metadata });
    const ids = targets(input.topic ?? '');
    const event = this.eventOf(input);
    const release = this.reserve(input.tenant_id, ids.length);
    try {
      return { id: event.id, ...(await this.store.publish(event, ids, this.config.idempotency_window)) };
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
    const targets = this.targetsOf(tenant, undefined);
    const perEvent = inputs.map((input) => targets(input.topic ?? ''));
    const release = this.reserve(tenant, perEvent.reduce((sum, ids) => sum + ids.length, 0));
    try {
      const stored: Array<Promise<unknown>> = [];
      for (let i = 0; i < inputs.length; i++) {
        if (i > 0 && i % PUBLISH_SLICE === 0) await new Promise((resolve) => setImmediate(resolve));
        const publishing = this.store.publish(this.eventOf({ ...inputs[i]!, tenant_id: tenant }), perEvent[i]!, this.config.idempotency_window);
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

  /** The destinations an event of a topic goes to, for one tenant (and one destination, when named). */
  private targetsOf(tenantId: string, destinationId: string | undefined): (topic: string) => string[] {
    if (!this.store.getTenant(tenantId)) throw new HttpError(404, `tenant ${tenantId} not found`, { reason: 'not_found' });
    const destinations = this.store.listDestinations(tenantId);
    if (destinationId !== undefined && !destinations.some((d) => d.id === destinationId)) {
      throw new HttpError(404, `destination ${destinationId} not found for tenant ${tenantId}`, { reason: 'not_found' });
    }
    const byTopic = new Map<string, string[]>();
    return (topic) => {
      let ids = byTopic.get(topic);
      if (!ids) {
        ids = destinations.filter((d) => d.disabled_at === null
          && (destinationId === undefined || d.id === destinationId)
          && (d.topics.includes('*') || d.topics.includes(topic))).map((d) => d.id);
        byTopic.set(topic, ids);
      }
      return ids;
    };
  }

  /**
   * Reserves room for `deliveries` of a tenant under api.quotas.pending_deliveries_per_tenant and
   * api.max_pending_deliveries, or throws 429 having reserved nothing. A request larger than a whole bound
   * passes it only when nothing else is pending under it, so it cannot wait forever.
   */
  reserve(tenantId: string, deliveries: number): () => void {
    const over = (pending: number, max: number) => pending >= max || (pending > 0 && pending + deliveries > max);
    const tenantPending = this.store.pendingDeliveries(tenantId) + (this.reservedByTenant.get(tenantId) ?? 0);
    if (over(tenantPending, this.config.quotas.pending_deliveries_per_tenant)) {
      throw new HttpError(429, `tenant ${tenantId} has too many deliveries pending (api.quotas.pending_deliveries_per_tenant): retry later; nothing of this request was stored`,
        { reason: 'tenant_backlog_full', quota: 'api.quotas.pending_deliveries_per_tenant', limit: this.config.quotas.pending_deliveries_per_tenant },
        { 'retry-after': String(RETRY_AFTER_SECONDS) });
    }
    if (over(this.store.pendingDeliveries() + this.reserved, this.config.max_pending_deliveries)) {
      throw new HttpError(429, 'too many deliveries are pending (api.max_pending_deliveries): retry later; nothing of this request was stored',
        { reason: 'backlog_full' }, { 'retry-after': String(RETRY_AFTER_SECONDS) });
    }
    this.reserved += deliveries;
    this.reservedByTenant.set(tenantId, (this.reservedByTenant.get(tenantId) ?? 0) + deliveries);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.reserved -= deliveries;
      const left = (this.reservedByTenant.get(tenantId) ?? 0) - deliveries;
      if (left > 0) this.reservedByTenant.set(tenantId, left);
      else this.reservedByTenant.delete(tenantId);
    };
  }

  private eventOf(input: PublishInput) {
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

/** A tenant deleted while its publish waited for the store: 404, as if it had been gone before. */
function tenantGone(err: unknown): unknown {
  return err instanceof TenantGoneError ? new HttpError(404, `tenant ${err.tenantId} not found`, { reason: 'not_found' }) : err;
}

const publishBody = z.object({
  id: z.string().min(1, 'failed min validation').optional(),
  tenant_id: z.string({ error: required }).min(1, 'is required'),
  destination_id: z.string().min(1).optional(),
  topic: z.string().optional(),
  eligible_for_retry: z.boolean({ error: 'failed type validation' }).optional(),
  time: z.string().refine((t) => parseEventTime(t) !== undefined, 'failed pattern validation (RFC 3339, e.g. 2026-05-01T12:00:00Z)').optional(),
  metadata: z.record(z.string(), z.string({ error: 'failed type validation' })).optional(),
  data: z.custom<Record<string, unknown>>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), { error: required }),
});

/**
 * The `data` of a publish body exactly as sent (number text, key order, whitespace inside it), cut out of
 * the body's text: JSON.stringify of the parsed value would round big numbers and move integer-like keys.
 * The body passed the depth bound and JSON.parse before this, so the source tree parse cannot fail.
 */
function dataText(bodyText: string | undefined, data: Record<string, unknown>): string {
  const body = bodyText === undefined ? undefined : parseJson(bodyText);
  const node = body?.type === 'object' ? memberOf(body, 'data') : undefined;
  // without the text (no route gets here without it) the parsed value is all there is
  return node?.type === 'object' ? toText(node) : JSON.stringify(data);
}

/** `POST /publish` (admin): 202 `{id, duplicate, destination_ids}` once the event is durable. */
export const publishRoutes: ControlPlaneRoutes = async (plain, { config, publisher, metrics }) => {
  const app = plain.withTypeProvider<ZodTypeProvider>();
  const topics = new Set(config.api.topics);
  // published events have no partition: the label says so
  app.addHook('onResponse', async (request, reply) => {
    if (request.routeOptions.url?.endsWith('/publish')) metrics.request('publish', 'none', reply.statusCode);
  });
  app.addHook('onError', async (request, _reply, error) => {
    if (!request.routeOptions.url?.endsWith('/publish')) return;
    if (hasZodFastifySchemaValidationErrors(error)) return metrics.rejection('publish', 'validation', 422);
    const reason = error instanceof HttpError && !Array.isArray(error.data) ? String(error.data.reason ?? 'error') : error.statusCode === 422 ? 'validation' : 'error';
    metrics.rejection('publish', reason, error.statusCode ?? 500);
  });

  app.post('/publish', { schema: { summary: 'Publish an event (202 once durable)', tags: ['events'], body: publishBody } }, async (request, reply) => {
    requireAdmin(request);
    const body = request.body;
    if (topics.size > 0) {
      if (!body.topic) throw validationError(['topic is required']);
      if (!topics.has(body.topic)) throw validationError([`topic failed enum validation (configured topics: ${[...topics].join(', ')})`]);
    }
    const data = dataText(request.bodyText, body.data);
    const result = await publisher.publish({ ...body, data });
    if (result.duplicate) metrics.duplicate('request');
    else metrics.accepted('publish', 'none', 1, Buffer.byteLength(data));
    reply.code(202);
    return { id: result.id, duplicate: result.duplicate, destination_ids: result.destination_ids };
  });
};
