import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import type { DecisionBuffer } from '../buffer/types.js';
import type { Config } from '../config/schema.js';
import { HttpError } from '../http/http-error.js';
import { BearerTokens } from '../http/bearer-token.js';
import type { Metrics } from '../observability/metrics.js';
import type { DecodedBudget } from './decoded-budget.js';
import type { DecisionEvents } from './decision-events.js';
import type { DecoderPool } from './decoder-pool.js';
import { OpaIngest } from './opa-ingest.js';
import type { RecentlyAccepted } from './recently-accepted.js';

/** The partition of `POST /logs`, and the name every other partition must look like. */
export const DEFAULT_PARTITION = 'default';
const PARTITION = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * OPA's Decision Log Service API: `POST /logs[/{partition}]` with a (gzip) JSON array of decisions.
 * 200 only once every decision of the request is durable; nothing of a rejected request is stored.
 */
export async function opaRoutes(
  app: FastifyInstance,
  opts: {
    config: Config;
    buffer: DecisionBuffer;
    decoder: DecoderPool;
    decisionEvents: DecisionEvents;
    recent: RecentlyAccepted;
    metrics: Metrics;
    budget: DecodedBudget;
  },
): Promise<void> {
  const { config, metrics } = opts;
  const ingest = new OpaIngest({ ...opts, log: app.log });
  const tokens = BearerTokens.of(config.ingest.tokens);

  // The body is taken as bytes whatever its Content-Type: OPA sends application/json, curl often nothing.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: config.ingest.max_body_bytes }, (_req, body, done) =>
    done(null, body),
  );

  // Rejected before the body is read: a wrong token or partition costs no decoding.
  app.addHook('onRequest', async (request) => {
    if (tokens.size > 0) tokens.check(request, 'send Authorization: Bearer <token> (ingest.tokens is configured)');
    const partition = partitionOf(request);
    if (!PARTITION.test(partition) || partition === '.' || partition === '..') {
      throw new HttpError(400, 'partition name must be 1 to 128 of A-Z a-z 0-9 . _ - (and not "." or "..")', {
        partition,
      });
    }
    // with tokens the check above already keeps web pages out (they cannot know one)
    if (tokens.size === 0 && !sentAsOpaSends(request)) throw notOpaContentType();
  });

  app.addHook('onResponse', async (request, reply) => {
    const partition = partitionOf(request);
    metrics.request('opa', PARTITION.test(partition) ? partition : '_invalid', reply.statusCode);
  });
  app.addHook('onError', async (_request, _reply, error) => {
    const reason =
      error instanceof HttpError
        ? String((error.data as { reason?: unknown }).reason ?? 'error')
        : ((error as FastifyError).code ?? 'error');
    metrics.rejection('opa', reason, (error as FastifyError).statusCode ?? 500);
  });

  const handler = (request: FastifyRequest) => ingest.accept(request, partitionOf(request));

  // OPA's Decision Log Service API, for the OpenAPI document: the body is read as bytes (gzip JSON array)
  const schema = {
    summary: "OPA's Decision Log Service API: a (gzip) JSON array of decisions; 200 once durable",
    tags: ['ingest'],
    consumes: ['application/json'],
  };
  app.post('/logs', { schema }, handler);
  app.post('/logs/:partition', { schema }, handler);
}

/**
 * What OPA sends: `Content-Type: application/json`, gzip-compressed. A web page can make a browser POST
 * text/plain, a form type or no type to any address without asking (no CORS preflight), but neither a JSON
 * type nor a Content-Encoding: requiring one of them keeps any page the operator visits from posting
 * decisions to a Sluice it can reach (127.0.0.1 included).
 */
function sentAsOpaSends(request: FastifyRequest): boolean {
  const encoding = (request.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (encoding === 'gzip' || encoding === 'x-gzip') return true;
  const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  return type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type);
}

function notOpaContentType(): HttpError {
  return new HttpError(
    415,
    'send decisions as Content-Type: application/json (as OPA does, gzip-compressed with Content-Encoding: gzip); ' +
      "other types are refused so that no web page can post decisions (curl -d sends a form type: add -H 'Content-Type: application/json')",
    { reason: 'unsupported_media_type' },
  );
}

function partitionOf(request: FastifyRequest): string {
  return (request.params as { partition?: string }).partition ?? DEFAULT_PARTITION;
}
