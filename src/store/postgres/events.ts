import type { EventFilter, NewEvent, Page, PageQuery, StoredEvent, StringMap } from '../types.js';
import { hasNul, Params, UnstorableTextError, type Sql } from './database.js';
import { anyOf, list, within, type Filtered } from './filters.js';
import { readPage } from './paging.js';

export interface EventRow {
  seq: number;
  tenant_id: string;
  id: string;
  topic: string;
  time: string;
  time_ms: number;
  eligible_for_retry: boolean;
  metadata: string;
  data: string;
  received_at: number;
}

/** What storing an event did: a new row, the row of an earlier publish outside the window taken over, or nothing (a duplicate). */
export type Stored = { seq: number; replaced: boolean } | { duplicateOf: number };

/** The `events` table: published events, one row per (tenant, id). Writes run in the caller's transaction (see PostgresStore). */
export class PgEvents {
  constructor(private readonly sql: Sql) {}

  /**
   * Stores the event as received at `receivedAt`, unless (tenant, id) was received at or after `windowStart`
   * (a duplicate: nothing changes). One statement, so that two nodes publishing the same (tenant, id) at once
   * store one event: the unique key makes the second wait for the first to commit, then see its row. An id
   * received before the window is a new publish of the event, over the same row (as the SQLite store does).
   */
  async put(tx: Sql, event: NewEvent, receivedAt: number, windowStart: number): Promise<Stored> {
    for (const field of ['id', 'topic', 'time', 'data'] as const)
      if (hasNul(event[field])) throw new UnstorableTextError(`the event's ${field}`);
    const { rows } = await tx.query<{ seq: number; inserted: boolean }>(
      `INSERT INTO events (tenant_id, id, topic, time, time_ms, eligible_for_retry, metadata, data, received_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (tenant_id, id) DO UPDATE SET topic = excluded.topic, time = excluded.time, time_ms = excluded.time_ms,
         eligible_for_retry = excluded.eligible_for_retry, metadata = excluded.metadata, data = excluded.data,
         received_at = excluded.received_at
       WHERE events.received_at < $10
       RETURNING seq, (xmax = 0) AS inserted`,
      [
        event.tenant_id,
        event.id,
        event.topic,
        event.time,
        event.time_ms,
        event.eligible_for_retry,
        JSON.stringify(event.metadata),
        event.data,
        receivedAt,
        windowStart,
      ],
    );
    const row = rows[0];
    if (row) return { seq: row.seq, replaced: !row.inserted };
    // no row: the conflict's update did not apply, the stored one is in the window (and now locked by this transaction)
    const existing = await tx.query<{ seq: number }>('SELECT seq FROM events WHERE tenant_id = $1 AND id = $2', [
      event.tenant_id,
      event.id,
    ]);
    return { duplicateOf: existing.rows[0]!.seq };
  }

  /**
   * Locks (tenant, id) keys for the caller's transaction, in the order of their hashes, which every writer of
   * events uses: transactions that write the same events in other orders wait for each other instead of
   * deadlocking on the unique key. (A hash shared by two keys only makes their writers wait for each other.)
   */
  async lockKeys(tx: Sql, schema: string, keys: string[]): Promise<void> {
    await tx.query(
      `SELECT pg_advisory_xact_lock(hashtext($1 || ':event'), k)
       FROM (SELECT DISTINCT hashtext(key) AS k FROM unnest($2::text[]) AS key ORDER BY 1) AS sorted`,
      [schema, keys],
    );
  }

  /** By its tenant and id; without a tenant (an admin), the newest event with the id. */
  async get(tenantId: string | undefined, id: string): Promise<StoredEvent | undefined> {
    if (hasNul(tenantId, id)) return undefined;
    const { rows } =
      tenantId === undefined
        ? await this.sql.query<EventRow>('SELECT * FROM events WHERE id = $1 ORDER BY seq DESC LIMIT 1', [id])
        : await this.sql.query<EventRow>('SELECT * FROM events WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
    return rows[0] && toEvent(rows[0]);
  }

  async bySeq(tx: Sql, seq: number): Promise<StoredEvent | undefined> {
    const { rows } = await tx.query<EventRow>('SELECT * FROM events WHERE seq = $1', [seq]);
    return rows[0] && toEvent(rows[0]);
  }

  list(filter: EventFilter, query: PageQuery): Promise<Page<StoredEvent>> {
    const f: Filtered = { where: [], params: new Params() };
    anyOf(f, 'tenant_id', filter.tenant_id);
    anyOf(f, 'topic', filter.topic);
    anyOf(f, 'id', filter.id);
    within(f, 'time_ms', filter.time);
    const destinations = list(filter.destination_id);
    if (destinations) {
      // a destination id names one destination of each tenant: deliveries of the event's own tenant
      f.where.push(
        `seq IN (SELECT event_seq FROM deliveries d WHERE d.tenant_id = events.tenant_id AND d.destination_id = ANY(${f.params.add(destinations)}))`,
      );
    }
    // by the event's own time, as Outpost orders them (a publish may name a time in the past)
    return readPage(this.sql, 'events', f, query, query.dir ?? 'desc', toEvent, 'time_ms');
  }

  async deleteAllOf(tx: Sql, tenantId: string): Promise<void> {
    await tx.query('DELETE FROM events WHERE tenant_id = $1', [tenantId]);
  }

  /** Forgets events received before `before` (ms) that no delivery refers to any more. */
  async prune(tx: Sql, before: number): Promise<void> {
    await tx.query(
      'DELETE FROM events WHERE received_at < $1 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = events.seq)',
      [before],
    );
  }
}

export function toEvent(row: EventRow): StoredEvent {
  return {
    seq: row.seq,
    tenant_id: row.tenant_id,
    id: row.id,
    topic: row.topic,
    time: row.time,
    time_ms: row.time_ms,
    eligible_for_retry: row.eligible_for_retry,
    metadata: JSON.parse(row.metadata) as StringMap,
    data: row.data,
    received_at: new Date(row.received_at).toISOString(),
  };
}
