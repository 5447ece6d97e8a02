/**
 * Reliability: kill -9 under load, S3 faults through a fault-injecting proxy, backpressure, bad input.
 *
 * `npm test` runs the short form (about a minute). `npm run test:reliability` runs the long form
 * (RELIABILITY=long: 10 kills, S3 gone for 30 s, 2000 property runs) and prints a summary table.
 * RELIABILITY_SEED fixes the seed of the property-based test (fast-check prints it on failure).
 */
import { after, describe, test, type TestContext } from 'node:test';
import {
  backpressure,
  badInput,
  crashLoop,
  formatSummary,
  hostileStream,
  LONG,
  s3Faults,
  SHORT,
  type ScenarioResult,
  type Scope,
} from './reliability.js';

const long = process.env.RELIABILITY === 'long';
const sizes = long ? LONG : SHORT;
const seed = process.env.RELIABILITY_SEED ? Number(process.env.RELIABILITY_SEED) : undefined;
const results: ScenarioResult[] = [];

/** Runs a scenario with its cleanups on `t.after`; its figures land in the summary, marked pass or FAIL. */
async function run(t: TestContext, scenario: (scope: Scope) => Promise<ScenarioResult>): Promise<void> {
  let reported: ScenarioResult | undefined;
  const scope: Scope = {
    after: (fn) =>
      t.after(async () => {
        await fn();
      }),
    diagnostic: (m) => t.diagnostic(m),
    report: (r) => results.push((reported = r)),
  };
  try {
    await scenario(scope);
    if (reported) reported.passed = true;
  } catch (err) {
    if (reported) reported.passed = false;
    throw err;
  }
}

after(() => {
  if (results.length === 0) return;
  console.log(`\nreliability summary (${long ? 'long' : 'short'} form)\n${formatSummary(results)}\n`);
});

describe(`reliability (${long ? 'long' : 'short'} form)`, () => {
  test(`kill -9 ${sizes.crashLoop.kills} times under load: every acknowledged decision reaches the bucket, once`, {
    timeout: long ? 300_000 : 60_000,
  }, async (t) => {
    await run(t, (scope) => crashLoop(scope, sizes.crashLoop));
  });

  test(`S3 answers 503 SlowDown, resets mid-upload, stalls, then is gone for ${sizes.s3Faults.goneSeconds} s: nothing is lost`, {
    timeout: long ? 300_000 : 60_000,
  }, async (t) => {
    await run(t, (scope) => s3Faults(scope, sizes.s3Faults));
  });

  test('a full buffer answers 429 with Retry-After; a client retrying like OPA loses nothing; ingest resumes with S3', {
    timeout: long ? 180_000 : 60_000,
  }, async (t) => {
    await run(t, (scope) => backpressure(scope, sizes.backpressure));
  });

  test(`${sizes.badInput.runs} random bad requests: never 5xx, never down, 4xx JSON, nothing stored of a rejection`, {
    timeout: long ? 900_000 : 90_000,
  }, async (t) => {
    await run(t, (scope) => badInput(scope, { ...sizes.badInput, seed }));
  });

  test(`hostile requests (deep nesting, tiny-element bombs) amid good load for ${sizes.hostileStream.seconds} s: refused, and every good decision lands once in every key layout`, {
    timeout: long ? 300_000 : 90_000,
  }, async (t) => {
    await run(t, (scope) => hostileStream(scope, sizes.hostileStream));
  });
});
