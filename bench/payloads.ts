import { gzipSync } from 'node:zlib';

/**
 * Decisions shaped like OPA's (labels, decision_id, bundles, path, input with nested objects, result,
 * requested_by, timestamp, metrics; ~600 bytes), with ids unique per run, so landing can be verified per id.
 */
export function benchDecision(id: string, seq: number, now: Date): Record<string, unknown> {
  const user = USERS[seq % USERS.length]!;
  return {
    labels: { id: INSTANCES[seq % INSTANCES.length], type: 'opa', version: '1.4.2' },
    decision_id: id,
    bundles: { authz: { revision: 'a1f6d2c0e9b84c3f' } },
    path: 'http/example/authz/allow',
    input: {
      attributes: {
        request: { http: { method: seq % 3 === 0 ? 'POST' : 'GET', path: `/api/v1/accounts/${seq % 9973}/orders`, host: 'orders.internal', headers: { 'x-request-id': id.slice(-12), 'user-agent': 'envoy' } } },
        source: { address: { socketAddress: { address: `10.0.${seq % 250}.${seq % 199}`, portValue: 40000 + (seq % 20000) } } },
      },
      user: { name: user, roles: seq % 5 === 0 ? ['admin'] : ['reader', 'orders'] },
    },
    result: { allow: seq % 11 !== 0, reason: seq % 11 !== 0 ? 'role grants access' : 'denied by policy' },
    requested_by: `127.0.0.1:${50000 + (seq % 10000)}`,
    timestamp: now.toISOString().replace('Z', `${String(seq % 1000000).padStart(6, '0')}Z`),
    metrics: { counter_server_query_cache_hit: seq % 2, timer_rego_input_parse_ns: 9000 + (seq % 777), timer_rego_query_eval_ns: 120000 + (seq % 5000), timer_server_handler_ns: 180000 + (seq % 9000) },
    req_id: seq,
  };
}

const USERS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi'];
const INSTANCES = ['9c7e1a52-opa-0', '9c7e1a52-opa-1', '9c7e1a52-opa-2', '9c7e1a52-opa-3'];

/**
 * How many decisions OPA puts in one upload of at most `limitBytes` compressed: OPA fills a gzip stream
 * until the next event would pass `upload_size_limit_bytes`; this finds the same count on a sample.
 */
export function decisionsPerChunk(limitBytes: number): number {
  const now = new Date();
  let lo = 1;
  let hi = 200_000;
  for (let i = 0; i < 40 && lo < hi; i++) {
    const mid = Math.ceil((lo + hi) / 2);
    const sample = Array.from({ length: mid }, (_, j) => benchDecision(`00000000-sample-${j}`, j, now));
    if (gzipSync(JSON.stringify(sample)).length <= limitBytes) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export function chunkBody(run: string, chunkIndex: number, perChunk: number, now: Date): Buffer {
  const items = Array.from({ length: perChunk }, (_, i) => benchDecision(`${run}-${chunkIndex}-${i}`, chunkIndex * perChunk + i, now));
  return gzipSync(JSON.stringify(items));
}
