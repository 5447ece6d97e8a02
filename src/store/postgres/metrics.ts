import type { MetricsQuery, MetricsRow } from '../types.js';
import { Params, type Sql } from './database.js';

/** The SQL of one dimension or filter over the joined rows, as text (dimensions answer strings). */
type Columns = Record<string, string>;

const EVENT_COLUMNS: Columns = {
  tenant_id: 'e.tenant_id',
  topic: 'e.topic',
  destination_id: "coalesce(m.destination_id, '')",
};

const ATTEMPT_COLUMNS: Columns = {
  tenant_id: 'a.tenant_id',
  destination_id: 'a.destination_id',
  destination_type: "coalesce(t.type, '')",
  topic: "coalesce(e.topic, '')",
  status: 'a.status',
  code: "coalesce(a.code, '')",
  manual: "CASE WHEN a.manual THEN 'true' ELSE 'false' END",
  attempt_number: 'a.attempt_number::text',
};

const ATTEMPT_COUNTS = `count(*) AS count,
  count(*) FILTER (WHERE a.status = 'success') AS successful_count,
  count(*) FILTER (WHERE a.status = 'failed') AS failed_count,
  count(*) FILTER (WHERE a.attempt_number = 1 AND NOT a.manual) AS first_attempt_count,
  count(*) FILTER (WHERE a.attempt_number > 1) AS retry_count,
  count(*) FILTER (WHERE a.manual) AS manual_retry_count,
  sum(a.attempt_number) AS attempt_number_sum`;

/**
 * Aggregates of the delivery log for GET /metrics/events and /metrics/attempts, grouped in SQL, over what all
 * nodes stored. Buckets are computed by metrics_bucket (migration 001), the SQL twin of truncateTime, so that
 * the buckets of the rows and the empty ones filled in around them (in the API) are the same.
 */
export class PgMetrics {
  constructor(private readonly sql: Sql) {}

  /** Events by their own time; with the destination_id dimension, an event counts once per destination it was routed to. */
  events(query: MetricsQuery): Promise<{ rows: MetricsRow[]; truncated: boolean }> {
    const p = new Params();
    const where = [`e.time_ms >= ${p.add(query.start)}`, `e.time_ms < ${p.add(query.end)}`];
    for (const [name, values] of Object.entries(query.filters)) {
      if (name === 'destination_id')
        where.push(
          `EXISTS (SELECT 1 FROM deliveries f WHERE f.event_seq = e.seq AND f.destination_id = ANY(${p.add(values)}))`,
        );
      else where.push(`${EVENT_COLUMNS[name]} = ANY(${p.add(values)})`);
    }
    const join = query.dimensions.includes('destination_id')
      ? 'LEFT JOIN (SELECT DISTINCT event_seq, destination_id FROM deliveries) m ON m.event_seq = e.seq'
      : '';
    return this.grouped(`FROM events e ${join}`, 'e.time_ms', EVENT_COLUMNS, 'count(*) AS count', where, p, query);
  }

  /** Attempts by when they were made; topic is their event's (none for a batch attempt: ''). */
  attempts(query: MetricsQuery): Promise<{ rows: MetricsRow[]; truncated: boolean }> {
    const p = new Params();
    const where = [`a.time >= ${p.add(query.start)}`, `a.time < ${p.add(query.end)}`];
    for (const [name, values] of Object.entries(query.filters)) {
      where.push(`${ATTEMPT_COLUMNS[name]} = ANY(${p.add(values)})`);
    }
    const from = `FROM attempts a
      LEFT JOIN events e ON e.tenant_id = a.tenant_id AND e.id = a.event_id
      LEFT JOIN destinations t ON t.tenant_id = a.tenant_id AND t.id = a.destination_id`;
    return this.grouped(from, 'a.time', ATTEMPT_COLUMNS, ATTEMPT_COUNTS, where, p, query);
  }

  private async grouped(
    from: string,
    timeColumn: string,
    columns: Columns,
    counts: string,
    where: string[],
    p: Params,
    query: MetricsQuery,
  ): Promise<{ rows: MetricsRow[]; truncated: boolean }> {
    const g = query.granularity;
    const bucket = g
      ? `metrics_bucket(${timeColumn}, ${p.add(g.unit)}::text, ${p.add(g.value)}::integer)`
      : 'NULL::bigint';
    // ordered by code point, as SQLite orders them, whatever the database's collation
    const dims = query.dimensions.map((d, i) => `(${columns[d]}) COLLATE "C" AS d${i}`);
    const groupBy = ['bucket', ...query.dimensions.map((_, i) => `d${i}`)];
    const sql = `SELECT ${[`${bucket} AS bucket`, ...dims, counts].join(', ')} ${from}
      WHERE ${where.join(' AND ')} GROUP BY ${groupBy.join(', ')} ORDER BY ${groupBy.join(', ')} LIMIT ${p.add(query.rowLimit + 1)}`;
    const { rows: raw } = await this.sql.query<Record<string, unknown>>(sql, p.values);
    const truncated = raw.length > query.rowLimit;
    const rows = raw.slice(0, query.rowLimit).map((r) => {
      const dimensions: Record<string, string> = {};
      query.dimensions.forEach((d, i) => {
        dimensions[d] = String(r[`d${i}`]);
      });
      const values: Record<string, number> = {};
      for (const [k, v] of Object.entries(r)) if (k !== 'bucket' && !/^d\d+$/.test(k)) values[k] = Number(v ?? 0);
      return { bucket: r.bucket === null ? null : Number(r.bucket), dimensions, counts: values };
    });
    return { rows, truncated };
  }
}
