import type { Logger } from 'pino';
import type { WorkInFlight } from './work-in-flight.js';
import type { RateLimitedLog } from '../observability/rate-limited-log.js';
import { storageErrorCode } from '../sqlite/storage-errors.js';
import type { StoredObject } from '../sinks/types.js';
import type { Destination, DeliveryStatus, NewAttempt } from '../store/types.js';
import { attemptOnce, type Outcome, type RetryPolicy } from './attempts.js';
import type { DestinationSinks } from './destination-sinks.js';
import type { RecordHolds } from './record-holds.js';

/**
 * One attempt of what a tenant destination is sent, written once for both kinds of it: an event of a
 * per-event destination (a batch of one) and a sealed batch of a batched one.
 *
 *   name (the object key, fixed before the first attempt) -> encode -> put -> classify -> policy -> record
 *
 * on the attempt core (attempts.ts), with the destinations' policy (retryLimited: max_retries or
 * retry.schedule). Both kinds run the batching skeleton too (stream key -> limit -> name -> encode); a
 * per-event destination is a batch of one, but not one stored as a batch, and what differs is this:
 *
 * - Stream and limit. A batch's stream is a topic and UTC hour, held open (batching/open-batches.ts) until
 *   max_events, max_bytes or max_age. A per-event delivery is its own stream with a limit of one event: it
 *   closes as it arrives, so it is never held open, and no event_batches row is written for it: the delivery
 *   row is its sealed record (its object_key, stored before the upload, is what a batch's key is at its seal).
 *   Stored as a batch, its attempts would lose their event_id (a batch's are recorded without one), and with
 *   them GET /events/{id}/attempts and POST /retry of the one event as one manual attempt.
 * - Name. A batch is named when it is sealed, from its first and last delivery seqs (the outputs' key
 *   layout). An event is named by its destination (Outpost's key_template, JMESPath over the event, or
 *   `<time>_<id>.json`), evaluated on its first attempt, in a process off the event loop, and its failure is
 *   that attempt's (code `key_template`, not retried: the same event fails the same way).
 * - Encode. A batch is its events' data as NDJSON or a JSON array, gzip'd or not; an event is its data as it
 *   was published, with its S3 user metadata.
 * - Pace. Batches are attempted as they fall due; per-event deliveries at most delivery_concurrency at a time
 *   per destination, and a manual retry or an event not eligible_for_retry gets one attempt (noRetry).
 *
 * What each kind gives is a DeliveryUnit. The attempt is recorded in the delivery log either way (an event's
 * with its event_id, a batch's without), with where it wrote (the type's `location`).
 *
 * A failure to read or record in the store is no failure of the attempt: the unit stays pending as it was and
 * is held (RecordHolds) before it is attempted again, to the same key; the line saying so is logged once a
 * minute. An attempt never rejects: nothing reaches the process's unhandledRejection handler.
 */

/** What per-event and batched delivery share: the destinations' sinks, the abort of a stop, the logs. */
export interface DestinationDelivery {
  sinks: Pick<DestinationSinks, 'sinkOf' | 'typeOf'>;
  signal: AbortSignal;
  log: Logger;
  failures: RateLimitedLog;
  /** Counts events delivered (the console's "delivered", with the outputs' decisions). */
  delivered(events: number): void;
  /** What is running against the store, which a stop waits for before the store closes. */
  work: WorkInFlight;
}

/** How the next attempt is due, or not, once this one is recorded. */
export interface NextAttempt {
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: number;
}

export interface DeliveryUnit {
  kind: 'event' | 'batch';
  destination: Destination;
  /** This attempt's number (1 for the first). */
  attempt: number;
  manual: boolean;
  /** The event's id; null for a batch (its events are listed by its key). */
  eventId: string | null;
  /** The events it holds: 1 for a per-event delivery. */
  events: number;
  policy: RetryPolicy;
  /** The object key when it is already fixed (a batch's; an event's after its first attempt). */
  key: string | null;
  /** Names the object on its first attempt; a rejection is this attempt's failure. */
  name(): Promise<string>;
  /** Stores the key named (a failure is the store's: the unit is held, not failed). */
  fix(key: string): Promise<void>;
  /** Whether the unit is still to be attempted after its naming (the destination may have changed meanwhile). */
  wanted(): Promise<boolean>;
  encode(key: string): Promise<StoredObject>;
  /** The code of a failure that is the unit's own (not the sink's), such as a key template's; else 'error'. */
  failureCode(err: Error): string | undefined;
  /** What the attempt's response_data says: where it wrote (or would have). */
  response(key: string | null): Record<string, unknown> | null;
  record(attempt: NewAttempt, next: NextAttempt): Promise<void>;
  /** Fields of its log lines. */
  fields: Record<string, unknown>;
}

