import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { HttpError } from './http-error.js';

/** The token of `Authorization: Bearer <token>`, or undefined. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  return match ? match[1] : undefined;
}

/**
 * Configured bearer tokens, each with what it stands for (the admin, an ingest client, a tenant): the one
 * place a presented token is compared with them. Tokens are compared as SHA-256 digests, which have equal
 * lengths, so timingSafeEqual applies; and every token is compared, a match or not, so timing reveals
 * neither whether one matched nor which.
 */
export class BearerTokens<T> {
  private readonly entries: ReadonlyArray<{ digest: Buffer; value: T }>;

  constructor(entries: Iterable<readonly [token: string, value: T]>) {
    this.entries = [...entries].map(([token, value]) => ({ digest: digest(token), value }));
  }

  /** Tokens that are all equivalent (ingest.tokens): each stands for `true`. */
  static of(tokens: Iterable<string>): BearerTokens<true> {
    return new BearerTokens([...tokens].map((token) => [token, true] as const));
  }

  get size(): number {
    return this.entries.length;
  }

  /** What the first configured token equal to `token` stands for; undefined for none (or no token). */
  find(token: string | undefined): T | undefined {
    const presented = digest(token ?? '');
    let found: { value: T } | undefined;
    for (const entry of this.entries)
      if (timingSafeEqual(presented, entry.digest) && token !== undefined) found ??= entry;
    return found?.value;
  }

  /**
   * What the request's bearer token stands for, or 401 (with `WWW-Authenticate: Bearer`): `missing` is the
   * message for a request without a token, one with a token that matches none is told it is not accepted.
   */
  check(request: FastifyRequest, missing: string): T {
    const token = bearerToken(request);
    const found = this.find(token);
    if (found !== undefined) return found;
    throw unauthorized(token === undefined ? missing : 'the bearer token is not accepted');
  }
}

/** 401 with the challenge that names the scheme. */
export function unauthorized(message: string): HttpError {
  return new HttpError(401, message, { reason: 'unauthorized' }, { 'www-authenticate': 'Bearer' });
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}
