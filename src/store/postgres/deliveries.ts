import type { Delivery, DueDelivery } from '../types.js';
import { bound, DB_NOW_MS, type Prepared, type Sql } from './database.js';
import { toEvent, type EventRow } from './events.js';
import { addPending, type PendingDelta } from './pending-counts.js';

/** A destination's pending deliveries are ready for the per-event dispatcher while it is enabled and not batched. */
const READY_OF = 'disabled_at IS NULL AND NOT batched';

/**
 * A delivery this node may claim: nobody's, this node's own (returned again, as the SQLite store returns
 * deliveries in flight, and its lease renewed), or one whose lease is over (its node died or stalled).
 */
const CLAIMABLE = `(d.claimed_by IS NULL OR d.claimed_by = $2 OR d.lease_until <= ${DB_NOW_MS})`;

/** New deliveries of published events, see PgDeliveries.addAll. */
const ADD: Prepared = {
  name: 'deliveries_add',
  text: `INSERT INTO deliveries (event_seq, tenant_id, destination_id, status, next_attempt_at, ready)
    SELECT named.event_seq, t.tenant_id, t.id, 'pending', $1, (t.disabled_at IS NULL AND NOT t.batched)
    FROM unnest($2::bigint[], $3::text[], $4::text[]) WITH ORDINALITY AS named(event_seq, tenant_id, id, n)
    JOIN destinations t ON t.tenant_id = named.tenant_id AND t.id = named.id
    WHERE NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.event_seq = named.event_seq AND p.destination_id = named.id
                        AND p.status = 'pending' AND p.claimed_by IS NULL AND p.batch IS NULL)
    ORDER BY named.n
    RETURNING event_seq`,
};

/**
 * The live claims (on any node) of the destination of the row `of`, as `SELECT o.seq FROM deliveries o ...`
 * read through deliveries_claimed: its claimed deliveries alone, never its backlog.
 */
function liveClaimsOf(of: string): string {
  return `SELECT o.seq FROM deliveries o
    WHERE o.tenant_id = ${of}.tenant_id AND o.destination_id = ${of}.destination_id AND o.status = 'pending'
      AND o.claimed_by IS NOT NULL AND o.lease_until > ${DB_NOW_MS}`;
}

interface DeliveryRow {
  seq: number;
  event_seq: number;
  tenant_id: string;
  destination_id: string;
  status: Delivery['status'];
  attempts: number;
  next_attempt_at: number;
  object_key: string | null;
  manual: boolean;
}

interface DueRow extends EventRow {
  delivery_seq: number;
  delivery_tenant_id: string;
  destination_id: string;
  status: Delivery['status'];
  attempts: number;
  next_attempt_at: number;
  object_key: string | null;
  manual: boolean;
}

/**
 * The `deliveries` table: one row per event and destination it goes to, pending until it succeeds or fails
 * for good. Every change to how many are pending is made here, beside the SQL that makes it, and counted in
 * the transaction's PendingDelta. Writes run in the caller's transaction (see PostgresStore).
 *
 * Several nodes deliver from the one table: what `due`/`dueOf` return is claimed for this node (`claimed_by`,
 * `lease_until`) with SELECT ... FOR UPDATE SKIP LOCKED, so two nodes never get the same delivery while its
 * lease runs; `settle` ends the claim. A node that dies leaves its claims to expire, and another node takes
 * them; their object key, fixed before the first attempt, stays, so the takeover writes the same object.
 */
export class PgDeliveries {
  constructor(
    private readonly sql: Sql,
    private readonly nodeId: string,
    private readonly leaseMs: number,
  ) {}

  /**
   * For each event, a pending delivery to each of its tenant's destinations named, due at `now`, in the order
   * named (none to a destination that is gone, nor to one the event already has a pending delivery to that
   * has not started: the event published again outside the idempotency window). A pending delivery that a node
   * has claimed, or that is in a sealed batch, may already carry the event as it was: the new publish gets a
   * delivery of its own, or what it acknowledged might never be delivered. One statement for all the events
   * (each named once); how many deliveries each got, by event seq.
   */
  async addAll(
    tx: Sql,
    now: number,
    events: Array<{ eventSeq: number; tenantId: string; destinationIds: string[] }>,
  ): Promise<Map<number, number>> {
    const added = new Map<number, number>();
    const named = events.flatMap((e) => e.destinationIds.map((id) => ({ e, id })));
    if (named.length === 0) return added;
    const { rows } = await tx.query<{ event_seq: number }>(
      bound(ADD, [now, named.map((n) => n.e.eventSeq), named.map((n) => n.e.tenantId), named.map((n) => n.id)]),
    );
    for (const { event_seq: seq } of rows) added.set(seq, (added.get(seq) ?? 0) + 1);
    return added;
  }

