/**
 * The byte scan that cuts OPA's arrays: its spans agree with JSON.parse on valid arrays (strings with
 * brackets, commas and escaped quotes inside), it ends on any input, and it refuses depth and count beyond
 * its bounds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { arrayElementTexts, scanJsonArray } from '../../src/json/array-scan.js';

test('element texts of any valid JSON array parse to its elements', () => {
  fc.assert(fc.property(fc.array(fc.jsonValue(), { maxLength: 20 }), fc.boolean(), (values, pretty) => {
    const text = JSON.stringify(values, null, pretty ? 2 : undefined);
    const texts = arrayElementTexts(Buffer.from(text));
    assert.deepEqual(texts.map((t) => JSON.parse(t) as unknown), JSON.parse(text));
  }), { numRuns: 300 });
});

test('any bytes: the scan ends, and finds every element of what JSON.parse reads as an array', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
    const scan = scanJsonArray(bytes, { maxDepth: 1000, maxElements: 1000 });
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(bytes).toString());
    } catch {
      return; // invalid JSON: whatever the scan said, JSON.parse refuses the body after it
    }
    if (Array.isArray(parsed) && Buffer.from(bytes).toString() === new TextDecoder().decode(bytes)) {
      assert.equal(scan.kind, 'array');
      if (scan.kind === 'array') assert.equal(scan.spans.length / 2, parsed.length);
    }
  }), { numRuns: 2000 });
});

test('depth and count bounds', () => {
  const deep = (n: number) => Buffer.from(`[${'['.repeat(n)}${']'.repeat(n)}]`);
  assert.equal(scanJsonArray(deep(1000), { maxDepth: 1000, maxElements: 10 }).kind, 'array');
  assert.equal(scanJsonArray(deep(1001), { maxDepth: 1000, maxElements: 10 }).kind, 'too_deep');
  assert.equal(scanJsonArray(Buffer.from(`[${'{},'.repeat(10)}{}]`), { maxDepth: 5, maxElements: 10 }).kind, 'too_many');
  assert.equal(scanJsonArray(Buffer.from('["unterminated'), { maxDepth: 5, maxElements: 10 }).kind, 'invalid');
  assert.equal(scanJsonArray(Buffer.from('{"a":1}'), { maxDepth: 5, maxElements: 10 }).kind, 'not_an_array');
});
