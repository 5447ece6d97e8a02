import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { DecisionBuffer } from '../buffer/types.js';
import type { OutputWorker } from '../delivery/output-worker.js';
import type { Store } from '../store/types.js';
import { healthzSchema } from './schemas.js';

/** How long /ready waits for the store's answer before it reports it unreachable: a probe must get an answer. */
export const STORE_PING_TIMEOUT_MS = 2000;

/** The store's answer, or a rejection once STORE_PING_TIMEOUT_MS have passed without one. */
async function storeAnswer<T>(asked: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${STORE_PING_TIMEOUT_MS / 1000} s`)),
      STORE_PING_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([asked, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether the store answers a trivial query (within STORE_PING_TIMEOUT_MS), and why not. */
export async function storeReachability(
  store: Pick<Store, 'ping'>,
): Promise<{ status: 'ok' | 'unreachable'; error: string | null }> {
  try {
    await storeAnswer(store.ping());
    return { status: 'ok', error: null };
  } catch (err) {
    // the message only (no stack): /ready may be open, and a driver's error names no credential
    return { status: 'unreachable', error: err instanceof Error ? err.message : String(err) };
  }
}

/** The body of `/ready`, and whether Sluice takes writes: not while the store cannot be reached. */
export async function readiness(buffer: DecisionBuffer, store: Store, workers: OutputWorker[], closing: boolean) {
  const [reach, pending] = await Promise.all([
    storeReachability(store),
    // null when the store cannot say (unreachable): reach.error says why
    storeAnswer(store.pendingDeliveries()).catch(() => null),
  ]);
  const stats = buffer.stats();
  const storeWritable = store.writable() && reach.status === 'ok';
  const writable = buffer.writable() && storeWritable && !closing;
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
      events: { writable: storeWritable, pending_deliveries: pending },
      store: reach,
    },
  };
}

/**
 * `/health`: the process answers. `/ready`: the buffer and the store take writes (the store is asked a trivial
 * query: one on the network may be unreachable), how each output is doing, and how many event deliveries are pending.
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
      const { writable, body } = await readiness(buffer, store, workers, opts.closing());
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
      const reach = await storeReachability(store);
      const workers = {
        'http-server': state(!opts.closing()),
        buffer: state(buffer.writable()),
        store: state(store.writable() && reach.status === 'ok'),
      };
      const healthy = Object.values(workers).every((w) => w.status === 'healthy');
      reply.code(healthy ? 200 : 503);
      return { status: healthy ? 'healthy' : 'failed', timestamp: new Date().toISOString(), workers };
    },
  );
}
