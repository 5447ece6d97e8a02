import { randomBytes } from 'node:crypto';
import type { Attempt, AttemptFilter, NewAttempt, Page, PageQuery } from '../types.js';
import { hasNul, Params, type Sql } from './database.js';
import { anyOf, list, within, type Filtered } from './filters.js';
import { readPage } from './paging.js';

interface AttemptRow {
  seq: number;
  id: string;
  tenant_id: string;
  event_id: string | null;
  destination_id: string;
  status: Attempt['status'];
  code: string | null;
  response_data: string | null;
  error: string | null;
  attempt_number: number;
  manual: boolean;
  time: number;
  duration_ms: number;
  node_id: string | null;
}

/**
 * The `attempts` table: the delivery log, one row per try at a delivery or a batch, with the node that made
 * it. Writes run in the caller's transaction (see PostgresStore).
 */
export class PgAttempts {
  constructor(
    private readonly sql: Sql,
    private readonly nodeId: string,
  ) {}

  /** Logs the attempt, made now by this node, under a new id. */
  /** `time`: when the attempt was made, which a write waiting for its turn must not move later. */
  async insert(tx: Sql, attempt: NewAttempt, time = Date.now()): Promise<Attempt> {
    const id = `atm_${randomBytes(10).toString('hex')}`;
    await tx.query(
      `INSERT INTO attempts (id, tenant_id, event_id, destination_id, status, code, response_data, error, attempt_number,
         manual, time, duration_ms, node_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
      [
        id,
        attempt.tenant_id,
        attempt.event_id,
        attempt.destination_id,
        attempt.status,
        attempt.code,
        attempt.response_data ? JSON.stringify(attempt.response_data) : null,
        attempt.error,
        attempt.attempt_number,
        attempt.manual,
        time,
        attempt.duration_ms,
        this.nodeId,
      ],
    );
    return { ...attempt, id, time: new Date(time).toISOString(), node_id: this.nodeId };
  }

  /** Whether the event's delivery to the destination was ever attempted on its own (not in a batch). */
  async madeFor(tx: Sql, eventId: string, tenantId: string, destinationId: string): Promise<boolean> {
    const { rows } = await tx.query(
      'SELECT 1 FROM attempts WHERE event_id = $1 AND tenant_id = $2 AND destination_id = $3 LIMIT 1',
      [eventId, tenantId, destinationId],
    );
    return rows.length > 0;
  }

  /** By id; with a tenant, only that tenant's. */
  async get(tenantId: string | undefined, id: string): Promise<Attempt | undefined> {
    if (hasNul(id)) return undefined;
    const { rows } = await this.sql.query<AttemptRow>('SELECT * FROM attempts WHERE id = $1', [id]);
    const row = rows[0];
    if (!row || (tenantId !== undefined && row.tenant_id !== tenantId)) return undefined;
    return toAttempt(row);
  }

  list(filter: AttemptFilter, query: PageQuery): Promise<Page<Attempt>> {
    const f: Filtered = { where: [], params: new Params() };
    anyOf(f, 'tenant_id', filter.tenant_id);
    anyOf(f, 'event_id', filter.event_id);
    anyOf(f, 'destination_id', filter.destination_id);
    anyOf(f, 'status', filter.status);
    within(f, 'time', filter.time);
    const types = list(filter.destination_type);
    if (types) {
      f.where.push(
        `EXISTS (SELECT 1 FROM destinations t WHERE t.tenant_id = attempts.tenant_id AND t.id = attempts.destination_id AND t.type = ANY(${f.params.add(types)}))`,
      );
    }
    const topics = list(filter.topic);
    if (topics) {
      f.where.push(
        `EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = attempts.tenant_id AND e.id = attempts.event_id AND e.topic = ANY(${f.params.add(topics)}))`,
      );
    }
    // seq is the order attempts were recorded in, over all nodes
    return readPage(this.sql, 'attempts', f, query, query.dir ?? 'desc', toAttempt);
  }

  async deleteAllOf(tx: Sql, tenantId: string): Promise<void> {
    await tx.query('DELETE FROM attempts WHERE tenant_id = $1', [tenantId]);
  }

  /** Forgets attempts made before `before` (ms), and all but the newest `maxCount`. */
  async prune(tx: Sql, before: number, maxCount: number): Promise<void> {
    await tx.query('DELETE FROM attempts WHERE time < $1', [before]);
    // by position, not by seq arithmetic: seqs of rolled-back inserts are gaps
    await tx.query('DELETE FROM attempts WHERE seq <= (SELECT seq FROM attempts ORDER BY seq DESC OFFSET $1 LIMIT 1)', [
      maxCount,
    ]);
  }
}

function toAttempt(row: AttemptRow): Attempt {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    event_id: row.event_id,
    destination_id: row.destination_id,
    status: row.status,
    code: row.code,
    response_data: row.response_data ? (JSON.parse(row.response_data) as Record<string, unknown>) : null,
    error: row.error,
    attempt_number: row.attempt_number,
    manual: row.manual,
    time: new Date(row.time).toISOString(),
    duration_ms: row.duration_ms,
    ...(row.node_id !== null ? { node_id: row.node_id } : {}),
  };
}
