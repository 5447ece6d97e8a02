import { setTimeout as sleep } from 'node:timers/promises';
import { SinkError } from '../sinks/types.js';
import { backoffDelay, type BackoffPolicy } from './backoff.js';

/**
 * The attempt core: one skeleton for every delivery, whatever delivers.
 *
 *   attempt -> classify the error -> ask the policy for the wait -> the caller records the outcome
 *
 * What differs between callers is the policy only. Decision outputs retry forever with backoff (the data is
 * acknowledged and buffered; nothing may be given up). Event destinations retry up to a number of attempts,
 * or after the configured schedule, and stop for an event that is not eligible for retry or a manual retry
 * (POST /retry is one attempt). Time comes from a Clock, so a test can run the core on a fake one.
 */

export interface Clock {
  now(): number;
  /** Waits `ms`, or resolves early when the signal aborts (the caller checks its own state then). */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  async sleep(ms, signal) {
    try {
      await sleep(ms, undefined, { signal });
    } catch {
      // aborted
    }
  },
};

/** What went wrong, as the policies and the records see it. */
export interface Failure {
  error: Error;
  /** An error the sink reported (the receiver answered, or could not be reached), not one of Sluice itself. */
  fromSink: boolean;
  /** The sink says retrying cannot fix it (credentials, permissions, a missing bucket). */
  permanent: boolean;
  /** The sink's code for it, when it gave one. */
  code: string | undefined;
}

export function classify(err: unknown): Failure {
  const error = err instanceof Error ? err : new Error(String(err));
  if (error instanceof SinkError) return { error, fromSink: true, permanent: error.permanent, code: error.code };
  return { error, fromSink: false, permanent: false, code: undefined };
}

/** The wait before the next attempt after attempt `attempt` failed, or undefined: no attempt is left. */
export type RetryPolicy = (attempt: number, failure: Failure) => number | undefined;

/** Decision outputs: never give up, wait longer (full jitter) each time. Permanent errors too: they may get fixed. */
export function retryForever(backoff: BackoffPolicy, random: () => number = Math.random): RetryPolicy {
  return (attempt) => backoffDelay(backoff, attempt, random);
}

export interface RetryLimits {
  max_retries: number;
  initial_backoff: number;
  max_backoff: number;
  /** Waits after the 1st, 2nd, ... failure; attempts end when it does. Replaces max_retries and backoff. */
  schedule?: number[] | undefined;
}

/** Event destinations: the schedule if one is configured, else up to max_retries retries with full-jitter backoff. */
export function retryLimited(limits: RetryLimits, random: () => number = Math.random): RetryPolicy {
  const { schedule, max_retries: maxRetries, initial_backoff: initial, max_backoff: max } = limits;
  return (attempt) => {
    if (schedule) return schedule[attempt - 1];
    if (attempt > maxRetries) return undefined;
    return backoffDelay({ initial, max }, attempt, random);
  };
}

export const noRetry: RetryPolicy = () => undefined;

export type Outcome<T> =
  | { ok: true; value: T; attempt: number; startedAt: number; durationMs: number }
  | {
      ok: false;
      failure: Failure;
      attempt: number;
      startedAt: number;
      durationMs: number;
      retryIn: number | undefined;
    };

export type FailedOutcome = Extract<Outcome<unknown>, { ok: false }>;

/** Makes attempt number `attempt` and says what came of it; never rejects. */
export async function attemptOnce<T>(
  attempt: number,
  work: () => Promise<T>,
  policy: RetryPolicy,
  clock: Clock = systemClock,
): Promise<Outcome<T>> {
  const startedAt = clock.now();
  try {
    const value = await work();
    return { ok: true, value, attempt, startedAt, durationMs: clock.now() - startedAt };
  } catch (err) {
    const failure = classify(err);
    return {
      ok: false,
      failure,
      attempt,
      startedAt,
      durationMs: clock.now() - startedAt,
      retryIn: policy(attempt, failure),
    };
  }
}

/**
 * Attempts until one succeeds, the policy has no attempt left, or the signal aborts (undefined then: the
 * caller is stopping, and records nothing). `onFailure` records each failed attempt before its wait.
 */
export async function attemptUntilDone<T>(
  work: (attempt: number) => Promise<T>,
  policy: RetryPolicy,
  opts: { signal: AbortSignal; onFailure: (outcome: FailedOutcome) => void; clock?: Clock },
): Promise<Outcome<T> | undefined> {
  const clock = opts.clock ?? systemClock;
  for (let attempt = 1; ; attempt++) {
    if (opts.signal.aborted) return undefined;
    const outcome = await attemptOnce(attempt, () => work(attempt), policy, clock);
    if (outcome.ok) return outcome;
    if (opts.signal.aborted) return undefined;
    opts.onFailure(outcome);
    if (outcome.retryIn === undefined) return outcome;
    await clock.sleep(outcome.retryIn, opts.signal);
  }
}
