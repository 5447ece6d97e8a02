import { maxHeaderSize, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyRequest, FastifySchema } from 'fastify';
import type { SwaggerTransform } from '@fastify/swagger';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import type { Config } from '../config/schema.js';
import { HttpError } from '../http/http-error.js';
import { BearerTokens } from '../http/bearer-token.js';

// ---------------------------------------------------------------------------------------------------------
// Headers: too large, too many

/**
 * Headers a request may have; more is 431. Browsers send about 20, OPA a handful, proxies add a few. (Node's
 * own `maxHeadersCount` is turned off: it drops headers past it silently, and answers 400 when Host is among them.)
 */
export const MAX_HEADERS = 200;

/** An onRequest hook: 431 for a request with more than MAX_HEADERS headers (all of them under Node's 16 KiB). */
export async function headerCountCheck(request: FastifyRequest): Promise<void> {
  if (request.raw.rawHeaders.length / 2 > MAX_HEADERS) {
    throw new HttpError(431, `the request has more than ${MAX_HEADERS} headers`, {
      reason: 'too_many_headers',
      max_headers: MAX_HEADERS,
    });
  }
}

const answered = new WeakSet<Duplex>();

/**
 * Fastify's `clientErrorHandler`: what Node's parser refuses before any route, answered in Sluice's JSON shape.
 * Headers over Node's limit (16 KiB, `HPE_HEADER_OVERFLOW`) get 431 and a graceful close; timeouts 408, the
 * rest 400, closed at once as Fastify does. A connection refused for its headers stays open for at most
 * `lingerMs` (http.headers_timeout) to read, and drop, what the client still sends: closing at once would reset
 * it (the kernel answers unread bytes with an RST), and the client would see the reset, not the 431.
 */
export function clientErrorHandler(lingerMs: number) {
  return function handle(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Duplex): void {
    refuse(this, err, socket, lingerMs);
  };
}

function refuse(app: FastifyInstance, err: NodeJS.ErrnoException, socket: Duplex, lingerMs: number): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  // the parser fails again on every later read of this connection: it got its answer already
  if (answered.has(socket)) return;
  answered.add(socket);
  const [status, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, `the request headers are larger than ${Math.round(maxHeaderSize / 1024)} KiB (all of them together)`]
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'the request did not arrive within http.request_timeout (or its headers within http.headers_timeout)']
        : [400, 'the request is not valid HTTP'];
  app.log.debug({ err, status }, 'request refused by the HTTP parser');
  const body = JSON.stringify({ status, message, data: { code: err.code } });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  if (status !== 431) {
    socket.destroy(err);
    return;
  }
  // half-close: the answer and a FIN go out, the rest of the headers is still read (by the failed parser) and dropped
  socket.end();
  const timer = setTimeout(() => socket.destroy(), lingerMs);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.once('end', () => socket.destroy());
}

// ---------------------------------------------------------------------------------------------------------
// observability.token

/** An onRequest hook for /metrics and /ready when observability.token is set; undefined when it is not. */
export function observabilityAuth(token: string | undefined): ((request: FastifyRequest) => Promise<void>) | undefined {
  if (!token) return undefined;
  const tokens = BearerTokens.of([token]);
  return async (request) => {
    tokens.check(request, 'send Authorization: Bearer <observability.token>');
  };
}

// ---------------------------------------------------------------------------------------------------------
// OpenAPI: which credential each route needs

/** The bearer credentials, each by what it is in the config. */
export const SECURITY_SCHEMES = {
  admin: { type: 'http', scheme: 'bearer', description: 'api.admin_key (or SLUICE_ADMIN_KEY)' },
  tenant: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: "a tenant's token, from GET /api/v1/tenants/{tenant_id}/token",
  },
  ingest: { type: 'http', scheme: 'bearer', description: 'one of ingest.tokens' },
  observability: { type: 'http', scheme: 'bearer', description: 'observability.token' },
} as const;

type Security = Array<Record<string, string[]>>;

/** /api/v1 routes that a tenant token does not reach (their preHandler is requireAdmin); every other one takes either. */
const ADMIN_ONLY = new Set([
  'GET /api/v1/tenants/:tenant_id/token',
  'GET /api/v1/tenants/:tenant_id/portal',
  'POST /api/v1/publish',
  'GET /api/v1/config',
  'PATCH /api/v1/config',
]);

/** /api/v1 routes that need no credential. */
const OPEN = new Set(['GET /api/v1/healthz']);

/** What a route needs, as configured: `[]` is open. test/security.test.ts checks each claim against the server. */
export function routeSecurity(method: string, url: string, config: Config): Security {
  const path = url.replace(/\/+$/, '') || '/';
  if (path === '/logs' || path.startsWith('/logs/')) return config.ingest.tokens.length > 0 ? [{ ingest: [] }] : [];
  if (path === '/metrics' || path === '/ready') return config.observability.token ? [{ observability: [] }] : [];
  const admin = Boolean(config.api.admin_key);
  if (path.startsWith('/ui/api/')) return admin ? [{ admin: [] }] : [];
  if (path.startsWith('/api/v1/')) {
    if (!admin || OPEN.has(`${method.toUpperCase()} ${path}`)) return [];
    return ADMIN_ONLY.has(`${method.toUpperCase()} ${path}`) ? [{ admin: [] }] : [{ admin: [] }, { tenant: [] }];
  }
  return [];
}

/** @fastify/swagger's transform: the zod schemas as JSON Schema, and each route's `security`. */
export function openApiTransform(config: Config): SwaggerTransform<FastifySchema & { hide?: boolean }> {
  return (input) => {
    const result = jsonSchemaTransform(input);
    const methods = Array.isArray(input.route.method) ? input.route.method : [input.route.method];
    return {
      ...result,
      schema: { ...result.schema, security: routeSecurity(methods[0] ?? 'GET', input.url, config) } as FastifySchema,
    };
  };
}
