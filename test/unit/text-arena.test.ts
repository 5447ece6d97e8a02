/**
 * The UTF-8 of pending Parquet rows (src/formats/text-arena.ts): each value reads back as TextEncoder writes
 * it, views made before the arena grew stay right, and a finished writer's arena is used again unless it
 * grew past what is kept.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { giveTextArena, takeTextArena, TextArena } from '../../src/formats/text-arena.js';

const encoder = new TextEncoder();

test('property: every value reads back as its UTF-8, across growth (lone surrogates as U+FFFD)', () => {
  fc.assert(
    fc.property(fc.array(fc.string({ unit: 'binary', maxLength: 40 }), { maxLength: 60 }), (values) => {
      const arena = new TextArena(16);
      const views = values.map((v) => {
        const start = arena.add(v);
        return arena.view(start, arena.end);
      });
      values.forEach((v, i) => assert.deepEqual(Buffer.from(views[i]!), Buffer.from(encoder.encode(v)), v));
    }),
    { numRuns: 200 },
  );
});

test('a long value takes the room of its UTF-8, not three bytes a character', () => {
  const arena = new TextArena(16);
  const long = 'é'.repeat(100_000) + 'x'.repeat(300_000);
  const start = arena.add(long);
  assert.equal(arena.end - start, 500_000);
  assert.ok(arena.capacity < 600_000, `capacity ${arena.capacity}`);
  assert.equal(Buffer.from(arena.view(start, arena.end)).toString(), long);
});

test('an arena is used again after clear, from its start', () => {
  const arena = new TextArena(64);
  arena.add('first');
  arena.clear();
  assert.equal(arena.add('again'), 0);
  assert.equal(Buffer.from(arena.view(0, arena.end)).toString(), 'again');
});

test('a given-back arena is taken again when large enough; one grown past keepUpTo is dropped', () => {
  const kept = takeTextArena(1024);
  giveTextArena(kept, 4096);
  assert.equal(takeTextArena(512), kept, 'the spare arena is reused');
  assert.notEqual(takeTextArena(512), kept, 'and taken only once');
  giveTextArena(kept, 4096);
  assert.notEqual(takeTextArena(8192), kept, 'a spare too small is not taken');

  const grown = takeTextArena(1024);
  grown.add('x'.repeat(10_000));
  giveTextArena(grown, 4096);
  assert.notEqual(takeTextArena(1024), grown, 'an arena past keepUpTo is not kept');
});
