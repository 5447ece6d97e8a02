/**
 * Object bodies in reused memory (src/delivery/body-buffers.ts): a buffer given back is taken again instead
 * of a new one; a body released twice cannot give back memory that another body holds by then; what is kept
 * is bounded in count and size.
 */
import { mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { BodyBuffers } from '../../src/delivery/body-buffers.js';

test('a buffer given back is the one taken next, when it fits; one that does not fit is left for later', () => {
  const pool = new BodyBuffers();
  const a = pool.take(3 * 1024 * 1024);
  assert.ok(a.byteLength >= 3 * 1024 * 1024);
  pool.give(a);
  assert.ok(pool.take(5 * 1024 * 1024) !== a, 'too small: a new buffer');
  assert.equal(pool.take(2 * 1024 * 1024), a, 'fits: the same memory');
  assert.equal(pool.keptBytes, 0);
});

test('concat copies the parts into one body, exactly, whatever the buffer held before', () => {
  const pool = new BodyBuffers();
  const first = pool.concat([Buffer.from('x'.repeat(5000)), Buffer.from('y')]);
  pool.give(first.buffer as ArrayBuffer);
  const second = pool.concat([Buffer.from('ab'), Buffer.from(''), Buffer.from('cd')]);
  assert.equal(second.buffer, first.buffer, 'the same memory');
  assert.equal(second.toString(), 'abcd', 'only the new bytes, nothing of the old body past them');
});

test('releasing a body twice gives its buffer back once: a later body holding it is not disturbed', () => {
  const pool = new BodyBuffers();
  const body = pool.concat([Buffer.from('first body')]);
  const release = pool.releaser(body.buffer);
  release();
  const next = pool.concat([Buffer.from('second body')]);
  assert.equal(next.buffer, body.buffer);
  release();
  const third = pool.concat([Buffer.from('third body')]);
  assert.notEqual(third.buffer, next.buffer, 'the second release gave nothing back');
  assert.equal(next.toString(), 'second body');
});

test('what is kept is bounded: at most six buffers, none larger than 32 MiB, none moved away', () => {
  const pool = new BodyBuffers();
  for (let i = 1; i <= 10; i++) pool.give(new ArrayBuffer(i * 1024 * 1024));
  assert.equal(pool.keptBytes, (5 + 6 + 7 + 8 + 9 + 10) * 1024 * 1024, 'the six largest');
  const big = new ArrayBuffer(33 * 1024 * 1024);
  pool.give(big);
  assert.equal(pool.largest()?.byteLength, 10 * 1024 * 1024, 'the 33 MiB buffer was not kept');
  const moved = new ArrayBuffer(1024);
  structuredClone(moved, { transfer: [moved] });
  pool.give(moved);
  assert.ok(pool.take(1) !== moved);
});

test('an idle service keeps no bodies: a buffer not taken again within 30 s is dropped', () => {
  mock.timers.enable({ apis: ['setInterval', 'Date'] });
  try {
    const pool = new BodyBuffers();
    pool.give(new ArrayBuffer(4 * 1024 * 1024));
    mock.timers.tick(20_000);
    pool.give(new ArrayBuffer(2 * 1024 * 1024));
    assert.equal(pool.keptBytes, 6 * 1024 * 1024);
    mock.timers.tick(15_000);
    assert.equal(pool.keptBytes, 2 * 1024 * 1024, 'the first, unused for 35 s, is dropped');
    mock.timers.tick(30_000);
    assert.equal(pool.keptBytes, 0);
  } finally {
    mock.timers.reset();
  }
});
