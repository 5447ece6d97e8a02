/**
 * Property: every decision Sluice acknowledges lands exactly once, with its exact text, through every key
 * layout, with and without rules; and the service keeps answering throughout.
 *
 * Decisions are generated as JSON TEXT, not values, so that what JSON.parse would change (big integers,
 * 1E+400, -0.0, long fractions, integer-like keys and their order, __proto__ keys, escapes) is part of what
 * must come out unchanged. Timestamps are odd on purpose (missing, "yesterday", numbers, offsets, year 1 and
 * 9999), results are sometimes 1,000 levels deep or arrays of 20,000 tiny elements.
 *
 * `npm test` runs a short form; RELIABILITY=long (npm run test:reliability) runs many more cases.
 * RELIABILITY_SEED fixes the seed (fast-check prints it on failure).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { linesUnder } from './helpers/files.js';

const long = process.env.RELIABILITY === 'long';
const RUNS = long ? 500 : 100;
const seed = process.env.RELIABILITY_SEED ? Number(process.env.RELIABILITY_SEED) : undefined;
const SECRET_POINTER = '/input/secret';

// ---------------------------------------------------------------------------------------------------------------
// JSON text arbitraries

const numberText = fc.oneof(
  fc.constantFrom(
    '12345678901234567890123',
    '9007199254740993',
    '0.10000000000000000555',
    '1E+400',
    '-1e-400',
    '-0.0',
    '-0',
    '0.0',
    '1.5E3',
    '1e2',
    '123456789012345678901234567890.123456789',
    '-9223372036854775809',
  ),
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => JSON.stringify(n)),
);
const stringText = fc.string({ unit: 'binary', maxLength: 12 }).map((s) => JSON.stringify(s));
const keyText = fc
  .oneof(
    fc.string({ maxLength: 8 }),
    fc.constantFrom('2', '10', '0', '__proto__', 'constructor', '', 'b', 'a', 'é', 'secret2'),
  )
  .map((k) => JSON.stringify(k));

const { value: valueText } = fc.letrec<{ value: string; array: string; object: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    numberText,
    stringText,
    fc.constantFrom('true', 'false', 'null'),
    tie('array'),
    tie('object'),
  ),
  array: fc.array(tie('value'), { maxLength: 5 }).map((a) => `[${a.join(',')}]`),
  object: fc
    .uniqueArray(fc.tuple(keyText, tie('value')), { maxLength: 5, selector: ([k]) => k })
    .map((entries) => `{${entries.map(([k, v]) => `${k}:${v}`).join(',')}}`),
}));

const deep = (levels: number) => '{"a":'.repeat(levels - 1) + '[' + '1' + ']' + '}'.repeat(levels - 1);

const resultText = fc.oneof(
  { weight: 8, arbitrary: valueText },
  { weight: 1, arbitrary: fc.constant(deep(999)) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 20_000 }).map((n) => `[${'0,'.repeat(n)}0]`) },
);

const timestampText = fc.oneof(
  { weight: 4, arbitrary: fc.constant(`"${new Date().toISOString().replace('Z', '123456Z')}"`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '"yesterday"',
      '12',
      'null',
      '"2026-12-01T10:00:00+02:00"',
      '"0001-01-01T00:00:00Z"',
      '"9999-12-31T23:59:59.999999999Z"',
      '"2026-13-01T00:00:00Z"',
      '""',
      '{"t":1}',
    ),
  },
  { weight: 1, arbitrary: fc.constant(undefined) },
);

const labelText = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('"opa-1"', '"opa-2"') },
  { weight: 1, arbitrary: fc.constantFrom('"../x"', '""', '"a/b c"', '"ü"', '1') },
);

interface Generated {
  /** The decision's text with `@ID@` where its decision_id goes. */
  template: string;
  /** Whether it carries `"secret":"..."` first in its input (the mask's pointer). */
  secret: boolean;
}

const decisionText: fc.Arbitrary<Generated> = fc
  .record({
    timestamp: timestampText,
    label: labelText,
    secret: fc.boolean(),
    input: fc
      .uniqueArray(fc.tuple(keyText, valueText), { maxLength: 4, selector: ([k]) => k })
      .map((entries) => entries.filter(([k]) => k !== '"secret"')),
    result: resultText,
  })
  .map(({ timestamp, label, secret, input, result }) => {
    const members = input.map(([k, v]) => `${k}:${v}`);
    if (secret) members.unshift('"secret":"S3CR3T"');
    const fields = [
      '"decision_id":"@ID@"',
      ...(timestamp === undefined ? [] : [`"timestamp":${timestamp}`]),
      `"labels":{"id":${label},"version":"0.61.0"}`,
      '"path":"authz/allow"',
      `"input":{${members.join(',')}}`,
      `"result":${result}`,
    ];
    return { template: `{${fields.join(',')}}`, secret };
  });

