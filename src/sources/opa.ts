import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import type { DecisionBuffer } from '../buffer/types.js';
import type { Config } from '../config/schema.js';
import { HttpError } from './http-error.js';
import { bearerToken, sameDigest, tokenDigest } from './bearer-token.js';
import type { DecoderPool } from './decoder-pool.js';
import type { DecisionEvents } from './decision-events.js';
import { RecentlyAccepted } from './recently-accepted.js';
import type { Metrics } from '../observability/metrics.js';
import { RateLimitedLog } from '../observability/rate-limited-log.js';
import type { DecodedBudget } from './decoded-budget.js';

/** The partition of `POST /logs`, and the name every other partition must look like. */
export const DEFAULT_PARTITION = 'default';
const PARTITION = /^[A-Za-z0-9._-]{1,128}$/;

/** Seconds a client is asked to wait when the buffer is full; OPA retries with its own backoff anyway. */
const RETRY_AFTER_SECONDS = 2;

/** What OPA's gzip JSON usually expands to, per compressed byte: the first guess of a request's decoded size. */
const TYPICAL_GZIP_RATIO = 10;

/**
 * OPA's Decision Log Service API: `POST /logs[/{partition}]` with a (gzip) JSON array of decisions.
 * 200 only once every decision of the request is durable; nothing of a rejected request is stored.
 */
export async function opaRoutes(app: FastifyInstance, opts: {
  config: Config; buffer: DecisionBuffer; decoder: DecoderPool; decisionEvents: DecisionEvents; recent: RecentlyAccepted; metrics: Metrics;
  budget: DecodedBudget;
}): Promise<void> {
  const { config, buffer, decoder, decisionEvents, recent, metrics, budget } = opts;
  const untimedLog = new RateLimitedLog(app.log);
  const appendFailures = new RateLimitedLog(app.log);
  const tokenDigests = config.ingest.tokens.map(tokenDigest);

  // The body is taken as bytes whatever its Content-Type: OPA sends application/json, curl often nothing.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: config.ingest.max_body_bytes }, (_req, body, done) => done(null, body));

  // Rejected before the body is read: a wrong token or partition costs no decoding.
  app.addHook('onRequest', async (request) => {
    if (tokenDigests.length > 0) checkToken(request, tokenDigests);
    const partition = partitionOf(request);
    if (!PARTITION.test(partition) || partition === '.' || partition === '..') {
      throw new HttpError(400, 'partition name must be 1 to 128 of A-Z a-z 0-9 . _ - (and not "." or "..")', { partition });
    }
    // with tokens the check above already keeps web pages out (they cannot know one)
    if (tokenDigests.length === 0 && !sentAsOpaSends(request)) throw notOpaContentType();
  });

  app.addHook('onResponse', async (request, reply) => {
    const partition = partitionOf(request);
    metrics.request('opa', PARTITION.test(partition) ? partition : '_invalid', reply.statusCode);
  });
  app.addHook('onError', async (_request, _reply, error) => {
    const reason = error instanceof HttpError ? String((error.data as { reason?: unknown }).reason ?? 'error') : (error as FastifyError).code ?? 'error';
    metrics.rejection('opa', reason, (error as FastifyError).statusCode ?? 500);
  });

  const handler = async (request: FastifyRequest) => {
    const body = request.body;
    if (!Buffer.isBuffer(body)) throw new HttpError(400, 'send a JSON array of decisions as the request body', { reason: 'empty_body' });
    const partition = partitionOf(request);
    const contentEncoding = request.headers['content-encoding'];
    // OPA re-sends a chunk whose answer it lost, byte for byte: acknowledged, not stored again
    const requestKey = recent.enabled ? RecentlyAccepted.requestKey(partition, contentEncoding, body) : undefined;
    if (requestKey) {
      for (let wait = recent.inFlightAmong([requestKey]); wait; wait = recent.inFlightAmong([requestKey])) await wait;
      if (recent.has(requestKey)) {
        metrics.duplicate('request');
        return { accepted: 0, duplicate_request: true };
      }
    }
    // compressed size first: a full buffer rejects without spending any decoding
    if (!buffer.hasRoom(body.length)) throw full();
    // decoded bytes in flight are bounded across all requests: beyond it, wait for room, then 429
    const reservation = await budget.reserve(Math.min(config.ingest.max_decoded_bytes, body.length * TYPICAL_GZIP_RATIO));
    if (!reservation) throw busy();
    try {
      const tenant = decisionEvents.enabled ? decisionEvents.tenantOf(request, partition) : undefined;
      const decoded = await decoder.decode({
        body, contentEncoding, partition, receivedAt: Date.now(), maxDecodedBytes: config.ingest.max_decoded_bytes,
        maxDecisions: config.ingest.max_decisions_per_request, eventFields: tenant !== undefined,
        compressionLevel: config.buffer.compression_level,
      });
      // what the request holds from here on: its chunks as they will be stored
      reservation.resize(decoded.heldBytes);
      if (!buffer.hasRoom(decoded.storedBytes)) throw full();
      if (requestKey) {
        // wait while another request stores any of these decisions; the loop ends in the turn that found none
        const keys = [requestKey, ...RecentlyAccepted.decisionKeys(decoded.chunks)];
        for (let wait = recent.inFlightAmong(keys); wait; wait = recent.inFlightAmong(keys)) await wait;
      }
      // from here to `begin`, no await: no other request can take the same decisions meanwhile
      const { chunks, keys, duplicates } = requestKey ? recent.filter(decoded.chunks) : { chunks: decoded.chunks, keys: [], duplicates: 0 };
      const accepted = requestKey ? [requestKey, ...keys] : [];
      if (chunks.length > 0 || accepted.length > 0) {
        const storing = recent.begin(accepted);
        let stored = false;
        try {
          // A tenant's decisions go to its store first: a 429 there (api.max_pending_deliveries) then stores nothing
          // anywhere and remembers nothing. Publishing is idempotent by decision_id, so if the buffer fails after it,
          // OPA's re-send finds the events there and the buffer stores the decisions then.
          if (tenant !== undefined && chunks.length > 0) await decisionEvents.publish(tenant, partition, chunks);
          await buffer.append(chunks, accepted).catch((err: Error) => {
            appendFailures.error('append', { err: err.message, code: (err as NodeJS.ErrnoException).code }, 'buffer append failed: answering 503');
            throw new HttpError(503, 'the buffer cannot store decisions right now; retry later', { reason: 'buffer_unavailable' }, { 'retry-after': String(RETRY_AFTER_SECONDS) });
          });
          stored = true;
        } finally {
          // remembered exactly when the buffer has them (the keys went into the same transaction)
          storing.done(stored);
        }
      }
      const count = decoded.decisions - duplicates;
      metrics.accepted('opa', partition, count, body.length);
      metrics.duplicate('decision', duplicates);
      if (decoded.untimed > 0) {
        metrics.untimed(partition, decoded.untimed);
        untimedLog.warn(partition, { partition, decisions: decoded.untimed },
          'decisions without an RFC 3339 timestamp: stored as sent, filed under the hour they arrived (sluice_ingest_untimed_decisions_total)');
      }
      return duplicates > 0 ? { accepted: count, duplicates } : { accepted: count };
    } finally {
      reservation.release();
    }
  };

  // OPA's Decision Log Service API, for the OpenAPI document: the body is read as bytes (gzip JSON array)
  const schema = {
    summary: "OPA's Decision Log Service API: a (gzip) JSON array of decisions; 200 once durable",
    tags: ['ingest'],
    consumes: ['application/json'],
  };
  app.post('/logs', { schema }, handler);
  app.post('/logs/:partition', { schema }, handler);
}

