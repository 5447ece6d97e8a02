/**
 * KeyMemory (the re-send memory in typed arrays) against a plain Map model, on random operations: the same
 * answers for every get, the same oldest key, the same size; and its memory for 500,000 keys.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { digestWords, KeyMemory } from '../../src/sources/key-memory.js';
import { decisionKey, RecentlyAccepted } from '../../src/sources/recently-accepted.js';

type Op =
  | { op: 'set'; key: number; at: number }
  | { op: 'get'; key: number }
  | { op: 'evict'; max: number; before: number };

test('KeyMemory answers as a Map kept in insertion order would, under random sets, gets and evictions', () => {
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({
      op: fc.constant('set' as const),
      key: fc.integer({ min: 0, max: 60 }),
      at: fc.integer({ min: 0, max: 1000 }),
    }),
    fc.record({ op: fc.constant('get' as const), key: fc.integer({ min: 0, max: 60 }) }),
    fc.record({
      op: fc.constant('evict' as const),
      max: fc.integer({ min: 0, max: 40 }),
      before: fc.integer({ min: 0, max: 1000 }),
    }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 40 }), fc.array(op, { maxLength: 300 }), (capacity, ops) => {
      const memory = new KeyMemory(capacity);
      // the model: a Map in insertion order, at most `capacity` entries (the oldest go first)
      const model = new Map<number, number>();
      // keys collide in their low bits on purpose (small index), so probing and deletion are exercised
      const words = (k: number): [number, number] => [k >>> 3, (k & 7) * 1024];
      for (const o of ops) {
        if (o.op === 'set') {
          memory.set(...words(o.key), o.at);
          model.delete(o.key);
          model.set(o.key, o.at);
          // the ring also holds forgotten copies: when it is full the oldest slot goes, live or not
        } else if (o.op === 'get') {
          const got = memory.get(...words(o.key));
          if (got !== undefined) assert.equal(got, model.get(o.key), `key ${o.key}`);
        } else {
          memory.evict(o.max, o.before);
          for (const [k, at] of model) {
            if (model.size <= o.max && at >= o.before) break;
            model.delete(k);
          }
        }
        assert.ok(memory.size <= capacity);
        assert.ok(memory.size <= model.size, 'it never remembers a key the model forgot');
        // whatever it remembers is what the model has
        for (const [k] of model) {
          const got = memory.get(...words(k));
          if (got !== undefined) assert.equal(got, model.get(k));
        }
      }
    }),
    { numRuns: 300 },
  );
});

test('KeyMemory keeps every key while the ring has room, and forgets the oldest first', () => {
  const memory = new KeyMemory(1000);
  for (let i = 0; i < 1000; i++) memory.set(i, i * 7919, i);
  assert.equal(memory.size, 1000);
  for (let i = 0; i < 1000; i++) assert.equal(memory.get(i, i * 7919), i);
  memory.set(5000, 1, 2000);
  assert.equal(memory.get(0, 0), undefined, 'the oldest went');
  assert.equal(memory.get(1, 7919), 1);
  memory.evict(1000, 500);
  assert.equal(memory.get(499, 499 * 7919), undefined);
  assert.equal(memory.get(500, 500 * 7919), 500);
  assert.equal(memory.oldest(), 500);
});

test('500,000 decision keys remembered in ~10 MiB of typed arrays, each found again, none that was not added', () => {
  const before = process.memoryUsage().arrayBuffers;
  const recent = new RecentlyAccepted(
    { acceptedSince: () => [], forgetAccepted: () => undefined } as never,
    600_000,
    500_000,
  );
  const held = (process.memoryUsage().arrayBuffers - before) / 2 ** 20;
  assert.ok(held < 16, `the memory for 500,000 keys takes ${held.toFixed(1)} MiB`);
  const keys = Array.from({ length: 500_000 }, (_, i) => decisionKey(`decision-${i}`));
  recent.add(keys);
  for (let i = 0; i < 500_000; i += 997) assert.ok(recent.has(keys[i]!), `key ${i}`);
  let falsePositives = 0;
  for (let i = 0; i < 100_000; i++) if (recent.has(decisionKey(`other-${i}`))) falsePositives++;
  assert.equal(falsePositives, 0);
  assert.ok(digestWords(keys[0]!) !== undefined);
});
