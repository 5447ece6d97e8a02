/**
 * The validating byte scan that replaces JSON.parse at ingest: it accepts exactly what JSON.parse accepts,
 * its spans agree with JSON.parse on valid arrays (strings with brackets, commas and escaped quotes inside),
 * the decision fields it finds are the values JSON.parse reads (duplicate and escaped keys included), it
 * ends on any input, and it refuses depth and count beyond its bounds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isUtf8 } from 'node:buffer';
import { execFileSync } from 'node:child_process';
import {
  arrayElementTexts,
  DECISION_ID,
  jsonString,
  LABELS_ID,
  scanJsonArray,
  TIMESTAMP,
} from '../../src/json/array-scan.js';

test('element texts of any valid JSON array parse to its elements', () => {
  fc.assert(
    fc.property(fc.array(fc.jsonValue(), { maxLength: 20 }), fc.boolean(), (values, pretty) => {
      const text = JSON.stringify(values, null, pretty ? 2 : undefined);
      const texts = arrayElementTexts(Buffer.from(text));
      assert.deepEqual(
        texts.map((t) => JSON.parse(t) as unknown),
        JSON.parse(text),
      );
    }),
    { numRuns: 300 },
  );
});

/** What JSON.parse makes of the bytes: 'invalid', 'not_an_array' or the array. */
function parsedBy(bytes: Uint8Array): unknown[] | 'invalid' | 'not_an_array' {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return 'invalid';
  }
  return Array.isArray(parsed) ? parsed : 'not_an_array';
}

/** The scan and JSON.parse agree on whether the (valid UTF-8) bytes are a JSON array, and on its elements. */
function assertAgrees(bytes: Uint8Array): void {
  if (!isUtf8(bytes)) return; // ingest refuses invalid UTF-8 before the scan (Node's isUtf8)
  const scan = scanJsonArray(bytes, { maxDepth: 1000, maxElements: 100_000 });
  const parsed = parsedBy(bytes);
  if (parsed === 'invalid') {
    // a text that does not start with `[` is refused as not an array before it is read
    assert.ok(
      scan.kind === 'invalid' || scan.kind === 'not_an_array',
      `JSON.parse refuses ${JSON.stringify(Buffer.from(bytes).toString())}, the scan says ${scan.kind}`,
    );
  } else if (parsed === 'not_an_array') {
    assert.equal(scan.kind, 'not_an_array');
  } else {
    assert.equal(
      scan.kind,
      'array',
      `JSON.parse reads ${JSON.stringify(Buffer.from(bytes).toString())}, the scan says ${scan.kind}`,
    );
    if (scan.kind !== 'array') return;
    assert.deepEqual(
      Array.from(
        { length: scan.spans.length / 2 },
        (_, i) =>
          JSON.parse(Buffer.from(bytes.subarray(scan.spans[2 * i], scan.spans[2 * i + 1])).toString()) as unknown,
      ),
      parsed,
    );
  }
}

test('any bytes: the scan ends, and accepts exactly what JSON.parse reads as an array', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      assertAgrees(Uint8Array.from([0x5b, ...bytes])); // most random texts would stop at their first byte
      assertAgrees(bytes);
    }),
    { numRuns: 3000 },
  );
});

test('valid arrays with one byte changed, added or removed: the scan agrees with JSON.parse', () => {
  const alphabet = Buffer.from('[]{}",:\\ \t\n\r0123456789.eE+-tfnrulsabu\x00\x1f\x7f');
  fc.assert(
    fc.property(
      fc.array(fc.jsonValue(), { maxLength: 6 }),
      fc.boolean(),
      fc.nat(),
      fc.nat(alphabet.length - 1),
      fc.constantFrom('set', 'insert', 'delete'),
      (values, pretty, at, pick, how) => {
        const text = Buffer.from(JSON.stringify(values, null, pretty ? 1 : undefined));
        const i = at % text.length;
        const b = alphabet[pick]!;
        const mutated =
          how === 'set'
            ? Buffer.concat([text.subarray(0, i), Buffer.of(b), text.subarray(i + 1)])
            : how === 'insert'
              ? Buffer.concat([text.subarray(0, i), Buffer.of(b), text.subarray(i)])
              : Buffer.concat([text.subarray(0, i), text.subarray(i + 1)]);
        assertAgrees(mutated);
      },
    ),
    { numRuns: 5000 },
  );
});

