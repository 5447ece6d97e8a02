/**
 * Errors of the disk under a database rather than of the code: a full disk, an I/O error, a read-only or
 * locked file. Writes fail with them until the disk is fixed and then succeed again unchanged, so they mean
 * "not writable right now" (503, retry), never a bug (500).
 */
const SQLITE_CODES = /^SQLITE_(FULL|IOERR|READONLY|BUSY|LOCKED)(_|$)/;
/** What the asynchronous fsync of a WAL (a system call, not SQLite) fails with for the same reasons. */
const SYSTEM_CODES = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS', 'EFBIG']);

/** The error's code when it is one of those (`SQLITE_FULL`, `SQLITE_IOERR_WRITE`, `ENOSPC`, ...), else undefined. */
export function storageErrorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return undefined;
  return SQLITE_CODES.test(code) || SYSTEM_CODES.has(code) ? code : undefined;
}
