import type { Logger } from 'pino';
import type { ApiConfig } from '../config/schema.js';
import { storageErrorCode } from '../sqlite/storage-errors.js';
import { RateLimitedLog } from '../observability/rate-limited-log.js';
import { EndpointGuard } from '../sinks/endpoint-guard.js';
import { S3Sink } from '../sinks/s3/s3-sink.js';
import { awsS3ConfigOf, s3ConnectionOfDestination } from '../sinks/aws-s3/destination-type.js';
import {
  defaultObjectKey,
  eventObject,
  keyTemplateTask,
  KeyTemplateError,
  objectMetadata,
} from '../sinks/aws-s3/event-object.js';
import { KeyTemplatePool } from '../sinks/aws-s3/key-template-pool.js';
import type { Sink } from '../sinks/types.js';
import {
  destinationKey,
  type Destination,
  type DueDelivery,
  type NewAttempt,
  type Store,
  type StoredEvent,
  type StringMap,
} from '../store/types.js';
import { attemptOnce, noRetry, retryLimited, type Outcome, type RetryPolicy } from './attempts.js';
import { EventBatcher } from './event-batcher.js';
import { EndedWhileReading } from './ended-while-reading.js';
import { RecordHolds } from './record-holds.js';

/** Uploads in flight over all destinations. */
const MAX_INFLIGHT = 256;
/** Longest sleep between looks at the store when nothing is due sooner. */
const MAX_IDLE_MS = 1000;
/** Shortest time between two passes over all destinations. */
const MIN_PASS_MS = 50;
const PRUNE_EVERY_MS = 60_000;
const S3_REQUEST_TIMEOUT_MS = 60_000;

/**
 * Delivers published events to tenant destinations from the store.
 *
 * Per-event destinations: every pending delivery that is due is attempted, at most `delivery_concurrency`
 * at a time per destination, so a slow or failing destination holds back no other. The object key is
 * computed and stored before the first attempt, so a retry writes the same object. Batched destinations are
 * handed to the EventBatcher. Failures are retried with full-jitter backoff (or the configured schedule)
 * while the event is eligible_for_retry and retries remain; then the delivery is failed until POST /retry.
 * Every attempt, of an event or a batch, goes through the attempt core (attempts.ts) with `retry` as its policy.
 *
 * A full disk: while the store cannot write, nothing is attempted (no attempt could be recorded); the store's
 * probe finds out within about a second when space is back. An attempt that ends and cannot be recorded
 * leaves its delivery pending as it was: it is attempted again (to the same key) after a wait that grows, and
 * the failure is logged once a minute. An attempt never rejects: nothing reaches the process's
 * unhandledRejection handler.
 */
export class EventDispatcher {
  // destinations are keyed by destinationKey (tenant and id): ids are unique per tenant only
  private readonly inflight = new Map<number, string>();
  private readonly perDestination = new Map<string, number>();
  private readonly sinks = new Map<string, { version: string; sink: Sink }>();
  private readonly abort = new AbortController();
  private readonly batcher: EventBatcher;
  /** Deliveries whose last attempt could not be recorded, by seq. */
  private readonly holds = new RecordHolds<number>();
  /** Deliveries whose attempts ended while a read of due ones was on its way: left out of its answer. */
  private readonly endedWhileReading = new EndedWhileReading<number>();
  private readonly failures: RateLimitedLog;
  private timer: NodeJS.Timeout | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastPass = 0;
  /** Tenants choose endpoints: every connection of a destination's sink is checked against this. */
  private readonly guard: EndpointGuard;
  /** Tenants choose key templates, whose work is unbounded: they are evaluated in workers, under a budget. */
  private readonly keyTemplates: KeyTemplatePool;
  /**
   * The wait before the next attempt after `attempts` have failed, or undefined when none is left: the
   * configured schedule, else exponential backoff with full jitter.
   */
  readonly retry: RetryPolicy;

  constructor(
    private readonly store: Store,
    private readonly config: ApiConfig,
    private readonly log: Logger,
  ) {
    this.retry = retryLimited(config.retry);
    this.batcher = new EventBatcher(store, this, log);
    this.failures = new RateLimitedLog(log);
    this.guard = new EndpointGuard(config.destinations.allowed_endpoints);
    this.keyTemplates = new KeyTemplatePool(log);
  }