test('grammar edges JSON.parse refuses, the scan refuses', () => {
  for (const text of [
    '[01]',
    '[1.]',
    '[.5]',
    '[1e]',
    '[-]',
    '[+1]',
    '[tru]',
    '[nul]',
    '[1,]',
    '[,1]',
    '[{"a"}]',
    '[{"a":}]',
    '[{"a":1,}]',
    '[{1:2}]',
    '["\\x"]',
    '["\\u12g4"]',
    '["a\tb"]',
    '["a\u0000b"]',
    '[1 2]',
    '[]]',
    '[] x',
    '[{]',
    '[}',
    '["\\"]',
    '[{"a":1}{"b":2}]',
  ]) {
    const scan = scanJsonArray(Buffer.from(text), { maxDepth: 10, maxElements: 10 });
    assert.equal(scan.kind, 'invalid', text);
    assert.throws(() => JSON.parse(text), SyntaxError);
  }
  for (const text of [
    '[-0.5e+10]',
    '[1E-2]',
    '["\\u00e9\\n\\"\\/"]',
    '[ {"a" : [ ] } , null ]',
    '[1e999, -1e-999, 123456789012345678901234567890]',
    '[]',
    ' [ ] ',
  ]) {
    assert.equal(scanJsonArray(Buffer.from(text), { maxDepth: 10, maxElements: 10 }).kind, 'array', text);
  }
});

test('decision fields: the string values JSON.parse reads for timestamp, decision_id and labels.id', () => {
  const key = (name: string) =>
    fc.constantFrom(
      JSON.stringify(name),
      `"${[...name].map((c, i) => (i === 1 ? `\\u00${c.charCodeAt(0).toString(16)}` : c)).join('')}"`,
    );
  const value = fc.oneof(
    fc.string().map((s) => JSON.stringify(s)),
    fc.jsonValue().map((v) => JSON.stringify(v)),
  );
  const labels = fc.oneof(
    value,
    fc
      .array(fc.tuple(fc.oneof(key('id'), key('version'), key('x')), value), { maxLength: 4 })
      .map((entries) => `{${entries.map(([k, v]) => `${k}:${v}`).join(',')}}`),
  );
  const member = fc.oneof(
    fc.tuple(fc.oneof(key('timestamp'), key('decision_id'), key('path')), value),
    fc.tuple(key('labels'), labels),
    fc.tuple(
      key('input'),
      fc.jsonValue().map((v) => JSON.stringify({ labels: { id: 'nested' }, timestamp: v })),
    ),
  );
  const decision = fc
    .array(member, { maxLength: 8 })
    .map((members) => `{${members.map(([k, v]) => `${k}:${v}`).join(',')}}`);
  fc.assert(
    fc.property(fc.array(decision, { maxLength: 5 }), (decisions) => {
      const bytes = Buffer.from(`[${decisions.join(',')}]`);
      const scan = scanJsonArray(bytes, { maxDepth: 1000, maxElements: 1000, fields: true });
      assert.equal(scan.kind, 'array');
      if (scan.kind !== 'array') return;
      const parsed = JSON.parse(bytes.toString()) as Array<Record<string, unknown>>;
      const found = (i: number, which: number) => {
        const from = scan.fields![6 * i + which]!;
        return from < 0 ? undefined : jsonString(bytes, from, scan.fields![6 * i + which + 1]!);
      };
      parsed.forEach((d, i) => {
        const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
        assert.equal(found(i, TIMESTAMP), str(d.timestamp));
        assert.equal(found(i, DECISION_ID), str(d.decision_id));
        const l = d.labels;
        assert.equal(
          found(i, LABELS_ID),
          l !== null && typeof l === 'object' && !Array.isArray(l) ? str((l as Record<string, unknown>).id) : undefined,
        );
      });
    }),
    { numRuns: 1000 },
  );
});

