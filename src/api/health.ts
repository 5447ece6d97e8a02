import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { DecisionBuffer } from '../buffer/types.js';
import type { OutputWorker } from '../delivery/output-worker.js';
import type { Store } from '../store/types.js';
import { healthzSchema } from './schemas.js';

/** The body of `/ready`, and whether Sluice takes writes. */
export function readiness(buffer: DecisionBuffer, store: Store, workers: OutputWorker[], closing: boolean) {
  const stats = buffer.stats();
  const writable = buffer.writable() && store.writable() && !closing;
  const outputs = workers.map((w) => w.status());
  return {
    writable,
    body: {
      status: writable ? (outputs.every((o) => o.state === 'ok') ? 'ok' : 'degraded') : 'unavailable',
      buffer: {
        writable,
        bytes: stats.bytes,
        max_bytes: stats.maxBytes,
        chunks: stats.chunks,
        events: stats.events,
        oldest_age_seconds:
          stats.oldestReceivedAt === null ? 0 : Math.max(0, (Date.now() - stats.oldestReceivedAt) / 1000),
        // chunks whose bytes failed their checksum since the start (set aside by the outputs, never uploaded)
        corrupt_chunks: stats.corruptChunks,
      },
      outputs,
      events: { writable: store.writable(), pending_deliveries: store.pendingDeliveries() },
    },
  };
}

/**
 * `/health`: the process answers. `/ready`: the buffer and the store take writes, how each output is doing,
 * and how many event deliveries are pending.
 */
export async function healthRoutes(
  app: FastifyInstance,
  opts: {
    buffer: DecisionBuffer;
    store: Store;
    workers: OutputWorker[];
    closing: () => boolean;
    /** observability.token's check, when set: /ready needs it, /health never (a liveness probe sends nothing). */
    observability?: (request: FastifyRequest) => Promise<void>;
  },
): Promise<void> {
  const { buffer, store, workers, observability } = opts;
  // the answers' zod schemas are for /openapi.json; the answers are written as they are
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  app.get('/health', { schema: { summary: 'The process answers', tags: ['operations'], security: [] } }, async () => ({
    status: 'ok',
  }));
  app.get(
    '/ready',
    {
      ...(observability ? { onRequest: observability } : {}),
      schema: {
        summary: 'Buffer, store and outputs: 200 while writable, 503 otherwise',
        tags: ['operations'],
        security: [],
      },
    },
    async (_request, reply) => {
      const { writable, body } = readiness(buffer, store, workers, opts.closing());
      reply.code(writable ? 200 : 503);
      return body;
    },
  );
  // Outpost's health check, for its clients: open, 200 while the buffer and the store take writes, else 503
  // (the state of each output is /ready's)
  app.get(
    '/api/v1/healthz',
    {
      schema: {
        summary: 'Health as Outpost answers it: 200 healthy, 503 failed',
        tags: ['operations'],
        security: [],
        response: { 200: healthzSchema, 503: healthzSchema },
      },
    },
    async (_request, reply) => {
      const state = (ok: boolean) => ({ status: ok ? ('healthy' as const) : ('failed' as const) });
      const workers = {
        'http-server': state(!opts.closing()),
        buffer: state(buffer.writable()),
        store: state(store.writable()),
      };
      const healthy = Object.values(workers).every((w) => w.status === 'healthy');
      reply.code(healthy ? 200 : 503);
      return { status: healthy ? 'healthy' : 'failed', timestamp: new Date().toISOString(), workers };
    },
  );
}
