import type { Logger } from 'pino';
import type { ApiConfig } from '../config/schema.js';
import { storageErrorCode } from '../sqlite/storage-errors.js';
import { RateLimitedLog } from '../observability/rate-limited-log.js';
import { EndpointGuard } from '../sinks/endpoint-guard.js';
import { destinationKey, type Destination, type DueDelivery, type Store } from '../store/types.js';
import { noRetry, retryLimited, type RetryPolicy } from './attempts.js';
import { attemptUnit, type DestinationDelivery, type DeliveryUnit } from './destination-attempt.js';
import { DestinationSinks } from './destination-sinks.js';
import { EventBatcher } from './event-batcher.js';
import { EndedWhileReading } from './ended-while-reading.js';
import { RecordHolds } from './record-holds.js';
import { WorkInFlight } from './work-in-flight.js';

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
 * A per-event destination is a batch of one: each pending delivery is its own stream, closed at once (the
 * limit is one event), named by the destination's key (its key template or the default, fixed and stored
 * before the first attempt, so a retry writes the same object) and encoded as the event's data as it is.
 * Every delivery that is due is attempted, at most `delivery_concurrency` at a time per destination, so a
 * slow or failing destination holds back no other. Batched destinations are the EventBatcher's. Both attempt
 * on one skeleton (destination-attempt.ts, over the attempt core attempts.ts) with `retry` as their policy:
 * full-jitter backoff (or the configured schedule) while the event is eligible_for_retry and retries remain;
 * then the delivery is failed until POST /retry.
 *
 * What a destination's type does (its sink, its keys, its batching) is asked of the registry through
 * DestinationSinks, never decided here by a type's name.
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
  private readonly abort = new AbortController();
  private readonly batcher: EventBatcher;
  /** Deliveries whose last attempt could not be recorded, by seq. */
  private readonly holds = new RecordHolds<number>();
  /** Deliveries whose attempts ended while a read of due ones was on its way: left out of its answer. */
  private readonly endedWhileReading = new EndedWhileReading<number>();
  private readonly failures: RateLimitedLog;
  /** Sinks and per-event objects by destination type; tenants choose endpoints, each connection is checked. */
  private readonly sinks: DestinationSinks;
  private readonly delivery: DestinationDelivery;
  private timer: NodeJS.Timeout | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastPass = 0;
  /** A pass is running (it awaits the store): another waits for it to end, then runs once. */
  private passing = false;
  private passAgain = false;
  /**
   * The wait before the next attempt after `attempts` have failed, or undefined when none is left: the
   * configured schedule, else exponential backoff with full jitter.
   */
  readonly retry: RetryPolicy;

  /** `delivered` counts the events written to destinations (for the console's charts). */
  constructor(
    private readonly store: Store,
    private readonly config: ApiConfig,
    private readonly log: Logger,
    delivered: (events: number) => void = () => {},
  ) {
    this.retry = retryLimited(config.retry);
    this.failures = new RateLimitedLog(log);
    this.sinks = new DestinationSinks(
      log,
      { requestTimeout: S3_REQUEST_TIMEOUT_MS, guard: new EndpointGuard(config.destinations.allowed_endpoints) },
      { timeMs: config.key_templates.time_limit, maxMemoryBytes: config.key_templates.max_memory },
    );
    this.delivery = {
      sinks: this.sinks,
      signal: this.abort.signal,
      log,
      failures: this.failures,
      delivered,
      work: new WorkInFlight(),
    };
    this.batcher = new EventBatcher(store, this.delivery, this.retry);
  }

  /**
   * Resolves once the log has been pruned a first time: what log_retention let go of is gone before the API
   * answers (a store over the network takes a while to prune, and must not show it meanwhile).
   */
  async start(): Promise<void> {
    // pump and prune never reject: each catches and logs its store's failures
    this.store.onPublish(() => void this.pump());
    this.pruneTimer = setInterval(() => void this.delivery.work.track(this.prune()), PRUNE_EVERY_MS);
    this.pruneTimer.unref();
    await this.prune();
    void this.pump();
  }

  /**
   * Stops starting work and aborts what runs; resolves once it has ended (an aborted attempt records nothing,
   * and a claim read meanwhile is given back or left to its lease), or at `deadline`: then the store may close.
   */
  async stop(deadline: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pruneTimer);
    this.abort.abort();
    // evaluations of keys still running end (rejected) with it: their attempts see the abort and record nothing
    this.sinks.close().catch((err: unknown) => this.log.debug({ err }, 'closing the destination sinks failed'));
    const running = this.delivery.work.size;
    if (!(await this.delivery.work.ended(deadline)))
      this.log.warn({ running, left: this.delivery.work.size }, 'event delivery still ran at the shutdown deadline');
  }

  /**
   * Starts what is due over all destinations, then sleeps until the next delivery is due. Publishes wake it,
   * at most every MIN_PASS_MS: a pass costs a look over the due deliveries, a publish only adds a few.
   */
  pump(): void {
    if (this.stopped) return;
    if (this.passing) {
      this.passAgain = true;
      return;
    }
    const now = Date.now();
    if (now - this.lastPass < MIN_PASS_MS) {
      this.sleepUntil(this.lastPass + MIN_PASS_MS);
      return;
    }
    this.lastPass = now;
    this.passing = true;
    void this.delivery.work.track(this.pass(now)).finally(() => {
      this.passing = false;
      if (this.passAgain) {
        this.passAgain = false;
        this.sleepUntil(this.lastPass + MIN_PASS_MS);
      }
    });
  }

  /** One pass; never rejects. */
  private async pass(now: number): Promise<void> {
    this.holds.forget(now);
    try {
      // while the store cannot write, no attempt could be recorded: none is made (its probe says when it can again)
      if (!(await this.store.writable())) {
        this.sleepUntil(now + MAX_IDLE_MS);
        return;
      }
      const limit = this.config.delivery_concurrency;
      const free = MAX_INFLIGHT - this.inflight.size;
      if (free > 0) {
        const busy = [...this.perDestination].filter(([, n]) => n >= limit).map(([id]) => id);
        // In-flight and held deliveries are still pending in the store: read past them.
        const { answer, ended } = await this.endedWhileReading.during(() =>
          this.store.dueDeliveries(now, free + this.inflight.size + this.holds.size, busy, limit),
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
    if (slots <= 0 || this.inflight.size >= MAX_INFLIGHT) return;
    try {
      if (!(await this.store.writable())) return;
      const { answer, ended } = await this.endedWhileReading.during(() =>
        this.store.dueDeliveriesOf(
          tenantId,
          destinationId,
          Date.now(),
          slots + inUse + this.holds.size,
          this.config.delivery_concurrency,
        ),
      );
      this.startAll(answer, ended);
    } catch (err) {
      this.failures.error('read', { err }, 'event delivery failed to read the store; trying again shortly');
    }
  }

  private startAll(due: DueDelivery[], ended: ReadonlySet<number>): void {
    // Stopped while the read was on its way: what it claimed is left to its lease (the store may be closing).
    if (this.stopped) return;
    const limit = this.config.delivery_concurrency;
    const now = Date.now();
    // Read but not attempted now (their destination's or the overall limit is reached): given back, so that a
    // store shared by several nodes does not keep them claimed for this one until the lease ends.
    const notStarted: number[] = [];
    for (const item of due) {
      const id = destinationKey(item.delivery.tenant_id, item.delivery.destination_id);
      if (this.inflight.has(item.delivery.seq)) continue;
      if (ended.has(item.delivery.seq) || this.holds.held(item.delivery.seq, now)) {
        notStarted.push(item.delivery.seq);
        continue;
      }
      if ((this.perDestination.get(id) ?? 0) >= limit || this.inflight.size >= MAX_INFLIGHT) {
        notStarted.push(item.delivery.seq);
        continue;
      }
      this.inflight.set(item.delivery.seq, id);
      this.perDestination.set(id, (this.perDestination.get(id) ?? 0) + 1);
      void this.delivery.work.track(this.attempt(item)).finally(() => {
        this.endedWhileReading.end(item.delivery.seq);
        this.inflight.delete(item.delivery.seq);
        const left = (this.perDestination.get(id) ?? 1) - 1;
        if (left > 0) this.perDestination.set(id, left);
        else this.perDestination.delete(id);
        void this.delivery.work.track(this.refill(item.delivery.tenant_id, item.delivery.destination_id));
      });
    }
    if (notStarted.length > 0)
      this.delivery.work
        .track(this.store.releaseDeliveries(notStarted))
        .catch((err: unknown) =>
          this.failures.warn('release', { err }, 'giving back deliveries not attempted failed (their claims expire)'),
        );
  }

  /** Attempts a delivery, a batch of one, and records the attempt; never rejects. */
  private attempt({ delivery, event }: DueDelivery): Promise<unknown> {
    return attemptUnit(this.delivery, this.holds, delivery.seq, async (): Promise<DeliveryUnit | undefined> => {
      const destination = await this.store.getDestination(event.tenant_id, delivery.destination_id);
      if (!destination || destination.disabled_at) return undefined;
      const type = this.sinks.typeOf(destination);
      const objects = this.sinks.eventObjectsOf(destination);
      // a key that fails fails again (it is made from the same event); a manual retry is one attempt
      const policy: RetryPolicy =
        event.eligible_for_retry && !delivery.manual
          ? (n, failure) => (objects.keyFailureCode(failure.error) !== undefined ? undefined : this.retry(n, failure))
          : noRetry;
      return {
        kind: 'event',
        destination,
        attempt: delivery.attempts + 1,
        manual: delivery.manual,
        eventId: event.id,
        events: 1,
        policy,
        key: delivery.object_key,
        name: () => objects.key(event, destination),
        // a failure to store the key is the store's, not the attempt's: the delivery is held
        fix: async (key) => {
          await this.store.setObjectKey(delivery.seq, key);
        },
        wanted: async () => !(await this.changedSince(destination)),
        encode: async (key) => objects.object(event, destination, key),
        failureCode: (err) => objects.keyFailureCode(err),
        response: (key) => (key === null ? null : type.location(destination, key)),
        record: async (attempt, next) => {
          await this.store.recordAttempt(attempt, { seq: delivery.seq, ...next });
        },
        fields: { tenant_id: event.tenant_id, destination_id: destination.id, event_id: event.id },
      };
    });
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
