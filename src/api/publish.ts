import { z } from 'zod';
import { hasZodFastifySchemaValidationErrors, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { HttpError } from '../http/http-error.js';
import { required, validationError } from '../http/validation.js';
import { memberOf, parseJson, toText } from '../json/source-tree.js';
import { parseEventTime } from '../time/event-time.js';
import { requireAdmin } from './auth.js';
import type { ControlPlaneRoutes } from './route-context.js';
import { publishSchema, responses } from './schemas.js';

const publishBody = z.object({
  id: z.string().min(1, 'failed min validation').optional(),
  tenant_id: z.string({ error: required }).min(1, 'is required'),
  destination_id: z.string().min(1).optional(),
  topic: z.string().optional(),
  eligible_for_retry: z.boolean({ error: 'failed type validation' }).optional(),
  time: z
    .string()
    .refine((t) => parseEventTime(t) !== undefined, 'failed pattern validation (RFC 3339, e.g. 2026-05-01T12:00:00Z)')
    .optional(),
  metadata: z.record(z.string(), z.string({ error: 'failed type validation' })).optional(),
  data: z.custom<Record<string, unknown>>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), {
    error: required,
  }),
});

/** Events one `POST /publish/batch` may carry. */
export const MAX_PUBLISH_BATCH = 1000;

/**
 * The `data` of a publish body exactly as sent (number text, key order, whitespace inside it), cut out of
 * the body's text: JSON.stringify of the parsed value would round big numbers and move integer-like keys.
 * The body passed the depth bound and JSON.parse before this, so the source tree parse cannot fail.
 */
function dataText(bodyText: string | undefined, data: Record<string, unknown>): string {
  const body = bodyText === undefined ? undefined : parseJson(bodyText);
  return dataOf(body?.type === 'object' ? body : undefined, data);
}

/** The `data` member's text of one event of a parsed body (a source tree), or the parsed value's. */
function dataOf(event: ReturnType<typeof parseJson> | undefined, data: Record<string, unknown>): string {
  const node = event?.type === 'object' ? memberOf(event, 'data') : undefined;
  // without the text (no route gets here without it) the parsed value is all there is
  return node?.type === 'object' ? toText(node) : JSON.stringify(data);
}

/** Each event's `data` text of a batch body (a JSON array of publish bodies), in order. */
function dataTexts(bodyText: string | undefined, events: Array<{ data: Record<string, unknown> }>): string[] {
  const body = bodyText === undefined ? undefined : parseJson(bodyText);
  const elements = body?.type === 'array' ? body.items : [];
  return events.map((event, i) => dataOf(elements[i], event.data));
}

/** `POST /publish` (admin): 202 `{id, duplicate, destination_ids}` once the event is durable. */
export const publishRoutes: ControlPlaneRoutes = async (plain, { config, publisher, metrics }) => {
  const app = plain.withTypeProvider<ZodTypeProvider>();
  const topics = new Set(config.api.topics);
  // published events have no partition: the label says so
  app.addHook('onResponse', async (request, reply) => {
    if (/\/publish(\/batch)?$/.test(request.routeOptions.url ?? ''))
      metrics.request('publish', 'none', reply.statusCode);
  });
  app.addHook('onError', async (request, _reply, error) => {
    if (!/\/publish(\/batch)?$/.test(request.routeOptions.url ?? '')) return;
    if (hasZodFastifySchemaValidationErrors(error)) return metrics.rejection('publish', 'validation', 422);
    const reason =
      error instanceof HttpError && !Array.isArray(error.data)
        ? String(error.data.reason ?? 'error')
        : error.statusCode === 422
          ? 'validation'
          : 'error';
    metrics.rejection('publish', reason, error.statusCode ?? 500);
  });

  app.post(
    '/publish',
    {
      preHandler: requireAdmin,
      schema: {
        summary: 'Publish an event (202 once durable)',
        tags: ['events'],
        body: publishBody,
        response: responses({ 202: publishSchema }, [400, 403, 404, 422, 429]),
      },
    },
    async (request, reply) => {
      const body = request.body;
      if (topics.size > 0) {
        if (!body.topic) throw validationError(['topic is required']);
        if (!topics.has(body.topic))
          throw validationError([`topic failed enum validation (configured topics: ${[...topics].join(', ')})`]);
      }
      const data = dataText(request.bodyText, body.data);
      const result = await publisher.publish({ ...body, data });
      if (result.duplicate) metrics.duplicate('request');
      else metrics.accepted('publish', 'none', 1, Buffer.byteLength(data));
      reply.code(202);
      return { id: result.id, duplicate: result.duplicate, destination_ids: result.destination_ids };
    },
  );

  // An extension of Outpost's API: many events in one request, for publishers that outrun one request per event.
  app.post(
    '/publish/batch',
    {
      preHandler: requireAdmin,
      schema: {
        summary: `Publish up to ${MAX_PUBLISH_BATCH} events (202 once all are durable; all or none are checked first)`,
        tags: ['events'],
        body: z
          .array(publishBody)
          .min(1, 'holds no event')
          .max(MAX_PUBLISH_BATCH, `holds more than ${MAX_PUBLISH_BATCH} events`),
        response: responses({ 202: z.array(publishSchema) }, [400, 403, 404, 422, 429]),
      },
    },
    async (request, reply) => {
      const events = request.body;
      if (topics.size > 0) {
        events.forEach((event, i) => {
          if (!event.topic) throw validationError([`${i}.topic is required`]);
          if (!topics.has(event.topic))
            throw validationError([`${i}.topic failed enum validation (configured topics: ${[...topics].join(', ')})`]);
        });
      }
      const texts = dataTexts(request.bodyText, events);
      const results = await publisher.publishMany(events.map((event, i) => ({ ...event, data: texts[i]! })));
      let duplicates = 0;
      let bytes = 0;
      results.forEach((result, i) => {
        if (result.duplicate) duplicates++;
        else bytes += Buffer.byteLength(texts[i]!);
      });
      metrics.duplicate('request', duplicates);
      metrics.accepted('publish', 'none', results.length - duplicates, bytes);
      reply.code(202);
      return results.map((r) => ({ id: r.id, duplicate: r.duplicate, destination_ids: r.destination_ids }));
    },
  );
};
