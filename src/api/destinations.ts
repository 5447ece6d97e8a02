import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { describeType } from '../sinks/destination-types.js';
import { DESTINATION_TYPES } from '../sinks/registry.js';
import { EndpointGuard } from '../sinks/endpoint-guard.js';
import { HttpError } from '../http/http-error.js';
import type { Destination, StringMap } from '../store/types.js';
import { requireTenant } from './auth.js';
import type { ControlPlane, ControlPlaneRoutes } from './route-context.js';
import { attemptAnswer, attemptConditions, attemptFilter, includeParam, includesOf } from './delivery-log.js';
import { filterProblems } from '../sources/event-filter.js';
import { paged } from './paging.js';
import { anyString, oneOrMore } from './query.js';
import {
  attemptListSchema,
  attemptSchema,
  destinationSchema,
  destinationTypeSchema,
  responses,
  successSchema,
} from './schemas.js';
import { tenantParams } from './tenants.js';
import { checkMetadataQuota, issueMessages, problemMessages, required, validationError } from '../http/validation.js';
import { attemptView, destinationView, maskCredential } from './views.js';

const DESTINATION_ID = /^[A-Za-z0-9._-]{1,64}$/;
const stringMap = z.record(z.string(), z.string({ error: 'failed type validation' }));
// Bounds on what a tenant stores per destination (cached and answered on every GET): topics are names, and a
// destination's config holds a few short settings.
const MAX_TOPICS = 100;
const MAX_TOPIC_LENGTH = 256;
const MAX_CONFIG_BYTES = 16 * 1024;
const topicList = z
  .array(
    z
      .string()
      .min(1, 'failed min validation')
      .max(MAX_TOPIC_LENGTH, `failed max validation (${MAX_TOPIC_LENGTH} characters)`),
    { error: required },
  )
  .min(1, 'is required')
  .max(MAX_TOPICS, `failed max validation (at most ${MAX_TOPICS} topics)`);
// Outpost's wildcard is the string "*" (its SDKs send it so); stored, and answered, as ["*"]
const topicsField = z
  .union([z.literal('*'), topicList], {
    error: (issue) =>
      issue.input === undefined ? 'is required' : 'failed type validation (an array of topics, or "*")',
  })
  .transform((t) => (t === '*' ? ['*'] : t));
const filterField = z.record(z.string(), z.unknown(), { error: 'failed type validation (an object)' });
// a PATCH's string maps merge: null removes a key (JSON merge patch, as Outpost)
const stringMapPatch = z.record(z.string(), z.string({ error: 'failed type validation' }).nullable());
const timestamp = z.string().datetime({ offset: true, error: 'failed pattern validation (RFC 3339)' });
const configField = z
  .record(z.string(), z.unknown())
  .refine(
    (c) => Buffer.byteLength(JSON.stringify(c)) <= MAX_CONFIG_BYTES,
    `failed max validation (at most ${MAX_CONFIG_BYTES} bytes)`,
  );

// strict: a field Sluice does not know is a 422 naming it, never accepted and dropped
const createBody = z.strictObject({
  id: z.string().regex(DESTINATION_ID, 'failed pattern validation').optional(),
  type: z.string({ error: required }).min(1, 'is required'),
  topics: topicsField,
  filter: filterField.nullish(),
  config: configField.default({}),
  credentials: z.record(z.string(), z.unknown()).default({}),
  delivery_metadata: stringMap.nullish(),
  metadata: stringMap.nullish(),
  // Outpost's create takes these too, for imports of destinations made elsewhere
  created_at: timestamp.nullish(),
  updated_at: timestamp.nullish(),
  disabled_at: timestamp.nullish(),
});

const patchBody = z.strictObject({
  type: z.string().optional(),
  topics: topicsField.optional(),
  // {} or null: no filter
  filter: filterField.nullish(),
  // null removes a field
  config: configField.optional(),
  credentials: z.record(z.string(), z.unknown()).optional(),
  // merged; null for the whole map clears it
  delivery_metadata: stringMapPatch.nullish(),
  metadata: stringMapPatch.nullish(),
  // null enables, a time disables (as PUT .../enable and .../disable)
  disabled_at: timestamp.nullish(),
});

