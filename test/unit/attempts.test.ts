/**
 * The attempt core on a fake clock: classification, the two policies (outputs retry forever, destinations
 * up to max_retries or along a schedule), and the loop that waits between attempts and stops when aborted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  attemptOnce,
  attemptUntilDone,
  classify,
  noRetry,
  retryForever,
  retryLimited,
  type Clock,
} from '../../src/delivery/attempts.js';
import { SinkError } from '../../src/sinks/types.js';

/** Time moves only when someone sleeps (or a test says so); every sleep is remembered. */
class FakeClock implements Clock {
  time = 1_000_000;
  readonly sleeps: number[] = [];
  now(): number {
    return this.time;
  }
  async sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    this.sleeps.push(ms);
    this.time += ms;
  }
}

const transient = () => new SinkError('503 slow down', false, 'SlowDown');

test("classify: a SinkError is the sink's, with its code and whether retrying can fix it; anything else is Sluice's", () => {
  assert.deepEqual(
    (({ fromSink, permanent, code }) => ({ fromSink, permanent, code }))(
      classify(new SinkError('denied', true, 'AccessDenied')),
    ),
    { fromSink: true, permanent: true, code: 'AccessDenied' },
  );
  const other = classify(new TypeError('boom'));
  assert.equal(other.fromSink, false);
  assert.equal(other.permanent, false);
  assert.equal(other.code, undefined);
  assert.equal(classify('a string').error.message, 'a string');
});

test('retryForever: full jitter up to a doubling ceiling, capped, and never a last attempt', () => {
  const top = retryForever({ initial: 100, max: 1_000 }, () => 1);
  const failure = classify(new SinkError('denied', true));
  assert.deepEqual(
    [1, 2, 3, 4, 5, 50].map((n) => top(n, failure)),
    [100, 200, 400, 800, 1_000, 1_000],
  );
  const half = retryForever({ initial: 100, max: 1_000 }, () => 0.5);
  assert.equal(half(3, failure), 200);
});

test('retryLimited: max_retries retries with backoff, then none; a schedule replaces both', () => {
  const failure = classify(transient());
  const limited = retryLimited({ max_retries: 2, initial_backoff: 30_000, max_backoff: 3_600_000 }, () => 1);
  assert.deepEqual(
    [1, 2, 3].map((n) => limited(n, failure)),
    [30_000, 60_000, undefined],
  );
  const scheduled = retryLimited({ max_retries: 10, initial_backoff: 1, max_backoff: 1, schedule: [5_000, 60_000] });
  assert.deepEqual(
    [1, 2, 3].map((n) => scheduled(n, failure)),
    [5_000, 60_000, undefined],
  );
  assert.equal(noRetry(1, failure), undefined);
});

test("attemptOnce: the outcome of one attempt, timed on the clock, with the policy's wait when it failed", async () => {
  const clock = new FakeClock();
  const ok = await attemptOnce(
    3,
    async () => {
      clock.time += 25;
      return 'stored';
    },
    noRetry,
    clock,
  );
  assert.deepEqual(ok, { ok: true, value: 'stored', attempt: 3, startedAt: 1_000_000, durationMs: 25 });
  const failed = await attemptOnce(
    2,
    async () => {
      throw transient();
    },
    (n) => n * 1_000,
    clock,
  );
  assert.equal(failed.ok, false);
  if (failed.ok) return;
  assert.equal(failed.retryIn, 2_000);
  assert.equal(failed.failure.code, 'SlowDown');
});

test("attemptUntilDone: retries with the policy's waits until an attempt succeeds, recording each failure first", async () => {
  const clock = new FakeClock();
  const seen: number[] = [];
  const failures: Array<[number, string]> = [];
  const outcome = await attemptUntilDone(
    async (attempt) => {
      seen.push(attempt);
      if (attempt < 4) throw transient();
      return 'done';
    },
    retryForever({ initial: 100, max: 250 }, () => 1),
    {
      clock,
      signal: new AbortController().signal,
      onFailure: ({ attempt, failure, retryIn }) => failures.push([attempt, `${failure.code}:${retryIn}`]),
    },
  );
  assert.deepEqual(seen, [1, 2, 3, 4]);
  assert.deepEqual(failures, [
    [1, 'SlowDown:100'],
    [2, 'SlowDown:200'],
    [3, 'SlowDown:250'],
  ]);
  assert.deepEqual(clock.sleeps, [100, 200, 250]);
  assert.equal(outcome?.ok && outcome.value, 'done');
});

test('attemptUntilDone: a policy with no attempt left ends with the failure; an abort ends with nothing recorded', async () => {
  const clock = new FakeClock();
  const given = await attemptUntilDone(
    async () => {
      throw transient();
    },
    retryLimited({ max_retries: 1, initial_backoff: 10, max_backoff: 10 }, () => 1),
    {
      clock,
      signal: new AbortController().signal,
      onFailure: () => {},
    },
  );
  assert.equal(given?.ok, false);
  assert.equal(given?.attempt, 2);

  const abort = new AbortController();
  let recorded = 0;
  const stopped = await attemptUntilDone(
    async (attempt) => {
      if (attempt === 3) abort.abort();
      throw transient();
    },
    retryForever({ initial: 10, max: 10 }),
    { clock, signal: abort.signal, onFailure: () => recorded++ },
  );
  assert.equal(stopped, undefined);
  assert.equal(recorded, 2, 'the attempt the abort interrupted is not recorded');

  const before = new AbortController();
  before.abort();
  let called = false;
  assert.equal(
    await attemptUntilDone(
      async () => {
        called = true;
      },
      noRetry,
      { clock, signal: before.signal, onFailure: () => {} },
    ),
    undefined,
  );
  assert.equal(called, false, 'nothing is attempted once aborted');
});