/**
 * Makes the unit (`unit()` reads the store; undefined: nothing to attempt now) and attempts it once. Says how
 * it ended: 'pending' when it is to be attempted again, 'ended' otherwise (delivered, failed for good, or
 * nothing attempted and nothing recorded: stopping, or the destination gone or changed).
 */
export async function attemptUnit<K>(
  ctx: DestinationDelivery,
  holds: RecordHolds<K>,
  holdKey: K,
  unit: () => Promise<DeliveryUnit | undefined>,
): Promise<'pending' | 'ended'> {
  let made: DeliveryUnit | undefined;
  try {
    made = await unit();
    const end = made ? await attemptAndRecord(ctx, made) : 'ended';
    holds.release(holdKey);
    return end;
  } catch (err) {
    // The store could not read or record it: it stays pending as it was, and once its wait is over it is
    // attempted again with the same key, so an upload that did succeed is at worst repeated.
    const wait = holds.hold(holdKey, Date.now());
    if (ctx.signal.aborted) return 'pending';
    const code = storageErrorCode(err);
    const what = made?.kind === 'batch' ? 'a batch' : 'an event delivery';
    const which = made?.kind === 'batch' ? 'the batch' : 'the delivery';
    ctx.failures.error(
      `record:${made?.kind ?? 'unit'}:${code ?? 'error'}`,
      { err, code, ...made?.fields, retry_in_ms: wait },
      code
        ? `${what} attempt could not be recorded: the store cannot write to its data_dir; ${which} stays pending and is attempted again later`
        : `${what} attempt could not be recorded; ${which} stays pending and is attempted again later`,
    );
    return 'pending';
  }
}

async function attemptAndRecord(ctx: DestinationDelivery, unit: DeliveryUnit): Promise<'pending' | 'ended'> {
  const started = Date.now();
  const { attempt, policy } = unit;
  let key = unit.key;
  let outcome: Outcome<unknown> | undefined;
  // The attempt is the naming (on the first attempt only) and the upload: a failure of either is the attempt's.
  if (key === null) {
    const named = await attemptOnce(attempt, () => unit.name(), policy);
    // stopped while it was named, or the destination was deleted, disabled or changed meanwhile: nothing is
    // recorded, and the unit stays pending (attempted again with what the destination is now)
    if (ctx.signal.aborted || !(await unit.wanted())) return 'ended';
    if (named.ok) {
      key = named.value;
      await unit.fix(key);
    } else {
      outcome = named;
    }
  }
  if (key !== null) {
    const objectKey = key;
    outcome = await attemptOnce(
      attempt,
      async () => {
        const object = await unit.encode(objectKey);
        try {
          await ctx.sinks.sinkOf(unit.destination).put(object, ctx.signal);
        } finally {
          // each attempt encodes the object anew: its body is not read again
          object.releaseBody?.();
        }
      },
      policy,
    );
  }
  const base = {
    tenant_id: unit.destination.tenant_id,
    event_id: unit.eventId,
    destination_id: unit.destination.id,
    attempt_number: attempt,
    manual: unit.manual,
  };
  if (outcome && !outcome.ok) {
    if (ctx.signal.aborted) return 'ended';
    const { failure, retryIn: wait } = outcome;
    const code = unit.failureCode(failure.error) ?? (failure.fromSink ? (failure.code ?? null) : 'error');
    await unit.record(
      {
        ...base,
        status: 'failed',
        code,
        response_data: unit.response(key),
        error: failure.error.message,
        duration_ms: Date.now() - started,
      },
      {
        status: wait === undefined ? 'failed' : 'pending',
        attempts: attempt,
        next_attempt_at: Date.now() + (wait ?? 0),
      },
    );
    const fields = { ...unit.fields, attempt, code, err: failure.error.message };
    if (wait === undefined)
      ctx.log.warn(
        fields,
        unit.kind === 'batch'
          ? 'batch delivery failed; no retry left (POST /api/v1/retry attempts its events again)'
          : 'event delivery failed; no retry left (POST /api/v1/retry attempts it again)',
      );
    else ctx.log.debug({ ...fields, retry_in_ms: Math.round(wait) }, `${unit.kind} delivery failed; retrying`);
    return wait === undefined ? 'ended' : 'pending';
  }
  await unit.record(
    {
      ...base,
      status: 'success',
      code: '200',
      response_data: unit.response(key),
      error: null,
      duration_ms: Date.now() - started,
    },
    { status: 'success', attempts: attempt, next_attempt_at: 0 },
  );
  ctx.delivered(unit.events);
  return 'ended';
}