// ---------------------------------------------------------------------------------------------------------------
// What each output must hold

/** The decision as an output with the mask `remove /input/secret` writes it: the member removed, the pointer recorded. */
function masked(text: string): string {
  const withoutSecret = text.includes('"secret":"S3CR3T",')
    ? text.replace('"secret":"S3CR3T",', '')
    : text.replace('"secret":"S3CR3T"', '');
  return `${withoutSecret.slice(0, -1)},"erased":["${SECRET_POINTER}"]}`;
}

const LAYOUTS = ['hive', 'eopa', 'eopa-per-decision', 'hourly-per-decision', 'outpost'] as const;

const idIn = (line: string): string => /"decision_id":"([^"]+)"/.exec(line)?.[1] ?? '(none)';

// ---------------------------------------------------------------------------------------------------------------

test(`${RUNS} generated requests of odd decisions: each acknowledged decision lands once, with its exact text, in every layout, with and without rules`, {
  timeout: long ? 1_200_000 : 240_000,
}, async (t) => {
  const dir = tempDir('sluice-property-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const outputs = [
    ...LAYOUTS.map((key) => ({
      name: `plain-${key}`,
      type: 'file',
      path: path.join(dir, `plain-${key}`),
      key,
      batch: { max_age: '200ms' },
    })),
    {
      name: 'masked',
      type: 'file',
      path: path.join(dir, 'masked'),
      batch: { max_age: '200ms' },
      rules: { mask: [SECRET_POINTER] },
    },
    {
      name: 'masked-eopa',
      type: 'file',
      path: path.join(dir, 'masked-eopa'),
      key: 'eopa-per-decision',
      batch: { max_age: '200ms' },
      rules: { mask: [SECRET_POINTER] },
    },
  ];
  const sluice = new SluiceProcess({ config: { data_dir: path.join(dir, 'data'), outputs, shutdown_timeout: '10s' } });
  t.after(() => sluice.kill9());
  await sluice.start();

  /** decision_id -> the text sent (acknowledged), and whether it had the secret */
  const acked = new Map<string, Generated & { text: string }>();
  let slowestHealthMs = 0;
  const property = fc.asyncProperty(fc.array(decisionText, { minLength: 1, maxLength: 8 }), async (generated) => {
    assert.equal(
      sluice.exitCode,
      undefined,
      `sluice is not running (exit ${sluice.exitCode}):\n${sluice.output.slice(-2000)}`,
    );
    const sent = generated.map((g) => ({ ...g, text: g.template.replace('@ID@', randomUUID()) }));
    const res = await fetch(`${sluice.url}/logs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: gzipSync(`[${sent.map((s) => s.text).join(',')}]`),
      signal: AbortSignal.timeout(30_000),
    });
    const answer = await res.text();
    assert.equal(res.status, 200, `a valid request of ${sent.length} decisions is accepted: ${answer}`);
    assert.equal((JSON.parse(answer) as { accepted: number }).accepted, sent.length);
    for (const s of sent) acked.set(idIn(s.text), s);
    const started = performance.now();
    const health = await fetch(`${sluice.url}/health`, { signal: AbortSignal.timeout(10_000) });
    slowestHealthMs = Math.max(slowestHealthMs, performance.now() - started);
    assert.equal(health.status, 200);
  });
  await fc.assert(property, { numRuns: RUNS, seed, endOnFailure: true });
  t.diagnostic(`${acked.size} decisions acknowledged; slowest /health ${slowestHealthMs.toFixed(0)} ms`);

  for (const output of outputs) {
    const where = output.path;
    await sluice.until(
      `${acked.size} decisions in ${output.name}`,
      () => linesUnder(where).length >= acked.size,
      120_000,
    );
    const lines = linesUnder(where);
    const seen = new Map<string, string>();
    for (const line of lines) {
      const id = idIn(line);
      assert.ok(!seen.has(id), `${output.name}: decision ${id} is there twice`);
      seen.set(id, line);
    }
    assert.equal(seen.size, acked.size, `${output.name}: every acknowledged decision, nothing else`);
    for (const [id, s] of acked) {
      const want = output.rules && s.secret ? masked(s.text) : s.text;
      assert.equal(
        seen.get(id),
        want,
        `${output.name}: decision ${id} is written exactly as ${output.rules && s.secret ? 'masked' : 'sent'}`,
      );
    }
  }
  const ready = (await sluice.ready()) as unknown as {
    status: string;
    outputs: Array<{ name: string; dead_letter: { events: number } }>;
  };
  assert.equal(ready.status, 'ok');
  for (const o of ready.outputs) assert.equal(o.dead_letter.events, 0, `${o.name} set nothing aside`);
  assert.equal(await sluice.stop(), 0);
});
