import type Database from 'better-sqlite3';
import type { EventBatch, StoredEvent, UnbatchedDelivery } from '../types.js';
import { toEvent, type EventRow } from './events.js';

/** The meta key counting the batches sealed with a retry number in their key (see EventBatcher). */
const RETRIED_BATCHES = 'retried_batches';

/**
 * The `event_batches` table of batched destinations and which deliveries are in each batch (`deliveries.batch`).
 * A batch is sealed, with its deliveries, before its upload; the status its deliveries take when it ends is
 * SqliteDeliveries.settleBatch's (it changes the pending counts). Writes run inside the caller's transaction
 * (see SqliteStore).
 */
export class SqliteBatches {
  private readonly q;

  constructor(db: Database.Database) {
    this.q = {
      unbatched:
        db.prepare(`SELECT d.seq, d.manual AS retried, e.topic, e.time_ms, e.received_at AS received_at_ms, length(CAST(e.data AS BLOB)) AS bytes
        FROM deliveries d JOIN events e ON e.seq = d.event_seq
        WHERE d.tenant_id = ? AND d.destination_id = ? AND d.status = 'pending' AND d.batch IS NULL AND (d.seq > ? OR d.manual = 1) ORDER BY d.seq LIMIT ?`),
      insert:
        db.prepare(`INSERT INTO event_batches (key, tenant_id, destination_id, first_seq, last_seq, count, status, next_attempt_at)
        VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)`),
      assign: db.prepare('UPDATE deliveries SET batch = ? WHERE seq = ?'),
      exists: db.prepare('SELECT 1 FROM event_batches WHERE key = ?'),
      retried: db.prepare(`SELECT CAST(value AS INTEGER) FROM meta WHERE key = '${RETRIED_BATCHES}'`).pluck(),
      countRetried: db.prepare(`INSERT INTO meta (key, value) VALUES ('${RETRIED_BATCHES}', '1')
        ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1`),
      due: db.prepare(`SELECT b.* FROM event_batches b JOIN destinations t ON t.tenant_id = b.tenant_id AND t.id = b.destination_id
        WHERE b.status = 'pending' AND b.next_attempt_at <= ? AND t.disabled_at IS NULL ORDER BY b.next_attempt_at`),
      events: db.prepare(
        'SELECT e.* FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.batch = ? ORDER BY d.seq',
      ),
      set: db.prepare('UPDATE event_batches SET status = ?, attempts = ?, next_attempt_at = ? WHERE key = ?'),
      dropOf: db.prepare('DELETE FROM event_batches WHERE tenant_id = ? AND destination_id = ?'),
      deleteOf: db.prepare('DELETE FROM event_batches WHERE tenant_id = ?'),
      prune: db.prepare(`DELETE FROM event_batches WHERE status != 'pending'
        AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.batch = event_batches.key)`),
    };
  }

  unbatched(tenantId: string, destinationId: string, afterSeq: number, limit: number): UnbatchedDelivery[] {
    return this.q.unbatched.all(tenantId, destinationId, afterSeq, limit) as UnbatchedDelivery[];
  }

  exists(key: string): boolean {
    return this.q.exists.get(key) !== undefined;
  }

  nextRetried(): number {
    return ((this.q.retried.get() as number | undefined) ?? 0) + 1;
  }

  /** Records the batch and assigns its deliveries to it; `retried`: it took nextRetried()'s number. */
  seal(batch: EventBatch, deliverySeqs: number[], retried: boolean): void {
    // the number is used up with the seal that took it: the next retried batch gets the next one
    if (retried) this.q.countRetried.run();
    this.q.insert.run(
      batch.key,
      batch.tenant_id,
      batch.destination_id,
      batch.first_seq,
      batch.last_seq,
      batch.count,
      batch.next_attempt_at,
    );
    for (const seq of deliverySeqs) this.q.assign.run(batch.key, seq);
  }

  due(now: number): EventBatch[] {
    return this.q.due.all(now) as EventBatch[];
  }

  events(batch: EventBatch): StoredEvent[] {
    return (this.q.events.all(batch.key) as EventRow[]).map(toEvent);
  }

  /** The batch's state after an attempt; false when it is gone (its destination or tenant deleted meanwhile). */
  record(
    batch: Pick<EventBatch, 'key' | 'attempts' | 'next_attempt_at'>,
    status: 'pending' | 'success' | 'failed',
  ): boolean {
    return this.q.set.run(status, batch.attempts, batch.next_attempt_at, batch.key).changes > 0;
  }

  /** The batches of a deleted destination. */
  dropOf(tenantId: string, destinationId: string): void {
    this.q.dropOf.run(tenantId, destinationId);
  }

  /** The batches of a deleted tenant. */
  deleteAllOf(tenantId: string): void {
    this.q.deleteOf.run(tenantId);
  }

  /** Forgets finished batches no delivery is in any more. */
  prune(): void {
    this.q.prune.run();
  }
}