const listQuery = z.strictObject({
  type: oneOrMore(anyString).optional(),
  topics: oneOrMore(anyString).optional(),
});

const destinationParams = tenantParams.extend({ destination_id: z.string().min(1) });

/**
 * A tenant's destinations. Registered twice: under `/tenants/{tenant_id}` and under the older
 * `/{tenant_id}` path shape that Outpost's first clients use.
 */
export const destinationRoutes: ControlPlaneRoutes = async (plain, { store, config }) => {
  const app = plain.withTypeProvider<ZodTypeProvider>();
  // The same rule for the admin key as for tenant tokens: allowed_endpoints is the one way to open more.
  const guard = new EndpointGuard(config.api.destinations.allowed_endpoints);

  // What these read may change before the route's write (as it could before: writes are group-committed a
  // moment later): the writes check again in their transaction what must hold (the tenant, the id, the quota).
  const tenantOf = async (tenantId: string) => {
    if (!(await store.getTenant(tenantId)))
      throw new HttpError(404, `tenant ${tenantId} not found`, { reason: 'not_found' });
  };
  const find = async (tenantId: string, id: string): Promise<Destination> => {
    const [, destination] = await Promise.all([tenantOf(tenantId), store.getDestination(tenantId, id)]);
    if (!destination)
      throw new HttpError(404, `destination ${id} not found for tenant ${tenantId}`, { reason: 'not_found' });
    return destination;
  };

  app.get(
    '/destinations',
    {
      preHandler: requireTenant,
      schema: {
        summary: "A tenant's destinations (not paged); type and topics filter them",
        tags: ['destinations'],
        params: tenantParams,
        querystring: listQuery,
        response: responses({ 200: z.array(destinationSchema) }, [400, 403, 404, 422]),
      },
    },
    async (request) => {
      const [, destinations] = await Promise.all([
        tenantOf(request.params.tenant_id),
        store.listDestinations(request.params.tenant_id),
      ]);
      const { type, topics } = request.query;
      return (
        destinations
          .filter((d) => type === undefined || type.includes(d.type))
          // a destination of every topic ("*") receives each of them
          .filter((d) => topics === undefined || d.topics.includes('*') || topics.some((t) => d.topics.includes(t)))
          .map(destinationView)
      );
    },
  );

  app.post(
    '/destinations',
    {
      preHandler: requireTenant,
      schema: {
        summary: 'Create a destination',
        tags: ['destinations'],
        params: tenantParams,
        body: createBody,
        response: responses({ 201: destinationSchema }, [403, 404, 409, 422]),
      },
    },
    async (request, reply) => {
      const tenantId = request.params.tenant_id;
      await tenantOf(tenantId);
      const body = request.body;
      // Ids are unique per tenant: a 409 says only that this tenant has the id, nothing about other tenants.
      if (body.id !== undefined && (await store.getDestination(tenantId, body.id)))
        throw new HttpError(409, `destination ${body.id} already exists`, { reason: 'conflict' });
      const now = new Date().toISOString();
      const checked = checkDestination(
        {
          type: body.type,
          topics: body.topics,
          config: body.config,
          credentials: body.credentials,
          filter: body.filter ?? {},
        },
        config,
        guard,
      );
      const deliveryMetadata = body.delivery_metadata ?? {};
      const metadata = body.metadata ?? {};
      checkMetadataQuota(config.api.quotas.metadata_bytes, { delivery_metadata: deliveryMetadata, metadata });
      const destination: Destination = {
        id: body.id ?? generatedId(),
        tenant_id: tenantId,
        ...checked,
        delivery_metadata: deliveryMetadata,
        metadata,
        disabled_at: body.disabled_at ? new Date(body.disabled_at).toISOString() : null,
        created_at: body.created_at ? new Date(body.created_at).toISOString() : now,
        updated_at: body.updated_at ? new Date(body.updated_at).toISOString() : now,
      };
      // the quota and the id are checked again in the transaction that inserts it: two creates at once cannot both pass
      const quota = config.api.quotas.destinations_per_tenant;
      let created = await store.createDestination(destination, quota);
      // a generated id taken already (72 random bits: practically never) is drawn again, a bounded number of times
      for (let i = 0; created === 'exists' && body.id === undefined && i < 5; i++)
        created = await store.createDestination({ ...destination, id: generatedId() }, quota);
      if (created === 'exists')
        throw new HttpError(409, `destination ${destination.id} already exists`, { reason: 'conflict' });
      if (created === 'no_tenant') throw new HttpError(404, `tenant ${tenantId} not found`, { reason: 'not_found' });
      if (created === 'over_quota') {
        throw new HttpError(
          422,
          `tenant ${tenantId} has ${quota} destinations, the most api.quotas.destinations_per_tenant allows: delete one first`,
          { reason: 'quota_exceeded', quota: 'api.quotas.destinations_per_tenant', limit: quota },
        );
      }
      reply.code(201);
      return destinationView(destination);
    },
  );

  app.get(
    '/destinations/:destination_id',
    {
      preHandler: requireTenant,
      schema: {
        summary: 'A destination',
        tags: ['destinations'],
        params: destinationParams,
        response: responses({ 200: destinationSchema }, [403, 404]),
      },
    },
    async (request) => {
      return destinationView(await find(request.params.tenant_id, request.params.destination_id));
    },
  );

  app.patch(
    '/destinations/:destination_id',
    {
      preHandler: requireTenant,
      schema: {
        summary:
          'Change a destination: fields given replace the old ones; config, credentials, metadata and delivery_metadata merge (null removes a key)',
        tags: ['destinations'],
        params: destinationParams,
        body: patchBody,
        response: responses({ 200: destinationSchema }, [403, 404, 422]),
      },
    },
    async (request) => {
      const old = await find(request.params.tenant_id, request.params.destination_id);
      const patch = request.body;
      if (patch.type !== undefined && patch.type !== old.type)
        throw validationError(['type cannot be changed: create a new destination']);
      const newConfig = merge(old.config, patch.config);
      // Stored credentials belong to where they were given for: moved elsewhere, they are dropped, or whoever
      // may PATCH could aim another's keys at a bucket or a listener of their own.
      const moved = (DESTINATION_TYPES.get(old.type)?.credentialsBoundTo ?? []).filter(
        (f) => !sameValue(old.config[f], newConfig[f]),
      );
      const checked = checkDestination(
        {
          type: old.type,
          topics: patch.topics ?? old.topics,
          config: newConfig,
          credentials:
            moved.length > 0
              ? withoutStored(old.credentials, patch.credentials)
              : mergeCredentials(old.credentials, patch.credentials),
          filter: patch.filter === undefined ? old.filter : (patch.filter ?? {}),
        },
        config,
        guard,
        moved.length > 0
          ? `credentials: the stored credentials are not kept when ${moved.map((f) => `config.${f}`).join(', ')} changes; send them in the same request`
          : undefined,
      );
      const now = new Date().toISOString();
      const destination: Destination = {
        ...old,
        ...checked,
        delivery_metadata: mergeStrings(old.delivery_metadata, patch.delivery_metadata),
        metadata: mergeStrings(old.metadata, patch.metadata),
        disabled_at:
          patch.disabled_at === undefined
            ? old.disabled_at
            : patch.disabled_at === null
              ? null
              : (old.disabled_at ?? now),
        updated_at: now,
      };
      checkMetadataQuota(config.api.quotas.metadata_bytes, {
        delivery_metadata: destination.delivery_metadata,
        metadata: destination.metadata,
      });
      await store.updateDestination(destination);
      return destinationView(destination);
    },
  );

  app.delete(
    '/destinations/:destination_id',
    {
      preHandler: requireTenant,
      schema: {
        summary: 'Delete a destination',
        tags: ['destinations'],
        params: destinationParams,
        response: responses({ 200: successSchema }, [403, 404]),
      },
    },
    async (request) => {
      await find(request.params.tenant_id, request.params.destination_id);
      await store.deleteDestination(request.params.tenant_id, request.params.destination_id);
      return { success: true };
    },
  );

  for (const [action, disabled] of [
    ['enable', false],
    ['disable', true],
  ] as const) {
    app.put(
      `/destinations/:destination_id/${action}`,
      {
        preHandler: requireTenant,
        schema: {
          summary: `${action === 'enable' ? 'Enable' : 'Disable'} a destination`,
          tags: ['destinations'],
          params: destinationParams,
          response: responses({ 200: destinationSchema }, [403, 404]),
        },
      },
      async (request) => {
        const old = await find(request.params.tenant_id, request.params.destination_id);
        const now = new Date().toISOString();
        // Disabling keeps what is pending: it is delivered once the destination is enabled again.
        const destination = { ...old, disabled_at: disabled ? (old.disabled_at ?? now) : null, updated_at: now };
        await store.updateDestination(destination);
        return destinationView(destination);
      },
    );
  }

  app.get(
    '/destinations/:destination_id/attempts',
    {
      preHandler: requireTenant,
      schema: {
        summary: "A destination's attempts, newest first unless dir=asc",
        tags: ['destinations'],
        params: destinationParams,
        querystring: z.strictObject(attemptFilter),
        response: responses({ 200: attemptListSchema }, [400, 403, 404, 422]),
      },
    },
    async (request, reply) => {
      const destination = await find(request.params.tenant_id, request.params.destination_id);
      const q = request.query;
      const filter = { ...attemptConditions(q), tenant_id: destination.tenant_id, destination_id: destination.id };
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
    '/destinations/:destination_id/attempts/:attempt_id',
    {
      preHandler: requireTenant,
      schema: {
        summary: "One of a destination's attempts",
        tags: ['destinations'],
        params: destinationParams.extend({ attempt_id: z.string().min(1) }),
        querystring: z.strictObject({ include: includeParam }),
        response: responses({ 200: attemptSchema }, [400, 403, 404, 422]),
      },
    },
    async (request, reply) => {
      const destination = await find(request.params.tenant_id, request.params.destination_id);
      const attempt = await store.getAttempt(destination.tenant_id, request.params.attempt_id);
      if (!attempt || attempt.destination_id !== destination.id) {
        throw new HttpError(404, `attempt ${request.params.attempt_id} not found for destination ${destination.id}`, {
          reason: 'not_found',
        });
      }
      return attemptAnswer(reply, await attemptView(store, attempt, includesOf(request.query.include)));
    },
  );
};

/** `GET /destination-types[/{type}]` and `GET /topics`. */
export const destinationTypeRoutes: ControlPlaneRoutes = async (plain, { config }) => {
  const app = plain.withTypeProvider<ZodTypeProvider>();
  app.get(
    '/destination-types',
    {
      schema: {
        summary: 'The destination types and their fields',
        tags: ['destinations'],
        response: responses({ 200: z.array(destinationTypeSchema) }),
      },
    },
    async () => [...DESTINATION_TYPES.values()].map(describeType),
  );
  app.get(
    '/destination-types/:type',
    {
      schema: {
        summary: 'One destination type',
        tags: ['destinations'],
        params: z.object({ type: z.string() }),
        response: responses({ 200: destinationTypeSchema }, [404]),
      },
    },
    async (request) => {
      const type = DESTINATION_TYPES.get(request.params.type);
      if (!type)
        throw new HttpError(
          404,
          `destination type ${request.params.type} not found; supported: ${[...DESTINATION_TYPES.keys()].join(', ')}`,
          { reason: 'not_found' },
        );
      return describeType(type);
    },
  );
  app.get(
    '/topics',
    {
      schema: {
        summary: 'The configured topics ([] = any)',
        tags: ['destinations'],
        response: responses({ 200: z.array(z.string()) }),
      },
    },
    async () => config.api.topics,
  );
};

function generatedId(): string {
  return `des_${randomBytes(9).toString('base64url')}`;
}

/**
 * Validates type, topics, config (with where it may connect) and credentials together, so one 422 names every
 * problem; `credentialsNote` is added when the credentials are refused.
 */
function checkDestination(
  input: {
    type: string;
    topics: string[];
    config: Record<string, unknown>;
    credentials: Record<string, unknown>;
    filter: Record<string, unknown>;
  },
  config: ControlPlane['config'],
  guard: EndpointGuard,
  credentialsNote?: string,
) {
  const type = DESTINATION_TYPES.get(input.type);
  if (!type)
    throw validationError([`type failed enum validation (supported: ${[...DESTINATION_TYPES.keys()].join(', ')})`]);
  const messages: string[] = [];
  const allowed = new Set(config.api.topics);
  if (allowed.size > 0 && input.topics.some((t) => t !== '*' && !allowed.has(t))) {
    messages.push(`topics failed enum validation (configured topics: ${[...allowed].join(', ')}, or *)`);
  }
  messages.push(...problemMessages(filterProblems(input.filter), ['filter']));
  const parsedConfig = type.config.safeParse(type.unflatten ? type.unflatten(input.config) : input.config);
  if (!parsedConfig.success) messages.push(...issueMessages(parsedConfig.error.issues, ['config']));
  else if (type.check) messages.push(...problemMessages(type.check(parsedConfig.data, guard), ['config']));
  const parsedCredentials = type.credentials.safeParse(input.credentials);
  if (!parsedCredentials.success)
    messages.push(
      ...issueMessages(parsedCredentials.error.issues, ['credentials']),
      ...(credentialsNote ? [credentialsNote] : []),
    );
  if (messages.length > 0 || !parsedConfig.success || !parsedCredentials.success) throw validationError(messages);
  return {
    type: input.type,
    topics: input.topics,
    config: parsedConfig.data,
    credentials: parsedCredentials.data,
    filter: input.filter,
  };
}

/** A PATCH of a string map: keys given replace, null removes one; null for the whole map clears it. */
function mergeStrings(old: StringMap, patch: Record<string, string | null> | null | undefined): StringMap {
  if (patch === undefined) return old;
  if (patch === null) return {};
  const merged: StringMap = { ...old };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete merged[k];
    else merged[k] = v;
  }
  return merged;
}

