import type Database from 'better-sqlite3';
import { closeSync, fsync, fsyncSync, openSync } from 'node:fs';
import { storageErrorCode } from './storage-errors.js';

/**
 * How often a database that failed tries a tiny write of its own: it is writable again (and /ready 200) within
 * about this long after the disk is, not only once the next client write happens to succeed.
 */
const PROBE_EVERY_MS = 1000;

interface Pending {
  work: () => unknown;
  /** Called once the transaction that holds `work` has committed (not when `work` threw or the commit failed). */
  committed?: () => void;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  result?: unknown;
  error?: Error;
}

/**
 * Group commit for an SQLite database in WAL mode with synchronous=NORMAL.
 *
 * Writes queued in the same turn of the event loop run in one transaction, and each is acknowledged once an
 * fsync of the WAL file that started after its commit has completed. The fsync runs off the event loop
 * (libuv's thread pool), so requests keep being read and committed while the disk syncs, and the next fsync
 * covers all of them. (With synchronous=FULL SQLite would fsync inside each commit, blocking the event loop:
 * each fsync would then cover only the few writes made before it.)
 *
 * Each write runs in its own savepoint: one that throws is rolled back and rejected alone.
 */
export class WalGroupCommit {
  private queue: Pending[] = [];
  private flushScheduled = false;
  /** Committed writes waiting for an fsync of the WAL. */
  private awaitingSync: Pending[] = [];
  private syncing = false;
  private readonly walFd: number;
  private readonly listeners: Array<() => void> = [];
  private closed = false;
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;
  /** The last commit or fsync error (or a write's disk error), cleared by the next success: not writable meanwhile. */
  failed: Error | undefined;

  /** `probe`: a tiny write, run through the group commit every PROBE_EVERY_MS while failed, to find out when it is over. */
  constructor(
    private readonly db: Database.Database,
    walPath: string,
    private readonly probe?: () => void,
  ) {
    // fsync on any descriptor of the WAL file makes every frame written to it durable.
    this.walFd = openSync(walPath, 'r');
  }

  /**
   * Runs `work` in a transaction; resolves with its result once it is durable on disk. `committed` runs as soon
   * as that transaction has committed, and only then: state kept beside the database (counts of its rows) is
   * changed there, so that a write rolled back (by its own error, or by a COMMIT that failed: a full disk in
   * WAL mode fails there) changes nothing.
   */
  run<T>(work: () => T, committed?: () => void): Promise<T> {
    if (this.closed) return Promise.reject(new Error('the database is closed'));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, committed, resolve: resolve as (v: unknown) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Called after every fsync that made writes durable. */
  onDurable(listener: () => void): void {
    this.listeners.push(listener);
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    try {
      this.db.transaction(() => {
        for (const pending of batch) {
          try {
            pending.result = this.db.transaction(pending.work)();
          } catch (err) {
            pending.error = err as Error;
          }
        }
      })();
    } catch (err) {
      this.fail(err as Error);
      for (const pending of batch) pending.reject(err as Error);
      return;
    }
    for (const pending of batch) if (!pending.error) pending.committed?.();
    for (const pending of batch) {
      if (pending.error) {
        // a write that failed for the disk's sake (not its own) says the database cannot take writes
        if (storageErrorCode(pending.error)) this.fail(pending.error);
        pending.reject(pending.error);
      } else {
        this.awaitingSync.push(pending);
      }
    }
    this.syncWal();
  }

  /** One fsync at a time; writes committed meanwhile wait for the next one, which starts when it ends. */
  private syncWal(): void {
    if (this.syncing || this.awaitingSync.length === 0) return;
    this.syncing = true;
    const acks = this.awaitingSync;
    this.awaitingSync = [];
    fsync(this.walFd, (err) => {
      this.syncing = false;
      // closed meanwhile: close left the descriptor to this fsync (its writes are settled by its own result:
      // after a failed fsync, a later one that succeeds does not say the pages reached the disk)
      if (this.closed) closeSync(this.walFd);
      if (err) {
        this.fail(err);
        for (const pending of acks) pending.reject(err);
      } else {
        this.recovered();
        for (const pending of acks) pending.resolve(pending.result);
        if (!this.closed) for (const listener of this.listeners) listener();
      }
      this.syncWal();
    });
  }

  /** Not writable until a commit (a client's or the probe's) is durable again. */
  fail(err: Error): void {
    this.failed = err;
    if (this.probe && !this.probeTimer && !this.closed) {
      this.probeTimer = setInterval(() => this.runProbe(), PROBE_EVERY_MS);
      // the probe must not keep a stopping process alive
      this.probeTimer.unref();
    }
  }

  private recovered(): void {
    this.failed = undefined;
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.probeTimer = undefined;
  }

  private runProbe(): void {
    if (this.probing || this.closed || this.failed === undefined) return;
    this.probing = true;
    // its failure is the expected answer while the disk is full: it only keeps `failed` set
    this.run(this.probe!)
      .catch(() => {})
      .finally(() => {
        this.probing = false;
      });
  }

  /** Commits what is queued, makes it durable, and releases the WAL descriptor. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.probeTimer) clearInterval(this.probeTimer);
    if (this.queue.length > 0) this.flush();
    fsyncSync(this.walFd);
    for (const pending of this.awaitingSync.splice(0)) pending.resolve(pending.result);
    // an fsync still running on libuv's pool has the descriptor: closed under it, that fsync would fail with
    // EBADF (and reject writes that close has just made durable), or sync whatever file took the number next
    if (!this.syncing) closeSync(this.walFd);
  }
}