  start(): void {
    // pump and prune never reject: each catches and logs its store's failures
    this.store.onPublish(() => void this.pump());
    this.pruneTimer = setInterval(() => void this.prune(), PRUNE_EVERY_MS);
    this.pruneTimer.unref();
    void this.prune();
    void this.pump();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pruneTimer);
    this.abort.abort();
    for (const { sink } of this.sinks.values()) sink.close();
    this.sinks.clear();
    // evaluations still running end (rejected) with it: their attempts see `stopped` and record nothing
    this.keyTemplates
      .close()
      .catch((err: unknown) => this.log.debug({ err }, 'closing the key_template workers failed'));
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /**
   * Starts what is due over all destinations, then sleeps until the next delivery is due. Publishes wake it,
   * at most every MIN_PASS_MS: a pass costs a look over the due deliveries, a publish only adds a few.
   */
  async pump(): Promise<void> {
    if (this.stopped) return;
    const now = Date.now();
    if (now - this.lastPass < MIN_PASS_MS) {
      this.sleepUntil(this.lastPass + MIN_PASS_MS);
      return;
    }
    this.lastPass = now;
    this.holds.forget(now);
    // while the store cannot write, no attempt could be recorded: none is made (its probe says when it can again)
    if (!this.store.writable()) {
      this.sleepUntil(now + MAX_IDLE_MS);
      return;
    }
    try {
      const limit = this.config.delivery_concurrency;
      const free = MAX_INFLIGHT - this.inflight.size;
      if (free > 0) {
        const busy = [...this.perDestination].filter(([, n]) => n >= limit).map(([id]) => id);
        // In-flight and held deliveries are still pending in the store: read past them.
        const { answer, ended } = await this.endedWhileReading.during(() =>
          this.store.dueDeliveries(now, free + this.inflight.size + this.holds.size, busy),
        );
        this.startAll(answer, ended);
      }
      await this.batcher.pump(now);
    } catch (err) {
      this.failures.error('read', { err }, 'event delivery failed to read the store; trying again shortly');
    }
    let next: number | undefined;
    try {
      next = await this.store.nextDueAt();
    } catch (err) {
      this.failures.error('read', { err }, 'event delivery failed to read the store; trying again shortly');
    }
    if (this.stopped) return;
    const wake =
      next === undefined ? now + MAX_IDLE_MS : Math.min(now + MAX_IDLE_MS, Math.max(now + MIN_PASS_MS, next));
    this.sleepUntil(Math.min(wake, now + this.batcher.nextTickIn()));
  }

