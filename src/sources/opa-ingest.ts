import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import type { DecisionBuffer, NewChunk } from '../buffer/types.js';
import type { Config } from '../config/schema.js';
import { HttpError } from '../http/http-error.js';
import type { Metrics } from '../observability/metrics.js';
import { RateLimitedLog } from '../observability/rate-limited-log.js';
import type { DecodedBudget, Reservation } from './decoded-budget.js';
import type { DecisionEvents } from './decision-events.js';
import type { DecoderPool } from './decoder-pool.js';
import type { DecodedRequest } from './opa-decode.js';
import { RecentlyAccepted } from './recently-accepted.js';

/** Seconds a client is asked to wait when the buffer is full; OPA retries with its own backoff anyway. */
const RETRY_AFTER_SECONDS = 2;

/** What OPA's gzip JSON usually expands to, per compressed byte: the first guess of a request's decoded size. */
const TYPICAL_GZIP_RATIO = 10;

/** The answer of `POST /logs`. */
export type IngestAnswer = { accepted: 0; duplicate_request: true } | { accepted: number; duplicates?: number };

/** One request of `POST /logs[/{partition}]` as the steps see it. */
interface Received {
  request: FastifyRequest;
  body: Buffer;
  partition: string;
  contentEncoding: string | undefined;
  /** The digest that recognises a byte-for-byte re-send; undefined when re-send detection is off. */
  requestKey: string | undefined;
}

/** What of a decoded request is new: the chunks to store, and the keys to remember once they are durable. */
interface Fresh {
  chunks: NewChunk[];
  keys: string[];
  duplicates: number;
  /** The mark of these keys as being stored (RecentlyAccepted.begin); none when there is nothing to store. */
  storing: { done(stored: boolean): void } | undefined;
}

/**
 * What `POST /logs` does with a request's body, step by step: 200 only once every new decision of it is
 * durable, and nothing of a refused request stored.
 *
 *   received -> (wait) resend? (a re-sent body is acknowledged, not stored again) -> room (the buffer's, by
 *   the compressed size) -> reserve decoding (the bound on decoded bytes across requests) -> decode (in a
 *   worker thread) -> room (by the stored size) -> (wait) take fresh (the decisions not accepted before) ->
 *   store (the tenant's events, then the buffer) -> count
 */
export class OpaIngest {
  private readonly untimedLog: RateLimitedLog;
  private readonly appendFailures: RateLimitedLog;

  constructor(
    private readonly parts: {
      config: Config;
      buffer: DecisionBuffer;
      decoder: DecoderPool;
      decisionEvents: DecisionEvents;
      recent: RecentlyAccepted;
      metrics: Metrics;
      budget: DecodedBudget;
      log: FastifyBaseLogger;
    },
  ) {
    this.untimedLog = new RateLimitedLog(parts.log);
    this.appendFailures = new RateLimitedLog(parts.log);
  }

  /**
   * The steps run in one turn wherever no wait is written: a wait for other requests is a loop that ends in
   * the turn whose look found none storing the same keys, so that what follows it in that turn (the look at
   * what is remembered, taking the fresh decisions, the room check and the append that claims the room) cannot
   * be overtaken by another request. Step functions that could yield are not awaited between them.
   */
  async accept(request: FastifyRequest, partition: string): Promise<IngestAnswer> {
    const { recent } = this.parts;
    const received = this.received(request, partition);
    const requestKeys = received.requestKey ? [received.requestKey] : [];
    for (let wait = recent.inFlightAmong(requestKeys); wait; wait = recent.inFlightAmong(requestKeys)) await wait;
    if (this.isResend(received)) {
      this.parts.metrics.duplicate('request');
      return { accepted: 0, duplicate_request: true };
    }
    // compressed size first: a full buffer rejects without spending any decoding
    this.checkRoom(received.body.length);
    const reservation = await this.reserveDecoding(received.body);
    try {
      const tenant = this.tenantOf(received);
      const decoded = await this.decode(received, tenant, reservation);
      this.checkRoom(decoded.storedBytes);
      const keys = this.keysOf(received, decoded);
      for (let wait = recent.inFlightAmong(keys); wait; wait = recent.inFlightAmong(keys)) await wait;
      const fresh = this.takeFresh(received, decoded);
      // `store` reaches the append (or the tenant's publish) before it first yields
      await this.store(received, tenant, fresh);
      return this.count(received, decoded, fresh);
    } finally {
      reservation.release();
    }
  }

  private received(request: FastifyRequest, partition: string): Received {
    const body = request.body;
    if (!Buffer.isBuffer(body))
      throw new HttpError(400, 'send a JSON array of decisions as the request body', { reason: 'empty_body' });
    const contentEncoding = request.headers['content-encoding'];
    const requestKey = this.parts.recent.enabled
      ? RecentlyAccepted.requestKey(partition, contentEncoding, body)
      : undefined;
    return { request, body, partition, contentEncoding, requestKey };
  }

  /** OPA re-sends a chunk whose answer it lost, byte for byte: once the first is stored, it is acknowledged. */
  private isResend({ requestKey }: Received): boolean {
    return requestKey !== undefined && this.parts.recent.has(requestKey);
  }