  /** The destinations each event was routed to, in the order they were, by event seq. */
  async destinationsOfAll(tx: Sql, eventSeqs: number[]): Promise<Map<number, string[]>> {
    const routed = new Map<number, string[]>(eventSeqs.map((seq) => [seq, []]));
    if (eventSeqs.length === 0) return routed;
    const { rows } = await tx.query<{ event_seq: number; destination_id: string }>(
      `SELECT event_seq, destination_id FROM deliveries WHERE event_seq = ANY($1::bigint[])
       GROUP BY event_seq, destination_id ORDER BY event_seq, min(seq)`,
      [eventSeqs],
    );
    for (const r of rows) routed.get(r.event_seq)!.push(r.destination_id);
    return routed;
  }

  async ofEvent(eventSeq: number): Promise<Delivery[]> {
    const { rows } = await this.sql.query<DeliveryRow>('SELECT * FROM deliveries WHERE event_seq = $1 ORDER BY seq', [
      eventSeq,
    ]);
    return rows.map(toDelivery);
  }

  /** The event's newest delivery to the destination, locked for the caller's transaction. */
  async latest(tx: Sql, eventSeq: number, destinationId: string): Promise<Delivery | undefined> {
    const { rows } = await tx.query<DeliveryRow>(
      'SELECT * FROM deliveries WHERE event_seq = $1 AND destination_id = $2 ORDER BY seq DESC LIMIT 1 FOR UPDATE',
      [eventSeq, destinationId],
    );
    return rows[0] && toDelivery(rows[0]);
  }

  /** After a change to the destination (enabled, disabled, batched or not): its pending deliveries follow. */
  async followDestination(tx: Sql, tenantId: string, destinationId: string): Promise<void> {
    await tx.query(
      `UPDATE deliveries SET ready = (SELECT ${READY_OF} FROM destinations WHERE tenant_id = $1 AND id = $2)
       WHERE tenant_id = $1 AND destination_id = $2 AND status = 'pending'`,
      [tenantId, destinationId],
    );
  }

  /**
   * Claims and returns due deliveries of enabled per-event destinations, soonest first, leaving out the busy
   * destinations (destinationKey) and what other nodes hold, at most `perDestination` of a destination's
   * claimed at once over all nodes (see claim).
   *
   * The destinations it takes from are those of the soonest `limit` due deliveries, leaving out besides the
   * destinations whose limit is held already (their claims counted through deliveries_claimed): else, while
   * other nodes hold a destination's limit (it is not busy here), its backlog would fill the pick, and no
   * other destination would be claimed until that backlog is through. What this node holds of one left out
   * comes back to it all the same (a node restarted: its attempts were lost). Left out, busy or full, a
   * destination's due deliveries are read past as the pick scans in time order.
   */
  async due(
    tx: Sql,
    now: number,
    limit: number,
    skipDestinations: string[],
    perDestination: number,
  ): Promise<DueDelivery[]> {
    const { rows } = await tx.query<{ tenant_id: string; destination_id: string }>(
      `WITH held_in_full AS (
         -- the destinations whose limit is held, read from the claims alone (deliveries_claimed)
         SELECT o.tenant_id, o.destination_id, bool_or(o.claimed_by = $2) AS mine FROM deliveries o
         WHERE o.status = 'pending' AND o.claimed_by IS NOT NULL AND o.lease_until > ${DB_NOW_MS}
         GROUP BY o.tenant_id, o.destination_id HAVING count(*) >= $5
       )
       SELECT tenant_id, destination_id FROM (
         SELECT d.tenant_id, d.destination_id FROM deliveries d
         WHERE d.status = 'pending' AND d.ready AND d.next_attempt_at <= $1 AND ${CLAIMABLE}
           AND (d.tenant_id || '/' || d.destination_id) <> ALL($4::text[])
           AND NOT EXISTS (SELECT 1 FROM held_in_full f WHERE f.tenant_id = d.tenant_id AND f.destination_id = d.destination_id)
         ORDER BY d.next_attempt_at LIMIT $3
       ) soonest
       UNION
       -- what this node holds of a full one comes back to it (a node restarted: its attempts were lost)
       SELECT tenant_id, destination_id FROM held_in_full WHERE mine AND (tenant_id || '/' || destination_id) <> ALL($4::text[])`,
      [now, this.nodeId, limit, skipDestinations, perDestination],
    );
    return this.claim(tx, now, limit, perDestination, rows);
  }

  /** Claims and returns due deliveries of one destination, soonest first (at most `perDestination`, see claim). */
  async dueOf(
    tx: Sql,
    tenantId: string,
    destinationId: string,
    now: number,
    limit: number,
    perDestination: number,
  ): Promise<DueDelivery[]> {
    return this.claim(tx, now, limit, perDestination, [{ tenant_id: tenantId, destination_id: destinationId }]);
  }

