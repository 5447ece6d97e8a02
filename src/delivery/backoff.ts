export interface BackoffPolicy {
  initial: number;
  max: number;
}

/** "Full jitter": a uniformly random wait up to the capped exponential, so retries do not stampede. */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.max, policy.initial * 2 ** Math.min(attempt - 1, 30));
  return random() * ceiling;
}
