import { isUtf8 } from 'node:buffer';
import { validatorCompiler } from 'fastify-type-provider-zod';
import { HttpError } from '../http/http-error.js';
import { deliveryLogRoutes } from './delivery-log.js';
import { destinationRoutes, destinationTypeRoutes } from './destinations.js';
import { tenantRoutes } from './tenants.js';
import { managedConfigRoutes } from './managed-config.js';
import { metricsRoutes } from './metrics.js';
import { publishRoutes } from './publish.js';
import { foldArrayParams } from './query.js';
import type { ControlPlane, ControlPlaneRoutes } from './route-context.js';
import { exceedsDepth } from '../json/depth.js';
import { MAX_JSON_DEPTH } from '../json/limits.js';

/** The Outpost-compatible API, registered under `/api/v1`: auth first, then JSON bodies checked by the routes' zod schemas. */
export const controlPlaneRoutes: ControlPlaneRoutes = async (app, opts) => {
  app.setValidatorCompiler(validatorCompiler);
  // Routes declare their answers' schemas for /openapi.json; what they return is written as it is (JSON.stringify),
  // as before they declared them: the schemas describe the answers, test/outpost-sdk.test.ts checks that they hold.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  app.addHook('preValidation', foldArrayParams);
  // set by the onRequest hook below before any route runs
  app.decorateRequest('principal', null as never);

  app.decorateRequest('bodyText', undefined);

  // Outpost's clients send PUT /tenants/{id} with no body at all: an empty body is no body.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    // JSON is UTF-8 (RFC 8259), checked before decoding: a lenient decoding (parseAs 'string') would store
    // U+FFFD in place of every invalid byte, and acknowledge data that is not what was sent (/logs refuses it too)
    if (!isUtf8(body as Buffer))
      return done(new HttpError(400, 'the body is not valid UTF-8', { reason: 'invalid_utf8' }), undefined);
    const text = (body as Buffer).toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    // before anything builds a tree of it: nothing later (validation, a key template, an answer that
    // serializes it) has to cope with hostile depth
    if (exceedsDepth(text, MAX_JSON_DEPTH)) {
      return done(
        new HttpError(400, `the body is nested deeper than ${MAX_JSON_DEPTH} levels`, {
          reason: 'too_deep',
          max_depth: MAX_JSON_DEPTH,
        }),
        undefined,
      );
    }
    request.bodyText = text;
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(
        new HttpError(400, `the body is not valid JSON: ${(err as Error).message}`, { reason: 'invalid_json' }),
        undefined,
      );
    }
  });

  app.addHook('onRequest', async (request) => {
    request.principal = await opts.auth.authenticate(request);
  });

  // only the shared parts: opts also holds this plugin's own prefix
  const shared: ControlPlane = {
    config: opts.config,
    store: opts.store,
    auth: opts.auth,
    publisher: opts.publisher,
    metrics: opts.metrics,
  };
  await app.register(tenantRoutes, shared);
  await app.register(destinationRoutes, { ...shared, prefix: '/tenants/:tenant_id' });
  // the older path shape of the same routes: /api/v1/{tenant_id}/destinations
  await app.register(destinationRoutes, { ...shared, prefix: '/:tenant_id' });
  await app.register(destinationTypeRoutes, shared);
  await app.register(publishRoutes, shared);
  await app.register(deliveryLogRoutes, shared);
  await app.register(metricsRoutes, shared);
  await app.register(managedConfigRoutes, shared);
};
