import { z } from 'zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { HttpError } from '../http/http-error.js';
import { advanceTime, truncateTime, type Granularity } from '../store/metrics-buckets.js';
import type { MetricsQuery, MetricsRow } from '../store/types.js';
import type { ControlPlaneRoutes } from './route-context.js';
import { anyString, oneOrMore, queryTime } from './query.js';
import { metricsSchema, responses } from './schemas.js';

/** As Outpost: at most this many rows per answer, and this many time buckets per query. */
const ROW_LIMIT = 100_000;
const MAX_BUCKETS = 100_000;
const GRANULARITY_MAX = { s: 60, m: 60, h: 24, d: 31, w: 4, M: 12 } as const;

const granularity = z.string().transform((g, ctx): Granularity => {
  const match = /^(\d+)([smhdwM])$/.exec(g);
  const unit = match?.[2] as Granularity['unit'] | undefined;
  const value = Number(match?.[1]);
  if (!unit || value < 1 || value > GRANULARITY_MAX[unit]) {
    ctx.addIssue({
      code: 'custom',
      message: 'failed pattern validation (<number><unit>: s 1-60, m 1-60, h 1-24, d 1-31, w 1-4, M 1-12)',
    });
    return z.NEVER;
  }
  return { value, unit };
});

interface Kind {
  path: string;
  summary: string;
  measures: readonly string[];
  dimensions: readonly string[];
  read: (
    store: Parameters<ControlPlaneRoutes>[1]['store'],
    q: MetricsQuery,
  ) => Promise<{ rows: MetricsRow[]; truncated: boolean }>;
  /** A measure's value from a row's counts and its bucket's length in seconds. */
  measure: (name: string, counts: Record<string, number>, seconds: number) => number;
}

const rate = (n: number | undefined, seconds: number) => (seconds > 0 ? (n ?? 0) / seconds : 0);

const EVENTS: Kind = {
  path: '/metrics/events',
  summary: 'Published events, counted per time bucket and dimension (by their event time)',
  measures: ['count', 'rate'],
  dimensions: ['tenant_id', 'topic', 'destination_id'],
  read: (store, q) => store.eventMetrics(q),
  measure: (name, c, seconds) => (name === 'rate' ? rate(c.count, seconds) : (c.count ?? 0)),
};

const ATTEMPTS: Kind = {
  path: '/metrics/attempts',
  summary: 'Delivery attempts, counted per time bucket and dimension (by when they were made)',
  measures: [
    'count',
    'successful_count',
    'failed_count',
    'error_rate',
    'first_attempt_count',
    'retry_count',
    'manual_retry_count',
    'avg_attempt_number',
    'rate',
    'successful_rate',
    'failed_rate',
  ],
  dimensions: [
    'tenant_id',
    'destination_id',
    'destination_type',
    'topic',
    'status',
    'code',
    'manual',
    'attempt_number',
  ],
  read: (store, q) => store.attemptMetrics(q),
  measure: (name, c, seconds) => {
    const count = c.count ?? 0;
    switch (name) {
      case 'error_rate':
        return count > 0 ? (c.failed_count ?? 0) / count : 0;
      case 'avg_attempt_number':
        return count > 0 ? (c.attempt_number_sum ?? 0) / count : 0;
      case 'rate':
        return rate(count, seconds);
      case 'successful_rate':
        return rate(c.successful_count, seconds);
      case 'failed_rate':
        return rate(c.failed_count, seconds);
      default:
        return c[name] ?? 0;
    }
  },
};

function querySchema(kind: Kind) {
  const filters: Record<string, z.ZodType> = {};
  for (const d of kind.dimensions) filters[`filters[${d}]`] = oneOrMore(anyString).optional();
  return z.strictObject({
    'time[start]': queryTime.describe('inclusive'),
    'time[end]': queryTime.describe('exclusive'),
    granularity: granularity.optional(),
    measures: oneOrMore(z.enum(kind.measures as [string, ...string[]], { error: 'failed enum validation' })),
    dimensions: oneOrMore(
      z.enum(kind.dimensions as [string, ...string[]], { error: 'failed enum validation' }),
    ).optional(),
    ...filters,
  });
}

/** A bucket's length in seconds, for rates: the whole range without granularity; months by the calendar. */
function bucketSeconds(bucket: number | null, g: Granularity | undefined, start: number, end: number): number {
  if (!g || bucket === null) return (end - start) / 1000;
  return (advanceTime(bucket, g) - bucket) / 1000;
}