  private checkRoom(bytes: number): void {
    if (!this.parts.buffer.hasRoom(bytes)) {
      throw new HttpError(
        429,
        'the buffer is full (buffer.max_bytes): retry later; nothing of this request was stored',
        { reason: 'buffer_full' },
        { 'retry-after': String(RETRY_AFTER_SECONDS) },
      );
    }
  }

  /** Decoded bytes in flight are bounded across all requests: beyond it, wait for room, then 429. */
  private async reserveDecoding(body: Buffer): Promise<Reservation> {
    const { config, budget } = this.parts;
    const reservation = await budget.reserve(
      Math.min(config.ingest.max_decoded_bytes, body.length * TYPICAL_GZIP_RATIO),
    );
    if (!reservation) {
      throw new HttpError(
        429,
        'too many decoded bytes are in flight (ingest.max_decoded_in_flight): retry later; nothing of this request was stored',
        { reason: 'busy' },
        { 'retry-after': String(RETRY_AFTER_SECONDS) },
      );
    }
    return reservation;
  }

  /** The tenant whose destinations also get these decisions (ingest.tenants), by partition or token. */
  private tenantOf({ request, partition }: Received): string | undefined {
    const { decisionEvents } = this.parts;
    return decisionEvents.enabled ? decisionEvents.tenantOf(request, partition) : undefined;
  }

  private async decode(
    { body, contentEncoding, partition }: Received,
    tenant: string | undefined,
    reservation: Reservation,
  ): Promise<DecodedRequest> {
    const { config, decoder } = this.parts;
    const decoded = await decoder.decode({
      body,
      contentEncoding,
      partition,
      receivedAt: Date.now(),
      maxDecodedBytes: config.ingest.max_decoded_bytes,
      maxDecisions: config.ingest.max_decisions_per_request,
      eventFields: tenant !== undefined,
      compressionLevel: config.buffer.compression_level,
    });
    // what the request holds from here on: its chunks as they will be stored
    reservation.resize(decoded.heldBytes);
    return decoded;
  }

  /** The keys that another request storing them makes this one wait: the request's and its decisions'. */
  private keysOf({ requestKey }: Received, decoded: DecodedRequest): string[] {
    return requestKey ? [requestKey, ...RecentlyAccepted.decisionKeys(decoded.chunks)] : [];
  }

  /**
   * The decisions not accepted before, and the keys (the request's, then theirs) to remember with them,
   * marked as being stored (in the turn in which no other request was storing any of them: see `accept`), so
   * that no other request takes them too. `store` follows, and ends the mark.
   */
  private takeFresh({ requestKey }: Received, decoded: DecodedRequest): Fresh {
    const { recent } = this.parts;
    let fresh: Omit<Fresh, 'storing'> = { chunks: decoded.chunks, keys: [], duplicates: 0 };
    if (requestKey) {
      const { chunks, keys, duplicates } = recent.filter(decoded.chunks);
      fresh = { chunks, keys: [requestKey, ...keys], duplicates };
    }
    const storing = fresh.chunks.length > 0 || fresh.keys.length > 0 ? recent.begin(fresh.keys) : undefined;
    return { ...fresh, storing };
  }

  /**
   * Makes the fresh decisions durable. A tenant's decisions go to its store first: a 429 there
   * (api.max_pending_deliveries) then stores nothing anywhere and remembers nothing. Publishing is idempotent
   * by decision_id, so if the buffer fails after it, OPA's re-send finds the events there and the buffer
   * stores the decisions then.
   */
  private async store(
    { partition }: Received,
    tenant: string | undefined,
    { chunks, keys, storing }: Fresh,
  ): Promise<void> {
    if (!storing) return;
    const { decisionEvents, buffer } = this.parts;
    let stored = false;
    try {
      if (tenant !== undefined && chunks.length > 0) await decisionEvents.publish(tenant, partition, chunks);
      await buffer.append(chunks, keys).catch((err: Error) => {
        this.appendFailures.error(
          'append',
          { err: err.message, code: (err as NodeJS.ErrnoException).code },
          'buffer append failed: answering 503',
        );
        throw new HttpError(
          503,
          'the buffer cannot store decisions right now; retry later',
          { reason: 'buffer_unavailable' },
          { 'retry-after': String(RETRY_AFTER_SECONDS) },
        );
      });
      stored = true;
    } finally {
      // remembered exactly when the buffer has them (the keys went into the same transaction)
      storing.done(stored);
    }
  }

  private count({ body, partition }: Received, decoded: DecodedRequest, { duplicates }: Fresh): IngestAnswer {
    const { metrics } = this.parts;
    const count = decoded.decisions - duplicates;
    metrics.accepted('opa', partition, count, body.length);
    metrics.duplicate('decision', duplicates);
    if (decoded.untimed > 0) {
      metrics.untimed(partition, decoded.untimed);
      this.untimedLog.warn(
        partition,
        { partition, decisions: decoded.untimed },
        'decisions without an RFC 3339 timestamp: stored as sent, filed under the hour they arrived (sluice_ingest_untimed_decisions_total)',
      );
    }
    return duplicates > 0 ? { accepted: count, duplicates } : { accepted: count };
  }
}
