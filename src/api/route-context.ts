import type { FastifyPluginAsync } from 'fastify';
import type { Config } from '../config/schema.js';
import type { Metrics } from '../observability/metrics.js';
import type { EventPublisher } from '../sources/event-publisher.js';
import type { Store } from '../store/types.js';
import type { ApiAuth } from './auth.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The JSON body as received (routes that keep part of it as sent, such as publish's data, read it here). */
    bodyText: string | undefined;
  }
}

/**
 * What the control plane's routes share. In a file of its own so that the route files and control-plane.ts,
 * which registers them, do not import each other.
 */
export interface ControlPlane {
  config: Config;
  store: Store;
  auth: ApiAuth;
  publisher: EventPublisher;
  metrics: Metrics;
}

export type ControlPlaneRoutes = FastifyPluginAsync<ControlPlane>;
