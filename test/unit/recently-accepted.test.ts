/**
 * RecentlyAccepted (the re-send memory) on its own, with explicit times: how long a key is remembered (the
 * window, counted in whole seconds), how many (max_entries, the oldest forgotten first), what a restart reads
 * back from the buffer, what `forgetOld` deletes there, and `window: 0` / `max_entries: 0`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decisionKey, RecentlyAccepted } from '../../src/sources/recently-accepted.js';

/** The two calls RecentlyAccepted makes of the buffer: rows read back at start, and what it asks to delete. */
function bufferHolding(rows: Array<{ at: number; keys: string[] }> = []) {
  const forgotten: number[] = [];
  const buffer = {
    acceptedSince: (since: number, maxKeys: number) => {
      // as the buffer does: newest first until maxKeys keys, returned oldest first
      const out: Array<{ at: number; keys: string[] }> = [];
      let count = 0;
      for (const row of [...rows].filter((r) => r.at >= since).sort((a, b) => b.at - a.at)) {
        out.push(row);
        count += row.keys.length;
        if (count >= maxKeys) break;
      }
      return out.reverse();
    },
    forgetAccepted: (before: number) => void forgotten.push(before),
  };
  return { buffer: buffer as never, forgotten };
}

const key = (n: number) => decisionKey(`decision-${n}`);

test('a key is remembered for the whole window and forgotten within a second after it', () => {
  const { buffer } = bufferHolding();
  const recent = new RecentlyAccepted(buffer, 10_000, 100);
  const t0 = Date.now();
  recent.add([key(1)], t0);
  for (const after of [0, 1, 5_000, 9_999, 10_000])
    assert.ok(recent.has(key(1), t0 + after), `remembered ${after} ms after`);
  assert.ok(!recent.has(key(1), t0 + 11_000), 'forgotten a second after the window');
  assert.ok(!recent.has(key(2), t0), 'a key never added is not remembered');
});

test('max_entries: the oldest keys go first; a key added again counts as new', () => {
  const { buffer } = bufferHolding();
  const recent = new RecentlyAccepted(buffer, 600_000, 3);
  const t0 = Date.now();
  recent.add([key(1), key(2), key(3)], t0);
  recent.add([key(1)], t0 + 1_000);
  recent.add([key(4)], t0 + 2_000);
  assert.ok(!recent.has(key(2), t0 + 2_000), 'the oldest went');
  for (const n of [1, 3, 4]) assert.ok(recent.has(key(n), t0 + 2_000), `key ${n} stays`);
});

test('filter: decisions accepted before, or twice in one request, are dropped and counted; the new keys are listed once', () => {
  const { buffer } = bufferHolding();
  const recent = new RecentlyAccepted(buffer, 600_000, 100);
  recent.add([key(1)]);
  const chunk = {
    count: 3,
    payload: Buffer.from('{"a":1}\n{"a":2}\n{"a":3}\n'),
    compressed: false,
    bytes: 24,
    decisionKeys: [key(1), key(2), key(2)],
  };
  const { chunks, keys, duplicates } = recent.filter([chunk as never]);
  assert.equal(duplicates, 2);
  assert.deepEqual(keys, [key(2)]);
  assert.equal(chunks.length, 1);
  const kept = chunks[0] as unknown as { count: number; payload: Buffer };
  assert.equal(kept.count, 1);
  assert.equal(kept.payload.toString('utf8'), '{"a":2}\n', 'only the new decision is kept, as its line');
});

test('a restart reads back what is within the window, at most max_entries keys, the newest first', () => {
  const now = Date.now();
  const { buffer } = bufferHolding([
    { at: now - 700_000, keys: [key(1)] }, // outside the 10-minute window
    { at: now - 300_000, keys: [key(2), key(3)] },
    { at: now - 200_000, keys: [key(4), key(5)] },
    { at: now - 100_000, keys: [key(6), key(7)] },
  ]);
  const recent = new RecentlyAccepted(buffer, 600_000, 4);
  assert.ok(!recent.has(key(1), now), 'older than the window');
  assert.ok(
    !recent.has(key(2), now) && !recent.has(key(3), now),
    'beyond max_entries: the oldest rows are not read back',
  );
  for (const n of [4, 5, 6, 7]) assert.ok(recent.has(key(n), now), `key ${n} is read back`);
});

test('forgetOld deletes from the buffer what is older than the window, or than the oldest key still remembered', () => {
  const { buffer, forgotten } = bufferHolding();
  const recent = new RecentlyAccepted(buffer, 60_000, 2);
  const t0 = Date.now();
  recent.forgetOld(t0);
  assert.equal(forgotten.at(-1), t0, 'nothing remembered: every row before now goes');
  recent.add([key(1)], t0);
  recent.add([key(2)], t0 + 5_000);
  recent.add([key(3)], t0 + 10_000); // key 1 goes (max_entries 2)
  recent.forgetOld(t0 + 10_000);
  const before = forgotten.at(-1)!;
  assert.ok(before > t0, `rows of the forgotten key 1 are deleted: before ${before - t0} ms after it`);
  assert.ok(before <= t0 + 5_000, `rows of key 2, still remembered, are kept: before ${before - t0} ms`);
});

test('window 0 or max_entries 0: the memory is off and remembers nothing', () => {
  for (const [window, maxEntries] of [
    [0, 100],
    [600_000, 0],
  ] as const) {
    const { buffer } = bufferHolding([{ at: Date.now(), keys: [key(1)] }]);
    const recent = new RecentlyAccepted(buffer, window, maxEntries);
    assert.equal(recent.enabled, false, `window ${window}, max_entries ${maxEntries}`);
    assert.ok(!recent.has(key(1)), 'nothing is read back');
  }
});