  /**
   * Claims due deliveries of the destinations named, in the caller's transaction, and returns them with their
   * events: this node's own claims again (their lease renewed), and of the others at most as many as keep the
   * destination's live claims over all nodes within `perDestination` (api.delivery_concurrency holds for the
   * cluster, not per node).
   *
   * Claims of a destination are made one at a time over all nodes (a transaction-scoped advisory lock per
   * destination, taken in one order by everyone, so two claims never deadlock): a claim counts the others'
   * only once they have committed, and two counting at once would each take the whole limit. Rows another
   * transaction has locked (an attempt being recorded) are skipped, not waited for.
   */
  private async claim(
    tx: Sql,
    now: number,
    limit: number,
    perDestination: number,
    destinations: Array<{ tenant_id: string; destination_id: string }>,
  ): Promise<DueDelivery[]> {
    if (destinations.length === 0) return [];
    const tenants = destinations.map((d) => d.tenant_id);
    const ids = destinations.map((d) => d.destination_id);
    await tx.query(
      `SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':claim'), k)
       FROM (SELECT DISTINCT hashtext(t || '/' || d) AS k FROM unnest($1::text[], $2::text[]) AS x(t, d) ORDER BY k) keys`,
      [tenants, ids],
    );
    // One statement after the lock, so it sees every claim committed before: the rows are locked (others
    // skip them), claimed, and read with their events; the claim holds until the lease ends or the attempt
    // is recorded.
    const { rows } = await tx.query<DueRow>(
      `WITH named AS (
         SELECT tenant_id, destination_id FROM unnest($5::text[], $6::text[]) AS x(tenant_id, destination_id)
       ), free AS (
         SELECT n.tenant_id, n.destination_id, greatest($7::integer - (SELECT count(*) FROM (${liveClaimsOf('n')}) held), 0)
           AS slots
         FROM named n
       ), candidates AS (
         SELECT mine.seq FROM named n CROSS JOIN LATERAL (
           ${liveClaimsOf('n')} AND o.claimed_by = $2 AND o.ready AND o.next_attempt_at <= $1
         ) mine
         UNION ALL
         SELECT unclaimed.seq FROM free f CROSS JOIN LATERAL (
           SELECT d.seq FROM deliveries d
           WHERE d.tenant_id = f.tenant_id AND d.destination_id = f.destination_id AND d.status = 'pending'
             AND d.ready AND d.next_attempt_at <= $1 AND (d.claimed_by IS NULL OR d.lease_until <= ${DB_NOW_MS})
           ORDER BY d.next_attempt_at LIMIT f.slots
         ) unclaimed
       ), picked AS (
         -- by primary key (an array, not a join the planner may make a scan of the whole table)
         SELECT d.seq FROM deliveries d WHERE d.seq = ANY(ARRAY(SELECT seq FROM candidates))
           -- again at this level: a row changed since this statement's snapshot is checked as it is now
           AND d.status = 'pending' AND d.ready AND ${CLAIMABLE}
         ORDER BY d.next_attempt_at LIMIT $4
         FOR UPDATE OF d SKIP LOCKED
       ), claimed AS (
         UPDATE deliveries d SET claimed_by = $2, lease_until = ${DB_NOW_MS} + $3
         FROM picked WHERE d.seq = picked.seq
         RETURNING d.seq, d.event_seq, d.tenant_id, d.destination_id, d.status, d.attempts, d.next_attempt_at,
           d.object_key, d.manual
       )
       SELECT c.seq AS delivery_seq, c.tenant_id AS delivery_tenant_id, c.destination_id, c.status, c.attempts,
         c.next_attempt_at, c.object_key, c.manual, e.*
       FROM claimed c JOIN events e ON e.seq = c.event_seq
       ORDER BY c.next_attempt_at, c.seq`,
      [now, this.nodeId, this.leaseMs, limit, tenants, ids, perDestination],
    );
    return rows.map(toDue);
  }

  /**
   * When the next pending delivery of an enabled per-event destination is due, if any; one another node holds
   * counts from the end of its lease (leases are on PostgreSQL's clock: close enough to wake up by).
   */
  async nextDueAt(): Promise<number | undefined> {
    const { rows } = await this.sql.query<{ at: number | null }>(
      `SELECT min(CASE WHEN claimed_by IS NOT NULL AND claimed_by <> $1 AND lease_until > ${DB_NOW_MS}
         THEN greatest(next_attempt_at, lease_until) ELSE next_attempt_at END) AS at
       FROM deliveries WHERE status = 'pending' AND ready`,
      [this.nodeId],
    );
    return rows[0]?.at ?? undefined;
  }