function full(): HttpError {
  return new HttpError(429, 'the buffer is full (buffer.max_bytes): retry later; nothing of this request was stored',
    { reason: 'buffer_full' }, { 'retry-after': String(RETRY_AFTER_SECONDS) });
}

function busy(): HttpError {
  return new HttpError(429, 'too many decoded bytes are in flight (ingest.max_decoded_in_flight): retry later; nothing of this request was stored',
    { reason: 'busy' }, { 'retry-after': String(RETRY_AFTER_SECONDS) });
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
  return new HttpError(415, 'send decisions as Content-Type: application/json (as OPA does, gzip-compressed with Content-Encoding: gzip); '
    + "other types are refused so that no web page can post decisions (curl -d sends a form type: add -H 'Content-Type: application/json')",
  { reason: 'unsupported_media_type' });
}

function partitionOf(request: FastifyRequest): string {
  return (request.params as { partition?: string }).partition ?? DEFAULT_PARTITION;
}

/** Compares digests in constant time, against every configured token, so timing reveals nothing. */
function checkToken(request: FastifyRequest, tokenDigests: Buffer[]): void {
  const token = bearerToken(request);
  const presented = tokenDigest(token ?? '');
  let ok = false;
  for (const expected of tokenDigests) ok = sameDigest(presented, expected) || ok;
  if (token === undefined || !ok) {
    throw new HttpError(401, token !== undefined ? 'the bearer token is not accepted' : 'send Authorization: Bearer <token> (ingest.tokens is configured)',
      { reason: 'unauthorized' }, { 'www-authenticate': 'Bearer' });
  }
}
