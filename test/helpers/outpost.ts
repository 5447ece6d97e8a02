import { createServer } from 'node:net';

/** One answer of the Outpost-compatible API: status, parsed JSON body (or the raw text), and headers. */
export interface ApiResponse<T = any> {
  status: number;
  body: T;
  text: string;
  headers: Headers;
}

/**
 * A small fetch-based client for Sluice's `/api/v1` (the Outpost-compatible API). Every response body is kept
 * in `transcript`, so a test can check that something (a secret) never appeared in any answer.
 */
export class OutpostApi {
  readonly transcript: string[] = [];

  constructor(
    readonly baseUrl: string,
    readonly token?: string,
  ) {}

  /** One request, bounded by `timeoutMs` (30 s by default): a hung answer fails the test instead of stalling the suite. */
  async call<T = any>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
    timeoutMs = 30_000,
  ): Promise<ApiResponse<T>> {
    const h: Record<string, string> = { ...headers };
    if (this.token) h.authorization = `Bearer ${this.token}`;
    if (body !== undefined) h['content-type'] = 'application/json';
    const res = await fetch(`${this.baseUrl}/api/v1${path}`, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    this.transcript.push(text);
    let parsed: unknown = text;
    try {
      parsed = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, body: parsed as T, text, headers: res.headers };
  }

  /** Calls and throws (with the answer) unless the status is `status`; returns the body. */
  async expect<T = any>(status: number, method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.call<T>(method, path, body);
    if (res.status !== status)
      throw new Error(`${method} /api/v1${path}: expected ${status}, got ${res.status}: ${res.text}`);
    return res.body;
  }

  putTenant(id: string, metadata?: Record<string, string>): Promise<ApiResponse> {
    return this.call('PUT', `/tenants/${encodeURIComponent(id)}`, metadata ? { metadata } : {});
  }

  /** Creates a destination (201 expected) and returns it. `oldPath` uses `/api/v1/{tenant}/destinations`. */
  createDestination(
    tenant: string,
    destination: Record<string, unknown>,
    opts: { oldPath?: boolean } = {},
  ): Promise<any> {
    const path = opts.oldPath
      ? `/${encodeURIComponent(tenant)}/destinations`
      : `/tenants/${encodeURIComponent(tenant)}/destinations`;
    return this.expect(201, 'POST', path, destination);
  }

  /** Publishes (202 expected) and returns `{id, duplicate, destination_ids}`. */
  publish(event: Record<string, unknown>): Promise<{ id: string; duplicate: boolean; destination_ids: string[] }> {
    return this.expect(202, 'POST', '/publish', event);
  }

  /** Every attempt matching the filters (follows `next` cursors, bounded). */
  async attempts(filters: Record<string, string> = {}): Promise<any[]> {
    const out: any[] = [];
    let next: string | null = null;
    for (let page = 0; page < 100; page++) {
      const q: URLSearchParams = new URLSearchParams({ ...filters, limit: '1000', ...(next ? { next } : {}) });
      const body: { models: any[]; pagination: { next: string | null } } = await this.expect<{
        models: any[];
        pagination: { next: string | null };
      }>(200, 'GET', `/attempts?${q}`);
      out.push(...body.models);
      next = body.pagination?.next ?? null;
      if (!next || body.models.length === 0) break;
    }
    return out;
  }

  event(id: string): Promise<any> {
    return this.expect(200, 'GET', `/events/${encodeURIComponent(id)}`);
  }
}

/** The status of an event's delivery to one destination, from `GET /events/{id}` (`deliveries` as array or map). */
export function deliveryStatus(event: any, destinationId: string): string | undefined {
  const deliveries = event?.deliveries;
  if (Array.isArray(deliveries)) return deliveries.find((d: any) => d?.destination_id === destinationId)?.status;
  if (deliveries && typeof deliveries === 'object') {
    const d = deliveries[destinationId];
    return typeof d === 'string' ? d : d?.status;
  }
  return undefined;
}

/** A loopback port nothing listens on (it was free a moment ago). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