test('a hostile body: deep nesting, a million tiny elements, extreme numbers, long escapes', () => {
  const million = Buffer.from(`[${'0,'.repeat(999_999)}0]`);
  const scan = scanJsonArray(million, { maxDepth: 1000, maxElements: 1_000_000 });
  assert.equal(scan.kind === 'array' && scan.spans.length / 2, 1_000_000);
  assert.equal(scanJsonArray(million, { maxDepth: 1000, maxElements: 999_999 }).kind, 'too_many');
  assert.equal(
    scanJsonArray(Buffer.from(`[${'['.repeat(100_000)}`), { maxDepth: 1000, maxElements: 10 }).kind,
    'too_deep',
  );
  assert.equal(
    scanJsonArray(Buffer.from(`[${'9'.repeat(100_000)}e${'9'.repeat(1000)}]`), { maxDepth: 10, maxElements: 10 }).kind,
    'array',
  );
  assert.equal(
    scanJsonArray(Buffer.from(`["${'\\"'.repeat(100_000)}"]`), { maxDepth: 10, maxElements: 10 }).kind,
    'array',
  );
  assert.equal(
    scanJsonArray(Buffer.from(`["${'\\"'.repeat(100_000)}]`), { maxDepth: 10, maxElements: 10 }).kind,
    'invalid',
  );
});

test('depth and count bounds', () => {
  const deep = (n: number) => Buffer.from(`[${'['.repeat(n)}${']'.repeat(n)}]`);
  assert.equal(scanJsonArray(deep(1000), { maxDepth: 1000, maxElements: 10 }).kind, 'array');
  assert.equal(scanJsonArray(deep(1001), { maxDepth: 1000, maxElements: 10 }).kind, 'too_deep');
  assert.equal(
    scanJsonArray(Buffer.from(`[${'{},'.repeat(10)}{}]`), { maxDepth: 5, maxElements: 10 }).kind,
    'too_many',
  );
  assert.equal(scanJsonArray(Buffer.from('["unterminated'), { maxDepth: 5, maxElements: 10 }).kind, 'invalid');
  assert.equal(scanJsonArray(Buffer.from('{"a":1}'), { maxDepth: 5, maxElements: 10 }).kind, 'not_an_array');
});

test('a long string of escapes costs time linear in its length, not in its escapes times its length', () => {
  // each escape once searched for the closing quote again from just after it: 1 M escapes before a quote
  // 2 MB away took ~10 s (a few KiB of gzip); it is now one search, ~10 ms
  const escapes = 1_000_000;
  const body = Buffer.from(`[{"decision_id":"${'\\n'.repeat(escapes)}","x":"${'\\u0041'.repeat(escapes / 4)}"}]`);
  const started = performance.now();
  const scan = scanJsonArray(body, { maxDepth: 10, maxElements: 10, fields: true });
  const elapsed = performance.now() - started;
  assert.equal(scan.kind, 'array');
  if (scan.kind !== 'array') return;
  assert.deepEqual(scan.spans, [1, body.length - 1]);
  assert.equal(jsonString(body, scan.fields![DECISION_ID]!, scan.fields![DECISION_ID + 1]!), '\n'.repeat(escapes));
  assert.ok(elapsed < 3000, `${Math.round(elapsed)} ms for a ${body.length}-byte body`);
});

test('decision fields under keys written with escapes, wholly or in part, and keys that only look like them', () => {
  const u = (name: string) => [...name].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
  const body = Buffer.from(
    `[{"${u('timestamp')}":"t","${u('decision_id')}":"d","${u('labels')}":{"${u('id')}":"i"}},` +
      `{"\\u006cabels":{"i\\u0064":"j"},"decision_\\u0069d":"e","timestamp\\u0000":"no","label\\u0073x":{"id":"no"}},` +
      `{"labels":{"id":"k"},"l\\u0061bels":[{"id":"no"}],"timestam\\u0070":"u","decision_id\\n":"no"}]`,
  );
  const scan = scanJsonArray(body, { maxDepth: 10, maxElements: 10, fields: true });
  assert.equal(scan.kind, 'array');
  if (scan.kind !== 'array') return;
  const found = (i: number, which: number) => {
    const from = scan.fields![6 * i + which]!;
    return from < 0 ? undefined : jsonString(body, from, scan.fields![6 * i + which + 1]!);
  };
  const parsed = JSON.parse(body.toString()) as Array<Record<string, unknown>>;
  assert.deepEqual(
    parsed.map((_, i) => [found(i, TIMESTAMP), found(i, DECISION_ID), found(i, LABELS_ID)]),
    [
      ['t', 'd', 'i'],
      [undefined, 'e', 'j'],
      ['u', undefined, undefined],
    ],
  );
});

