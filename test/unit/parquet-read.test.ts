import { createHash } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decisionRow } from '../../src/formats/decision-row.js';
import { decisionText, goString, rfc3339Nano } from '../../src/formats/decision-text.js';
import { encodeDecisionsParquet } from '../../src/formats/parquet-decisions.js';
import { parquetDecisionTexts, type ByteSource } from '../../src/formats/parquet-decisions-reader.js';

/** What OPA 0.61 sent to a decision log service (captured): its timestamp in nanoseconds. */
const OPA_DECISION =
  '{"labels":{"aa":"x","id":"5d9e536f-1eb1-4d14-918b-0d4888a7c070","version":"0.61.0","zz":"a\\u003cb"},"decision_id":"073c5662-9f2b-4b52-b568-c667a4094551","path":"authz/allow","input":{"h":"\\u003c\\u0026\\u003e","n":12345678901234567890,"user":"bob"},"result":true,"requested_by":"127.0.0.1:54474","timestamp":"2026-12-02T06:13:03.949029135Z","metrics":{"counter_server_query_cache_hit":0,"timer_rego_input_parse_ns":247985,"timer_server_handler_ns":876924},"req_id":2}';

/** Decisions whose text comes back byte for byte. */
export const EXACT_DECISIONS = [
  OPA_DECISION,
  // every typed member, plus members OPA has no column for (trace_id, mapped_result, error) and one of its own
  '{"labels":{"2":"two","a":"x\\n\\u0001"},"decision_id":"d-1","trace_id":"t","span_id":"s","revision":"r1","bundles":{"b":{"revision":"1"}},"path":"a/b","input":{"big":123456789012345678901234567890,"f":1.50,"e":1E+400},"result":{"allow":false},"mapped_result":7,"nd_builtin_cache":{"time.now_ns":{"[]":1710054900123456789}},"erased":["/input/password"],"masked":["/input/ssn"],"error":{"code":"x"},"requested_by":"10.0.0.1:1","timestamp":"2026-05-01T12:00:00Z","metrics":{"m":1},"req_id":9223372036854775807,"tenant":"acme"}',
  // odd values kept in extra, in their OPA places
  '{"labels":{"id":1},"decision_id":"d-2","path":"p","result":true,"timestamp":"yesterday","req_id":1.5}',
  // empty maps and lists are not nulls; empty strings are strings
  '{"labels":{},"decision_id":"","erased":[],"masked":[]}',
  '{"labels":{"":""},"decision_id":"e"}',
  '{}',
  '[1,2]',
  '"just a string"',
];

test('a decision split into its row comes back as its text', () => {
  for (const text of EXACT_DECISIONS) assert.equal(decisionText(decisionRow(text)), text);
});

test('what is rebuilt: OPA order, Go string escapes; a timestamp the column cannot give back is kept as sent', () => {
  const nanos = decisionRow('{"timestamp":"2026-05-01T12:00:00.123456789+02:00","path":"\\u00e9<","decision_id":"x"}');
  // the column holds the instant, to the microsecond, in UTC; the text as sent is kept in extra too
  assert.equal(nanos.timestamp, BigInt(Date.parse('2026-05-01T10:00:00.123Z')) * 1000n + 456n);
  assert.equal(nanos.extra, '{"timestamp":"2026-05-01T12:00:00.123456789+02:00"}');
  assert.equal(
    decisionText(nanos),
    '{"decision_id":"x","path":"é\\u003c","timestamp":"2026-05-01T12:00:00.123456789+02:00"}',
  );
  // one the column gives back byte for byte is not kept twice
  assert.equal(decisionRow('{"timestamp":"2026-05-01T10:00:00.5Z"}').extra, null);
  assert.equal(
    decisionRow('{"timestamp":"2026-05-01T10:00:00.500Z"}').extra,
    '{"timestamp":"2026-05-01T10:00:00.500Z"}',
  );
  // a member OPA does not have goes at the end, or before the next member of extra that OPA has
  assert.equal(
    decisionText(decisionRow('{"decision_id":"d","custom_first":1,"path":"p","x":1,"trace_id":"t"}')),
    '{"decision_id":"d","custom_first":1,"x":1,"trace_id":"t","path":"p"}',
  );
  assert.equal(goString('a"\\\b\f\u2028\u007f'), '"a\\"\\\\\\b\\f\\u2028\u007f"');
  assert.equal(rfc3339Nano(-1n), '1969-12-31T23:59:59.999999Z');
  assert.equal(rfc3339Nano(1_500_000n), '1970-01-01T00:00:01.5Z');
});

function memorySource(body: Buffer, reads: Array<[number, number]> = []): ByteSource {
  return {
    byteLength: body.length,
    read: async (start, end) => {
      reads.push([start, end]);
      return body.subarray(start, end);
    },
  };
}

for (const compression of ['zstd', 'snappy', 'gzip', 'none'] as const) {
  test(`Parquet (${compression}) rows come back as the decisions' text`, async () => {
    const { body } = await encodeDecisionsParquet([Buffer.from(`${EXACT_DECISIONS.join('\n')}\n`)], { compression });
    const texts: string[] = [];
    for await (const t of parquetDecisionTexts(memorySource(body))) texts.push(t);
    assert.deepEqual(texts, EXACT_DECISIONS);
  });
}

test('a decision_id lookup skips row groups by statistics and reads the other columns of one group only', async () => {
  const lines = Array.from({ length: 8000 }, (_, i) =>
    JSON.stringify({
      decision_id: `id-${String(i).padStart(5, '0')}`,
      path: 'p',
      input: { i, pad: createHash('sha256').update(String(i)).digest('hex').repeat(3) },
    }),
  );
  // ~1000 decisions a row group
  const { body } = await encodeDecisionsParquet([Buffer.from(`${lines.join('\n')}\n`)], {
    compression: 'zstd',
    rowGroupBytes: 240 * 1000,
  });
  const reads: Array<[number, number]> = [];
  const found: string[] = [];
  for await (const t of parquetDecisionTexts(memorySource(body, reads), { decisionId: 'id-06500' })) found.push(t);
  assert.deepEqual(found, [lines[6500]]);
  const read = reads.reduce((n, [s, e]) => n + e - s, 0);
  assert.ok(read < body.length / 2, `read ${read} of ${body.length} bytes`);
  const none: string[] = [];
  for await (const t of parquetDecisionTexts(memorySource(body), { decisionId: 'nope' })) none.push(t);
  assert.deepEqual(none, []);
});
