import type Database from 'better-sqlite3';
import type { Delivery, DueDelivery } from '../types.js';
import { toEvent, type EventRow } from './events.js';
import type { PendingCounts } from './pending-counts.js';

/** Due deliveries with their events, in one read. */
const DUE_SELECT = `SELECT d.seq AS delivery_seq, d.tenant_id AS delivery_tenant_id, d.destination_id, d.status, d.attempts, d.next_attempt_at, d.object_key, d.manual, e.*
  FROM deliveries d JOIN events e ON e.seq = d.event_seq
  WHERE d.status = 'pending' AND d.ready = 1 AND d.next_attempt_at <= ?`;

/** A destination's pending deliveries are ready for the per-event dispatcher while it is enabled and not batched. */
const READY_OF = 'disabled_at IS NULL AND batched = 0';

interface DeliveryRow {
  seq: number;
  event_seq: number;
  tenant_id: string;
  destination_id: string;
  status: Delivery['status'];
  attempts: number;
  next_attempt_at: number;
  object_key: string | null;
  manual: number;
}

interface DueRow extends EventRow {
  delivery_seq: number;
  delivery_tenant_id: string;
  destination_id: string;
  status: Delivery['status'];
  attempts: number;
  next_attempt_at: number;
  object_key: string | null;
  manual: number;
}

/**
 * The `deliveries` table: one row per event and destination it goes to, pending until it succeeds or fails
 * for good. Every change to how many are pending is made here, beside the SQL that makes it, and counted in
 * PendingCounts in the same write. Writes run inside the caller's transaction (see SqliteStore).
 */
export class SqliteDeliveries {
  /** Statements of due() by the number of destinations they leave out. */
  private readonly dueStatements = new Map<number, Database.Statement>();
  private readonly q;

  constructor(
    private readonly db: Database.Database,
    private readonly pending: PendingCounts,
  ) {
    this.q = {
      // seq above every seq ever used (see the deliveries_seq_floor trigger)
      insert:
        db.prepare(`INSERT INTO deliveries (seq, event_seq, tenant_id, destination_id, status, next_attempt_at, ready)
        SELECT max(coalesce((SELECT max(seq) FROM deliveries), 0),
                   coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'delivery_seq_floor'), 0)) + 1,
          ?, tenant_id, id, 'pending', ?, (${READY_OF}) FROM destinations WHERE tenant_id = ? AND id = ?`),
      destinationsOf: db
        .prepare('SELECT DISTINCT destination_id FROM deliveries WHERE event_seq = ? ORDER BY seq')
        .pluck(),
      pendingFor: db
        .prepare(
          "SELECT seq FROM deliveries WHERE event_seq = ? AND destination_id = ? AND status = 'pending' AND batch IS NULL",
        )
        .pluck(),
      ofEvent: db.prepare('SELECT * FROM deliveries WHERE event_seq = ? ORDER BY seq'),
      latest: db.prepare(
        'SELECT * FROM deliveries WHERE event_seq = ? AND destination_id = ? ORDER BY seq DESC LIMIT 1',
      ),
      setReady:
        db.prepare(`UPDATE deliveries SET ready = (SELECT ${READY_OF} FROM destinations WHERE tenant_id = @tenant_id AND id = @id)
        WHERE tenant_id = @tenant_id AND destination_id = @id AND status = 'pending'`),
      countPending: db.prepare(
        "SELECT tenant_id, count(*) AS n FROM deliveries WHERE status = 'pending' GROUP BY tenant_id",
      ),
      countPendingOf: db.prepare("SELECT count(*) FROM deliveries WHERE tenant_id = ? AND status = 'pending'").pluck(),
      dueOf: db.prepare(
        `${DUE_SELECT} AND d.tenant_id = ? AND d.destination_id = ? ORDER BY d.next_attempt_at LIMIT ?`,
      ),
      nextDue: db.prepare("SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending' AND ready = 1").pluck(),
      setKey: db.prepare('UPDATE deliveries SET object_key = ? WHERE seq = ?'),
      settle: db.prepare(`UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, manual = 0
        WHERE seq = ? AND tenant_id = ? AND destination_id = ? AND status = 'pending'`),
      settleBatch: db.prepare('UPDATE deliveries SET status = ?, attempts = ? WHERE batch = ?'),
      requeue: db.prepare(`UPDATE deliveries SET status = 'pending', next_attempt_at = ?, manual = 1, batch = NULL,
        ready = (SELECT ${READY_OF} FROM destinations t
          WHERE t.tenant_id = deliveries.tenant_id AND t.id = deliveries.destination_id) WHERE seq = ?`),
      dropPendingOf: db.prepare(
        "DELETE FROM deliveries WHERE tenant_id = ? AND destination_id = ? AND status = 'pending'",
      ),
      deleteOf: db.prepare('DELETE FROM deliveries WHERE tenant_id = ?'),
      prune: db.prepare(`DELETE FROM deliveries WHERE status != 'pending'
        AND event_seq IN (SELECT seq FROM events WHERE received_at < ?)`),
    };
  }

  /** A pending delivery of the event to the tenant's destination, due at `now` (none when the destination is gone). */
  add(eventSeq: number, now: number, tenantId: string, destinationId: string): void {
    this.pending.add(tenantId, this.q.insert.run(eventSeq, now, tenantId, destinationId).changes);
  }

