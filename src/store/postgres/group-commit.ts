import { RETRYABLE, type PgDatabase, type Sql } from './database.js';
import type { PendingDelta } from './pending-counts.js';

/** Writes one group takes at most: bounds a transaction's length and the locks it holds. */
const MAX_GROUP = 256;

interface Queued {
  work: (tx: Sql, delta: PendingDelta) => Promise<unknown>;
  keys: string[];
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

type Outcome = { ok: true; value: unknown; delta: PendingDelta } | { ok: false; error: unknown };

/**
 * Writes that arrive while others commit share the next transaction: one commit (one WAL flush) for the
 * publishes of the same moment, as the SQLite store's group commit does. A write alone starts at once, so an
 * idle store adds no wait. Each write of a group has its own savepoint: one that fails (its tenant deleted
 * meanwhile) fails alone, and the others commit. Every write resolves only once its transaction committed.
 *
 * `maxGroups` transactions run at once: while one flushes, the next gathers and runs its statements.
 *
 * Each write names the keys it will write (events' tenant and id); a group first locks all of its writes'
 * keys, in one order (`lock`), so that two groups (on this node or another) writing the same keys in other
 * orders wait for each other instead of deadlocking.
 */
export class GroupCommit {
  private readonly queue: Queued[] = [];
  private running = 0;

  constructor(
    private readonly db: PgDatabase,
    private readonly maxGroups: number,
    /** First in each transaction: locks the keys its writes name, in an order every group uses. */
    private readonly lock: (tx: Sql, keys: string[]) => Promise<void>,
    /** Last in each transaction, with the changes of the writes that succeeded (the pending counters). */
    private readonly beforeCommit: (tx: Sql, delta: PendingDelta) => Promise<void>,
    /** After each commit, with the same changes. */
    private readonly committed: (delta: PendingDelta) => void,
  ) {}

  run<T>(work: (tx: Sql, delta: PendingDelta) => Promise<T>, keys: string[] = []): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, keys, resolve: resolve as (value: unknown) => void, reject });
      this.start();
    });
  }

  private start(): void {
    while (this.running < this.maxGroups && this.queue.length > 0) {
      const group = this.queue.splice(0, MAX_GROUP);
      this.running++;
      void this.commit(group).finally(() => {
        this.running--;
        this.start();
      });
    }
  }

  private async commit(group: Queued[]): Promise<void> {
    const alone = group.length === 1;
    let outcomes: Outcome[] = [];
    let merged: PendingDelta = new Map();
    try {
      await this.db.transaction(async (tx) => {
        // run again from the start when the transaction is (a deadlock): everything counted afresh
        outcomes = [];
        merged = new Map();
        const keys = group.flatMap((item) => item.keys);
        if (keys.length > 0) await this.lock(tx, keys);
        for (const item of group) {
          const delta: PendingDelta = new Map();
          if (alone) {
            outcomes.push({ ok: true, value: await item.work(tx, delta), delta });
            continue;
          }
          await tx.query('SAVEPOINT write');
          try {
            const value = await item.work(tx, delta);
            await tx.query('RELEASE SAVEPOINT write');
            outcomes.push({ ok: true, value, delta });
          } catch (error) {
            // a deadlock is the group's, not the write's: the whole transaction runs again
            const code = (error as { code?: string }).code;
            if (code !== undefined && RETRYABLE.has(code)) throw error;
            await tx.query('ROLLBACK TO SAVEPOINT write');
            outcomes.push({ ok: false, error });
          }
        }
        for (const outcome of outcomes) {
          if (!outcome.ok) continue;
          for (const [tenantId, n] of outcome.delta) merged.set(tenantId, (merged.get(tenantId) ?? 0) + n);
        }
        await this.beforeCommit(tx, merged);
      });
    } catch (err) {
      // not committed: none of the group is stored
      for (const item of group) item.reject(err);
      return;
    }
    this.committed(merged);
    group.forEach((item, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
  }
}
