import { RETRYABLE, type PgDatabase, type Sql } from './database.js';
import type { PendingDelta } from './pending-counts.js';

/**
 * Events (keys) one group takes at most, a write being never split: bounds a transaction's length, its
 * statements' arrays and the locks it holds.
 */
const MAX_GROUP_KEYS = 1000;
/** Writes one group takes at most, whatever their keys (a retry names none). */
const MAX_GROUP_WRITES = 256;

/** What became of one write of a group: done (with its changes to the pending counts), or refused alone. */
export type Outcome = { ok: true; value: unknown; delta: PendingDelta } | { ok: false; error: unknown };

/** What a group commit does with the writes it is given (see GroupCommit). */
export interface GroupSteps<W> {
  /** First in each transaction: locks the keys its writes name, in an order every group uses. */
  lock(tx: Sql, keys: string[]): Promise<void>;
  /**
   * Does the writes, in the caller's transaction, in as few statements as it can: one outcome per write, in
   * their order. A write refused for what it is (its tenant gone) is an outcome; a throw fails the transaction.
   */
  write(tx: Sql, writes: W[]): Promise<Outcome[]>;
  /** Last in each transaction, with the changes of the writes that succeeded (the pending counters). */
  beforeCommit(tx: Sql, delta: PendingDelta): Promise<void>;
  /** After each commit, with the same changes. */
  committed(delta: PendingDelta): void;
}

interface Queued<W> {
  write: W;
  keys: string[];
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * Writes that arrive while others commit share the next transaction: one commit (one WAL flush) for the
 * publishes of the same moment, as the SQLite store's group commit does. A write alone starts at once, so an
 * idle store adds no wait. Every write resolves only once its transaction committed.
 *
 * The writes of a group are done together (`steps.write`: one statement per table for all of them), with no
 * savepoint. When that fails for a reason of the statements (one event PostgreSQL refuses), nothing of the
 * group is committed, and the group runs again in a second transaction where each write has its own
 * savepoint: the one that fails fails alone, and the others commit.
 *
 * `maxGroups` transactions run at once: while one flushes, the next gathers and runs its statements.
 *
 * Each write names the keys it will write (events' tenant and id); a group first locks all of its writes'
 * keys, in one order (`lock`), so that two groups (on this node or another) writing the same keys in other
 * orders wait for each other instead of deadlocking.
 */
export class GroupCommit<W> {
  private readonly queue: Array<Queued<W>> = [];
  private running = 0;

  constructor(
    private readonly db: PgDatabase,
    private readonly maxGroups: number,
    private readonly steps: GroupSteps<W>,
  ) {}

  run<T>(write: W, keys: string[] = []): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ write, keys, resolve: resolve as (value: unknown) => void, reject });
      this.start();
    });
  }

  private start(): void {
    while (this.running < this.maxGroups && this.queue.length > 0) {
      const group = this.next();
      this.running++;
      void this.commit(group).finally(() => {
        this.running--;
        this.start();
      });
    }
  }

  /**
   * The writes at the head of the queue, up to MAX_GROUP_WRITES naming up to MAX_GROUP_KEYS keys in all (at
   * least one write, however many it names).
   */
  private next(): Array<Queued<W>> {
    let n = 1;
    let keys = this.queue[0]!.keys.length;
    while (n < Math.min(this.queue.length, MAX_GROUP_WRITES) && keys + this.queue[n]!.keys.length <= MAX_GROUP_KEYS) {
      keys += this.queue[n]!.keys.length;
      n++;
    }
    return this.queue.splice(0, n);
  }

  private async commit(group: Array<Queued<W>>): Promise<void> {
    let failedWriting = false;
    let done: { outcomes: Outcome[]; merged: PendingDelta };
    try {
      done = await this.transaction(
        group,
        async (tx) => {
          try {
            return await this.steps.write(
              tx,
              group.map((item) => item.write),
            );
          } catch (err) {
            failedWriting = true;
            throw err;
          }
        },
        () => {
          failedWriting = false;
        },
      );
    } catch (err) {
      // The writes' statements failed (not the lock, the counters or the commit, whose outcome may be unknown;
      // nor a deadlock, run again until it gave up): run the writes again, each in its own savepoint, so that
      // the one at fault fails alone.
      const code = (err as { code?: string }).code;
      if (!failedWriting || group.length === 1 || (code !== undefined && RETRYABLE.has(code))) {
        // not committed: none of the group is stored
        for (const item of group) item.reject(err);
        return;
      }
      try {
        done = await this.transaction(group, (tx) => this.eachAlone(tx, group));
      } catch (err) {
        for (const item of group) item.reject(err);
        return;
      }
    }
    this.steps.committed(done.merged);
    group.forEach((item, i) => {
      const outcome = done.outcomes[i]!;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
  }

  /** One transaction for the group: its keys locked, `work`, then the counters of the writes that succeeded. */
  private async transaction(
    group: Array<Queued<W>>,
    work: (tx: Sql) => Promise<Outcome[]>,
    attempt: () => void = () => {},
  ): Promise<{ outcomes: Outcome[]; merged: PendingDelta }> {
    return this.db.transaction(async (tx) => {
      // run again from the start when the transaction is (a deadlock): everything counted afresh
      attempt();
      const keys = group.flatMap((item) => item.keys);
      if (keys.length > 0) await this.steps.lock(tx, keys);
      const outcomes = await work(tx);
      const merged: PendingDelta = new Map();
      for (const outcome of outcomes) {
        if (!outcome.ok) continue;
        for (const [tenantId, n] of outcome.delta) merged.set(tenantId, (merged.get(tenantId) ?? 0) + n);
      }
      await this.steps.beforeCommit(tx, merged);
      return { outcomes, merged };
    });
  }

  /** The group's writes one at a time, each in a savepoint of its own. */
  private async eachAlone(tx: Sql, group: Array<Queued<W>>): Promise<Outcome[]> {
    const outcomes: Outcome[] = [];
    for (const item of group) {
      await tx.query('SAVEPOINT write');
      try {
        const [outcome] = await this.steps.write(tx, [item.write]);
        await tx.query('RELEASE SAVEPOINT write');
        outcomes.push(outcome!);
      } catch (error) {
        // a deadlock is the group's, not the write's: the whole transaction runs again
        const code = (error as { code?: string }).code;
        if (code !== undefined && RETRYABLE.has(code)) throw error;
        await tx.query('ROLLBACK TO SAVEPOINT write');
        outcomes.push({ ok: false, error });
      }
    }
    return outcomes;
  }
}
