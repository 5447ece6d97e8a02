import type Database from 'better-sqlite3';
import { readPage, type Filtered } from '../../sqlite/paging.js';
import type { EventFilter, NewEvent, Page, PageQuery, StoredEvent, StringMap } from '../types.js';
import { anyOf, list, marks, within } from './filters.js';

export interface EventRow {
  seq: number;
  tenant_id: string;
  id: string;
  topic: string;
  time: string;
  time_ms: number;
  eligible_for_retry: number;
  metadata: string;
  data: string;
  received_at: number;
}

/** The `events` table: published events, one row per (tenant, id). Writes run inside the caller's transaction (see SqliteStore). */
export class SqliteEvents {
  private readonly q;

  constructor(private readonly db: Database.Database) {
    this.q = {
      byKey: db.prepare('SELECT * FROM events WHERE tenant_id = ? AND id = ?'),
      byId: db.prepare('SELECT * FROM events WHERE id = ? ORDER BY seq DESC LIMIT 1'),
      bySeq: db.prepare('SELECT * FROM events WHERE seq = ?'),
      insert:
        db.prepare(`INSERT INTO events (tenant_id, id, topic, time, time_ms, eligible_for_retry, metadata, data, received_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      replace:
        db.prepare(`UPDATE events SET topic = ?, time = ?, time_ms = ?, eligible_for_retry = ?, metadata = ?, data = ?, received_at = ?
        WHERE seq = ?`),
      deleteOf: db.prepare('DELETE FROM events WHERE tenant_id = ?'),
      prune: db.prepare(`DELETE FROM events WHERE received_at < ?
        AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = events.seq)`),
    };
  }

  /** The stored row of (tenant, id), if any: its seq and when it was received (ms), for the idempotency window. */
  stored(tenantId: string, id: string): Pick<EventRow, 'seq' | 'received_at'> | undefined {
    return this.q.byKey.get(tenantId, id) as EventRow | undefined;
  }

  /**
   * Stores the event as received at `receivedAt`: a new row, or over the row `existingSeq` (the same id
   * published again outside the idempotency window). Its seq.
   */
  put(event: NewEvent, receivedAt: number, existingSeq?: number): number {
    const values = [
      event.topic,
      event.time,
      event.time_ms,
      event.eligible_for_retry ? 1 : 0,
      JSON.stringify(event.metadata),
      event.data,
      receivedAt,
    ] as const;
    if (existingSeq !== undefined) {
      this.q.replace.run(...values, existingSeq);
      return existingSeq;
    }
    return Number(this.q.insert.run(event.tenant_id, event.id, ...values).lastInsertRowid);
  }

  /** By its tenant and id; without a tenant (an admin), the newest event with the id. */
  get(tenantId: string | undefined, id: string): StoredEvent | undefined {
    const row = (tenantId === undefined ? this.q.byId.get(id) : this.q.byKey.get(tenantId, id)) as EventRow | undefined;
    return row && toEvent(row);
  }

  bySeq(seq: number): StoredEvent | undefined {
    const row = this.q.bySeq.get(seq) as EventRow | undefined;
    return row && toEvent(row);
  }

  list(filter: EventFilter, query: PageQuery): Page<StoredEvent> {
    const f: Filtered = { where: [], params: [] };
    anyOf(f, 'tenant_id', filter.tenant_id);
    anyOf(f, 'topic', filter.topic);
    anyOf(f, 'id', filter.id);
    within(f, 'time_ms', filter.time);
    const destinations = list(filter.destination_id);
    if (destinations) {
      // a destination id names one destination of each tenant: deliveries of the event's own tenant
      f.where.push(
        `seq IN (SELECT event_seq FROM deliveries d WHERE d.tenant_id = events.tenant_id AND d.destination_id IN (${marks(destinations)}))`,
      );
      f.params.push(...destinations);
    }
    // by the event's own time, as Outpost orders them (a publish may name a time in the past)
    return readPage(this.db, 'events', f, query, query.dir ?? 'desc', toEvent, 'time_ms');
  }

  deleteAllOf(tenantId: string): void {
    this.q.deleteOf.run(tenantId);
  }

  /** Forgets events received before `before` (ms) that no delivery refers to any more. */
  prune(before: number): void {
    this.q.prune.run(before);
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
    eligible_for_retry: row.eligible_for_retry === 1,
    metadata: JSON.parse(row.metadata) as StringMap,
    data: row.data,
    received_at: new Date(row.received_at).toISOString(),
  };
}
