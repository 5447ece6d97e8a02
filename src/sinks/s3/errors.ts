import { isRetryableStatus } from '../types.js';

/** Error codes that retrying cannot fix: the bucket, the credentials or the permissions must change. */
const PERMANENT_CODES = new Set([
  'NoSuchBucket', 'AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AllAccessDisabled',
  'InvalidBucketName', 'AccountProblem', 'InvalidStorageClass', 'PermanentRedirect', 'AuthorizationHeaderMalformed',
  'ExpiredToken', 'InvalidToken', 'CredentialsProviderError',
]);

/** Throttling, server errors, timeouts and connection errors pass; most other 4xx answers do not. */
export function isPermanentS3Error(code: string | undefined, status: number | undefined): boolean {
  if (code && PERMANENT_CODES.has(code)) return true;
  if (status === undefined) return false;
  if (isRetryableStatus(status)) return false;
  return status >= 400;
}
