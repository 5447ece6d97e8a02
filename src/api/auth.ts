import type { FastifyRequest } from 'fastify';
import { errors, jwtVerify, SignJWT } from 'jose';
import { HttpError } from '../sources/http-error.js';
import { bearerToken, sameDigest, tokenDigest } from '../sources/bearer-token.js';
import type { Store, Tenant } from '../store/types.js';

/** Who is calling: the admin (admin key, or no key configured) or one tenant (a tenant token). */
export type Principal = { admin: true } | { admin: false; tenantId: string };

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
}

/** Outpost's issuer; tokens issued by earlier versions of Sluice (`sluice`) are still accepted until they expire. */
const ISSUER = 'outpost';
const ACCEPTED_ISSUERS = [ISSUER, 'sluice'];
const TOKEN_LIFETIME = '24h';
/** The claim of a tenant token that names the tenant's generation when it was issued. */
const GENERATION_CLAIM = 'gen';

/**
 * The control plane's bearer auth, as Outpost's: the admin API key, or an HS256 JWT whose `sub` is a
 * tenant id. With no admin key configured every caller is admin (`sluice serve` warns about it).
 *
 * A tenant token also carries the tenant's generation (`gen`), which every deletion of the tenant raises
 * (store: tenant_generations, kept after the deletion). Each request checks that the tenant exists and is
 * still in that generation, so a token issued before a deletion is refused (401), also once a tenant of
 * the same id is made again, and after a restart. Tokens without the claim (from before it existed) are refused.
 */
export class ApiAuth {
  private readonly adminDigest: Buffer | undefined;
  private readonly jwtKey: Uint8Array;

  constructor(adminKey: string | undefined, jwtSecret: string, private readonly store: Pick<Store, 'getTenant'>) {
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
      const { payload } = await jwtVerify(token, this.jwtKey, { issuer: ACCEPTED_ISSUERS, algorithms: ['HS256'], requiredClaims: ['exp', 'sub'] });
      if (typeof payload.sub !== 'string' || payload.sub === '') throw unauthorized('the token names no tenant');
      const tenant = this.store.getTenant(payload.sub);
      if (!tenant || payload[GENERATION_CLAIM] !== tenant.generation) {
        throw unauthorized('the token is revoked: its tenant was deleted (or does not exist); get a new one from GET /api/v1/tenants/{id}/token');
      }
      return { admin: false, tenantId: payload.sub };
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw unauthorized(err instanceof errors.JWTExpired ? 'the token has expired: get a new one from GET /api/v1/tenants/{id}/token' : 'the bearer token is not accepted');
    }
  }

  issueToken(tenant: Pick<Tenant, 'id' | 'generation'>): Promise<string> {
    return new SignJWT({ [GENERATION_CLAIM]: tenant.generation }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuer(ISSUER).setSubject(tenant.id)
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

/** The tenant a log query is limited to: a tenant token sees only its own tenant, and asking for another is 403. */
export function tenantScope(request: FastifyRequest, requested: string | undefined): string | undefined {
  const p = request.principal;
  if (p.admin) return requested;
  if (requested !== undefined && requested !== p.tenantId) throw new HttpError(403, 'the token does not reach this tenant', { reason: 'forbidden' });
  return p.tenantId;
}

/** tenantScope for a filter of several tenants (`tenant_id=a&tenant_id=b`). */
export function tenantsScope(request: FastifyRequest, requested: string[] | undefined): string[] | undefined {
  const p = request.principal;
  if (p.admin) return requested;
  if (requested !== undefined && requested.some((t) => t !== p.tenantId)) throw new HttpError(403, 'the token does not reach this tenant', { reason: 'forbidden' });
  return [p.tenantId];
}

function unauthorized(message: string): HttpError {
  return new HttpError(401, message, { reason: 'unauthorized' }, { 'www-authenticate': 'Bearer' });
}