  /** The destinations the event was routed to, in the order they were. */
  destinationsOf(eventSeq: number): string[] {
    return this.q.destinationsOf.all(eventSeq) as string[];
  }

  /** The event's pending deliveries to the destination that are in no sealed batch. */
  pendingUnbatched(eventSeq: number, destinationId: string): number[] {
    return this.q.pendingFor.all(eventSeq, destinationId) as number[];
  }

  ofEvent(eventSeq: number): Delivery[] {
    return (this.q.ofEvent.all(eventSeq) as DeliveryRow[]).map(toDelivery);
  }

  /** The event's newest delivery to the destination. */
  latest(eventSeq: number, destinationId: string): Delivery | undefined {
    const row = this.q.latest.get(eventSeq, destinationId) as DeliveryRow | undefined;
    return row && toDelivery(row);
  }

  /** After a change to the destination (enabled, disabled, batched or not): its pending deliveries follow. */
  followDestination(tenantId: string, destinationId: string): void {
    this.q.setReady.run({ tenant_id: tenantId, id: destinationId });
  }

  /** Pending deliveries per tenant, counted in SQL (for PendingCounts.recount). */
  countPending(): Array<{ tenant_id: string; n: number }> {
    return this.q.countPending.all() as Array<{ tenant_id: string; n: number }>;
  }

  due(now: number, limit: number, skipDestinations: string[]): DueDelivery[] {
    // Busy destinations are left out in SQL: a long backlog of one must not hide the due deliveries of others.
    // (destinationKey: tenant ids cannot hold '/')
    const skip =
      skipDestinations.length > 0
        ? ` AND (d.tenant_id || '/' || d.destination_id) NOT IN (${skipDestinations.map(() => '?').join(', ')})`
        : '';
    let statement = this.dueStatements.get(skipDestinations.length);
    if (!statement) {
      statement = this.db.prepare(`${DUE_SELECT}${skip} ORDER BY d.next_attempt_at LIMIT ?`);
      this.dueStatements.set(skipDestinations.length, statement);
    }
    return (statement.all(now, ...skipDestinations, limit) as DueRow[]).map(toDue);
  }

  dueOf(tenantId: string, destinationId: string, now: number, limit: number): DueDelivery[] {
    return (this.q.dueOf.all(now, tenantId, destinationId, limit) as DueRow[]).map(toDue);
  }

  nextDueAt(): number | undefined {
    return (this.q.nextDue.get() as number | null) ?? undefined;
  }

  setObjectKey(deliverySeq: number, key: string): void {
    this.q.setKey.run(key, deliverySeq);
  }

  /**
   * The delivery's state after an attempt, if it is still the tenant's destination's and pending (else false:
   * it was deleted meanwhile, and its seq may since name a delivery of another destination).
   */
  settle(
    delivery: Pick<Delivery, 'seq' | 'status' | 'attempts' | 'next_attempt_at'>,
    tenantId: string,
    destinationId: string,
  ): boolean {
    const changed = this.q.settle.run(
      delivery.status,
      delivery.attempts,
      delivery.next_attempt_at,
      delivery.seq,
      tenantId,
      destinationId,
    ).changes;
    if (changed === 0) return false;
    if (delivery.status !== 'pending') this.pending.add(tenantId, -1);
    return true;
  }

  /** The deliveries of a batch take the batch's final status (success, or failed for good). */
  settleBatch(batchKey: string, status: 'success' | 'failed', attempts: number, tenantId: string): void {
    this.pending.add(tenantId, -this.q.settleBatch.run(status, attempts, batchKey).changes);
  }

  /** Pending again, as a manual retry: one attempt, out of any batch it was in. */
  requeue(delivery: Pick<Delivery, 'seq' | 'status'>, tenantId: string): void {
    if (delivery.status !== 'pending') this.pending.add(tenantId, 1);
    this.q.requeue.run(Date.now(), delivery.seq);
  }

  /** What a deleted destination had pending goes with it; its finished deliveries stay until pruned. */
  dropPendingOf(tenantId: string, destinationId: string): void {
    this.pending.add(tenantId, -this.q.dropPendingOf.run(tenantId, destinationId).changes);
  }

  /** Every delivery of a deleted tenant. */
  deleteAllOf(tenantId: string): void {
    // counted inside this transaction: publishes queued before it in the same group commit are among them
    this.pending.add(tenantId, -(this.q.countPendingOf.get(tenantId) as number));
    this.q.deleteOf.run(tenantId);
  }

  /** Forgets finished deliveries of events received before `before` (ms); the caller counts the pending again. */
  prune(before: number): void {
    this.q.prune.run(before);
  }
}

function toDue(row: DueRow): DueDelivery {
  return {
    delivery: toDelivery({ ...row, seq: row.delivery_seq, event_seq: row.seq, tenant_id: row.delivery_tenant_id }),
    event: toEvent(row),
  };
}

function toDelivery(row: DeliveryRow): Delivery {
  return {
    seq: row.seq,
    event_seq: row.event_seq,
    tenant_id: row.tenant_id,
    destination_id: row.destination_id,
    status: row.status,
    attempts: row.attempts,
    next_attempt_at: row.next_attempt_at,
    object_key: row.object_key,
    manual: row.manual === 1,
  };
}
