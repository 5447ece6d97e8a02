import { z } from 'zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { HttpError } from '../http/http-error.js';
import type { Attempt, AttemptFilter } from '../store/types.js';
import { tenantScope, tenantsScope } from './auth.js';
import type { ControlPlaneRoutes } from './route-context.js';
import { paged, pageQuery } from './paging.js';
import { anyString, oneOrMore, sortParams, timeParams, timeRange } from './query.js';
import {
  attemptListSchema,
  attemptSchema,
  eventListSchema,
  eventWithDeliveriesSchema,
  responses,
  successSchema,
} from './schemas.js';
import { required, validationError } from '../http/validation.js';
import { attemptView, eventView, type AttemptIncludes } from './views.js';
import { stringifyWithRaw } from '../json/raw-json.js';

const eventQuery = z.strictObject({
  ...pageQuery,
  ...sortParams,
  ...timeParams,
  tenant_id: oneOrMore(anyString).optional(),
  topic: oneOrMore(anyString).optional(),
  destination_id: oneOrMore(anyString).optional(),
  id: oneOrMore(anyString).optional(),
});

/** What `include` asks for: `event`, `event.data`, `destination`; `response_data` is always there. */
export const includeParam = oneOrMore(
  z.enum(['event', 'event.data', 'response_data', 'destination'], { error: 'failed enum validation' }),
).optional();

export function includesOf(include: string[] | undefined): AttemptIncludes {
  const asked = new Set(include ?? []);
  return {
    event: asked.has('event.data') ? 'data' : asked.has('event') ? 'summary' : undefined,
    destination: asked.has('destination'),
  };
}

/** The filters of every attempt list; /attempts adds tenant_id, destination_id and destination_type. */
export const attemptFilter = {
  ...pageQuery,
  ...sortParams,
  ...timeParams,
  event_id: oneOrMore(anyString).optional(),
  topic: oneOrMore(anyString).optional(),
  status: z.enum(['success', 'failed'], { error: 'failed enum validation' }).optional(),
  include: includeParam,
};

/** An attempt filter of a query (the attemptFilter fields), without the page fields. */
export function attemptConditions(
  q: { event_id?: string[]; topic?: string[]; status?: 'success' | 'failed' } & Parameters<typeof timeRange>[0],
): AttemptFilter {
  return { event_id: q.event_id, topic: q.topic, status: q.status, time: timeRange(q) };
}

/** An attempt answer: includes embed stored event data, so it is written with stringifyWithRaw. */
export function attemptAnswer(reply: { type(t: string): unknown }, body: unknown): string {
  reply.type('application/json; charset=utf-8');
  return stringifyWithRaw(body);
}

