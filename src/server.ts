import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { openBuffer, type OpenBufferOptions } from './buffer/buffer-identity.js';
import { DataDirLock } from './buffer/data-dir-lock.js';
import { storageErrorCode } from './sqlite/storage-errors.js';
import { storageUnavailable } from './api/storage-unavailable.js';
import { RateLimitedLog } from './observability/rate-limited-log.js';
import { OutputWorker } from './delivery/output-worker.js';
import { createSink } from './sinks/registry.js';
import { buildTransform } from './transforms/decision-transform.js';
import { opaRoutes } from './sources/opa.js';
import { DecoderPool } from './sources/decoder-pool.js';
import { healthRoutes, readiness } from './api/health.js';
import { consoleRoutes } from './api/console.js';
import { History } from './observability/history.js';
import { HttpError } from './http/http-error.js';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import {
  clientErrorHandler,
  headerCountCheck,
  observabilityAuth,
  openApiTransform,
  SECURITY_SCHEMES,
} from './api/http-security.js';
import { hostCheck, HostPolicy } from './http/host-check.js';
import { tightenDataDirLogged } from './sqlite/private-files.js';
import fastifySwagger from '@fastify/swagger';
import { VERSION } from './version.js';
import { applyHeapPolicy } from './heap-policy.js';
import { schemaValidationError } from './http/validation.js';
import { controlPlaneRoutes } from './api/control-plane.js';
import { ApiAuth } from './api/auth.js';
import { openStore, type OpenedStore } from './store/open-store.js';
import { EventPublisher } from './sources/event-publisher.js';
import { DecisionEvents } from './sources/decision-events.js';
import { RecentlyAccepted } from './sources/recently-accepted.js';
import { EventDispatcher } from './delivery/event-dispatcher.js';
import { Metrics } from './observability/metrics.js';
import { DecodedBudget } from './sources/decoded-budget.js';
import { DeadLetter } from './delivery/dead-letter.js';
import { closeParquetEncoder } from './delivery/parquet-encoder.js';
import path from 'node:path';
import { createServer as createHttpServer } from 'node:http';

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  /** Stops accepting, flushes open batches within config.shutdown_timeout, closes the buffer. */
  shutdown(): Promise<{ flushed: boolean }>;
}

