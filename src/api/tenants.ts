import { z } from 'zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { TENANT_ID } from '../config/schema.js';
import { HttpError } from '../http/http-error.js';
import { requireAdmin, requireTenant, tenantsScope } from './auth.js';
import type { ControlPlaneRoutes } from './route-context.js';
import { paged, pageParams } from './paging.js';
import { anyString, oneOrMore } from './query.js';
import { responses, successSchema, tenantListSchema, tenantSchema, tokenSchema } from './schemas.js';
import { checkMetadataQuota, required } from '../http/validation.js';
import { tenantView } from './views.js';

export const tenantParams = z.object({
  tenant_id: z.string({ error: required }).regex(TENANT_ID, 'failed pattern validation'),
});

const stringMap = z.record(z.string(), z.string({ error: 'failed type validation' }));

const tenantQuery = z.strictObject({
  ...pageParams({ default: 20, max: 100 }),
  id: oneOrMore(anyString).optional(),
  dir: z.enum(['asc', 'desc'], { error: 'failed enum validation' }).default('desc'),
});

/**
 * Tenants: `PUT|GET|DELETE /tenants/{tenant_id}`, `GET /tenants`, `GET /tenants/{tenant_id}/token` and
 * `/portal`. A tenant token reaches its own tenant (PUT, GET, DELETE, and a list of itself), as in Outpost.
 */
export const tenantRoutes: ControlPlaneRoutes = async (plain, { store, auth, config }) => {
  const app = plain.withTypeProvider<ZodTypeProvider>();

  const view = async (id: string) => {
    const [tenant, destinations] = await Promise.all([store.getTenant(id), store.listDestinations(id)]);
    if (!tenant) throw new HttpError(404, `tenant ${id} not found`, { reason: 'not_found' });
    return tenantView(tenant, destinations);
  };

  app.put(
    '/tenants/:tenant_id',
    {
      // a tenant token exists only for a tenant that exists: it can update itself, never make another
      preHandler: requireTenant,
      schema: {
        summary: 'Create (201) or update (200) a tenant',
        tags: ['tenants'],
        params: tenantParams,
        body: z.object({ metadata: stringMap.nullish() }).nullish(),
        response: responses({ 200: tenantSchema, 201: tenantSchema }, [403, 422]),
      },
    },
    async (request, reply) => {
      const metadata = request.body?.metadata ?? {};
      checkMetadataQuota(config.api.quotas.metadata_bytes, { metadata });
      const { tenant, created } = await store.upsertTenant(request.params.tenant_id, metadata);
      reply.code(created ? 201 : 200);
      return tenantView(tenant, await store.listDestinations(tenant.id));
    },
  );

  app.get(
    '/tenants/:tenant_id',
    {
      preHandler: requireTenant,
      schema: {
        summary: 'A tenant',
        tags: ['tenants'],
        params: tenantParams,
        response: responses({ 200: tenantSchema }, [403, 404]),
      },
    },
    async (request) => {
      return view(request.params.tenant_id);
    },
  );

  app.delete(
    '/tenants/:tenant_id',
    {
      preHandler: requireTenant,
      schema: {
        summary: 'Delete a tenant with its destinations, events and attempts; its tokens are refused from then on',
        tags: ['tenants'],
        params: tenantParams,
        response: responses({ 200: successSchema }, [403, 404]),
      },
    },
    async (request) => {
      if (!(await store.deleteTenant(request.params.tenant_id)))
        throw new HttpError(404, `tenant ${request.params.tenant_id} not found`, { reason: 'not_found' });
      return { success: true };
    },
  );

  app.get(
    '/tenants',
    {
      schema: {
        summary: 'List tenants, newest first unless dir=asc (a tenant token: only itself)',
        tags: ['tenants'],
        querystring: tenantQuery,
        response: responses({ 200: tenantListSchema }, [400, 403, 422]),
      },
    },
    async (request) => {
      const q = request.query;
      const filter = { id: request.principal.admin ? q.id : tenantsScope(request, q.id) };
      const [page, count] = await Promise.all([
        paged(
          (p) => store.listTenants(p, filter),
          q,
          async (t) => tenantView(t, await store.listDestinations(t.id)),
          'created_at',
        ),
        store.countTenants(filter),
      ]);
      return { ...page, count };
    },
  );

  app.get(
    '/tenants/:tenant_id/token',
    {
      preHandler: requireAdmin,
      schema: {
        summary: 'A JWT for the tenant (24 h)',
        tags: ['tenants'],
        params: tenantParams,
        response: responses({ 200: tokenSchema }, [403, 404]),
      },
    },
    async (request) => {
      // a deletion after this read raises the generation: the token issued here is then refused (ApiAuth)
      const tenant = await store.getTenant(request.params.tenant_id);
      if (!tenant) throw new HttpError(404, `tenant ${request.params.tenant_id} not found`, { reason: 'not_found' });
      return { token: await auth.issueToken(tenant), tenant_id: tenant.id };
    },
  );

  app.get(
    '/tenants/:tenant_id/portal',
    {
      preHandler: requireAdmin,
      schema: {
        summary:
          "Outpost's tenant portal: Sluice has none (501); a tenant's own UI uses GET /tenants/{tenant_id}/token and this API",
        tags: ['tenants'],
        params: tenantParams,
        querystring: z.strictObject({
          theme: z.enum(['light', 'dark'], { error: 'failed enum validation' }).optional(),
        }),
        response: responses({}, [400, 403, 404, 501]),
      },
    },
    async (request) => {
      if (!(await store.getTenant(request.params.tenant_id)))
        throw new HttpError(404, `tenant ${request.params.tenant_id} not found`, { reason: 'not_found' });
      // Sluice's console (/ui) is the operator's, behind the admin key: a redirect there would hand a tenant a page it cannot use
      throw new HttpError(
        501,
        'Sluice has no tenant portal: build the tenant-facing pages on GET /api/v1/tenants/{tenant_id}/token and this API (the console at /ui is for operators)',
        { reason: 'not_implemented' },
      );
    },
  );
};
