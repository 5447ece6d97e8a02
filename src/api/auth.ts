import type { FastifyRequest } from 'fastify';
import { errors, jwtVerify, SignJWT } from 'jose';
import { HttpError } from '../http/http-error.js';
import { bearerToken, BearerTokens, unauthorized } from '../http/bearer-token.js';
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
const ADMIN: Principal = Object.freeze({ admin: true });

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
  /** The admin key (none: the API is open). */
  private readonly adminKey: BearerTokens<Principal>;
  private readonly jwtKey: Uint8Array;

  constructor(
    adminKey: string | undefined,
    jwtSecret: string,
    private readonly store: Pick<Store, 'getTenant'>,
  ) {
    this.adminKey = new BearerTokens(adminKey ? [[adminKey, ADMIN]] : []);
    this.jwtKey = new TextEncoder().encode(jwtSecret);
  }

  get open(): boolean {
    return this.adminKey.size === 0;
  }

  async authenticate(request: FastifyRequest): Promise<Principal> {
    if (this.open) return ADMIN;
    const token = bearerToken(request);
    if (token === undefined) throw unauthorized('send Authorization: Bearer <admin key or tenant token>');
    const admin = this.adminKey.find(token);
    if (admin) return admin;
    try {
      const { payload } = await jwtVerify(token, this.jwtKey, {
        issuer: ACCEPTED_ISSUERS,
        algorithms: ['HS256'],
        requiredClaims: ['exp', 'sub'],
      });
      if (typeof payload.sub !== 'string' || payload.sub === '') throw unauthorized('the token names no tenant');
      // Read from the store on every request, never cached: a deletion whose promise has resolved is seen here
      // (the read answers from committed state). A deletion landing after this check, while the route is on its
      // way, is caught by the route's write, which checks its tenant in its own transaction (TenantGoneError,
      // 'no_tenant'): with a synchronous store too, the check and the route's writes never ran in one tick.
      const tenant = await this.store.getTenant(payload.sub);
      if (!tenant || payload[GENERATION_CLAIM] !== tenant.generation) {
        throw unauthorized(
          'the token is revoked: its tenant was deleted (or does not exist); get a new one from GET /api/v1/tenants/{id}/token',
        );
      }
      return { admin: false, tenantId: payload.sub };
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw unauthorized(
        err instanceof errors.JWTExpired
          ? 'the token has expired: get a new one from GET /api/v1/tenants/{id}/token'
          : 'the bearer token is not accepted',
      );
    }
  }

  issueToken(tenant: Pick<Tenant, 'id' | 'generation'>): Promise<string> {
    return new SignJWT({ [GENERATION_CLAIM]: tenant.generation })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(ISSUER)
      .setSubject(tenant.id)
      .setIssuedAt()
      .setExpirationTime(TOKEN_LIFETIME)
      .sign(this.jwtKey);
  }
}

/**
 * A route's `preHandler`: 403 unless the caller is admin. It runs after the request's validation, as the
 * handler would: a request that is not valid is a 422 whoever sends it.
 */
export async function requireAdmin(request: FastifyRequest): Promise<void> {
  if (!request.principal.admin) throw new HttpError(403, 'this route needs the admin key', { reason: 'forbidden' });
}

/** A route's `preHandler` for routes under a `:tenant_id`: 403 unless the caller is admin or that tenant. */
export async function requireTenant(request: FastifyRequest): Promise<void> {
  const p = request.principal;
  const { tenant_id: tenantId } = request.params as { tenant_id: string };
  if (!p.admin && p.tenantId !== tenantId)
    throw new HttpError(403, 'the token does not reach this tenant', { reason: 'forbidden' });
}

/** The tenant a log query is limited to: a tenant token sees only its own tenant, and asking for another is 403. */
export function tenantScope(request: FastifyRequest, requested: string | undefined): string | undefined {
  const p = request.principal;
  if (p.admin) return requested;
  if (requested !== undefined && requested !== p.tenantId)
    throw new HttpError(403, 'the token does not reach this tenant', { reason: 'forbidden' });
  return p.tenantId;
}

/** tenantScope for a filter of several tenants (`tenant_id=a&tenant_id=b`). */
export function tenantsScope(request: FastifyRequest, requested: string[] | undefined): string[] | undefined {
  const p = request.principal;
  if (p.admin) return requested;
  if (requested !== undefined && requested.some((t) => t !== p.tenantId))
    throw new HttpError(403, 'the token does not reach this tenant', { reason: 'forbidden' });
  return [p.tenantId];
}
