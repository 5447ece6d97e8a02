import type { FastifyRequest } from 'fastify';
import { errors, jwtVerify, SignJWT } from 'jose';
import { HttpError } from '../sources/http-error.js';
import { bearerToken, sameDigest, tokenDigest } from '../sources/bearer-token.js';

/** Who is calling: the admin (admin key, or no key configured) or one tenant (a tenant token). */
export type Principal = { admin: true } | { admin: false; tenantId: string };

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
}

const ISSUER = 'sluice';
const TOKEN_LIFETIME = '24h';

/**
 * The control plane's bearer auth, as Outpost's: the admin API key, or an HS256 JWT whose `sub` is a
 * tenant id. With no admin key configured every caller is admin (`sluice serve` warns about it).
 */
export class ApiAuth {
  private readonly adminDigest: Buffer | undefined;
  private readonly jwtKey: Uint8Array;

  constructor(adminKey: string | undefined, jwtSecret: string) {
    this.adminDigest = adminKey ? tokenDigest(adminKey) : undefined;
    this.jwtKey = new TextEncoder().encode(jwtSecret);
  }

  get open(): boolean {
    return this.adminDigest === undefined;
  }

  async authenticate(request: FastifyRequest): Promise<Principal> {
    if (!this.adminDigest) return { admin: true };
    const token = bearerToken(request);
    if (token === undefined) throw unauthorized('send Authorization: Bearer <admin key or tenant token>');
    if (sameDigest(tokenDigest(token), this.adminDigest)) return { admin: true };
    try {
      const { payload } = await jwtVerify(token, this.jwtKey, { issuer: ISSUER, algorithms: ['HS256'] });
      if (typeof payload.sub !== 'string' || payload.sub === '') throw unauthorized('the token names no tenant');
      return { admin: false, tenantId: payload.sub };
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw unauthorized(err instanceof errors.JWTExpired ? 'the token has expired: get a new one from GET /api/v1/tenants/{id}/token' : 'the bearer token is not accepted');
    }
  }

  issueToken(tenantId: string): Promise<string> {
    return new SignJWT({}).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuer(ISSUER).setSubject(tenantId)
      .setIssuedAt().setExpirationTime(TOKEN_LIFETIME).sign(this.jwtKey);
  }
}

/** 403 unless the caller is admin. */
export function requireAdmin(request: FastifyRequest): void {
  if (!request.principal.admin) throw new HttpError(403, 'this route needs the admin key', { reason: 'forbidden' });
}

/** 403 unless the caller is admin or that tenant. */
export function requireTenant(request: FastifyRequest, tenantId: string): void {
  const p = request.principal;
  if (!p.admin && p.tenantId !== tenantId) throw new HttpError(403, 'the token does not reach this tenant', { reason: 'forbidden' });
}

/** The tenant a log query is limited to: a tenant token sees only its own tenant, whatever it asks. */
export function tenantScope(request: FastifyRequest, requested: string | undefined): string | undefined {
  const p = request.principal;
  if (p.admin) return requested;
  if (requested !== undefined && requested !== p.tenantId) throw new HttpError(403, 'the token does not reach this tenant', { reason: 'forbidden' });
  return p.tenantId;
}

function unauthorized(message: string): HttpError {
  return new HttpError(401, message, { reason: 'unauthorized' }, { 'www-authenticate': 'Bearer' });
}
