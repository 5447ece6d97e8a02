import Database from 'better-sqlite3';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { makePrivateDir, makePrivateFile } from '../sqlite/private-files.js';

/** A start Sluice refuses for a reason the operator must act on: the CLI prints its message as it is. */
export class StartRefusedError extends Error {}

/** Who holds a data_dir, as it wrote in `data_dir/lock.json` once it had the lock. */
export interface LockHolder {
  pid: number;
  hostname: string;
  started_at: string;
}

export class DataDirInUseError extends StartRefusedError {
  constructor(
    readonly dataDir: string,
    readonly holder: LockHolder | undefined,
  ) {
    const who = holder
      ? `pid ${holder.pid} on ${holder.hostname}${holder.hostname === hostname() ? '' : ' (another host: data_dir is on a shared file system)'}, started ${holder.started_at}`
      : 'a process that has not written data_dir/lock.json: it is starting, or could not write it (a full disk)';
    super(
      `data_dir ${dataDir} is in use by another Sluice (${who}). Two processes on one data_dir would overwrite each other's ` +
        'buffer and lose acknowledged decisions: stop that one first, or give this one a data_dir of its own.',
    );
    this.name = 'DataDirInUseError';
  }
}

/**
 * One Sluice per data_dir. The lock is SQLite's own file lock on `data_dir/lock.sqlite`, held from start to
 * shutdown: in EXCLUSIVE locking mode, `BEGIN EXCLUSIVE` takes the exclusive lock and the `COMMIT` keeps it
 * until the connection closes. Nothing is written for it (but the header of a new, empty lock.sqlite, at the
 * first start), so it is taken on a full disk too: a Sluice that stopped (or crashed) on a full disk starts
 * again, answering 503 to writes until there is space. Being a POSIX advisory lock, the kernel drops it when
 * the process dies however it dies (kill -9, OOM), so a crash never leaves a stale lock behind. A second
 * process cannot even read lock.sqlite meanwhile, so the holder's pid and start time go in a plain
 * `data_dir/lock.json` for the refusal to name (best effort: on a full disk it may not be written, and the
 * refusal then names no holder).
 */
export class DataDirLock {
  private released = false;

  private constructor(
    private readonly db: Database.Database,
    private readonly infoFile: string,
  ) {}

  /** Takes the lock at once, or throws DataDirInUseError naming the holder. `log` hears of a lock.json that could not be written. */
  static acquire(dataDir: string, log?: { warn(fields: object, message: string): void }): DataDirLock {
    const dir = path.resolve(dataDir);
    makePrivateDir(dir);
    const infoFile = path.join(dir, 'lock.json');
    makePrivateFile(path.join(dir, 'lock.sqlite'));
    // timeout 0: a held lock refuses at once instead of waiting (better-sqlite3 would wait 5 s by default)
    const db = new Database(path.join(dir, 'lock.sqlite'), { timeout: 0 });
    try {
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('BEGIN EXCLUSIVE; COMMIT');
    } catch (err) {
      db.close();
      if (
        (err as { code?: string }).code?.startsWith('SQLITE_BUSY') ||
        (err as { code?: string }).code?.startsWith('SQLITE_LOCKED')
      ) {
        throw new DataDirInUseError(dir, readHolder(infoFile));
      }
      throw err;
    }
    const holder: LockHolder = { pid: process.pid, hostname: hostname(), started_at: new Date().toISOString() };
    try {
      writeFileAtomic(infoFile, `${JSON.stringify(holder)}\n`);
    } catch (err) {
      // the lock is held all the same: only a refusal of a second process would name no holder
      rmSync(infoFile, { force: true });
      log?.warn(
        { err, file: infoFile },
        'could not write data_dir/lock.json (the lock is held; a second Sluice on this data_dir is refused without naming this one)',
      );
    }
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
    if (typeof holder.pid === 'number' && typeof holder.hostname === 'string' && typeof holder.started_at === 'string')
      return holder as LockHolder;
  } catch {
    // missing (the holder is still starting, or a version before lock.json) or being replaced: unknown
  }
  return undefined;
}

/** Writes `file` whole or not at all (a reader never sees half of it), and durably: temporary file, fsync, rename, fsync of the directory. */
export function writeFileAtomic(file: string, content: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    const fd = openSync(tmp, 'w', 0o644);
    try {
      // a write may take only part of it (a disk that fills): the rest goes on, until it fails with ENOSPC
      const bytes = Buffer.from(content);
      let at = 0;
      for (let i = 0; at < bytes.length && i <= bytes.length; i++) at += writeSync(fd, bytes, at);
      if (at < bytes.length) throw new Error(`${tmp}: only ${at} of ${bytes.length} bytes could be written`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (err) {
    // a full disk: no half-written temporary file left behind
    rmSync(tmp, { force: true });
    throw err;
  }
  const dirFd = openSync(path.dirname(file), 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}
