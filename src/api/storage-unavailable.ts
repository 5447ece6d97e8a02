import { storageErrorCode } from '../sqlite/storage-errors.js';
import { HttpError } from '../http/http-error.js';
import { postgresUnavailableCode } from '../store/postgres/unavailable.js';

/** Seconds a client is asked to wait: a stalled disk is probed every second, a full one needs an operator. */
const RETRY_AFTER_SECONDS = 5;

/**
 * The 503 for an error of the disk under the buffer or the store (full, I/O error, read-only, locked), or of a
 * PostgreSQL store that cannot be reached, or undefined for any other error. Such a write succeeds once the disk is fixed, so the client should retry:
 * it is not a 500, which would say Sluice itself is broken.
 */
export function storageUnavailable(err: unknown): HttpError | undefined {
  const unreachable = postgresUnavailableCode(err);
  if (unreachable)
    return new HttpError(
      503,
      `Sluice cannot reach its store (PostgreSQL) right now (${unreachable}); retry later`,
      { reason: 'store_unavailable', code: unreachable },
      { 'retry-after': String(RETRY_AFTER_SECONDS) },
    );
  const code = storageErrorCode(err);
  if (!code) return undefined;
  return new HttpError(
    503,
    `Sluice cannot write to its data_dir right now (${code}: ${(err as Error).message}); retry later`,
    { reason: 'storage_unavailable', code },
    { 'retry-after': String(RETRY_AFTER_SECONDS) },
  );
}