/** The bucket starts of [start, end), or 400 when there are too many. */
function timeSlots(start: number, end: number, g: Granularity): number[] {
  const slots: number[] = [];
  for (let t = truncateTime(start, g); t < end; t = advanceTime(t, g)) {
    if (slots.length >= MAX_BUCKETS)
      throw new HttpError(400, 'query too broad: try fewer dimensions, more filters, or a shorter time range', {
        reason: 'too_many_buckets',
        max_buckets: MAX_BUCKETS,
      });
    slots.push(t);
  }
  return slots;
}

/**
 * Every time slot of every dimension combination found, with zeros where there was nothing (as Outpost fills
 * them); without dimensions, every slot. A query with dimensions and no data has no combination to fill.
 */
function filled(rows: MetricsRow[], slots: number[], withDimensions: boolean): MetricsRow[] {
  const combos = new Map<string, Record<string, string>>();
  const byKey = new Map<string, MetricsRow>();
  for (const row of rows) {
    const combo = JSON.stringify(Object.entries(row.dimensions).sort());
    combos.set(combo, row.dimensions);
    byKey.set(`${combo}@${row.bucket}`, row);
  }
  if (!withDimensions) combos.set('[]', {});
  const out: MetricsRow[] = [];
  for (const combo of [...combos.keys()].sort()) {
    const dimensions = combos.get(combo)!;
    for (const slot of slots) out.push(byKey.get(`${combo}@${slot}`) ?? { bucket: slot, dimensions, counts: {} });
  }
  return out;
}

/** `GET /metrics/events` and `GET /metrics/attempts`: Outpost's aggregates of the delivery log, read from the store. */
export const metricsRoutes: ControlPlaneRoutes = async (plain, { store }) => {
  const app = plain.withTypeProvider<ZodTypeProvider>();
  for (const kind of [EVENTS, ATTEMPTS]) {
    app.get(
      kind.path,
      {
        schema: {
          summary: kind.summary,
          tags: ['events'],
          querystring: querySchema(kind),
          response: responses({ 200: metricsSchema }, [400, 403, 422]),
        },
      },
      async (request) => {
        const began = performance.now();
        const q = request.query as Record<string, unknown> & {
          'time[start]': number;
          'time[end]': number;
          granularity?: Granularity;
          measures: string[];
          dimensions?: string[];
        };
        const dimensions = q.dimensions ?? [];
        const filters: Record<string, string[]> = {};
        for (const d of kind.dimensions)
          if (q[`filters[${d}]`] !== undefined) filters[d] = q[`filters[${d}]`] as string[];
        const p = request.principal;
        if (!p.admin) {
          // as Outpost: a tenant token counts its own tenant only, and cannot group by tenant
          if (dimensions.includes('tenant_id'))
            throw new HttpError(403, 'tenant_id dimension is not allowed for tenant-scoped requests', {
              reason: 'forbidden',
            });
          if (filters.tenant_id && (filters.tenant_id.length !== 1 || filters.tenant_id[0] !== p.tenantId)) {
            throw new HttpError(403, 'filters[tenant_id] does not match authenticated tenant', { reason: 'forbidden' });
          }
          filters.tenant_id = [p.tenantId];
        }
        const start = q['time[start]'];
        const end = q['time[end]'];
        if (end <= start)
          throw new HttpError(400, 'time[end] must be after time[start]', { reason: 'invalid_time_range' });
        const g = q.granularity;
        const slots = g ? timeSlots(start, end, g) : undefined;
        const { rows, truncated } = await kind.read(store, {
          start,
          end,
          granularity: g,
          dimensions,
          filters,
          rowLimit: ROW_LIMIT,
        });
        const all = slots ? filled(rows, slots, dimensions.length > 0) : rows;
        const data = all.map((row) => {
          const seconds = bucketSeconds(row.bucket, g, start, end);
          return {
            ...(row.bucket !== null ? { time_bucket: new Date(row.bucket).toISOString().replace('.000Z', 'Z') } : {}),
            dimensions: row.dimensions,
            metrics: Object.fromEntries(q.measures.map((m) => [m, kind.measure(m, row.counts, seconds)])),
          };
        });
        return {
          data,
          metadata: {
            ...(g ? { granularity: `${g.value}${g.unit}` } : {}),
            query_time_ms: Math.round(performance.now() - began),
            row_count: data.length,
            row_limit: ROW_LIMIT,
            truncated,
          },
        };
      },
    );
  }
};