test('an invalid body is told what is wrong and where', () => {
  const message = (text: string) => {
    const scan = scanJsonArray(Buffer.from(text), { maxDepth: 8, maxElements: 10 });
    return scan.kind === 'invalid' ? scan.message : scan.kind;
  };
  assert.equal(message('[{"a" 1}]'), "expected ':' at byte 6");
  assert.equal(message('[{1:2}]'), 'expected a string key at byte 2');
  assert.equal(message('[{"a":1 "b":2}]'), "expected ',' or a closing bracket at byte 8");
  assert.equal(message('[{"a":1]'), "unmatched ']' at byte 7");
  assert.equal(message('[1] 2'), 'unexpected text after the array at byte 4');
  assert.equal(message('[1, "ab'), 'a string opened at byte 4 never ends');
  assert.equal(message('["\\x"]'), 'a bad escape at byte 2');
  assert.equal(message('["a\tb"]'), 'a control character (0x09) in a string at byte 3');
  assert.equal(message('[tru]'), "unexpected 't' at byte 1");
  assert.equal(message('[1.]'), 'a digit must follow the decimal point at byte 3');
  assert.equal(message('[1e+]'), 'a digit must follow the exponent at byte 4');
  assert.equal(message('[1,'), 'the text ends before the array does');
});

test('scanning a valid body makes no garbage per token (the decode threads young generation stays small)', () => {
  // The scan's error messages once held `${i}`: the optimized scan made that string at every token of every
  // valid body (~3 KiB a 750-byte decision), before any error. Run as the decode threads run it: the built
  // module (dist/), a request-sized body, optimized code (OSR off: the decode threads run the scan through
  // its optimized function, one call per request, and OSR code only sometimes had the strings). What is
  // allocated per decision must be its spans and fields, a few hundred bytes, not kilobytes.
  const script = `
    import v8 from 'node:v8';
    import { scanJsonArray } from ${JSON.stringify(new URL('../../dist/json/array-scan.js', import.meta.url).href)};
    const decision = (i) => ({
      decision_id: '00000000-0000-4000-8000-' + String(i).padStart(12, '0'),
      labels: { id: 'opa-1', version: '1.0.0' },
      path: 'envoy/authz/allow',
      input: { attributes: { request: { http: { method: 'GET', path: '/orders/' + i, headers: { 'x-request-id': 'r' + i } } } },
        user: { name: 'alice', roles: ['reader', 'orders'] } },
      result: i % 2 === 0,
      metrics: { timer_rego_query_eval_ns: 123456 + i, timer_server_handler_ns: 234567 },
      req_id: i,
      timestamp: '2026-11-21T10:00:00.123456789Z',
    });
    const decisions = 400;
    const body = Buffer.from(JSON.stringify(Array.from({ length: decisions }, (_, i) => decision(i))));
    const scanOnce = () => scanJsonArray(body, { maxDepth: 64, maxElements: 1000, fields: true });
    for (let i = 0; i < 200; i++) scanOnce();
    const young = (heap) => heap.heapSpaceStatistics
      .filter((s) => s.spaceName === 'new_space' || s.spaceName === 'new_large_object_space')
      .reduce((sum, s) => sum + s.spaceUsedSize, 0);
    const profiler = new v8.GCProfiler();
    profiler.start();
    const calls = 1000;
    for (let i = 0; i < calls; i++) if (scanOnce().kind !== 'array') throw new Error('not scanned');
    const { statistics } = profiler.stop();
    const freed = statistics.filter((gc) => gc.gcType === 'Scavenge')
      .reduce((sum, gc) => sum + young(gc.beforeGC) - young(gc.afterGC), 0);
    console.log(JSON.stringify({ perDecision: freed / (calls * decisions), bytes: body.length / decisions }));
  `;
  const out = execFileSync(process.execPath, ['--no-use-osr', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  const { perDecision, bytes } = JSON.parse(out) as { perDecision: number; bytes: number };
  assert.ok(
    perDecision < 512,
    `the scan left ${Math.round(perDecision)} bytes of garbage per ${Math.round(bytes)}-byte decision`,
  );
});
