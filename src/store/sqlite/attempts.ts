import type Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { readPage, type Filtered } from '../../sqlite/paging.js';
import type { Attempt, AttemptFilter, NewAttempt, Page, PageQuery } from '../types.js';
import { anyOf, list, marks, within } from './filters.js';

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
  manual: number;
  time: number;
  duration_ms: number;
}

/** The `attempts` table: the delivery log, one row per try at a delivery or a batch. Writes run inside the caller's transaction (see SqliteStore). */
export class SqliteAttempts {
  private readonly q;

  constructor(private readonly db: Database.Database) {
    this.q = {
      insert:
        db.prepare(`INSERT INTO attempts (id, tenant_id, event_id, destination_id, status, code, response_data, error, attempt_number, manual, time, duration_ms)
        VALUES (@id, @tenant_id, @event_id, @destination_id, @status, @code, @response_data, @error, @attempt_number, @manual, @time, @duration_ms)`),
      byId: db.prepare('SELECT * FROM attempts WHERE id = ?'),
      madeFor: db.prepare('SELECT 1 FROM attempts WHERE event_id = ? AND tenant_id = ? AND destination_id = ? LIMIT 1'),
      deleteOf: db.prepare('DELETE FROM attempts WHERE tenant_id = ?'),
      pruneByAge: db.prepare('DELETE FROM attempts WHERE time < ?'),
      pruneByCount: db.prepare('DELETE FROM attempts WHERE seq <= (SELECT max(seq) FROM attempts) - ?'),
    };
  }

  /** Logs the attempt, made now, under a new id. */
  insert(attempt: NewAttempt): Attempt {
    const time = Date.now();
    const id = `atm_${randomBytes(10).toString('hex')}`;
    this.q.insert.run({
      ...attempt,
      id,
      response_data: attempt.response_data ? JSON.stringify(attempt.response_data) : null,
      manual: attempt.manual ? 1 : 0,
      time,
    });
    return { ...attempt, id, time: new Date(time).toISOString() };
  }

  /** Whether the event's delivery to the destination was ever attempted on its own (not in a batch). */
  madeFor(eventId: string, tenantId: string, destinationId: string): boolean {
    return this.q.madeFor.get(eventId, tenantId, destinationId) !== undefined;
  }

  /** By id; with a tenant, only that tenant's. */
  get(tenantId: string | undefined, id: string): Attempt | undefined {
    const row = this.q.byId.get(id) as AttemptRow | undefined;
    if (!row || (tenantId !== undefined && row.tenant_id !== tenantId)) return undefined;
    return toAttempt(row);
  }

  list(filter: AttemptFilter, query: PageQuery): Page<Attempt> {
    const f: Filtered = { where: [], params: [] };
    anyOf(f, 'tenant_id', filter.tenant_id);
    anyOf(f, 'event_id', filter.event_id);
    anyOf(f, 'destination_id', filter.destination_id);
    anyOf(f, 'status', filter.status);
    within(f, 'time', filter.time);
    const types = list(filter.destination_type);
    if (types) {
      f.where.push(
        `EXISTS (SELECT 1 FROM destinations t WHERE t.tenant_id = attempts.tenant_id AND t.id = attempts.destination_id AND t.type IN (${marks(types)}))`,
      );
      f.params.push(...types);
    }
    const topics = list(filter.topic);
    if (topics) {
      f.where.push(
        `EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = attempts.tenant_id AND e.id = attempts.event_id AND e.topic IN (${marks(topics)}))`,
      );
      f.params.push(...topics);
    }
    // seq is the order attempts were made in (their time is taken as they are recorded)
    return readPage(this.db, 'attempts', f, query, query.dir ?? 'desc', toAttempt);
  }

  deleteAllOf(tenantId: string): void {
    this.q.deleteOf.run(tenantId);
  }

  /** Forgets attempts made before `before` (ms), and all but the newest `maxCount`. */
  prune(before: number, maxCount: number): void {
    this.q.pruneByAge.run(before);
    this.q.pruneByCount.run(maxCount);
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
    manual: row.manual === 1,
    time: new Date(row.time).toISOString(),
    duration_ms: row.duration_ms,
  };
}
