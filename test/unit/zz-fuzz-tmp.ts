import fc from 'fast-check';
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { DECISION_ID, jsonString, LABELS_ID, scanJsonArray, TIMESTAMP } from '../../src/json/array-scan.ts';

function check(bytes: Buffer) {
  if (!isUtf8(bytes)) return;
  const scan = scanJsonArray(bytes, { maxDepth: 1000, maxElements: 100000, fields: true });
  let parsed: unknown; let ok = true;
  try { parsed = JSON.parse(bytes.toString('utf8')); } catch { ok = false; }
  const s = JSON.stringify(bytes.toString());
  if (!ok) { assert.ok(scan.kind === 'invalid' || scan.kind === 'not_an_array', `parse refuses ${s}, scan ${scan.kind}`); return; }
  if (!Array.isArray(parsed)) { assert.equal(scan.kind, 'not_an_array', s); return; }
  assert.equal(scan.kind, 'array', s);
  if (scan.kind !== 'array') return;
  const arr = parsed as unknown[];
  assert.equal(scan.spans.length / 2, arr.length, s);
  arr.forEach((d, i) => {
    assert.deepEqual(JSON.parse(bytes.toString('utf8', scan.spans[2*i], scan.spans[2*i+1])), d, s);
    const found = (w: number) => { const f = scan.fields![6*i+w]!; return f < 0 ? undefined : jsonString(bytes, f, scan.fields![6*i+w+1]!); };
    const str = (v: unknown) => typeof v === 'string' ? v : undefined;
    const o = d !== null && typeof d === 'object' && !Array.isArray(d) ? d as Record<string, unknown> : undefined;
    assert.equal(found(TIMESTAMP), str(o?.timestamp), s);
    assert.equal(found(DECISION_ID), str(o?.decision_id), s);
    const l = o?.labels;
    assert.equal(found(LABELS_ID), l !== null && typeof l === 'object' && !Array.isArray(l) ? str((l as any).id) : undefined, s);
  });
}

// token-level generator
const keyNames = ['timestamp', 'decision_id', 'labels', 'id', 'x', 'timestampx', 'labels2', ''];
const esc = (name: string, mode: number) => {
  if (mode === 0) return JSON.stringify(name);
  return '"' + [...name].map((c, i) => (mode === 1 && i === 0) || mode === 2 ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c).join('') + '"';
};
const key = fc.tuple(fc.constantFrom(...keyNames), fc.nat(2)).map(([n, m]) => esc(n, m));
const ws = fc.constantFrom('', ' ', '\n', '\r\n', '\t');
const scalarStr = fc.oneof(
  fc.constantFrom('"a"', '"\\\\"', '"\\""', '"\\\\\\""', '"x\\u0041"', '"\\/"', '"2024-01-01T00:00:00Z"', '""', '"é"', '"\\ud800"'),
  fc.string({ unit: fc.constantFrom('a', '\\', '"', 'u', '0', 'n', '/', '\u2028', 'é') , maxLength: 8}).map((s) => JSON.stringify(s)),
);
const scalar = fc.oneof(scalarStr, fc.constantFrom('0', '-0', '1.5e+3', '-1E-2', 'true', 'false', 'null', '123'));
const { value } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, tie('obj'), tie('arr')),
  obj: fc.array(fc.tuple(key, ws, tie('value')), { maxLength: 5 }).map((m) => `{${m.map(([k, w, v]) => `${k}${w}:${w}${v}`).join(',')}}`),
  arr: fc.array(tie('value'), { maxLength: 4 }).map((a) => `[${a.join(', ')}]`),
}));
const alphabet = Buffer.from('[]{}",:\\ \t\n\r0123456789.eE+-tfnrulsabu\x00\x1f\x7f/');
const mutation = fc.array(fc.tuple(fc.nat(), fc.nat(alphabet.length - 1), fc.constantFrom('set', 'insert', 'delete', 'cut')), { maxLength: 3 });

fc.assert(fc.property(fc.array(value as fc.Arbitrary<string>, { maxLength: 5 }), ws, (vals, w) => {
  check(Buffer.from(`${w}[${w}${vals.join(`${w},${w}`)}${w}]${w}`));
}), { numRuns: 30000 });
console.log('valid ok');
fc.assert(fc.property(fc.array(value as fc.Arbitrary<string>, { maxLength: 5 }), mutation, (vals, muts) => {
  let b = Buffer.from(`[${vals.join(',')}]`);
  for (const [at, pick, how] of muts) {
    const i = at % (b.length + 1); const c = alphabet[pick]!;
    if (how === 'set') b = Buffer.concat([b.subarray(0, i), Buffer.of(c), b.subarray(i + 1)]);
    else if (how === 'insert') b = Buffer.concat([b.subarray(0, i), Buffer.of(c), b.subarray(i)]);
    else if (how === 'delete') b = Buffer.concat([b.subarray(0, i), b.subarray(i + 1)]);
    else b = b.subarray(0, i);
  }
  check(b);
}), { numRuns: 60000 });
console.log('mutated ok');
