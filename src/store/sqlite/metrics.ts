import type Database from 'better-sqlite3';
import { truncateTime, type Granularity } from '../metrics-buckets.js';
import type { MetricsQuery, MetricsRow } from '../types.js';

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
  manual: "CASE a.manual WHEN 1 THEN 'true' ELSE 'false' END",
  attempt_number: 'CAST(a.attempt_number AS TEXT)',
};

const ATTEMPT_COUNTS = `count(*) AS count,
  sum(a.status = 'success') AS successful_count,
  sum(a.status = 'failed') AS failed_count,
  sum(a.attempt_number = 1 AND a.manual = 0) AS first_attempt_count,
  sum(a.attempt_number > 1) AS retry_count,
  sum(a.manual = 1) AS manual_retry_count,
  sum(a.attempt_number) AS attempt_number_sum`;

/**
 * Aggregates of the delivery log for GET /metrics/events and /metrics/attempts, grouped in SQL. Buckets are
 * computed by truncateTime, registered as a SQL function, so that the buckets of the rows and the empty ones
 * filled in around them (in the API) are the same.
 */
export class SqliteMetrics {
  constructor(private readonly db: Database.Database) {
    db.function('metrics_bucket', { deterministic: true }, (t: unknown, unit: unknown, value: unknown) =>
      truncateTime(Number(t), { unit: unit as Granularity['unit'], value: Number(value) }),
    );
  }

  /** Events by their own time; with the destination_id dimension, an event counts once per destination it was routed to. */
  events(query: MetricsQuery): { rows: MetricsRow[]; truncated: boolean } {
    const where = ['e.time_ms >= ?', 'e.time_ms < ?'];
    const params: unknown[] = [query.start, query.end];
    for (const [name, values] of Object.entries(query.filters)) {
      const list = values.map(() => '?').join(', ');
      if (name === 'destination_id')
        where.push(`EXISTS (SELECT 1 FROM deliveries f WHERE f.event_seq = e.seq AND f.destination_id IN (${list}))`);
      else where.push(`${EVENT_COLUMNS[name]} IN (${list})`);
      params.push(...values);
    }
    const join = query.dimensions.includes('destination_id')
      ? 'LEFT JOIN (SELECT DISTINCT event_seq, destination_id FROM deliveries) m ON m.event_seq = e.seq'
      : '';
    return this.grouped(`FROM events e ${join}`, 'e.time_ms', EVENT_COLUMNS, 'count(*) AS count', where, params, query);
  }

  /** Attempts by when they were made; topic is their event's (none for a batch attempt: ''). */
  attempts(query: MetricsQuery): { rows: MetricsRow[]; truncated: boolean } {
    const where = ['a.time >= ?', 'a.time < ?'];
    const params: unknown[] = [query.start, query.end];
    for (const [name, values] of Object.entries(query.filters)) {
      where.push(`${ATTEMPT_COLUMNS[name]} IN (${values.map(() => '?').join(', ')})`);
      params.push(...values);
    }
    const from = `FROM attempts a
      LEFT JOIN events e ON e.tenant_id = a.tenant_id AND e.id = a.event_id
      LEFT JOIN destinations t ON t.tenant_id = a.tenant_id AND t.id = a.destination_id`;
    return this.grouped(from, 'a.time', ATTEMPT_COLUMNS, ATTEMPT_COUNTS, where, params, query);
  }

  private grouped(
    from: string,
    timeColumn: string,
    columns: Columns,
    counts: string,
    where: string[],
    params: unknown[],
    query: MetricsQuery,
  ) {
    const g = query.granularity;
    const bucket = g ? `metrics_bucket(${timeColumn}, '${g.unit}', ${g.value})` : 'NULL';
    const dims = query.dimensions.map((d, i) => `${columns[d]} AS d${i}`);
    const groupBy = ['bucket', ...query.dimensions.map((_, i) => `d${i}`)];
    const sql = `SELECT ${[`${bucket} AS bucket`, ...dims, counts].join(', ')} ${from}
      WHERE ${where.join(' AND ')} GROUP BY ${groupBy.join(', ')} ORDER BY ${groupBy.join(', ')} LIMIT ?`;
    const raw = this.db.prepare(sql).all(...params, query.rowLimit + 1) as Array<Record<string, unknown>>;
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
