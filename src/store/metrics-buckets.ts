/**
 * The time buckets of the metrics routes (GET /metrics/events, /metrics/attempts), as Outpost's: the same
 * for every store (SQLite computes them in SQL with truncateTime) and for the empty buckets the API fills in.
 */
import type { MetricsQuery } from './types.js';

/** Milliseconds from 0001-01-01 (Go's zero time, which its Truncate aligns to) to the Unix epoch. */
const GO_ZERO_TIME_MS = 62_135_596_800_000;
const DAY_MS = 86_400_000;
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000 } as const;

export type Granularity = NonNullable<MetricsQuery['granularity']>;

/**
 * The start of the bucket `t` (ms) falls in, as Outpost's bucket.TruncateTime: seconds, minutes and hours in
 * steps of their value from Go's zero time; days, weeks (from Sunday) and months from the epoch (1970-01-04,
 * the first Sunday, for weeks), so that `7d` or `3M` buckets line up the same whatever the range.
 */
export function truncateTime(t: number, g: Granularity): number {
  switch (g.unit) {
    case 's':
    case 'm':
    case 'h': {
      const step = g.value * UNIT_MS[g.unit];
      return t - ((((t + GO_ZERO_TIME_MS) % step) + step) % step);
    }
    case 'd':
      return Math.floor(Math.floor(t / DAY_MS) / g.value) * g.value * DAY_MS;
    case 'w': {
      const day = Math.floor(t / DAY_MS);
      // 1970-01-01 was a Thursday: day + 4 is 0 mod 7 on Sundays
      const sunday = day - ((((day + 4) % 7) + 7) % 7);
      const weeks = Math.floor((sunday - 3) / 7);
      return (3 + Math.floor(weeks / g.value) * g.value * 7) * DAY_MS;
    }
    case 'M': {
      const d = new Date(t);
      const months = (d.getUTCFullYear() - 1970) * 12 + d.getUTCMonth();
      const aligned = Math.floor(months / g.value) * g.value;
      return Date.UTC(1970 + Math.floor(aligned / 12), aligned % 12, 1);
    }
  }
}

/** The next bucket's start after `t` (a bucket start). */
export function advanceTime(t: number, g: Granularity): number {
  if (g.unit === 'M') {
    const d = new Date(t);
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + g.value, 1);
  }
  const step = g.unit === 'd' ? DAY_MS : g.unit === 'w' ? 7 * DAY_MS : UNIT_MS[g.unit];
  return t + g.value * step;
}
