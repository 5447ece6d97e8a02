import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import helmet from '@fastify/helmet';
import type { Config } from '../config/schema.js';
import { candidateKeys, matchingDecisions, parseWhen } from '../query/decisions.js';
import { canReadBack, outputObjects, READABLE_OUTPUT_TYPES } from '../sinks/registry.js';
import type { History } from '../observability/history.js';
import type { Store } from '../store/types.js';
import { HttpError } from '../http/http-error.js';
import { RawJson, stringifyWithRaw } from '../json/raw-json.js';
import type { ApiAuth } from './auth.js';
import { destinationView } from './views.js';

/** The console's files: a page, its script and style, and uPlot for the charts; all served by Sluice itself. */
const UI = new URL('../../ui/', import.meta.url);
const require = createRequire(import.meta.url);
// a Map: looked up by a request's path, where `constructor` or `__proto__` must be no asset, not Object's own
const ASSETS = new Map<string, { file: string; type: string }>([
  ['console.js', { file: new URL('console.js', UI).pathname, type: 'text/javascript; charset=utf-8' }],
  ['console.css', { file: new URL('console.css', UI).pathname, type: 'text/css; charset=utf-8' }],
  ['uplot.js', { file: require.resolve('uplot/dist/uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' }],
  ['uplot.css', { file: require.resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' }],
]);
const LOOKUP_LIMIT = 100;

/**
 * The operator console at /ui: one page (no build step, no CDN) that reads /ui/api/overview every few seconds.
 * The page itself holds no data; its API needs the admin key when one is configured (the page asks for it
 * and keeps it in the browser's session storage).
 */
export async function consoleRoutes(
  app: FastifyInstance,
  opts: {
    config: Config;
    store: Store;
    auth: ApiAuth;
    history: History;
    ready: () => Promise<unknown>;
  },
): Promise<void> {
  const { config, store, auth, history } = opts;
  const page = readFileSync(new URL('index.html', UI), 'utf8');
  // The console's routes only (this plugin's scope): scripts, styles and fetches from Sluice itself, never framed
  // (clickjacking a Retry button), no sniffing. Plain HTTP: no HSTS, and no upgrade of its requests to https.
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    strictTransportSecurity: false,
  });

  app.get(
    '/ui',
    { schema: { summary: 'The operator console (HTML)', tags: ['operations'], security: [] } },
    async (_request, reply) => {
      reply.type('text/html; charset=utf-8');
      return page;
    },
  );
  app.get('/ui/assets/:name', { schema: { hide: true } }, async (request, reply) => {
    const asset = ASSETS.get((request.params as { name: string }).name);
    if (!asset) throw new HttpError(404, 'no such asset', { reason: 'not_found' });
    reply.type(asset.type).header('cache-control', 'max-age=300');
    return readFileSync(asset.file);
  });

  const admin = async (request: FastifyRequest) => {
    const principal = await auth.authenticate(request);
    if (!principal.admin) throw new HttpError(403, 'the console needs the admin key', { reason: 'forbidden' });
  };

  app.get(
    '/ui/api/overview',
    {
      schema: {
        summary: "The console's data: rates, outputs, destinations, failed attempts, tenants",
        tags: ['operations'],
      },
    },
    async (request) => {
      await admin(request);
      // the queries of one answer run side by side: over a network store each is a round trip
      const tenants = await Promise.all(
        (await store.listTenants({ limit: 100 })).models.map(async (t) => ({
          tenant: t,
          destinations: await store.listDestinations(t.id),
        })),
      );
      const destinations = await Promise.all(
        tenants
          .flatMap((t) => t.destinations)
          .map(async (d) => {
            const failed = await store.listAttempts(
              { tenant_id: d.tenant_id, destination_id: d.id, status: 'failed' },
              { limit: 1 },
            );
            return { ...destinationView(d), tenant_id: d.tenant_id, last_failure: failed.models[0] ?? null };
          }),
      );
      const [samples, ready, failedAttempts] = await Promise.all([
        history.read(),
        opts.ready(),
        store.listAttempts({ status: 'failed' }, { limit: 20 }),
      ]);
      return {
        history: samples,
        ready,
        destinations,
        failed_attempts: failedAttempts.models,
        tenants: tenants.map(({ tenant, destinations: list }) => ({
          id: tenant.id,
          destinations: list.length,
          created_at: tenant.created_at,
        })),
        outputs: config.outputs.filter(canReadBack).map((o) => o.name),
      };
    },
  );

  const lookup = z.object({
    output: z.string().min(1),
    decision_id: z.string().min(1).optional(),
    from: z.string().default('1h'),
    to: z.string().default('now'),
  });
  app.get(
    '/ui/api/decisions',
    { schema: { summary: 'Find decisions by id or time range over an output', tags: ['operations'] } },
    async (request, reply) => {
      await admin(request);
      const query = lookup.safeParse(request.query);
      if (!query.success) throw new HttpError(400, 'give output, and decision_id or from/to', { reason: 'bad_query' });
      const output = config.outputs.find((o) => o.name === query.data.output);
      if (!output || !canReadBack(output))
        throw new HttpError(404, `no ${READABLE_OUTPUT_TYPES.join(' or ')} output named ${query.data.output}`, {
          reason: 'not_found',
        });
      const from = parseWhen(query.data.from);
      const to = parseWhen(query.data.to);
      if (from === undefined || to === undefined)
        throw new HttpError(400, 'from and to take RFC 3339 times or durations ago (15m, 2h)', { reason: 'bad_query' });
      const objects = outputObjects(output);
      try {
        const keys = await candidateKeys(output, objects, from, to);
        const found: RawJson[] = [];
        for await (const d of matchingDecisions(objects, keys, {
          from,
          to,
          decisionId: query.data.decision_id,
          where: [],
        })) {
          found.push(new RawJson(d.text));
          if (found.length >= LOOKUP_LIMIT) break;
        }
        // each decision as stored (number text, key order, any depth), never parsed and re-serialized
        reply.type('application/json; charset=utf-8');
        return stringifyWithRaw({ decisions: found, objects: keys.length, truncated: found.length >= LOOKUP_LIMIT });
      } finally {
        objects.close();
      }
    },
  );
}
