import type { EventFilter, NewEvent, Page, PageQuery, StoredEvent, StringMap } from '../types.js';
import { bound, hasNul, Params, UnstorableTextError, type Prepared, type Sql } from './database.js';
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

/** Stores events, see PgEvents.putAll. */
const PUT: Prepared = {
  name: 'events_put',
  text: `INSERT INTO events (tenant_id, id, topic, time, time_ms, eligible_for_retry, metadata, data, received_at)
    SELECT tenant_id, id, topic, time, time_ms, eligible_for_retry, metadata, data, $9
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::boolean[], $7::text[], $8::text[])
      AS e(tenant_id, id, topic, time, time_ms, eligible_for_retry, metadata, data)
    ON CONFLICT (tenant_id, id) DO UPDATE SET topic = excluded.topic, time = excluded.time, time_ms = excluded.time_ms,
      eligible_for_retry = excluded.eligible_for_retry, metadata = excluded.metadata, data = excluded.data,
      received_at = excluded.received_at
    WHERE events.received_at < $10
    RETURNING seq, tenant_id, id, (xmax = 0) AS inserted`,
};

/** Locks events' keys, see PgEvents.lockKeys. */
const LOCK: Prepared = {
  name: 'events_lock',
  text: `SELECT pg_advisory_xact_lock(hashtext($1 || ':event'), k)
    FROM (SELECT DISTINCT hashtext(key) AS k FROM unnest($2::text[]) AS key ORDER BY 1) AS sorted`,
};

/** What storing an event did: a new row, the row of an earlier publish outside the window taken over, or nothing (a duplicate). */
export type Stored = { seq: number; replaced: boolean } | { duplicateOf: number };

/** Throws when PostgreSQL cannot hold the event's text as it is (see UnstorableTextError). */
export function checkStorable(event: NewEvent): void {
  for (const field of ['id', 'topic', 'time', 'data'] as const)
    if (hasNul(event[field])) throw new UnstorableTextError(`the event's ${field}`);
}

/** The `events` table: published events, one row per (tenant, id). Writes run in the caller's transaction (see PostgresStore). */
export class PgEvents {
  constructor(private readonly sql: Sql) {}

  /**
   * Stores the events as received at `receivedAt`, each unless its (tenant, id) was received at or after
   * `windowStart` (a duplicate: nothing changes); no two of them may have the same (tenant, id). One statement
   * for them all, so that two nodes publishing the same (tenant, id) at once store one event: the unique key
   * makes the second wait for the first to commit, then see its row. An id received before the window is a
   * new publish of the event, over the same row (as the SQLite store does). What became of each, in their order.
   * Each has passed checkStorable (the caller checks, so that an event it refuses is refused alone).
   */
  async putAll(tx: Sql, events: NewEvent[], receivedAt: number, windowStart: number): Promise<Stored[]> {
    const { rows } = await tx.query<{ seq: number; tenant_id: string; id: string; inserted: boolean }>(
      bound(PUT, [
        events.map((e) => e.tenant_id),
        events.map((e) => e.id),
        events.map((e) => e.topic),
        events.map((e) => e.time),
        events.map((e) => e.time_ms),
        events.map((e) => e.eligible_for_retry),
        events.map((e) => JSON.stringify(e.metadata)),
        events.map((e) => e.data),
        receivedAt,
        windowStart,
      ]),
    );
    const written = new Map(rows.map((r) => [keyOf(r.tenant_id, r.id), r]));
    // no row: the conflict's update did not apply, the stored one is in the window (and now locked by this transaction)
    const duplicates = events.filter((e) => !written.has(keyOf(e.tenant_id, e.id)));
    const existing = new Map<string, number>();
    if (duplicates.length > 0) {
      const found = await tx.query<{ seq: number; tenant_id: string; id: string }>(
        `SELECT e.seq, e.tenant_id, e.id FROM events e
         JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, id) ON e.tenant_id = k.tenant_id AND e.id = k.id`,
        [duplicates.map((e) => e.tenant_id), duplicates.map((e) => e.id)],
      );
      for (const r of found.rows) existing.set(keyOf(r.tenant_id, r.id), r.seq);
    }
    return events.map((e) => {
      const key = keyOf(e.tenant_id, e.id);
      const row = written.get(key);
      return row ? { seq: row.seq, replaced: !row.inserted } : { duplicateOf: existing.get(key)! };
    });
  }

  /**
   * Locks (tenant, id) keys for the caller's transaction, in the order of their hashes, which every writer of
   * events uses: transactions that write the same events in other orders wait for each other instead of
   * deadlocking on the unique key. (A hash shared by two keys only makes their writers wait for each other.)
   */
  async lockKeys(tx: Sql, schema: string, keys: string[]): Promise<void> {
    await tx.query(bound(LOCK, [schema, keys]));
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

/** (tenant, id) as one string: no stored key holds a NUL. */
function keyOf(tenantId: string, id: string): string {
  return `${tenantId}\u0000${id}`;
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
