import { z } from 'zod';
import { paginationSchema } from './paging.js';

/**
 * The answers of /api/v1, for GET /openapi.json: each route declares its success and error answers with
 * these (the routes' own serializer writes what they return; test/outpost-sdk.test.ts checks that Outpost's
 * SDK parses every one of them).
 */

const stringMap = z.record(z.string(), z.string());
const time = z.string().describe('RFC 3339, UTC');

export const errorSchema = z
  .object({
    status: z.number().int(),
    message: z.string(),
    data: z.unknown().describe('what was wrong: every problem by field (422), or {reason, ...}'),
  })
  .describe('An error');

export const successSchema = z.object({ success: z.boolean() });

export const tenantSchema = z.object({
  id: z.string(),
  destinations_count: z.number().int(),
  topics: z.array(z.string()),
  metadata: stringMap,
  created_at: time,
  updated_at: time,
});

export const tenantListSchema = z.object({
  models: z.array(tenantSchema),
  pagination: paginationSchema,
  count: z.number().int().describe('tenants matching the filter, over all pages'),
});

export const tokenSchema = z.object({ token: z.string(), tenant_id: z.string() });

export const destinationSchema = z.object({
  id: z.string(),
  type: z.string(),
  topics: z.array(z.string()).describe('["*"] = every topic'),
  filter: z.record(z.string(), z.unknown()).describe('{} = every event of its topics'),
  config: z.record(z.string(), z.unknown()),
  credentials: z.record(z.string(), z.string()).describe('masked'),
  delivery_metadata: stringMap,
  metadata: stringMap,
  disabled_at: time.nullable(),
  created_at: time,
  updated_at: time,
  target: z.string(),
});

const eventFields = {
  id: z.string(),
  tenant_id: z.string(),
  topic: z.string(),
  time,
  eligible_for_retry: z.boolean(),
  metadata: stringMap,
};

export const eventSchema = z.object({
  ...eventFields,
  data: z.record(z.string(), z.unknown()).describe('as published, numbers and key order included'),
  received_at: time,
  status: z.enum(['pending', 'success', 'failed']).nullable(),
  matched_destination_ids: z.array(z.string()),
  destination_ids: z.array(z.string()).describe('the same as matched_destination_ids (the name of earlier versions)'),
});

export const eventWithDeliveriesSchema = eventSchema.extend({
  deliveries: z.array(
    z.object({
      destination_id: z.string(),
      status: z.enum(['pending', 'success', 'failed']),
      attempts: z.number().int(),
      object_key: z.string().nullable(),
    }),
  ),
});

export const eventListSchema = z.object({ models: z.array(eventSchema), pagination: paginationSchema });

export const attemptSchema = z.object({
  id: z.string(),
  tenant_id: z.string(),
  event_id: z.string().optional().describe('absent for the attempt of a batch (many events)'),
  destination_id: z.string(),
  status: z.enum(['success', 'failed']),
  code: z.string().optional(),
  response_data: z.record(z.string(), z.unknown()).nullable(),
  error: z.string().nullable(),
  attempt_number: z.number().int(),
  manual: z.boolean(),
  time,
  duration_ms: z.number(),
  node_id: z
    .string()
    .optional()
    .describe('the node that made the attempt (store.node_id), with a PostgreSQL store shared by several nodes'),
  event: z
    .object({ ...eventFields, data: z.record(z.string(), z.unknown()).optional() })
    .nullable()
    .optional()
    .describe('with include=event (or event.data)'),
  destination: destinationSchema.optional().describe('with include=destination'),
});

export const attemptListSchema = z.object({ models: z.array(attemptSchema), pagination: paginationSchema });

export const publishSchema = z.object({ id: z.string(), duplicate: z.boolean(), destination_ids: z.array(z.string()) });

const fieldSchema = z.object({
  key: z.string(),
  type: z.enum(['text', 'checkbox', 'key_value_map', 'select']),
  label: z.string(),
  description: z.string(),
  required: z.boolean(),
  default: z.string().optional(),
  sensitive: z.boolean().optional(),
  options: z.array(z.object({ label: z.string(), value: z.string() })).optional(),
});

export const destinationTypeSchema = z.object({
  type: z.string(),
  label: z.string(),
  description: z.string(),
  config_fields: z.array(fieldSchema),
  credential_fields: z.array(fieldSchema),
});

export const metricsSchema = z.object({
  data: z.array(
    z.object({
      time_bucket: time.optional(),
      dimensions: z.record(z.string(), z.string()),
      metrics: z.record(z.string(), z.number()),
    }),
  ),
  metadata: z.object({
    granularity: z.string().optional(),
    query_time_ms: z.number().int(),
    row_count: z.number().int(),
    row_limit: z.number().int(),
    truncated: z.boolean(),
  }),
});

export const healthzSchema = z.object({
  status: z.enum(['healthy', 'failed']),
  timestamp: time,
  workers: z.record(z.string(), z.object({ status: z.enum(['healthy', 'failed']) })),
});

export const configSchema = z
  .record(z.string(), z.string())
  .describe("Outpost's managed-config keys that Sluice's config answers (read-only)");

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'Bad request: not JSON, an unknown query parameter, a bad cursor',
  401: 'No credential, or one not accepted',
  403: 'The credential does not reach this route or tenant',
  404: 'Not found',
  409: 'Already exists',
  422: 'Validation error: data lists every problem by field',
  429: 'Too many deliveries pending: retry after Retry-After seconds',
  501: 'Not implemented by Sluice',
  503: 'data_dir cannot take writes: retry after Retry-After seconds',
};

/** A route's `response`: its success answers, then the error answers it can give (401 and 503 always). */
export function responses(success: Record<number, z.ZodType>, errors: number[] = []) {
  const out: Record<number, unknown> = {};
  for (const [code, schema] of Object.entries(success)) out[Number(code)] = schema;
  for (const code of [...new Set([...errors, 401, 503])].sort()) {
    out[code] = {
      description: ERROR_DESCRIPTIONS[code] ?? 'Error',
      content: { 'application/json': { schema: errorSchema } },
    };
  }
  return out;
}