/** The delivery log: events, attempts, and `POST /retry`. A tenant token sees only its own tenant. */
export const deliveryLogRoutes: ControlPlaneRoutes = async (plain, { store, publisher }) => {
  const app = plain.withTypeProvider<ZodTypeProvider>();

  // Event answers embed each event's stored data text (see eventView): written by stringifyWithRaw.
  app.get(
    '/events',
    {
      schema: {
        summary: 'List events by their time (newest first unless dir=asc)',
        tags: ['events'],
        querystring: eventQuery,
        response: responses({ 200: eventListSchema }, [400, 403, 422]),
      },
    },
    async (request, reply) => {
      const q = request.query;
      const filter = {
        tenant_id: tenantsScope(request, q.tenant_id),
        topic: q.topic,
        destination_id: q.destination_id,
        id: q.id,
        time: timeRange(q),
      };
      reply.type('application/json; charset=utf-8');
      return stringifyWithRaw(
        await paged(
          (page) => store.listEvents(filter, page),
          q,
          (e) => eventView(store, e),
          'time',
        ),
      );
    },
  );

  app.get(
    '/events/:event_id',
    {
      schema: {
        summary: 'An event with its deliveries',
        tags: ['events'],
        params: z.object({ event_id: z.string() }),
        querystring: z.strictObject({ tenant_id: anyString.optional() }),
        response: responses({ 200: eventWithDeliveriesSchema }, [400, 403, 404]),
      },
    },
    async (request, reply) => {
      const event = await store.getEvent(tenantScope(request, request.query.tenant_id), request.params.event_id);
      if (!event) throw new HttpError(404, `event ${request.params.event_id} not found`, { reason: 'not_found' });
      reply.type('application/json; charset=utf-8');
      return stringifyWithRaw(await eventView(store, event, true));
    },
  );

  app.get(
    '/attempts',
    {
      schema: {
        summary: 'List delivery attempts, newest first unless dir=asc',
        tags: ['events'],
        querystring: z.strictObject({
          ...attemptFilter,
          tenant_id: oneOrMore(anyString).optional(),
          destination_id: oneOrMore(anyString).optional(),
          destination_type: oneOrMore(anyString).optional(),
        }),
        response: responses({ 200: attemptListSchema }, [400, 403, 422]),
      },
    },
    async (request, reply) => {
      const q = request.query;
      const filter = {
        ...attemptConditions(q),
        tenant_id: tenantsScope(request, q.tenant_id),
        destination_id: q.destination_id,
        destination_type: q.destination_type,
      };
      const includes = includesOf(q.include);
      return attemptAnswer(
        reply,
        await paged(
          (page) => store.listAttempts(filter, page),
          q,
          (a) => attemptView(store, a, includes),
          'time',
        ),
      );
    },
  );

  app.get(
    '/attempts/:attempt_id',
    {
      schema: {
        summary: 'One delivery attempt',
        tags: ['events'],
        params: z.object({ attempt_id: z.string() }),
        querystring: z.strictObject({ tenant_id: anyString.optional(), include: includeParam }),
        response: responses({ 200: attemptSchema }, [400, 403, 404, 422]),
      },
    },
    async (request, reply) => {
      const attempt: Attempt | undefined = await store.getAttempt(
        tenantScope(request, request.query.tenant_id),
        request.params.attempt_id,
      );
      if (!attempt) throw new HttpError(404, `attempt ${request.params.attempt_id} not found`, { reason: 'not_found' });
      return attemptAnswer(reply, await attemptView(store, attempt, includesOf(request.query.include)));
    },
  );

  app.post(
    '/retry',
    {
      schema: {
        summary: 'Attempt an event again on a destination',
        tags: ['events'],
        body: z.object({
          event_id: z.string({ error: required }).min(1, 'is required'),
          destination_id: z.string({ error: required }).min(1, 'is required'),
          // destination ids are unique per tenant: the admin names the tenant when several have the id
          tenant_id: z.string().min(1, 'is required').optional(),
        }),
        response: responses({ 202: successSchema }, [400, 403, 404, 422, 429]),
      },
    },
    async (request, reply) => {
      const { event_id: eventId, destination_id: destinationId } = request.body;
      const scope = tenantScope(request, request.body.tenant_id);
      // a tenant token (or an admin naming tenant_id) reaches only that tenant's destination of this id
      let candidates =
        scope !== undefined
          ? [await store.getDestination(scope, destinationId)].filter((d) => d !== undefined)
          : await store.destinationsWithId(destinationId);
      if (candidates.length > 1) {
        const withEvent = await Promise.all(candidates.map((d) => store.getEvent(d.tenant_id, eventId)));
        candidates = candidates.filter((_d, i) => withEvent[i] !== undefined);
      }
      if (candidates.length > 1) {
        throw validationError([
          `tenant_id is required: destination ${destinationId} and event ${eventId} exist in more than one tenant`,
        ]);
      }
      const destination = candidates[0];
      if (!destination) throw new HttpError(404, `destination ${destinationId} not found`, { reason: 'not_found' });
      if (destination.disabled_at)
        throw new HttpError(400, `destination ${destinationId} is disabled: enable it first`, {
          reason: 'destination_disabled',
        });
      const event = await store.getEvent(destination.tenant_id, eventId);
      if (!event)
        throw new HttpError(404, `event ${eventId} has no attempt on destination ${destinationId}`, {
          reason: 'not_found',
        });
      // a retried delivery is pending again: it passes the same bounds as a publish (tenant and global)
      // the event's delivery was read above and is requeued by store.retry in its own transaction, which
      // answers false (404) if it went meanwhile
      const release = await publisher.reserve(destination.tenant_id, 1);
      try {
        if (!(await store.retry(event.seq, destinationId))) {
          throw new HttpError(404, `event ${eventId} has no attempt on destination ${destinationId}`, {
            reason: 'not_found',
          });
        }
      } finally {
        release();
      }
      reply.code(202);
      return { success: true };
    },
  );
};
