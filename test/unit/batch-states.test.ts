/**
 * The named states of delivery: the batch lifecycle (open -> closed -> sealed -> in_flight -> done), the
 * generic state machine the output worker's lifecycle and pass run on, and the limits of open batches.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchStates } from '../../src/delivery/batching/lifecycle.js';
import { OpenBatches } from '../../src/delivery/batching/open-batches.js';
import { States } from '../../src/delivery/states.js';

test('the batch lifecycle: allowed transitions move a batch, in order of arrival; any other one throws', () => {
  const states = new BatchStates<string>();
  states.enter('a', 'closed');
  states.enter('b', 'closed');
  states.enter('r', 'sealed');
  assert.throws(() => states.enter('a', 'sealed'), /already closed/);
  assert.throws(() => states.move('a', 'in_flight'), /closed -> in_flight is not a transition/);
  states.move('a', 'sealed');
  states.move('b', 'sealed');
  assert.deepEqual([...states.in('sealed')], ['r', 'a', 'b'], 'first in, first out');
  assert.equal(states.first('sealed'), 'r');
  states.move('r', 'in_flight');
  assert.equal(states.count('sealed', 'in_flight'), 3);
  assert.throws(() => states.move('a', 'done'), /sealed -> done is not a transition/);
  states.move('r', 'done');
  assert.equal(states.state('r'), undefined, 'done: nothing remembers it');
  assert.throws(() => states.move('r', 'sealed'), /untracked/);
  // an event batch whose attempt failed waits in the store again
  states.move('a', 'in_flight');
  states.move('a', 'sealed');
  states.forget('a');
  assert.deepEqual([...states.all()], ['b']);
  states.move('b', 'in_flight');
  assert.throws(() => states.forget('b'), /only a sealed batch/);
});

test('States: the named transitions only', () => {
  const s = new States<'created' | 'running' | 'stopped'>('worker', 'created', {
    created: ['running', 'stopped'],
    running: ['stopped'],
    stopped: [],
  });
  assert.equal(s.state, 'created');
  s.to('running');
  assert.ok(s.is('running', 'stopped'));
  assert.throws(() => s.to('created'), /worker: running -> created is not a transition/);
  s.to('stopped');
  assert.throws(() => s.to('stopped'), /stopped -> stopped/);
});

test('OpenBatches: one open batch per stream, opened-first order, and the limits that close them', () => {
  const open = new OpenBatches<{ count: number; bytes: number; openedAt: number; name: string }>({
    maxEvents: 3,
    maxBytes: 100,
    maxAge: 1_000,
  });
  const a = open.open('a', { count: 0, bytes: 0, openedAt: 50, name: 'a' });
  open.open('b', { count: 0, bytes: 0, openedAt: 10, name: 'b' });
  assert.throws(() => open.open('a', { count: 0, bytes: 0, openedAt: 0, name: 'again' }), /already has an open batch/);
  assert.equal(open.oldest()?.[0], 'a', 'opened first, whatever its age');
  assert.ok(open.fits(a, 3, 100));
  assert.ok(!open.fits(a, 4, 1));
  assert.ok(!open.fits(a, 1, 101));
  assert.ok(open.fitsAlone(3, 100) && !open.fitsAlone(4, 0));
  a.count = 3;
  assert.ok(open.full(a));
  assert.ok(!open.due(a, 1_049) && open.due(a, 1_050));
  assert.equal(open.close('a'), a);
  assert.throws(() => open.close('a'), /no open batch/);
  assert.equal(open.size, 1);
  open.limits = { maxEvents: 1, maxBytes: 1, maxAge: 0 };
  assert.ok(open.full({ count: 1, bytes: 0, openedAt: 0 }));
});