  private sleepUntil(at: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.pump(), Math.max(0, at - Date.now()));
    this.timer.unref();
  }

  /** After an attempt: the destination's freed slot takes its next due delivery at once (an indexed read). */
  private async refill(tenantId: string, destinationId: string): Promise<void> {
    if (this.stopped) return;
    const inUse = this.perDestination.get(destinationKey(tenantId, destinationId)) ?? 0;
    const slots = this.config.delivery_concurrency - inUse;
    if (slots <= 0 || this.inflight.size >= MAX_INFLIGHT || !this.store.writable()) return;
    try {
      const { answer, ended } = await this.endedWhileReading.during(() =>
        this.store.dueDeliveriesOf(tenantId, destinationId, Date.now(), slots + inUse + this.holds.size),
      );
      this.startAll(answer, ended);
    } catch (err) {
      this.failures.error('read', { err }, 'event delivery failed to read the store; trying again shortly');
    }
  }

  private startAll(due: DueDelivery[], ended: ReadonlySet<number>): void {
    // stopped while the read was on its way
    if (this.stopped) return;
    const limit = this.config.delivery_concurrency;
    const now = Date.now();
    for (const item of due) {
      const id = destinationKey(item.delivery.tenant_id, item.delivery.destination_id);
      if (
        this.inflight.has(item.delivery.seq) ||
        ended.has(item.delivery.seq) ||
        this.holds.held(item.delivery.seq, now)
      )
        continue;
      if ((this.perDestination.get(id) ?? 0) >= limit || this.inflight.size >= MAX_INFLIGHT) continue;
      this.inflight.set(item.delivery.seq, id);
      this.perDestination.set(id, (this.perDestination.get(id) ?? 0) + 1);
      void this.attempt(item).finally(() => {
        this.endedWhileReading.end(item.delivery.seq);
        this.inflight.delete(item.delivery.seq);
        const left = (this.perDestination.get(id) ?? 1) - 1;
        if (left > 0) this.perDestination.set(id, left);
        else this.perDestination.delete(id);
        // never rejects: its store's failures are caught and logged
        void this.refill(item.delivery.tenant_id, item.delivery.destination_id);
      });
    }
  }

  /** The sink of a destination, made anew when the destination changes. */
  sinkOf(destination: Destination): Sink {
    const key = destinationKey(destination.tenant_id, destination.id);
    const cached = this.sinks.get(key);
    if (cached && cached.version === destination.updated_at) return cached.sink;
    cached?.sink.close();
    const sink = new S3Sink(s3ConnectionOfDestination(destination, S3_REQUEST_TIMEOUT_MS, this.guard));
    this.sinks.set(key, { version: destination.updated_at, sink });
    return sink;
  }

  /** Attempts a delivery and records the attempt; never rejects (a failure to record is logged, and the delivery held). */
  private async attempt(item: DueDelivery): Promise<void> {
    try {
      await this.attemptAndRecord(item);
      this.holds.release(item.delivery.seq);
    } catch (err) {
      // The store could not record (or read) it: the delivery stays pending as it was. Attempted again after
      // its wait, it writes the same object key, so an upload that did succeed is at worst repeated.
      const wait = this.holds.hold(item.delivery.seq, Date.now());
      if (this.stopped) return;
      const code = storageErrorCode(err);
      const { tenant_id: tenantId, destination_id: destinationId } = item.delivery;
      this.failures.error(
        `record:${code ?? 'error'}`,
        { err, code, tenant_id: tenantId, destination_id: destinationId, event_id: item.event.id, retry_in_ms: wait },
        code
          ? 'an event delivery attempt could not be recorded: the store cannot write to its data_dir; the delivery stays pending and is attempted again later'
          : 'an event delivery attempt could not be recorded; the delivery stays pending and is attempted again later',
      );
    }
  }

  private async attemptAndRecord({ delivery, event }: DueDelivery): Promise<void> {
    const destination = await this.store.getDestination(event.tenant_id, delivery.destination_id);
    if (!destination || destination.disabled_at) return;
    const metadata = objectMetadata(event, destination);
    const attemptNumber = delivery.attempts + 1;
    const started = Date.now();
    const base: Omit<NewAttempt, 'status' | 'code' | 'response_data' | 'error' | 'duration_ms'> = {
      tenant_id: event.tenant_id,
      event_id: event.id,
      destination_id: destination.id,
      attempt_number: attemptNumber,
      manual: delivery.manual,
    };
    const bucket = String(destination.config.bucket);
    // a template that fails fails again (it is evaluated on the same event); a manual retry is one attempt
    const policy: RetryPolicy =
      event.eligible_for_retry && !delivery.manual
        ? (n, failure) => (failure.error instanceof KeyTemplateError ? undefined : this.retry(n, failure))
        : noRetry;
    // The attempt is the key's evaluation (on the first attempt only) and the upload: a failure of either is the attempt's.
    let key = delivery.object_key;
    let outcome: Outcome<unknown> | undefined;
    if (key === null) {
      const keyed = await attemptOnce(
        attemptNumber,
        () => this.objectKey(event, metadata, awsS3ConfigOf(destination).key_template),
        policy,
      );
      // Stopped while the template was evaluated (the pool is closed), or the destination was deleted, disabled or
      // changed meanwhile: nothing is recorded, and the delivery stays pending (attempted again with what it is now).
      if (this.stopped || (await this.changedSince(destination))) return;
      if (keyed.ok) {
        key = keyed.value;
        // a failure to store the key is the store's, not the attempt's: it goes to attempt()'s catch
        await this.store.setObjectKey(delivery.seq, key);
      } else {
        outcome = keyed;
      }
    }
    if (key !== null) {
      const objectKey = key;
      outcome = await attemptOnce(
        attemptNumber,
        () => this.sinkOf(destination).put(eventObject(event, metadata, objectKey), this.abort.signal),
        policy,
      );
    }
    if (outcome && !outcome.ok) {
      if (this.stopped) return;
      const { failure, retryIn: wait } = outcome;
      const code =
        failure.error instanceof KeyTemplateError
          ? 'key_template'
          : failure.fromSink
            ? (failure.code ?? null)
            : 'error';
      await this.store.recordAttempt(
        {
          ...base,
          status: 'failed',
          code,
          response_data: key ? { bucket, key } : null,
          error: failure.error.message,
          duration_ms: Date.now() - started,
        },
        {
          seq: delivery.seq,
          status: wait === undefined ? 'failed' : 'pending',
          attempts: attemptNumber,
          next_attempt_at: Date.now() + (wait ?? 0),
        },
      );
      const fields = {
        tenant_id: event.tenant_id,
        destination_id: destination.id,
        event_id: event.id,
        attempt: attemptNumber,
        code,
        err: failure.error.message,
      };
      if (wait === undefined)
        this.log.warn(fields, 'event delivery failed; no retry left (POST /api/v1/retry attempts it again)');
      else this.log.debug({ ...fields, retry_in_ms: Math.round(wait) }, 'event delivery failed; retrying');
      return;
    }
    await this.store.recordAttempt(
      {
        ...base,
        status: 'success',
        code: '200',
        response_data: { bucket, key },
        error: null,
        duration_ms: Date.now() - started,
      },
      { seq: delivery.seq, status: 'success', attempts: attemptNumber, next_attempt_at: 0 },
    );
  }

  /**
   * The object key of a delivery's first attempt: the default one, or the key_template's, evaluated in a worker
   * (never on the event loop) within its time and memory budget; a template over budget is a KeyTemplateError.
   */
  private async objectKey(event: StoredEvent, metadata: StringMap, template: string | undefined): Promise<string> {
    if (!template) return defaultObjectKey(event);
    return this.keyTemplates.evaluate(keyTemplateTask(event, metadata, template));
  }

  /** Whether the destination is no longer as it was read (deleted, disabled or updated). */
  private async changedSince(destination: Destination): Promise<boolean> {
    const now = await this.store.getDestination(destination.tenant_id, destination.id);
    return !now || Boolean(now.disabled_at) || now.updated_at !== destination.updated_at;
  }

  private async prune(): Promise<void> {
    try {
      await this.store.prune(this.config.log_retention.max_age, this.config.log_retention.max_count);
    } catch (err) {
      this.failures.warn('prune', { err, code: storageErrorCode(err) }, 'pruning the delivery log failed');
    }
  }
}
