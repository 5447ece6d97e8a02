import Database from 'better-sqlite3';
import path from 'node:path';
import { WalGroupCommit } from './group-commit.js';
import { makePrivateDir, makePrivateFile } from './private-files.js';
import { storageErrorCode } from './storage-errors.js';

/** An SQLite database in `dataDir` in WAL mode (synchronous=NORMAL) with its schema and its group commit. */
export class WalDatabase {
  readonly db: Database.Database;
  readonly commits: WalGroupCommit;
  private closed = false;

  constructor(dataDir: string, file: string, schema: string, addedColumns: Array<[string, string, string]> = []) {
    // decisions and events in plaintext: the owner's only (SQLite gives -wal and -shm the database's mode)
    makePrivateDir(dataDir);
    makePrivateFile(path.join(dataDir, file));
    this.db = new Database(path.join(dataDir, file));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    // Columns added in later versions, before the schema's indexes may use them: old databases keep working.
    for (const [table, column, definition] of addedColumns) {
      const columns = this.db.prepare(`SELECT name FROM pragma_table_info(?)`).pluck().all(table) as string[];
      if (columns.length > 0 && !columns.includes(column))
        this.db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${definition}`);
    }
    this.db.exec(schema);
    // the probe writes one row of the schema's meta (key, value) table, which both the buffer and the store have
    const probe = this.db.prepare(
      "INSERT INTO meta (key, value) VALUES ('probed_at', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    );
    this.commits = new WalGroupCommit(this.db, path.join(dataDir, `${file}-wal`), () =>
      probe.run(new Date().toISOString()),
    );
  }

  /** Commits durably before returning (synchronous=FULL for this one transaction): for what must be on disk before the caller goes on. */
  commitNow<T>(work: () => T): T {
    this.db.pragma('synchronous = FULL');
    try {
      return this.db.transaction(work)();
    } catch (err) {
      if (storageErrorCode(err)) this.commits.fail(err as Error);
      throw err;
    } finally {
      this.db.pragma('synchronous = NORMAL');
    }
  }

  /**
   * Commits at once, without waiting for an fsync (durable with the next one): for bookkeeping a crash may
   * lose, as long as what it records is done again. A disk error makes the database not writable, as a
   * failed group commit does, until a write succeeds again.
   */
  writeNow<T>(work: () => T): T {
    try {
      return this.db.transaction(work)();
    } catch (err) {
      if (storageErrorCode(err)) this.commits.fail(err as Error);
      throw err;
    }
  }

  writable(): boolean {
    return !this.closed && this.commits.failed === undefined;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.commits.close();
    this.db.close();
  }
}
