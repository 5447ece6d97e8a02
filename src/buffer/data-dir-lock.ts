import Database from 'better-sqlite3';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { makePrivateDir, makePrivateFile } from './private-files.js';

/** A start Sluice refuses for a reason the operator must act on: the CLI prints its message as it is. */
export class StartRefusedError extends Error {}

/** Who holds a data_dir, as it wrote in `data_dir/lock.json` once it had the lock. */
export interface LockHolder {
  pid: number;
  hostname: string;
  started_at: string;
}

export class DataDirInUseError extends StartRefusedError {
  constructor(readonly dataDir: string, readonly holder: LockHolder | undefined) {
    const who = holder
      ? `pid ${holder.pid} on ${holder.hostname}${holder.hostname === hostname() ? '' : ' (another host: data_dir is on a shared file system)'}, started ${holder.started_at}`
      : 'a process that has not written data_dir/lock.json yet: it is starting';
    super(`data_dir ${dataDir} is in use by another Sluice (${who}). Two processes on one data_dir would overwrite each other's `
      + 'buffer and lose acknowledged decisions: stop that one first, or give this one a data_dir of its own.');
    this.name = 'DataDirInUseError';
  }
}

/**
 * One Sluice per data_dir. The lock is SQLite's own file lock on `data_dir/lock.sqlite`, held from start to
 * shutdown: in EXCLUSIVE locking mode the first write takes an exclusive lock that the connection keeps until it
 * closes, and being a POSIX advisory lock, the kernel drops it when the process dies however it dies (kill -9,
 * OOM), so a crash never leaves a stale lock behind. A second process cannot even read lock.sqlite meanwhile,
 * so the holder's pid and start time go in a plain `data_dir/lock.json` for the refusal to name.
 */
export class DataDirLock {
  private released = false;

  private constructor(private readonly db: Database.Database, private readonly infoFile: string) {}

  /** Takes the lock at once, or throws DataDirInUseError naming the holder. */
  static acquire(dataDir: string): DataDirLock {
    const dir = path.resolve(dataDir);
    makePrivateDir(dir);
    const infoFile = path.join(dir, 'lock.json');
    makePrivateFile(path.join(dir, 'lock.sqlite'));
    // timeout 0: a held lock refuses at once instead of waiting (better-sqlite3 would wait 5 s by default)
    const db = new Database(path.join(dir, 'lock.sqlite'), { timeout: 0 });
    try {
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL, started_at TEXT NOT NULL)');
      db.transaction(() => {
        db.exec('DELETE FROM holder');
        db.prepare('INSERT INTO holder (pid, started_at) VALUES (?, ?)').run(process.pid, new Date().toISOString());
      }).immediate();
    } catch (err) {
      db.close();
      if ((err as { code?: string }).code?.startsWith('SQLITE_BUSY') || (err as { code?: string }).code?.startsWith('SQLITE_LOCKED')) {
        throw new DataDirInUseError(dir, readHolder(infoFile));
      }
      throw err;
    }
    const holder: LockHolder = { pid: process.pid, hostname: hostname(), started_at: new Date().toISOString() };
    writeFileAtomic(infoFile, `${JSON.stringify(holder)}\n`);
    return new DataDirLock(db, infoFile);
  }

  /** Lets the next process in; idempotent. The lock.json goes first, so a new holder's is never removed. */
  release(): void {
    if (this.released) return;
    this.released = true;
    rmSync(this.infoFile, { force: true });
    this.db.close();
  }
}

function readHolder(file: string): LockHolder | undefined {
  try {
    const holder = JSON.parse(readFileSync(file, 'utf8')) as Partial<LockHolder>;
    if (typeof holder.pid === 'number' && typeof holder.hostname === 'string' && typeof holder.started_at === 'string') return holder as LockHolder;
  } catch {
    // missing (the holder is still starting, or a version before lock.json) or being replaced: unknown
  }
  return undefined;
}

/** Writes `file` whole or not at all (a reader never sees half of it), and durably: temporary file, fsync, rename, fsync of the directory. */
export function writeFileAtomic(file: string, content: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  const dirFd = openSync(path.dirname(file), 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}
