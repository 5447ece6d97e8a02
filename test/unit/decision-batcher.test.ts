/**
 * The batching core of decision outputs against a buffer held in memory: how batches close (limits, chunk
 * boundaries, age), that they are sealed before anything may upload them, the read-ahead bound, restarts,
 * and where the cursor may go. No timers, no disk: `now` is passed in.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { SealedBatch } from '../../src/buffer/types.js';
import {
  DecisionBatcher,
  MAX_OPEN_BATCHES,
  type DecisionBatcherOptions,
} from '../../src/delivery/batching/decision-batcher.js';
import { MemoryBuffer } from '../helpers/memory-buffer.js';

const HOUR_MS = 3_600_000;

function batcher(
  buffer: MemoryBuffer,
  opts: Partial<DecisionBatcherOptions> & { maxEvents?: number; maxBytes?: number; maxAge?: number } = {},
) {
  const { maxEvents = 10, maxBytes = 1 << 30, maxAge = HOUR_MS, ...rest } = opts;
  return new DecisionBatcher(buffer, {
    output: 'out',
    limits: { maxEvents, maxBytes, maxAge },
    byInstance: false,
    wholeChunks: false,
    readAhead: 1000,
    ...rest,
  });
}

const lines = (n: number, prefix = 'd') => Array.from({ length: n }, (_, i) => JSON.stringify({ id: `${prefix}${i}` }));
const ranges = (batches: Iterable<SealedBatch>) => [...batches].map((b) => [b.first, b.last]);

/** Delivers every sealed batch, oldest first, until none is left. */
function deliverAll(b: DecisionBatcher): SealedBatch[] {
  const done: SealedBatch[] = [];
  for (let batches = b.takeReady(1000); batches.length > 0; batches = b.takeReady(1000)) {
    for (const batch of batches) {
      b.complete(batch);
      done.push(batch);
    }
  }
  return done;
}

test('max_events splits a chunk decision by decision; batches are contiguous and sealed before they can be taken', () => {
  const buffer = new MemoryBuffer();
  buffer.add('p', lines(25));
  const b = batcher(buffer);
  b.fill(0, false);
  assert.deepEqual(
    ranges(b.batches.in('sealed')),
    [
      [1, 10],
      [11, 20],
    ],
    'two full batches; 21-25 stay open',
  );
  assert.deepEqual(
    buffer.seals.flatMap((s) => ranges(s)),
    [
      [1, 10],
      [11, 20],
    ],
    'both recorded in the buffer first',
  );
  assert.equal(b.pending, 2);
  assert.equal(b.idle(), false);
  b.fill(0, true);
  assert.deepEqual(ranges(deliverAll(b)), [
    [1, 10],
    [11, 20],
    [21, 25],
  ]);
  assert.equal(b.cursor, 25);
  assert.equal(b.idle(), true);
});

test('max_bytes counts uncompressed line bytes; a decision larger than max_bytes goes alone', () => {
  const buffer = new MemoryBuffer();
  const big = JSON.stringify({ id: 'x'.repeat(100) });
  buffer.add('p', ['{"a":1}', '{"a":2}', big, '{"a":3}']);
  const b = batcher(buffer, { maxBytes: 20 });
  b.fill(0, true);
  assert.deepEqual(ranges(b.batches.in('sealed')), [
    [1, 2],
    [3, 3],
    [4, 4],
  ]);
});

test('whole chunks (concatenated gzip members): a batch closes on a chunk boundary instead of splitting a chunk', () => {
  const buffer = new MemoryBuffer();
  for (let i = 0; i < 5; i++) buffer.add('p', lines(4, `c${i}-`));
  buffer.add('p', lines(12, 'big-'));
  const b = batcher(buffer, { wholeChunks: true });
  b.fill(0, true);
  // chunks 1-4 and 5-8 fit (8); 9-12 would make 12: a new batch. The chunk of 12 is over max_events even
  // alone: it is split, decision by decision, as without whole chunks.
  assert.deepEqual(ranges(b.batches.in('sealed')), [
    [1, 8],
    [9, 16],
    [17, 26],
    [27, 32],
  ]);
});

test("max_age: an open batch closes once it is max_age old, counted from its first decision's arrival", () => {
  const buffer = new MemoryBuffer();
  buffer.add('p', lines(3), { receivedAt: 1_000 });
  const b = batcher(buffer, { maxAge: 500 });
  b.fill(1_400, false);
  assert.equal(b.pending, 0, 'not due yet');
  assert.equal(b.idle(), false, 'but open');
  b.fill(1_500, false);
  assert.deepEqual(ranges(b.batches.in('sealed')), [[1, 3]]);
});

test('streams are batched apart: partition, hour, and instance when the layout cuts per instance', () => {
  const buffer = new MemoryBuffer();
  buffer.add('a', lines(2), { instance: 'opa-1' });
  buffer.add('b', lines(2), { instance: 'opa-1' });
  buffer.add('a', lines(2), { instance: 'opa-2' });
  buffer.add('a', lines(2), { instance: 'opa-1', hour: '2026-12-01T11' });
  const perPartition = batcher(buffer);
  perPartition.fill(0, true);
  assert.deepEqual(
    [...perPartition.batches.in('sealed')].map((s) => [s.partition, s.hour.slice(11), s.instance, s.count]),
    [
      ['a', '10', null, 4],
      ['b', '10', null, 2],
      ['a', '11', null, 2],
    ],
  );
  const buffer2 = new MemoryBuffer();
  buffer2.add('a', lines(2), { instance: 'opa-1' });
  buffer2.add('a', lines(2), { instance: 'opa-2' });
  const perInstance = batcher(buffer2, { byInstance: true, output: 'eopa' });
  perInstance.fill(0, true);
  assert.deepEqual(
    [...perInstance.batches.in('sealed')].map((s) => [s.instance, s.first, s.last]),
    [
      ['opa-1', 1, 2],
      ['opa-2', 3, 4],
    ],
  );
});

