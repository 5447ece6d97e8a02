import { storageErrorCode } from '../sqlite/storage-errors.js';
import { HttpError } from '../http/http-error.js';

/** Seconds a client is asked to wait: a stalled disk is probed every second, a full one needs an operator. */
const RETRY_AFTER_SECONDS = 5;

/**
 * The 503 for an error of the disk under the buffer or the store (full, I/O error, read-only, locked), or
 * undefined for any other error. Such a write succeeds once the disk is fixed, so the client should retry:
 * it is not a 500, which would say Sluice itself is broken.
 */
export function storageUnavailable(err: unknown): HttpError | undefined {
  const code = storageErrorCode(err);
  if (!code) return undefined;
  return new HttpError(
    503,
    `Sluice cannot write to its data_dir right now (${code}: ${(err as Error).message}); retry later`,
    { reason: 'storage_unavailable', code },
    { 'retry-after': String(RETRY_AFTER_SECONDS) },
  );
}
