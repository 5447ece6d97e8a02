import { z } from 'zod';
import type { FastifyRequest } from 'fastify';
import { parseEventTime } from '../time/event-time.js';
import type { TimeRange } from '../store/types.js';

/**
 * Outpost's array parameters come in three forms: `topic[0]=a&topic[1]=b`, `topic[]=a&topic[]=b` and
 * `topic=a&topic=b` (what its SDKs send). A preValidation hook folds the bracketed ones into the plain name,
 * so that each route's schema sees `topic: ['a', 'b']` whichever form was used; `time[gte]` and
 * `filters[topic]` are names of their own and stay as they are (`filters[topic][0]` folds into `filters[topic]`).
 */
export async function foldArrayParams(request: FastifyRequest): Promise<void> {
  const query = request.query as Record<string, unknown> | undefined;
  if (!query || typeof query !== 'object') return;
  const folded: Record<string, unknown> = {};
  const indexed = new Map<string, Array<[number, unknown]>>();
  for (const [key, value] of Object.entries(query)) {
    const match = /^(.+)\[(\d*)\]$/.exec(key);
    if (!match) {
      append(folded, key, value);
      continue;
    }
    const [, name, index] = match as unknown as [string, string, string];
    if (index === '') append(folded, name, value);
    else indexed.set(name, [...(indexed.get(name) ?? []), [Number(index), value]]);
  }
  for (const [name, entries] of indexed) {
    for (const [, value] of entries.sort((a, b) => a[0] - b[0])) append(folded, name, value);
  }
  request.query = folded;
}

function append(target: Record<string, unknown>, key: string, value: unknown): void {
  const values = Array.isArray(value) ? value : [value];
  if (!Object.hasOwn(target, key)) {
    target[key] = Array.isArray(value) ? [...values] : value;
    return;
  }
  const existing = target[key];
  target[key] = [...(Array.isArray(existing) ? existing : [existing]), ...values];
}

/** A filter of one value or several (`topic=a` or `topic=a&topic=b`), as a list. */
export function oneOrMore<T extends z.ZodType<string, string>>(item: T) {
  return z
    .union([item, z.array(item).min(1, 'failed min validation')], { error: 'failed type validation' })
    .transform((v): Array<z.output<T>> => (Array.isArray(v) ? v : [v]));
}

export const anyString = z.string().min(1, 'failed min validation');

/** Times in query parameters: RFC 3339 (any fraction) or a date (midnight UTC), as Outpost accepts them. */
export const queryTime = z.string().transform((t, ctx) => {
  const parsed = /^\d{4}-\d{2}-\d{2}$/.test(t) ? parseEventTime(`${t}T00:00:00Z`) : parseEventTime(t);
  if (!parsed) {
    ctx.addIssue({
      code: 'custom',
      message: 'failed pattern validation (RFC 3339, e.g. 2026-05-01T12:00:00Z, or YYYY-MM-DD)',
    });
    return z.NEVER;
  }
  return parsed.ms;
});

/** `time[gte]`, `time[gt]`, `time[lte]`, `time[lt]` (Outpost's deepObject `time` operator). */
export const timeParams = {
  'time[gte]': queryTime.optional(),
  'time[gt]': queryTime.optional(),
  'time[lte]': queryTime.optional(),
  'time[lt]': queryTime.optional(),
};

export function timeRange(q: {
  'time[gte]'?: number;
  'time[gt]'?: number;
  'time[lte]'?: number;
  'time[lt]'?: number;
}): TimeRange | undefined {
  const range: TimeRange = { gte: q['time[gte]'], gt: q['time[gt]'], lte: q['time[lte]'], lt: q['time[lt]'] };
  return Object.values(range).some((v) => v !== undefined) ? range : undefined;
}

/** `dir` and `order_by` of the lists sorted by time (events, attempts). */
export const sortParams = {
  dir: z.enum(['asc', 'desc'], { error: 'failed enum validation' }).default('desc'),
  order_by: z.enum(['time'], { error: 'failed enum validation' }).default('time'),
};
