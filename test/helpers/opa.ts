import { gzipSync } from 'node:zlib';
import { randomUUID } from 'node:crypto';

/** A decision as OPA reports it (EventV1), ~600 bytes. */
export function decision(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    labels: { id: '5758c49f-c271-4cff-adbe-07b3558ff8a1', type: 'opa', version: '1.4.2' },
    decision_id: randomUUID(),
    bundles: { authz: { revision: 'W3sibCI6InN5cy9jYXRhbG9nIiwicyI6NDA3MX1d' } },
    path: 'http/example/authz/allow',
    input: {
      method: 'GET',
      path: ['salary', 'bob'],
      user: { name: 'alice', roles: ['admin', 'hr'] },
      headers: { 'x-request-id': randomUUID() },
    },
    result: true,
    requested_by: '127.0.0.1:59943',
    timestamp: new Date().toISOString().replace('Z', '123456Z'),
    metrics: { counter_server_query_cache_hit: 1, timer_rego_input_parse_ns: 417, timer_server_handler_ns: 76383 },
    req_id: 19,
    ...overrides,
  };
}

export function decisions(n: number, overrides: Record<string, unknown> = {}): Array<Record<string, unknown>> {
  return Array.from({ length: n }, () => decision(overrides));
}

/**
 * POSTs decisions the way OPA does: one gzip-compressed JSON array. Bounded by `timeoutMs` (60 s by default,
 * room for a large batch on a loaded machine), so a request that never gets its answer fails its test.
 */
/** POSTs decisions to /logs as OPA does; a Buffer is sent as it is (exact text: numbers past 2^53, escapes). */
export async function postDecisions(
  url: string,
  body: unknown[] | Buffer,
  opts: { partition?: string; token?: string; gzip?: boolean; timeoutMs?: number } = {},
): Promise<Response> {
  const json = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  const gzip = opts.gzip ?? true;
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'Open Policy Agent/1.4.2 (linux, amd64)',
  };
  if (gzip) headers['content-encoding'] = 'gzip';
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  return fetch(`${url}/logs${opts.partition ? `/${opts.partition}` : ''}`, {
    method: 'POST',
    headers,
    body: gzip ? gzipSync(json) : json,
    signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000),
  });
}
