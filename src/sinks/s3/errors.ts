import { isRetryableStatus } from '../types.js';

/** Error codes that retrying cannot fix: the bucket, the credentials or the permissions must change. */
const PERMANENT_CODES = new Set([
  'NoSuchBucket',
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'AllAccessDisabled',
  'InvalidBucketName',
  'AccountProblem',
  'InvalidStorageClass',
  'PermanentRedirect',
  'AuthorizationHeaderMalformed',
  'ExpiredToken',
  'InvalidToken',
  'CredentialsProviderError',
]);

/** Throttling, server errors, timeouts and connection errors pass; most other 4xx answers do not. */
export function isPermanentS3Error(code: string | undefined, status: number | undefined): boolean {
  if (code && PERMANENT_CODES.has(code)) return true;
  if (status === undefined) return false;
  if (isRetryableStatus(status)) return false;
  return status >= 400;
}

/**
 * Error codes passed on to a tenant: the ones S3 defines, the ones the SDK makes from a status, Node's network
 * errors and Sluice's own. Anything else an endpoint answers is `UnknownError`: a code is text of the answer
 * too, and an internal service could put anything there.
 */
const KNOWN_CODES = new Set([
  'AccessDenied',
  'AccountProblem',
  'AllAccessDisabled',
  'BadDigest',
  'BucketAlreadyExists',
  'BucketAlreadyOwnedByYou',
  'EntityTooLarge',
  'EntityTooSmall',
  'ExpiredToken',
  'IllegalLocationConstraintException',
  'IncompleteBody',
  'InternalError',
  'InvalidAccessKeyId',
  'InvalidArgument',
  'InvalidBucketName',
  'InvalidDigest',
  'InvalidObjectState',
  'InvalidRequest',
  'InvalidSecurity',
  'InvalidStorageClass',
  'InvalidToken',
  'KeyTooLongError',
  'MalformedXML',
  'MetadataTooLarge',
  'MethodNotAllowed',
  'MissingContentLength',
  'NoSuchBucket',
  'NoSuchKey',
  'NotImplemented',
  'OperationAborted',
  'PermanentRedirect',
  'PreconditionFailed',
  'Redirect',
  'RequestTimeTooSkewed',
  'ServiceUnavailable',
  'SignatureDoesNotMatch',
  'SlowDown',
  'TemporaryRedirect',
  'TokenRefreshRequired',
  'XAmzContentSHA256Mismatch',
  'NotFound',
  'Forbidden',
  'BadRequest',
  'Unauthorized',
  'Conflict',
  'TooManyRequests',
  'InvalidBucketState',
  'QuotaExceeded',
  'UnknownError',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
  'ERR_INVALID_URL',
  'endpoint_not_allowed',
  'key_template',
]);

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
export function sanitizedFailure(
  rawCode: string | undefined,
  status: number | undefined,
  own?: string,
): { code: string; message: string } {
  const code = rawCode && (KNOWN_CODES.has(rawCode) || Object.hasOwn(OWN_WORDS, rawCode)) ? rawCode : 'UnknownError';
  if (status !== undefined) return { code, message: `${code} (HTTP ${status})${own ? `: ${own}` : ''}` };
  return { code, message: `${code}: ${own ?? OWN_WORDS[code] ?? 'the request failed'}` };
}
