/**
 * A small fetch-based client for Sluice's Outpost-compatible API under /api/v1, for tests.
 */
import assert from 'node:assert/strict';

// The tests read response bodies field by field; a loose type keeps them short.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

export interface ApiResponse {
  status: number;
  /** The parsed JSON body, or undefined when the body is empty or not JSON. */
  body: Json;
  /** The raw body text. */
  text: string;
  headers: Headers;
}

export interface Page {
  models: Json[];
  pagination: { limit: number; next: string | null; prev: string | null };
}

export class ApiClient {
  /**
   * `baseUrl` is the server's root (e.g. http://127.0.0.1:1234); paths are relative to /api/v1.
   * `token` is sent as `Authorization: Bearer <token>` when given. Every response's text is appended to `seen`
   * when given (to check that something never appears in any response).
   */
  constructor(
    readonly baseUrl: string,
    readonly token?: string,
    readonly seen?: string[],
  ) {}

  /** The same client with another bearer token (undefined: no Authorization header). */
  as(token: string | undefined): ApiClient {
    return new ApiClient(this.baseUrl, token, this.seen);
  }

  async request(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<ApiResponse> {
    const h: Record<string, string> = { ...headers };
    if (this.token !== undefined) h.authorization = `Bearer ${this.token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      h['content-type'] = 'application/json';
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const res = await fetch(`${this.baseUrl}/api/v1${path}`, {
      method,
      headers: h,
      body: payload,
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    this.seen?.push(text);
    let parsed: Json;
    try {
      parsed = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text, headers: res.headers };
  }

  get(path: string): Promise<ApiResponse> {
    return this.request('GET', path);
  }
  put(path: string, body?: unknown): Promise<ApiResponse> {
    return this.request('PUT', path, body);
  }
  post(path: string, body?: unknown): Promise<ApiResponse> {
    return this.request('POST', path, body);
  }
  patch(path: string, body?: unknown): Promise<ApiResponse> {
    return this.request('PATCH', path, body);
  }
  delete(path: string): Promise<ApiResponse> {
    return this.request('DELETE', path);
  }

  /** GET of a paged list; asserts 200 and the `{models, pagination}` shape. */
  async page(path: string, query: Record<string, string | number | undefined> = {}): Promise<Page> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    const res = await this.get(qs ? `${path}${path.includes('?') ? '&' : '?'}${qs}` : path);
    assert.equal(res.status, 200, `GET ${path}?${qs}: ${res.text}`);
    assertPage(res.body, `GET ${path}?${qs}`);
    return res.body as Page;
  }

  /** Every model of a paged list, following `next` cursors (at most `maxPages` pages). */
  async all(path: string, query: Record<string, string | number | undefined> = {}, maxPages = 100): Promise<Json[]> {
    const out: Json[] = [];
    let page = await this.page(path, query);
    out.push(...page.models);
    for (let i = 1; page.pagination.next !== null; i++) {
      assert.ok(i < maxPages, `${path}: more than ${maxPages} pages`);
      page = await this.page(path, { ...query, next: page.pagination.next });
      out.push(...page.models);
    }
    return out;
  }
}

export function assertPage(body: Json, what: string): asserts body is Page {
  assert.ok(body && Array.isArray(body.models), `${what}: models is an array; got ${JSON.stringify(body)}`);
  assert.ok(
    body.pagination && typeof body.pagination === 'object',
    `${what}: pagination is an object; got ${JSON.stringify(body)}`,
  );
  for (const c of ['next', 'prev'] as const) {
    const v = body.pagination[c];
    assert.ok(
      v === null || (typeof v === 'string' && v.length > 0),
      `${what}: pagination.${c} is a cursor or null; got ${JSON.stringify(v)}`,
    );
  }
}

/** The error shape `{status, message, data}` with the given status. */
export function assertError(res: ApiResponse, status: number, what = ''): void {
  assert.equal(res.status, status, `${what} expected ${status}; got ${res.status} ${res.text}`);
  assert.equal(res.body?.status, status, `${what} the error body carries its status; got ${res.text}`);
  assert.equal(typeof res.body?.message, 'string', `${what} the error body has a message; got ${res.text}`);
}

/**
 * A 404 from the route itself (the resource does not exist), not the server's "no route" answer for a path
 * it does not know at all.
 */
export function assertNotFound(res: ApiResponse, what = ''): void {
  assertError(res, 404, what);
  assert.doesNotMatch(
    String(res.body.message),
    /^no route /,
    `${what} the route exists and answers 404 for the resource; got ${res.text}`,
  );
}

/** 422 `validation error` whose `data` lists (at least) each of `problems`. */
export function assertValidation(res: ApiResponse, problems: string[] = [], what = ''): void {
  assertError(res, 422, what);
  assert.equal(res.body.message, 'validation error', `${what} message; got ${res.text}`);
  assert.ok(Array.isArray(res.body.data), `${what} data lists the problems; got ${res.text}`);
  for (const p of problems)
    assert.ok(res.body.data.includes(p), `${what} data includes "${p}"; got ${JSON.stringify(res.body.data)}`);
}

/** The decoded header and payload of a JWT (not verified). */
export function decodeJwt(token: string): { header: Json; payload: Json } {
  const parts = token.split('.');
  assert.equal(parts.length, 3, `a JWT has three parts: ${token}`);
  const dec = (s: string) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
  return { header: dec(parts[0]!), payload: dec(parts[1]!) };
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
