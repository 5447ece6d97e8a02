import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { HttpError } from '../http/http-error.js';
import { requireAdmin } from './auth.js';
import type { ControlPlaneRoutes } from './route-context.js';
import { configSchema, responses } from './schemas.js';

/**
 * `GET /config`: Outpost's managed configuration, as far as Sluice has the same settings, read from its config
 * file (admin). Outpost changes it with `PATCH /config`; Sluice's settings live in the file, so that is a 501.
 */
export const managedConfigRoutes: ControlPlaneRoutes = async (plain, { config }) => {
  const app = plain.withTypeProvider<ZodTypeProvider>();
  const api = config.api;
  const settings: Record<string, string> = {
    TOPICS: api.topics.join(','),
    // "*" is always accepted as a destination's topics
    TOPICS_ALLOW_WILDCARDS: 'true',
    MAX_DESTINATIONS_PER_TENANT: String(api.quotas.destinations_per_tenant),
    MAX_RETRY_LIMIT: String(api.retry.schedule?.length ?? api.retry.max_retries),
    ...(api.retry.schedule
      ? { RETRY_SCHEDULE: api.retry.schedule.map((ms) => String(Math.round(ms / 1000))).join(',') }
      : { RETRY_INTERVAL_SECONDS: String(Math.round(api.retry.initial_backoff / 1000)) }),
  };
  app.get(
    '/config',
    {
      preHandler: requireAdmin,
      schema: {
        summary: "Outpost's managed configuration keys that Sluice's config file sets (read-only)",
        tags: ['operations'],
        response: responses({ 200: configSchema }, [403]),
      },
    },
    async () => {
      return settings;
    },
  );
  app.patch(
    '/config',
    {
      preHandler: requireAdmin,
      schema: {
        summary: 'Not supported: Sluice is configured by its config file (501)',
        tags: ['operations'],
        response: responses({}, [403, 501]),
      },
    },
    async () => {
      throw new HttpError(
        501,
        "Sluice's configuration is its config file (sluice.yaml): change it there and restart; GET /api/v1/config shows what applies",
        { reason: 'not_implemented' },
      );
    },
  );
};
