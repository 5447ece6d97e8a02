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

/** An error code as S3 sends it (`NoSuchBucket`) or Node names it (`ECONNREFUSED`); anything else is not passed on. */
const CODE = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/;

/** Sluice's own words for the failures that have no HTTP answer. */
const OWN_WORDS: Record<string, string> = {
  ECONNREFUSED: 'the endpoint refused the connection',
  ECONNRESET: 'the connection was reset',
  EPIPE: 'the connection was closed while sending',
  ENOTFOUND: "the endpoint's host name does not resolve",
  EAI_AGAIN: "the endpoint's host name could not be resolved now",
  ETIMEDOUT: 'the connection timed out',
  TimeoutError: 'the request timed out',
  RequestTimeout: 'the request timed out',
  AbortError: 'the request was aborted',
};

/**
 * A failed request as a tenant may see it: a code (when it looks like one), the HTTP status, and Sluice's own
 * words (`own`, or the words for the code), never the text of the answer. The answer comes from wherever the
 * tenant pointed its destination: repeating it would make the delivery log a reader of whatever answers there.
 */
export function sanitizedFailure(rawCode: string | undefined, status: number | undefined, own?: string): { code: string; message: string } {
  const code = rawCode && CODE.test(rawCode) ? rawCode : 'UnknownError';
  if (status !== undefined) return { code, message: `${code} (HTTP ${status})${own ? `: ${own}` : ''}` };
  return { code, message: `${code}: ${own ?? OWN_WORDS[code] ?? 'the request failed'}` };
}