  /**
   * Ends this node's claims on deliveries it will not attempt now, so that any node may claim them at once.
   * Rows another transaction has locked (an attempt being recorded, a claim on its way) are skipped, not waited
   * for: locking in no particular order beside those would deadlock, and a claim left holds only to its lease.
   */
  async release(seqs: number[]): Promise<void> {
    if (seqs.length === 0) return;
    await this.sql.query(
      `WITH mine AS (
         SELECT seq FROM deliveries WHERE seq = ANY($1::bigint[]) AND claimed_by = $2 AND status = 'pending'
         ORDER BY seq FOR UPDATE SKIP LOCKED
       )
       UPDATE deliveries d SET claimed_by = NULL, lease_until = NULL FROM mine WHERE d.seq = mine.seq`,
      [seqs, this.nodeId],
    );
  }

  async setObjectKey(deliverySeq: number, key: string): Promise<void> {
    await this.sql.query('UPDATE deliveries SET object_key = $2 WHERE seq = $1', [deliverySeq, key]);
  }

  /**
   * The delivery's state after an attempt, if it is still the tenant's destination's and pending (else false:
   * it was deleted, or settled by another node that took it over meanwhile). Ends this node's claim.
   */
  async settle(
    tx: Sql,
    delta: PendingDelta,
    delivery: Pick<Delivery, 'seq' | 'status' | 'attempts' | 'next_attempt_at'>,
    tenantId: string,
    destinationId: string,
  ): Promise<boolean> {
    const { rowCount } = await tx.query(
      // a claim another node took over (this one's lease ran out during the attempt) stays its: it is attempting
      `UPDATE deliveries SET status = $1, attempts = $2, next_attempt_at = $3, manual = false,
         lease_until = CASE WHEN claimed_by = $7 THEN NULL ELSE lease_until END, claimed_by = nullif(claimed_by, $7)
       WHERE seq = $4 AND tenant_id = $5 AND destination_id = $6 AND status = 'pending'`,
      [
        delivery.status,
        delivery.attempts,
        delivery.next_attempt_at,
        delivery.seq,
        tenantId,
        destinationId,
        this.nodeId,
      ],
    );
    if (!rowCount) return false;
    if (delivery.status !== 'pending') addPending(delta, tenantId, -1);
    return true;
  }

  /** The deliveries of a batch take the batch's final status (success, or failed for good). */
  async settleBatch(
    tx: Sql,
    delta: PendingDelta,
    batchKey: string,
    status: 'success' | 'failed',
    attempts: number,
    tenantId: string,
  ): Promise<void> {
    const { rowCount } = await tx.query(
      "UPDATE deliveries SET status = $1, attempts = $2 WHERE batch = $3 AND status = 'pending'",
      [status, attempts, batchKey],
    );
    addPending(delta, tenantId, -(rowCount ?? 0));
  }

  /** Pending again, as a manual retry: one attempt, out of any batch it was in, claimed by none. */
  async requeue(
    tx: Sql,
    delta: PendingDelta,
    delivery: Pick<Delivery, 'seq' | 'status'>,
    tenantId: string,
  ): Promise<void> {
    if (delivery.status !== 'pending') addPending(delta, tenantId, 1);
    await tx.query(
      `UPDATE deliveries SET status = 'pending', next_attempt_at = $1, manual = true, batch = NULL,
         claimed_by = NULL, lease_until = NULL,
         ready = coalesce((SELECT ${READY_OF} FROM destinations t
           WHERE t.tenant_id = deliveries.tenant_id AND t.id = deliveries.destination_id), false)
       WHERE seq = $2`,
      [Date.now(), delivery.seq],
    );
  }

  /** What a deleted destination had pending goes with it; its finished deliveries stay until pruned. */
  async dropPendingOf(tx: Sql, delta: PendingDelta, tenantId: string, destinationId: string): Promise<void> {
    const { rowCount } = await tx.query(
      "DELETE FROM deliveries WHERE tenant_id = $1 AND destination_id = $2 AND status = 'pending'",
      [tenantId, destinationId],
    );
    addPending(delta, tenantId, -(rowCount ?? 0));
  }

  /** Every delivery of a deleted tenant (its pending counts are dropped by the caller). */
  async deleteAllOf(tx: Sql, tenantId: string): Promise<void> {
    await tx.query('DELETE FROM deliveries WHERE tenant_id = $1', [tenantId]);
  }

  /** Forgets finished deliveries of events received before `before` (ms). */
  async prune(tx: Sql, before: number): Promise<void> {
    await tx.query(
      `DELETE FROM deliveries WHERE status <> 'pending'
       AND event_seq IN (SELECT seq FROM events WHERE received_at < $1)`,
      [before],
    );
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
    manual: row.manual,
  };
}
