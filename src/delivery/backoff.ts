import { setTimeout as sleep } from 'node:timers/promises';

export interface BackoffPolicy { initial: number; max: number }

/** "Full jitter": a uniformly random wait up to the capped exponential, so retries do not stampede. */
export function backoffDelay(policy: BackoffPolicy, attempt: number): number {
  const ceiling = Math.min(policy.max, policy.initial * 2 ** Math.min(attempt - 1, 30));
  return Math.random() * ceiling;
}

/** Waits, or resolves early when the signal aborts. */
export async function pause(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch {
    // aborted: the caller checks its own state
  }
}
