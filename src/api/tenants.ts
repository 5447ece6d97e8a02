import { z } from 'zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { TENANT_ID } from '../config/schema.js';
import { HttpError } from '../sources/http-error.js';
import { requireAdmin, requireTenant } from './auth.js';
import type { ControlPlaneRoutes } from './control-plane.js';
import { paged, pageQuery } from './paging.js';
import { checkMetadataQuota, required } from './validation.js';
import { tenantView } from './views.js';

export const tenantParams = z.object({
  tenant_id: z.string({ error: required }).regex(TENANT_ID, 'failed pattern validation'),
});

const stringMap = z.record(z.string(), z.string({ error: 'failed type validation' }));

/** Tenants: `PUT|GET|DELETE /tenants/{tenant_id}`, `GET /tenants`, `GET /tenants/{tenant_id}/token`. */
export const tenantRoutes: ControlPlaneRoutes = async (plain, { store, auth, config }) => {
  const app = plain.withTypeProvider<ZodTypeProvider>();

  const view = (id: string) => {
    const tenant = store.getTenant(id);
    if (!tenant) throw new HttpError(404, `tenant ${id} not found`, { reason: 'not_found' });
    return tenantView(tenant, store.listDestinations(id));
  };

  app.put('/tenants/:tenant_id', {
    schema: {
      summary: 'Create (201) or update (200) a tenant', tags: ['tenants'], params: tenantParams, body: z.object({ metadata: stringMap.optional() }).nullish() },
  }, async (request, reply) => {
    requireAdmin(request);
    checkMetadataQuota(config.api, { metadata: request.body?.metadata });
    const { tenant, created } = await store.upsertTenant(request.params.tenant_id, request.body?.metadata ?? {});
    reply.code(created ? 201 : 200);
    return tenantView(tenant, store.listDestinations(tenant.id));
  });

  app.get('/tenants/:tenant_id', { schema: { summary: 'A tenant', tags: ['tenants'], params: tenantParams } }, async (request) => {
    requireTenant(request, request.params.tenant_id);
    return view(request.params.tenant_id);
  });

  app.delete('/tenants/:tenant_id', {
    schema: { summary: 'Delete a tenant with its destinations, events and attempts; its tokens are refused from then on', tags: ['tenants'], params: tenantParams },
  }, async (request) => {
    requireAdmin(request);
    if (!(await store.deleteTenant(request.params.tenant_id))) throw new HttpError(404, `tenant ${request.params.tenant_id} not found`, { reason: 'not_found' });
    return { success: true };
  });

  app.get('/tenants', { schema: { summary: 'List tenants', tags: ['tenants'], querystring: z.object(pageQuery) } }, async (request) => {
    requireAdmin(request);
    return paged((q) => store.listTenants(q), request.query, (t) => tenantView(t, store.listDestinations(t.id)));
  });

  app.get('/tenants/:tenant_id/token', { schema: { summary: 'A JWT for the tenant (24 h)', tags: ['tenants'], params: tenantParams } }, async (request) => {
    requireAdmin(request);
    const tenant = store.getTenant(request.params.tenant_id);
    if (!tenant) throw new HttpError(404, `tenant ${request.params.tenant_id} not found`, { reason: 'not_found' });
    return { token: await auth.issueToken(tenant), tenant_id: tenant.id };
  });
};
