import Database from 'better-sqlite3';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { SqliteBuffer } from './sqlite.js';
import { StartRefusedError, writeFileAtomic } from './data-dir-lock.js';

const BUFFER_FILE = 'buffer.sqlite';
/** Holds the id of the buffer this data_dir has, written when the buffer is created. */
const MARKER_FILE = 'buffer.id';

export class BufferLostError extends StartRefusedError {
  constructor(message: string) {
    super(message);
    this.name = 'BufferLostError';
  }
}

export interface OpenBufferOptions {
  /** Start with a new, empty buffer when the old one is gone (`sluice serve --accept-buffer-loss`). */
  acceptLoss?: boolean;
  /** How the operator started Sluice, for the command the refusal gives (`sluice serve --config x.yaml`). */
  serveCommand?: string;
}

/**
 * Opens data_dir's buffer, refusing to start when the buffer this data_dir had is gone.
 *
 * SQLite creates a missing database file without a word, so a deleted, emptied or swapped buffer.sqlite would
 * silently become a new, empty buffer, and every decision acknowledged but not yet delivered would be lost.
 * `data_dir/buffer.id` remembers which buffer belongs here (and a store.sqlite says Sluice ran here before,
 * for data_dirs from before the marker: the buffer is always created first). When the buffer is missing,
 * empty, unreadable or another one, Sluice refuses to start unless the loss is accepted; then it says at
 * error what was lost, moves what is left of it aside (never deletes it), and starts a new buffer.
 */
export function openBuffer(dataDir: string, maxBytes: number, log: Logger, opts: OpenBufferOptions = {}): SqliteBuffer {
  const dir = path.resolve(dataDir);
  const file = path.join(dir, BUFFER_FILE);
  const markerFile = path.join(dir, MARKER_FILE);
  const expected = (existsSync(markerFile) ? readFileSync(markerFile, 'utf8').trim() : '') || undefined;
  const ranHere = expected !== undefined || existsSync(path.join(dir, 'store.sqlite'));
  const problem = ranHere ? findProblem(file, expected) : undefined;
  let resets = 0;
  if (problem) {
    const which = expected
      ? `buffer ${expected} (recorded in ${markerFile})`
      : `the buffer of ${dir} (its id was not recorded)`;
    if (!opts.acceptLoss) {
      const command = `${opts.serveCommand ?? 'sluice serve'} --accept-buffer-loss`;
      throw new BufferLostError(
        `refusing to start: ${problem}. It held ${which}: the decisions it held that no output had delivered yet ` +
          `would be lost. Restore the file if you can (stop Sluice first); to accept the loss and start with a new, empty buffer, run once: ${command} ` +
          '(or set SLUICE_ACCEPT_BUFFER_LOSS=true).',
      );
    }
    const movedTo = moveAside(dir, expected);
    log.error(
      { lost_buffer_id: expected ?? null, problem, moved_to: movedTo ?? null },
      `buffer lost: ${problem}. Starting a new, empty buffer as --accept-buffer-loss allows; the decisions ${which} held that no output had delivered are gone` +
        (movedTo ? ` (what was left of its files is in ${movedTo})` : ''),
    );
    resets = 1;
  }
  const buffer = new SqliteBuffer(dir, maxBytes);
  buffer.resets = resets;
  if (expected !== buffer.id) {
    // the buffer's id must be on disk before the marker that names it, or a power cut could leave a marker
    // naming an id the buffer never kept, and a refusal at the next start
    for (const f of [file, `${file}-wal`]) if (existsSync(f)) fsyncFile(f);
    writeFileAtomic(markerFile, `${buffer.id}\n`);
  }
  return buffer;
}

/** What is wrong with the buffer file, when this data_dir should have the buffer `expected` (undefined: unknown). */
function findProblem(file: string, expected: string | undefined): string | undefined {
  if (!existsSync(file)) return `${file} is missing`;
  if (statSync(file).size === 0) return `${file} is empty`;
  // a buffer from before buffer.id: it is the one, whatever its id
  if (expected === undefined) return undefined;
  let found: string | undefined;
  try {
    const db = new Database(file, { fileMustExist: true });
    try {
      const hasMeta =
        db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get() !== undefined;
      found = hasMeta
        ? (db.prepare("SELECT value FROM meta WHERE key = 'buffer_id'").pluck().get() as string | undefined)
        : undefined;
    } finally {
      db.close();
    }
  } catch (err) {
    return `${file} cannot be read as a buffer (${(err as Error).message})`;
  }
  if (found !== expected) return `${file} holds ${found ? `buffer ${found}` : 'no buffer'}, not buffer ${expected}`;
  return undefined;
}

/** Moves buffer.sqlite and its -wal and -shm, those that exist, into `data_dir/lost-buffer-<id>-<time>/`. */
function moveAside(dir: string, id: string | undefined): string | undefined {
  const files = [BUFFER_FILE, `${BUFFER_FILE}-wal`, `${BUFFER_FILE}-shm`].filter((f) => existsSync(path.join(dir, f)));
  if (files.length === 0) return undefined;
  const aside = path.join(dir, `lost-buffer-${id ?? 'unknown'}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(aside, { recursive: true });
  for (const f of files) renameSync(path.join(dir, f), path.join(aside, f));
  return aside;
}

function fsyncFile(file: string): void {
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