/** A PATCH's fields replace the old ones; null removes one. */
function merge(old: Record<string, unknown>, patch: Record<string, unknown> | undefined): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...old, ...patch };
  for (const [k, v] of Object.entries(merged)) if (v === null) delete merged[k];
  return merged;
}

/** Whether a config field is the same before and after a PATCH ("" is how Outpost clients leave a field unset). */
function sameValue(a: unknown, b: unknown): boolean {
  const norm = (v: unknown) => (v === undefined || v === null || v === '' ? '' : JSON.stringify(v));
  return norm(a) === norm(b);
}

/** Only the credentials sent: a masked value sent back cannot stand for the stored one, nor become a credential. */
function withoutStored(old: StringMap, patch: Record<string, unknown> | undefined): Record<string, unknown> {
  const sent = Object.entries(patch ?? {}).filter(
    ([k, v]) => v !== null && !(Object.hasOwn(old, k) && v === maskCredential(k, old[k]!)),
  );
  return Object.fromEntries(sent);
}

/** As merge, and a masked value sent back (as read from a GET) keeps the stored secret. */
function mergeCredentials(old: StringMap, patch: Record<string, unknown> | undefined): Record<string, unknown> {
  const kept = Object.fromEntries(
    Object.entries(patch ?? {}).filter(([k, v]) => !(Object.hasOwn(old, k) && v === maskCredential(k, old[k]!))),
  );
  return merge(old, kept);
}