test('reading ahead is bounded: no more than readAhead batches closed, sealed or in flight, even inside one chunk', () => {
  const buffer = new MemoryBuffer();
  buffer.add('p', lines(100));
  const b = batcher(buffer, { maxEvents: 1, readAhead: 4 });
  let delivered = 0;
  // idle before the first fill: nothing has been read yet
  for (let pass = 0; pass < 200 && (pass === 0 || !b.idle()); pass++) {
    b.fill(0, false);
    assert.ok(b.batches.count('closed', 'sealed', 'in_flight') <= 4);
    const [batch] = b.takeReady(1);
    if (batch) {
      b.complete(batch);
      delivered++;
    }
  }
  assert.equal(delivered, 100);
  assert.equal(b.cursor, 100);
});

test('a seal that fails (a full disk): the batches stay closed, are not taken, hold the cursor, and are sealed by a later fill', () => {
  const buffer = new MemoryBuffer();
  buffer.add('p', lines(10));
  buffer.add('q', lines(10));
  const b = batcher(buffer);
  buffer.failSeals = 1;
  assert.throws(() => b.fill(0, false), /disk is full/);
  assert.equal(b.batches.count('closed'), 2);
  assert.deepEqual(b.takeReady(10), [], 'nothing unsealed is ever uploaded');
  b.moveCursor();
  assert.equal(b.cursor, 0, 'closed batches hold the cursor');
  b.fill(0, false);
  assert.deepEqual(ranges(deliverAll(b)), [
    [1, 10],
    [11, 20],
  ]);
  assert.equal(b.cursor, 20);
});

test('the cursor rule: never past the first decision of a batch not yet delivered, whatever finishes first', () => {
  const buffer = new MemoryBuffer();
  buffer.add('p', lines(10));
  buffer.add('q', lines(10));
  buffer.add('r', lines(5));
  const b = batcher(buffer);
  b.fill(0, false);
  const [p, q] = b.takeReady(2);
  b.complete(q!);
  assert.equal(b.cursor, 0, 'p (1-10) is still in flight');
  assert.equal(buffer.cursor('out'), 0);
  b.complete(p!);
  assert.equal(b.cursor, 20, 'r (21-25) is still open');
  b.fill(0, true);
  deliverAll(b);
  assert.equal(b.cursor, 25);
});

test('a record of a delivery that fails leaves the batch in flight, holding the cursor; completing it again works', () => {
  const buffer = new MemoryBuffer();
  buffer.add('p', lines(10));
  const b = batcher(buffer);
  b.fill(0, false);
  const [batch] = b.takeReady(1);
  const complete = buffer.complete.bind(buffer);
  buffer.complete = () => {
    throw new Error('database or disk is full');
  };
  assert.throws(() => b.complete(batch!));
  assert.equal(b.batches.state(batch!), 'in_flight');
  assert.equal(b.cursor, 0);
  buffer.complete = complete;
  b.complete(batch!);
  assert.equal(b.cursor, 10);
});

test('after a restart: sealed batches are uploaded first under their positions, delivered ones are not batched again', () => {
  const buffer = new MemoryBuffer();
  buffer.add('p', lines(10));
  buffer.add('q', lines(10));
  buffer.add('p', lines(10));
  buffer.add('q', lines(10));
  const before = batcher(buffer, { maxEvents: 10 });
  before.fill(0, false);
  const [p1, q1, p2] = before.takeReady(3);
  before.complete(q1!);
  before.complete(p2!);
  // the crash: p1 sealed (never delivered), q1 and p2 delivered, q2 (31-40) sealed and not taken
  void p1;
  const after = batcher(buffer, { maxEvents: 10 });
  assert.deepEqual(ranges(after.restored), [
    [1, 10],
    [31, 40],
  ]);
  assert.deepEqual(ranges(after.batches.in('sealed')), [
    [1, 10],
    [31, 40],
  ]);
  after.fill(0, true);
  assert.deepEqual(
    ranges(after.batches.in('sealed')),
    [
      [1, 10],
      [31, 40],
    ],
    'nothing batched twice',
  );
  assert.deepEqual(ranges(deliverAll(after)), [
    [1, 10],
    [31, 40],
  ]);
  assert.equal(after.cursor, 40);
});

test('past MAX_OPEN_BATCHES open streams the oldest open batch is closed early', () => {
  const buffer = new MemoryBuffer();
  for (let i = 0; i <= MAX_OPEN_BATCHES; i++) buffer.add(`p${i}`, lines(1));
  const b = batcher(buffer, { readAhead: 10 });
  b.fill(0, false);
  assert.deepEqual(
    [...b.batches.in('sealed')].map((s) => s.partition),
    ['p0'],
  );
});

test('lifecycle transitions are asserted: a batch not in flight cannot be completed', () => {
  const buffer = new MemoryBuffer();
  buffer.add('p', lines(10));
  const b = batcher(buffer);
  b.fill(0, false);
  const [batch] = b.batches.in('sealed');
  assert.throws(() => b.complete(batch!), /cannot complete a batch that is sealed/);
  b.takeReady(1);
  b.complete(batch!);
  assert.throws(() => b.complete(batch!), /cannot complete a batch that is untracked/);
});
