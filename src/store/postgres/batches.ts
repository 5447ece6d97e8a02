import type { EventBatch, StoredEvent, UnbatchedDelivery } from '../types.js';
import { DB_NOW_MS, type Sql } from './database.js';
import { toEvent, type EventRow } from './events.js';

/**
 * The `event_batches` table of batched destinations and which deliveries are in each batch (`deliveries.batch`).
 * A batch is sealed, with its deliveries, before its upload; the status its deliveries take when it ends is
 * PgDeliveries.settleBatch's. Writes run in the caller's transaction (see PostgresStore).
 *
 * Every node batches every batched destination from the same deliveries, so two may seal groups of the same
 * deliveries at once: a seal takes the destination's advisory lock and records its batch only if none of its
 * deliveries is in a batch yet (else it records nothing, and the node reads the rest again later), so a
 * delivery is never in two batches. Sealed batches are claimed by the node that uploads them, as deliveries are.
 */
export class PgBatches {
  constructor(
    private readonly sql: Sql,
    private readonly schema: string,
    private readonly nodeId: string,
    private readonly leaseMs: number,
  ) {}

  async unbatched(
    tenantId: string,
    destinationId: string,
    afterSeq: number,
    limit: number,
  ): Promise<UnbatchedDelivery[]> {
    const { rows } = await this.sql.query<UnbatchedDelivery>(
      `SELECT d.seq, d.manual::integer AS retried, e.topic, e.time_ms, e.received_at AS received_at_ms,
         octet_length(e.data) AS bytes
       FROM deliveries d JOIN events e ON e.seq = d.event_seq
       WHERE d.tenant_id = $1 AND d.destination_id = $2 AND d.status = 'pending' AND d.batch IS NULL AND (d.seq > $3 OR d.manual)
       ORDER BY d.seq LIMIT $4`,
      [tenantId, destinationId, afterSeq, limit],
    );
    return rows;
  }

  async exists(key: string): Promise<boolean> {
    const { rows } = await this.sql.query('SELECT 1 FROM event_batches WHERE key = $1', [key]);
    return rows.length > 0;
  }

  /** A number no other call on any node gets (a sequence: one not used by a seal is skipped, never reused). */
  async nextRetried(): Promise<number> {
    const { rows } = await this.sql.query<{ n: number }>("SELECT nextval('retried_batches') AS n");
    return rows[0]!.n;
  }

  /**
   * Records the batch and assigns its deliveries to it, if every one of them is still pending, of its
   * destination and in no batch, and the key is not taken; else nothing, and false.
   */
  async seal(tx: Sql, batch: EventBatch, deliverySeqs: number[]): Promise<boolean> {
    if (deliverySeqs.length === 0) return false;
    // seals of one destination one at a time, on every node; another destination's do not wait
    await tx.query("SELECT pg_advisory_xact_lock(hashtext($1 || ':seal'), hashtext($2 || '/' || $3))", [
      this.schema,
      batch.tenant_id,
      batch.destination_id,
    ]);
    // locked: nothing else changes them before they are assigned
    const free = await tx.query(
      `SELECT seq FROM deliveries WHERE seq = ANY($1::bigint[]) AND tenant_id = $2 AND destination_id = $3
         AND status = 'pending' AND batch IS NULL ORDER BY seq FOR UPDATE`,
      [deliverySeqs, batch.tenant_id, batch.destination_id],
    );
    if (free.rows.length !== new Set(deliverySeqs).size) return false;
    const inserted = await tx.query(
      `INSERT INTO event_batches (key, tenant_id, destination_id, first_seq, last_seq, count, status, next_attempt_at)
       VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7) ON CONFLICT (key) DO NOTHING`,
      [
        batch.key,
        batch.tenant_id,
        batch.destination_id,
        batch.first_seq,
        batch.last_seq,
        batch.count,
        batch.next_attempt_at,
      ],
    );
    if (!inserted.rowCount) return false;
    await tx.query('UPDATE deliveries SET batch = $1 WHERE seq = ANY($2::bigint[])', [batch.key, deliverySeqs]);
    return true;
  }

  /** Claims and returns the due batches of enabled destinations that no other node holds (see PgDeliveries.claim). */
  async due(now: number): Promise<EventBatch[]> {
    const { rows } = await this.sql.query<EventBatch>(
      `WITH picked AS (
         SELECT b.key FROM event_batches b
         JOIN destinations t ON t.tenant_id = b.tenant_id AND t.id = b.destination_id
         WHERE b.status = 'pending' AND b.next_attempt_at <= $1 AND t.disabled_at IS NULL
           AND (b.claimed_by IS NULL OR b.claimed_by = $2 OR b.lease_until <= ${DB_NOW_MS})
         ORDER BY b.next_attempt_at
         FOR UPDATE OF b SKIP LOCKED
       )
       UPDATE event_batches b SET claimed_by = $2, lease_until = ${DB_NOW_MS} + $3
       FROM picked WHERE b.key = picked.key
       RETURNING b.key, b.tenant_id, b.destination_id, b.first_seq, b.last_seq, b.count, b.attempts, b.next_attempt_at`,
      [now, this.nodeId, this.leaseMs],
    );
    return rows.sort((a, b) => a.next_attempt_at - b.next_attempt_at);
  }

  /** Ends this node's claims on batches it will not upload now (rows locked elsewhere skipped, as PgDeliveries.release). */
  async release(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.sql.query(
      `WITH mine AS (
         SELECT key FROM event_batches WHERE key = ANY($1::text[]) AND claimed_by = $2 AND status = 'pending'
         ORDER BY key FOR UPDATE SKIP LOCKED
       )
       UPDATE event_batches b SET claimed_by = NULL, lease_until = NULL FROM mine WHERE b.key = mine.key`,
      [keys, this.nodeId],
    );
  }

  async events(batch: EventBatch): Promise<StoredEvent[]> {
    const { rows } = await this.sql.query<EventRow>(
      'SELECT e.* FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.batch = $1 ORDER BY d.seq',
      [batch.key],
    );
    return rows.map(toEvent);
  }

  /** The batch's state after an attempt, its claim ended; false when it is gone (its destination or tenant deleted meanwhile). */
  async record(
    tx: Sql,
    batch: Pick<EventBatch, 'key' | 'attempts' | 'next_attempt_at'>,
    status: 'pending' | 'success' | 'failed',
  ): Promise<boolean> {
    const { rowCount } = await tx.query(
      `UPDATE event_batches SET status = $1, attempts = $2, next_attempt_at = $3, claimed_by = NULL, lease_until = NULL
       WHERE key = $4`,
      [status, batch.attempts, batch.next_attempt_at, batch.key],
    );
    return (rowCount ?? 0) > 0;
  }

  /** The batches of a deleted destination. */
  async dropOf(tx: Sql, tenantId: string, destinationId: string): Promise<void> {
    await tx.query('DELETE FROM event_batches WHERE tenant_id = $1 AND destination_id = $2', [tenantId, destinationId]);
  }

  /** The batches of a deleted tenant. */
  async deleteAllOf(tx: Sql, tenantId: string): Promise<void> {
    await tx.query('DELETE FROM event_batches WHERE tenant_id = $1', [tenantId]);
  }

  /** Forgets finished batches no delivery is in any more. */
  async prune(tx: Sql): Promise<void> {
    await tx.query(`DELETE FROM event_batches WHERE status <> 'pending'
      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.batch = event_batches.key)`);
  }
}
