import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * data_dir holds decisions, published events and destination credentials in plaintext SQLite (and the keys
 * that encrypt those credentials, when generated): it is the owner's only. Directories are 0700, files 0600.
 */
export const PRIVATE_DIR = 0o700;
export const PRIVATE_FILE = 0o600;

/** SQLite's files: the database and its -wal, -shm and -journal (which SQLite creates with the database's mode). */
const SQLITE_FILE = /\.sqlite(-wal|-shm|-journal)?$/;

/** Creates `dir` (0700) if missing; its parents, if missing too, get the usual mode. */
export function makePrivateDir(dir: string): void {
  if (existsSync(dir)) return;
  mkdirSync(path.dirname(dir), { recursive: true });
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR });
}

/**
 * Creates an empty `file` with mode 0600 unless it exists: SQLite then opens it (an empty file is a new
 * database) and gives its -wal, -shm and -journal the same mode. SQLite left alone would create them 0644.
 */
export function makePrivateFile(file: string): void {
  if (existsSync(file)) return;
  closeSync(openSync(file, 'a', PRIVATE_FILE));
}

export interface ModeChange {
  path: string;
  from: string;
  to: string;
}
export interface Tightened {
  changed: ModeChange[];
  failed: Array<ModeChange & { error: string }>;
  skipped?: string;
}

/**
 * Creates data_dir (0700), or takes away what group and others may do with it, its SQLite files and its
 * secrets/, as an older version (or a umask) left them. Runs before any database in it is opened, so that
 * SQLite's new -wal and -shm files get the tightened mode. A directory with the sticky bit (/tmp) is shared
 * by design and left alone. A chmod that fails (a file of another user) is reported, not fatal.
 */
export function tightenDataDir(dataDir: string): Tightened {
  const dir = path.resolve(dataDir);
  makePrivateDir(dir);
  const result: Tightened = { changed: [], failed: [] };
  const dirStat = statSync(dir);
  if ((dirStat.mode & 0o1000) !== 0 || dir === path.parse(dir).root) {
    result.skipped = `${dir} is a shared directory (sticky bit or the root): give Sluice a data_dir of its own`;
    return result;
  }
  const tighten = (p: string, wanted: number) => {
    const mode = statSync(p).mode & 0o7777;
    if ((mode & 0o077) === 0) return;
    const change = { path: p, from: octal(mode), to: octal(wanted) };
    try {
      chmodSync(p, wanted);
      result.changed.push(change);
    } catch (err) {
      result.failed.push({ ...change, error: (err as Error).message });
    }
  };
  tighten(dir, PRIVATE_DIR);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isFile() && SQLITE_FILE.test(entry.name)) tighten(path.join(dir, entry.name), PRIVATE_FILE);
  }
  const secrets = path.join(dir, 'secrets');
  if (existsSync(secrets) && statSync(secrets).isDirectory()) {
    tighten(secrets, PRIVATE_DIR);
    for (const entry of readdirSync(secrets, { withFileTypes: true }))
      if (entry.isFile()) tighten(path.join(secrets, entry.name), PRIVATE_FILE);
  }
  return result;
}

function octal(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}

/** tightenDataDir, said in the log: what was changed (info), what could not be (warn). */
export function tightenDataDirLogged(
  dataDir: string,
  log: { info(o: object, m: string): void; warn(o: object, m: string): void },
): void {
  const { changed, failed, skipped } = tightenDataDir(dataDir);
  if (skipped) log.warn({ data_dir: dataDir }, `data_dir modes left as they are: ${skipped}`);
  if (changed.length > 0) {
    log.info(
      { data_dir: dataDir, changed },
      'data_dir holds decisions, events and credentials in plaintext: took away what group and others could do with it (directories 0700, files 0600)',
    );
  }
  if (failed.length > 0)
    log.warn({ data_dir: dataDir, failed }, 'data_dir: cannot make these private to this user; others may read them');
}
