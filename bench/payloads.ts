import { gzipSync } from 'node:zlib';

/**
 * Decisions shaped like what OPA v0.61 logs for an Envoy ext_authz input (measured with ../shared/bin/opa:
 * the same fields, trimmed to ~700 bytes), with what makes real ones compress poorly: a fresh decision_id and
 * x-request-id, Envoy's 20-digit request id, source ports, nanosecond timestamps and timer metrics that
 * differ in every decision. About 365 fit a 32 KiB gzip chunk, as with real OPAs; ids are unique per run,
 * so landing can be verified per id.
 */
export function benchDecision(id: string, seq: number, now: Date): Record<string, unknown> {
  const random = mulberry32(seq);
  const user = USERS[seq % USERS.length]!;
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(random() * 16).toString(16)).join('');
  const digits = (n: number) => Array.from({ length: n }, () => Math.floor(random() * 10)).join('');
  const method = seq % 3 === 0 ? 'POST' : 'GET';
  const path = `/api/v1/accounts/${Math.floor(random() * 99_991)}/orders`;
  return {
    decision_id: id,
    input: {
      attributes: {
        request: {
          http: {
            headers: { 'user-agent': 'envoy', 'x-request-id': `${hex(8)}-${hex(4)}-4${hex(3)}-${hex(4)}-${hex(12)}` },
            host: 'orders.internal:8080',
            id: digits(20),
            method,
            path,
          },
        },
        source: {
          address: {
            socketAddress: {
              address: `10.244.${seq % 250}.${Math.floor(random() * 250)}`,
              portValue: 32768 + Math.floor(random() * 28_000),
            },
          },
        },
      },
      user: { name: user, roles: seq % 5 === 0 ? ['admin'] : ['reader', 'orders'] },
    },
    labels: { id: INSTANCES[seq % INSTANCES.length], version: '0.61.0' },
    metrics: {
      counter_server_query_cache_hit: seq % 2,
      timer_rego_input_parse_ns: 20_000 + Math.floor(random() * 200_000),
      timer_rego_query_eval_ns: 50_000 + Math.floor(random() * 300_000),
      timer_server_handler_ns: 100_000 + Math.floor(random() * 500_000),
    },
    path: 'envoy/authz/allow',
    req_id: seq,
    requested_by: `127.0.0.1:${32768 + Math.floor(random() * 28_000)}`,
    result: seq % 11 !== 0,
    timestamp: now.toISOString().replace(/\.\d+Z$/, `.${digits(9)}Z`),
  };
}

/** A small deterministic PRNG: the same seq gives the same decision in every run and process. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const USERS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi'];
const INSTANCES = [
  '6304e72a-dcd9-4dc7-b78f-ed3a10a74fd4',
  '9c7e1a52-5b3e-4f0a-8d2c-1e7f6a5b4c3d',
  'b2d4f6a8-1c3e-4a5b-9d7f-0e2c4a6b8d0f',
  '3e5a7c9e-2b4d-4f6a-8c0e-1d3f5b7d9f1b',
];

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
  const items = Array.from({ length: perChunk }, (_, i) =>
    benchDecision(`${run}-${chunkIndex}-${i}`, chunkIndex * perChunk + i, now),
  );
  return gzipSync(JSON.stringify(items));
}
