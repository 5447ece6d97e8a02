import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkInFlight } from '../../src/delivery/work-in-flight.js';

test('a stop waits for the work running, and for work that work starts, then says whether it all ended', async () => {
  const work = new WorkInFlight();
  const order: string[] = [];
  void work.track(
    new Promise<void>((resolve) => setTimeout(resolve, 30)).then(() => {
      order.push('first');
      // started as the first ends (a refill after an attempt): waited for too
      void work.track(new Promise<void>((resolve) => setTimeout(resolve, 30)).then(() => order.push('second')));
    }),
  );
  void work.track(Promise.reject(new Error('failed work ends too'))).catch(() => order.push('failed'));
  assert.equal(await work.ended(Date.now() + 10_000), true);
  assert.deepEqual(order.sort(), ['failed', 'first', 'second']);
  assert.equal(work.size, 0);
});

test('at the deadline a stop gives up on work that never ends, saying so', async () => {
  const work = new WorkInFlight();
  void work.track(new Promise(() => {}));
  assert.equal(await work.ended(Date.now() + 50), false);
  assert.equal(work.size, 1);
});