/** Builds the service from a validated config and wires its parts; nothing else. */
export async function startServer(
  config: Config,
  log: Logger,
  options: OpenBufferOptions = {},
): Promise<RunningServer> {
  // before any worker thread is made: the young generation each pool asks for is what it gets
  applyHeapPolicy();
  // the owner's only, before any database in it is opened (SQLite gives new -wal and -shm files the database's mode)
  tightenDataDirLogged(config.data_dir, log);
  // One process per data_dir, taken before anything in it is opened: two would overwrite each other's buffer.
  const lock = DataDirLock.acquire(config.data_dir, log);
  let buffer;
  try {
    buffer = openBuffer(config.data_dir, config.buffer.max_bytes, log, options);
  } catch (err) {
    lock.release();
    throw err;
  }
  const dropped = buffer.retainOutputs(config.outputs.map((o) => o.name));
  if (dropped.length > 0) log.warn({ outputs: dropped }, 'outputs no longer configured: their positions are forgotten');
  // the control plane: tenants, destinations, published events and their delivery (SQLite here, or PostgreSQL shared by a cluster)
  let opened: OpenedStore;
  try {
    opened = await openStore(config);
  } catch (err) {
    buffer.close();
    lock.release();
    throw err;
  }
  const { encryptionKey, jwtSecret } = opened;
  const store = opened.store;
  // metrics read the workers' state at scrape time; the workers report to the metrics as they deliver
  const workers: OutputWorker[] = [];
  const deadLetter = new DeadLetter(path.join(config.data_dir, 'dead-letter'));
  const budget = new DecodedBudget(config.ingest.max_decoded_in_flight, config.ingest.max_wait);
  const metrics = new Metrics(
    buffer,
    store,
    () => workers.map((w) => w.status()),
    () => budget.inUse,
    { store: opened.type, id: opened.type === 'postgres' ? opened.store.nodeId : null },
  );
  workers.push(
    ...config.outputs.map(
      (o) =>
        new OutputWorker(o, buffer, createSink(o), log, deadLetter, buildTransform(config.rules, o.rules), metrics),
    ),
  );
  const decoder = new DecoderPool(config.ingest.decode_threads);

  const auth = new ApiAuth(config.api.admin_key, jwtSecret.value, store);
  const publisher = new EventPublisher(store, config.api);
  const dispatcher = new EventDispatcher(store, config.api, log, (events) => metrics.eventsDelivered(events));
  if (auth.open) {
    log.warn(
      'api.admin_key is not set: the /api/v1 API is OPEN, anyone who reaches this port can manage tenants and destinations and publish. Set api.admin_key (or SLUICE_ADMIN_KEY).',
    );
  }
  if (encryptionKey.generated) {
    const file = path.join(config.data_dir, 'secrets', 'encryption_key');
    log.warn(
      { file },
      `api.encryption_key is not set: destination credentials are encrypted with a key kept next to them in data_dir, so a copy of data_dir ` +
        `(a backup, a volume snapshot) can read them. To move the key out: put the contents of ${file} in your secret store, give it to Sluice as ` +
        'SLUICE_ENCRYPTION_KEY (or api.encryption_key: ${SLUICE_ENCRYPTION_KEY} in the config), restart, then delete the file. ' +
        'Credentials stored so far stay readable: it is the same key.',
    );
  }
  let closing = false;

  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // A line per request is noise at thousands of OPA uploads a second; rejections and failures are logged.
    // a caller's X-Request-Id (or a generated one) is on every log line of the request and in the answer
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    bodyLimit: config.ingest.max_body_bytes,
    // slow or idle clients cannot hold connections forever (Node's defaults would wait indefinitely for a body)
    requestTimeout: config.http.request_timeout,
    keepAliveTimeout: config.http.keep_alive_timeout,
    serverFactory: (handler) => {
      const server = createHttpServer(
        {
          requestTimeout: config.http.request_timeout,
          headersTimeout: config.http.headers_timeout,
          keepAliveTimeout: config.http.keep_alive_timeout,
          // how often Node checks requests against those timeouts (its default, 30 s, would make them that coarse)
          connectionsCheckingInterval: Math.min(1000, config.http.headers_timeout),
        },
        handler,
      );
      server.maxConnections = config.http.max_connections;
      // no count limit in Node (it would drop headers past it, Host among them, and answer 400): headerCountCheck
      // refuses too many with 431, and Node's 16 KiB header size bounds what is held meanwhile
      server.maxHeadersCount = 0;
      return server;
    },
    return503OnClosing: true,
    // Node's parser refusals in our JSON shape; too large headers get 431 and a close that is not a reset
    clientErrorHandler: clientErrorHandler(config.http.headers_timeout),
    requestIdHeader: 'x-request-id',
    // errors the framework answers before any route (e.g. a malformed %-escape) get our JSON shape too
    frameworkErrors: (error, _request, reply) => {
      const status = error.statusCode ?? 400;
      (reply as FastifyReply).code(status).send({ status, message: error.message, data: { code: error.code } });
    },
    // partitions may be 128 characters; the router's own limit (100) would answer 414 before our check
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1024 },
  });
  app.addHook('onRequest', headerCountCheck);
  // against DNS rebinding: the API and the console answer only to the names of this server (README "Security")
  app.addHook('onRequest', hostCheck(new HostPolicy(parseListen(config.listen).host, config.http.allowed_hosts)));
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
    // Node then closes the connection after this answer, and the client knows not to send on it again.
    if (closing) reply.header('connection', 'close');
  });
  const storageFailures = new RateLimitedLog(log);
  // OPA retries a 413 for ever and never splits the chunk: said loudly, but once a minute per cause
  const tooLargeLog = new RateLimitedLog(log);
  app.setErrorHandler((raw: FastifyError | HttpError, request, reply) => {
    // a full or failing disk under the buffer or the store is a 503 to retry, not a 500
    const error = hasZodFastifySchemaValidationErrors(raw)
      ? schemaValidationError(raw)
      : (storageUnavailable(raw) ?? raw);
    const status = error.statusCode ?? 500;
    const message =
      status === 413 && !(error instanceof HttpError)
        ? `request body is larger than ingest.max_body_bytes (${config.ingest.max_body_bytes} bytes): send smaller chunks`
        : error.message;
    // A full disk refuses every write: one line a minute per cause, not one per request. A 5xx thrown on purpose
    // (HttpError, e.g. ingest's 503 when the buffer append fails) was logged with its cause where it was thrown.
    const storage = storageErrorCode(raw);
    if (storage)
      storageFailures.error(
        storage,
        { err: raw, request_id: request.id, url: request.url },
        'request refused with 503: data_dir cannot take writes',
      );
    else if (status >= 500 && !(raw instanceof HttpError)) request.log.error({ err: error }, 'request failed');
    else if (status === 413) warnTooLarge(tooLargeLog, error, message, request, config);
    else request.log.debug({ status, message }, 'request rejected');
    if (error instanceof HttpError) reply.headers(error.headers);
    reply.code(status).send({
      status,
      message,
      data: error instanceof HttpError ? error.data : { code: (error as FastifyError).code },
    });
  });
  // Every route's own schema becomes its OpenAPI description (GET /openapi.json): registered before the routes.
  await app.register(fastifySwagger, {
    openapi: {
      info: {
        title: 'Sluice',
        version: VERSION,
        description: 'Decision log service for Open Policy Agent, and an Outpost-compatible event API.',
      },
      components: { securitySchemes: SECURITY_SCHEMES },
    },
    // each route's own `security`, as configured: [] for open ones
    transform: openApiTransform(config),
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({ status: 404, message: `no route ${request.method} ${request.url}`, data: {} });
  });
  const recent = new RecentlyAccepted(buffer, config.ingest.dedupe.window, config.ingest.dedupe.max_entries);
  const forgetTimer = setInterval(() => {
    // a DELETE too needs disk space: on a full disk it fails, and must not end the process from a timer
    try {
      recent.forgetOld();
    } catch (err) {
      storageFailures.error('forget-accepted', { err }, 'cannot forget old accepted keys; retrying in a minute');
    }
  }, 60_000);
  forgetTimer.unref();
  await app.register(opaRoutes, {
    config,
    buffer,
    decoder,
    recent,
    metrics,
    budget,
    decisionEvents: new DecisionEvents(config, publisher, log as FastifyBaseLogger),
  });
  const observability = observabilityAuth(config.observability.token);
  app.get(
    '/metrics',
    {
      ...(observability ? { onRequest: observability } : {}),
      schema: { summary: 'Prometheus metrics (text format)', tags: ['operations'] },
    },
    async (_request, reply) => {
      reply.type(metrics.registry.contentType);
      return metrics.registry.metrics();
    },
  );
  await app.register(controlPlaneRoutes, { config, store, auth, publisher, metrics, prefix: '/api/v1' });
  await app.register(healthRoutes, { buffer, store, workers, closing: () => closing, observability });
  const history = new History(async () => ({
    ingested: metrics.totals.ingested,
    delivered: metrics.totals.delivered,
    bufferBytes: buffer.stats().bytes,
    pendingDeliveries: await store.pendingDeliveries(),
  }));
  history.start();
  await app.register(consoleRoutes, {
    config,
    store,
    auth,
    history,
    ready: async () => (await readiness(buffer, store, workers, closing)).body,
  });

  for (const w of workers) w.start();
  await dispatcher.start();
  const { host, port } = parseListen(config.listen);
  await app.listen({ host, port });
  const address = app.server.address();
  const boundPort = typeof address === 'object' && address ? address.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${boundPort}`;
  for (const note of config.notes) log.info(note);
  log.info(
    { url, data_dir: config.data_dir, outputs: workers.map((w) => w.status().target) },
    `sluice listening on ${url}`,
  );

  return {
    app,
    url,
    async shutdown() {
      // shutdown_timeout bounds the whole shutdown: the HTTP side first, then the drain in what is left of it
      const deadline = Date.now() + config.shutdown_timeout;
      closing = true;
      clearInterval(forgetTimer);
      history.stop();
      await closeHttp(app, deadline);
      const results = await Promise.all(workers.map((w) => w.drain(deadline)));
      for (const w of workers) w.stop();
      // what it still runs ends before the store closes (an aborted attempt must not reach a closed pool)
      await dispatcher.stop(Math.max(deadline, Date.now() + 2_000));
      await decoder.close();
      await closeParquetEncoder();
      buffer.close();
      await store.close();
      // last: the next process may open the data_dir only once both databases are closed
      lock.release();
      return { flushed: results.every(Boolean) };
    },
  };
}

/**
 * Stops accepting and waits for the requests in flight, but never past the deadline. Fastify closes idle
 * connections once, when the close starts; a keep-alive connection whose request is answered after that
 * would stay open until its keep-alive timeout (72 s), and OPA leaves every upload's connection idle. So idle
 * connections are closed as they become idle, and whatever is still open at the deadline (an upload that
 * stalls mid-body) is cut: its client got no answer and retries, so nothing acknowledged is lost.
 */
async function closeHttp(app: FastifyInstance, deadline: number): Promise<void> {
  const sweep = setInterval(() => app.server.closeIdleConnections(), 50);
  const cut = setTimeout(() => app.server.closeAllConnections(), Math.max(0, deadline - Date.now()));
  try {
    await app.close();
  } finally {
    clearInterval(sweep);
    clearTimeout(cut);
  }
}

/** What each 413 ran into, by the error's reason (Fastify's body limit has none): the setting and what to do. */
const TOO_LARGE: Record<string, { setting: string; limit: (c: Config) => number; advice: string }> = {
  body_too_large: {
    setting: 'ingest.max_body_bytes',
    limit: (c) => c.ingest.max_body_bytes,
    advice: "raise ingest.max_body_bytes above OPA's upload_size_limit_bytes, or lower that",
  },
  decoded_too_large: {
    setting: 'ingest.max_decoded_bytes',
    limit: (c) => c.ingest.max_decoded_bytes,
    advice:
      "raise ingest.max_decoded_bytes (a gzip chunk of decisions decodes to ~20 times its size), or lower OPA's upload_size_limit_bytes",
  },
  too_many_decisions: {
    setting: 'ingest.max_decisions_per_request',
    limit: (c) => c.ingest.max_decisions_per_request,
    advice: "raise ingest.max_decisions_per_request, or lower OPA's upload_size_limit_bytes",
  },
};

/**
 * A 413 is a misconfiguration, not bad input: OPA re-sends the refused chunk for ever (it never splits one),
 * so its decisions stop arriving and are lost when OPA stops. One warning a minute per cause names the
 * setting to raise; the other refusals stay at debug.
 */
function warnTooLarge(
  log: RateLimitedLog,
  error: FastifyError | HttpError,
  message: string,
  request: FastifyRequest,
  config: Config,
): void {
  const data = error instanceof HttpError && !Array.isArray(error.data) ? error.data : {};
  const reason = typeof data.reason === 'string' ? data.reason : 'body_too_large';
  const known = TOO_LARGE[reason];
  const fromOpa = /^\/logs(\/|\?|$)/.test(request.url);
  const fields = {
    reason,
    setting: known?.setting,
    limit: known?.limit(config),
    url: request.url,
    request_id: request.id,
    content_length: request.headers['content-length'],
    user_agent: request.headers['user-agent'],
  };
  log.warn(
    reason,
    fields,
    `request refused with 413 (${message})${known ? `: ${known.advice}` : ''}` +
      (fromOpa
        ? '. OPA retries this chunk for ever and never splits it: its decisions stop arriving, and are lost when OPA stops'
        : ''),
  );
}

export function parseListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(listen.slice(i + 1)) };
}
