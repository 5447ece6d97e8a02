import { z } from 'zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { parseEventTime } from '../sources/event-time.js';
import { HttpError } from '../sources/http-error.js';
import { tenantScope } from './auth.js';
import type { ControlPlaneRoutes } from './control-plane.js';
import { paged, pageQuery } from './paging.js';
import { required, validationError } from './validation.js';
import { eventView } from './views.js';
import { stringifyWithRaw } from '../json/raw-json.js';

const time = z.string().transform((t, ctx) => {
  const parsed = parseEventTime(t);
  if (!parsed) {
    ctx.addIssue({ code: 'custom', message: 'failed pattern validation (RFC 3339, e.g. 2026-05-01T12:00:00Z)' });
    return z.NEVER;
  }
  return parsed.ms;
});

const eventFilter = {
  ...pageQuery,
  tenant_id: z.string().optional(),
  topic: z.string().optional(),
  destination_id: z.string().optional(),
  id: z.string().optional(),
  'time[gte]': time.optional(),
  'time[lte]': time.optional(),
};

export const attemptFilter = {
  ...pageQuery,
  event_id: z.string().optional(),
  status: z.enum(['success', 'failed'], { error: 'failed enum validation' }).optional(),
};

/** The delivery log: events, attempts, and `POST /retry`. A tenant token sees only its own tenant. */
export const deliveryLogRoutes: ControlPlaneRoutes = async (plain, { store, publisher }) => {
  const app = plain.withTypeProvider<ZodTypeProvider>();

  // Event answers embed each event's stored data text (see eventView): written by stringifyWithRaw.
  app.get('/events', { schema: { summary: 'List events, newest first', tags: ['events'], querystring: z.object(eventFilter) } }, async (request, reply) => {
    const q = request.query;
    const filter = {
      tenant_id: tenantScope(request, q.tenant_id), topic: q.topic, destination_id: q.destination_id, id: q.id,
      time_gte: q['time[gte]'], time_lte: q['time[lte]'],
    };
    reply.type('application/json; charset=utf-8');
    return stringifyWithRaw(paged((page) => store.listEvents(filter, page), q, (e) => eventView(store, e)));
  });

  app.get('/events/:event_id', { schema: { summary: 'An event with its deliveries', tags: ['events'], params: z.object({ event_id: z.string() }) } }, async (request, reply) => {
    const event = store.getEvent(tenantScope(request, undefined), request.params.event_id);
    if (!event) throw new HttpError(404, `event ${request.params.event_id} not found`, { reason: 'not_found' });
    reply.type('application/json; charset=utf-8');
    return stringifyWithRaw(eventView(store, event, true));
  });

  app.get('/attempts', {
    schema: {
      summary: 'List delivery attempts, newest first', tags: ['events'], querystring: z.object({ ...attemptFilter, tenant_id: z.string().optional(), destination_id: z.string().optional() }) },
  }, async (request) => {
    const { limit, next, prev, ...filter } = request.query;
    return paged((page) => store.listAttempts({ ...filter, tenant_id: tenantScope(request, filter.tenant_id) }, page), { limit, next, prev }, (a) => a);
  });

  app.get('/attempts/:attempt_id', { schema: { summary: 'One delivery attempt', tags: ['events'], params: z.object({ attempt_id: z.string() }) } }, async (request) => {
    const attempt = store.getAttempt(tenantScope(request, undefined), request.params.attempt_id);
    if (!attempt) throw new HttpError(404, `attempt ${request.params.attempt_id} not found`, { reason: 'not_found' });
    return attempt;
  });

  app.post('/retry', {
    schema: {
      summary: 'Attempt an event again on a destination',
      tags: ['events'],
      body: z.object({
        event_id: z.string({ error: required }).min(1, 'is required'),
        destination_id: z.string({ error: required }).min(1, 'is required'),
        // destination ids are unique per tenant: the admin names the tenant when several have the id
        tenant_id: z.string().min(1, 'is required').optional(),
      }),
    },
  }, async (request, reply) => {
    const { event_id: eventId, destination_id: destinationId } = request.body;
    const scope = tenantScope(request, request.body.tenant_id);
    // a tenant token (or an admin naming tenant_id) reaches only that tenant's destination of this id
    let candidates = scope !== undefined
      ? [store.getDestination(scope, destinationId)].filter((d) => d !== undefined)
      : store.destinationsWithId(destinationId);
    if (candidates.length > 1) candidates = candidates.filter((d) => store.getEvent(d.tenant_id, eventId) !== undefined);
    if (candidates.length > 1) {
      throw validationError([`tenant_id is required: destination ${destinationId} and event ${eventId} exist in more than one tenant`]);
    }
    const destination = candidates[0];
    if (!destination) throw new HttpError(404, `destination ${destinationId} not found`, { reason: 'not_found' });
    if (destination.disabled_at) throw new HttpError(400, `destination ${destinationId} is disabled: enable it first`, { reason: 'destination_disabled' });
    const event = store.getEvent(destination.tenant_id, eventId);
    if (!event) throw new HttpError(404, `event ${eventId} has no attempt on destination ${destinationId}`, { reason: 'not_found' });
    // a retried delivery is pending again: it passes the same bounds as a publish (tenant and global)
    const release = publisher.reserve(destination.tenant_id, 1);
    try {
      if (!(await store.retry(event.seq, destinationId))) {
        throw new HttpError(404, `event ${eventId} has no attempt on destination ${destinationId}`, { reason: 'not_found' });
      }
    } finally {
      release();
    }
    reply.code(202);
    return { success: true };
  });
};
