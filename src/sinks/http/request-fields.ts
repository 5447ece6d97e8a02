/** Config fields the http and service outputs share: both POST batches with HttpSink. */
import { z } from 'zod';
import { sizeItem } from '../../config/fields.js';
import type { RequestLimits } from './request-pieces.js';

export const headers = z.record(z.string(), z.string()).default({});

/**
 * fetch refuses a URL with user:password@ (such an output would never deliver), and a URL is shown in /ready
 * and in logs: credentials go in headers (or a service output's token), which are never shown.
 */
export const noUserinfo = (url: string) => {
  const u = new URL(url);
  return u.username === '' && u.password === '';
};
export const USERINFO_MESSAGE =
  'must not hold credentials (user:password@): put them in headers, e.g. headers: { authorization: "Basic ${BASIC_AUTH}" } (for a service output: token)';

/** The body bytes of one request as sent (compressed when the output compresses). */
export const requestBytes = sizeItem.refine((v) => v > 0, 'must be greater than 0');
export const requestDecisions = z.number().int().positive();

export function limitsOf(output: { max_request_bytes?: number; max_request_decisions?: number }): RequestLimits {
  return { maxBytes: output.max_request_bytes, maxDecisions: output.max_request_decisions };
}
