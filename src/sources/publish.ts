import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { hasZodFastifySchemaValidationErrors, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { ApiConfig } from '../config/schema.js';
import { requireAdmin } from '../api/auth.js';
import type { ControlPlaneRoutes } from '../api/control-plane.js';
import { required, validationError } from '../api/validation.js';
import type { PublishResult, Store, StringMap } from '../store/types.js';
import { eventTimeOf, parseEventTime } from './event-time.js';
import { HttpError } from './http-error.js';

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

/**
 * Turns published events (from `POST /api/v1/publish`, or decisions mapped to a tenant) into stored events
 * with a delivery to each matching destination, durably.
 */
export class EventPublisher {
  constructor(private readonly store: Store, private readonly config: ApiConfig) {}

  /** Throws 404 (tenant or destination unknown) or 429 (too much pending); resolves once durable. */
  async publish(input: PublishInput): Promise<PublishResult & { id: string }> {
    if (!this.store.getTenant(input.tenant_id)) throw new HttpError(404, `tenant ${input.tenant_id} not found`, { reason: 'not_found' });
    const destinations = this.store.listDestinations(input.tenant_id);
    if (input.destination_id !== undefined && !destinations.some((d) => d.id === input.destination_id)) {
      throw new HttpError(404, `destination ${input.destination_id} not found for tenant ${input.tenant_id}`, { reason: 'not_found' });
    }
    if (this.store.pendingDeliveries() >= this.config.max_pending_deliveries) {
      throw new HttpError(429, 'too many deliveries are pending (api.max_pending_deliveries): retry later; the event was not stored',
        { reason: 'backlog_full' }, { 'retry-after': String(RETRY_AFTER_SECONDS) });
    }
    const topic = input.topic ?? '';
    const targets = destinations.filter((d) => d.disabled_at === null
      && (input.destination_id === undefined || d.id === input.destination_id)
      && (d.topics.includes('*') || d.topics.includes(topic)));
    const time = input.time === undefined ? eventTimeOf(Date.now()) : parseEventTime(input.time)!;
    const id = input.id ?? randomUUID();
    const result = await this.store.publish({
      tenant_id: input.tenant_id,
      id,
      topic,
      time: time.rfc3339Nano,
      time_ms: time.ms,
      eligible_for_retry: input.eligible_for_retry ?? true,
      metadata: input.metadata ?? {},
      data: input.data,
    }, targets.map((d) => d.id), this.config.idempotency_window);
    return { id, ...result };
  }
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
    const data = JSON.stringify(body.data);
    const result = await publisher.publish({ ...body, data });
    if (result.duplicate) metrics.duplicate('request');
    else metrics.accepted('publish', 'none', 1, Buffer.byteLength(data));
    reply.code(202);
    return { id: result.id, duplicate: result.duplicate, destination_ids: result.destination_ids };
  });
};
