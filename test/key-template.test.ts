/**
 * A tenant's aws_s3 key_template is a JMESPath expression whose work its length does not bound: each
 * `| [@, @][]` doubles it. These tests run templates that would block the event loop for seconds or exhaust
 * the heap, and check that Sluice keeps answering, fails the attempt with a clear message (not retried), stays
 * up, starts again with such a delivery pending, and that a manual retry fails the same bounded way. And that
 * templates are at most 1,024 characters at create and PATCH.
 *
 * Everything runs for real: `node dist/cli.js serve` in its own process and s3rver on 127.0.0.1.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertValidation } from './helpers/api.js';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { deliveryStatus, OutpostApi } from './helpers/outpost.js';

const ADMIN_KEY = 'key-template-test-admin-key';
/** A retry that was going to happen (FAST_RETRY) has happened within this. */
const SETTLE_MS = 1_000;
const WAIT_MS = 20_000;
/** What "keeps answering" means: every /health answers within this, however busy a template keeps its process. */
const HEALTH_BOUND_MS = 5_000;

/** `stages` doublings: 2^stages copies of data.a, joined. The security review's template (24 stages: ~250 characters). */
const doubling = (stages: number) => `data.a${' | [@, @][]'.repeat(stages)} | join('', @)`;
/** Little memory, much time: 49,152 copies, each compared with all of them. */
const SLOW = `let $a = data.a${' | [@, @][]'.repeat(14)} in $a[*].max($a) | join('', [to_string(length(@)), '.json'])`;
/** Little time, much memory: 128 copies of a 1 MiB string serialized into one string of 128 MiB. */
const HUNGRY = `data.big${' | [@, @][]'.repeat(7)} | to_string(@)`;

const OVER_TIME = /key_template took longer than 1 s/;
/** The message of the node whose api.key_templates.max_memory is 32MiB. */
const OVER_32_MIB = /key_template used more memory than allowed \(32 MiB\)/;
const OVER_BUDGET = /key_template (took longer than 1 s|used more memory than allowed)/;

// ---------------------------------------------------------------------------------------------------------------
// Glue

const cleanups: Array<() => Promise<unknown> | unknown> = [];
after(async () => {
  for (const c of cleanups.reverse())
    await Promise.resolve()
      .then(c)
      .catch(() => {});
});

function dataDir(): string {
  const dir = tempDir('sluice-key-template-');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function sluiceConfig(dir: string, keyTemplates: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    data_dir: dir,
    outputs: [],
    shutdown_timeout: '2s',
    log: { level: 'debug' },
    api: {
      admin_key: ADMIN_KEY,
      retry: { initial_backoff: '100ms', max_backoff: '200ms', max_retries: 50 },
      // the destinations write to s3rver on loopback
      destinations: { allowed_endpoints: ['127.0.0.1/32'] },
      key_templates: keyTemplates,
    },
  };
}

async function startSluice(
  dir: string,
  keyTemplates: Record<string, unknown> = {},
): Promise<{ sluice: SluiceProcess; api: OutpostApi }> {
  const sluice = new SluiceProcess({ config: sluiceConfig(dir, keyTemplates) });
  cleanups.push(() => sluice.kill9());
  await sluice.start();
  return { sluice, api: new OutpostApi(sluice.url, ADMIN_KEY) };
}

function s3Destination(
  s3: TestS3,
  bucket: string,
  keyTemplate: string | undefined,
  topics = ['orders'],
): Record<string, unknown> {
  return {
    type: 'aws_s3',
    topics,
    config: {
      bucket,
      region: 'us-east-1',
      endpoint: s3.endpoint,
      ...(keyTemplate === undefined ? {} : { key_template: keyTemplate }),
    },
    credentials: { key: S3_KEY, secret: S3_SECRET },
  };
}

async function tenant(api: OutpostApi, id: string): Promise<void> {
  const res = await api.putTenant(id);
  assert.ok(res.status === 201 || res.status === 200, `PUT /tenants/${id}: ${res.status} ${res.text}`);
}

async function waitForAttempts(
  sluice: SluiceProcess,
  api: OutpostApi,
  filters: Record<string, string>,
  check: (attempts: any[]) => boolean,
  what: string,
): Promise<any[]> {
  let attempts: any[] = [];
  try {
    await sluice.until(
      what,
      async () => {
        attempts = await api.attempts(filters);
        return check(attempts);
      },
      WAIT_MS,
    );
  } catch (err) {
    throw new Error(
      `${(err as Error).message}\n--- last attempts ---\n${JSON.stringify(attempts, null, 1).slice(0, 3000)}`,
    );
  }
  return attempts;
}

/**
 * Polls GET /health every 100 ms until stopped (at most `maxPolls`), each with a deadline of HEALTH_BOUND_MS:
 * `stop()` says how many answered and lists the polls that did not answer in time (or not with 200).
 */
function pollHealth(url: string, maxPolls = 1200): { stop: () => Promise<{ answered: number; problems: string[] }> } {
  let stopped = false;
  const problems: string[] = [];
  let answered = 0;
  const loop = (async () => {
    for (let i = 0; i < maxPolls && !stopped; i++) {
      try {
        const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(HEALTH_BOUND_MS) });
        if (res.status === 200) answered++;
        else problems.push(`poll ${i}: ${res.status} ${await res.text()}`);
      } catch (err) {
        problems.push(`poll ${i}: no answer within ${HEALTH_BOUND_MS} ms (${(err as Error).message})`);
      }
      await sleep(100);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return { answered, problems };
    },
  };
}

async function assertHealthy(poll: ReturnType<typeof pollHealth>, what: string): Promise<void> {
  const { answered, problems } = await poll.stop();
  assert.deepEqual(problems, [], `/health answered within ${HEALTH_BOUND_MS} ms throughout ${what}`);
  assert.ok(answered > 0, `/health was polled during ${what}`);
}

function assertOneFailedAttempt(attempts: any[], message: RegExp, what: string): any {
  assert.equal(attempts.length, 1, `${what}: exactly one attempt, not retried: ${JSON.stringify(attempts)}`);
  const a = attempts[0];
  assert.equal(a.status, 'failed', `${what}: ${JSON.stringify(a)}`);
  assert.equal(a.code, 'key_template', `${what}: ${JSON.stringify(a)}`);
  assert.match(String(a.error), message, `${what}: the error says which budget: ${JSON.stringify(a)}`);
  assert.equal(a.response_data, null, `${what}: no key was made: ${JSON.stringify(a)}`);
  return a;
}

// ---------------------------------------------------------------------------------------------------------------

describe('key templates over budget', () => {
  let s3: TestS3;
  let dir: string;
  let sluice: SluiceProcess;
  let api: OutpostApi;

  before(async () => {
    s3 = new TestS3(['normal', 'evil']);
    await s3.start();
    cleanups.push(async () => {
      await s3.stop().catch(() => {});
      rmSync(s3.directory, { recursive: true, force: true });
    });
    dir = dataDir();
    ({ sluice, api } = await startSluice(dir));
  });

  test('the doubling template (24 and 30 stages): /health keeps answering, one failed attempt saying so, the process stays up; a manual retry fails the same way', async () => {
    await tenant(api, 'doubling');
    const d24 = await api.createDestination('doubling', s3Destination(s3, 'evil', doubling(24)));
    const d30 = await api.createDestination('doubling', s3Destination(s3, 'evil', doubling(30)));
    const normal = await api.createDestination(
      'doubling',
      s3Destination(s3, 'normal', `join('', ['ok-', metadata."event-id", '.json'])`),
    );
    const poll = pollHealth(sluice.url);
    const { id, destination_ids } = await api.publish({
      tenant_id: 'doubling',
      topic: 'orders',
      data: { a: 'x', order_id: 'd-1' },
    });
    assert.equal(destination_ids.length, 3);

    // the other destination of the tenant delivers meanwhile
    await sluice.until(
      'the normal destination to deliver',
      async () => (await s3.keys('normal')).includes(`ok-${id}.json`),
      WAIT_MS,
    );
    for (const [stages, d] of [
      [24, d24],
      [30, d30],
    ] as const) {
      await waitForAttempts(
        sluice,
        api,
        { event_id: id, destination_id: d.id },
        (a) => a.length >= 1,
        `the attempt of the ${stages}-stage template`,
      );
    }
    await sleep(SETTLE_MS);
    for (const [stages, d] of [
      [24, d24],
      [30, d30],
    ] as const) {
      assertOneFailedAttempt(
        await api.attempts({ event_id: id, destination_id: d.id }),
        OVER_BUDGET,
        `${stages} stages`,
      );
      assert.equal(
        deliveryStatus(await api.event(id), d.id),
        'failed',
        `${stages} stages: the delivery is failed, not pending`,
      );
    }
    assert.deepEqual(await s3.keys('evil'), [], 'no object for the templates over budget');
    assert.equal(sluice.exitCode, undefined, `the process is still up:\n${sluice.output.slice(-2000)}`);
    await assertHealthy(poll, 'the evaluation of both templates');
    assert.equal(deliveryStatus(await api.event(id), normal.id), 'success');

    // POST /retry attempts it again, on demand: answered at once, and the attempt fails the same bounded way
    const again = pollHealth(sluice.url);
    for (const d of [d24, d30]) {
      const retry = await api.call('POST', '/retry', { event_id: id, destination_id: d.id });
      assert.equal(retry.status, 202, `POST /retry: ${retry.text}`);
    }
    for (const [stages, d] of [
      [24, d24],
      [30, d30],
    ] as const) {
      const attempts = await waitForAttempts(
        sluice,
        api,
        { event_id: id, destination_id: d.id },
        (a) => a.length >= 2,
        `the manual attempt of the ${stages}-stage template`,
      );
      const manual = attempts.filter((a) => a.manual === true);
      assert.equal(manual.length, 1, `${stages} stages: one manual attempt: ${JSON.stringify(attempts)}`);
      assertOneFailedAttempt(manual, OVER_BUDGET, `${stages} stages, the manual retry`);
    }
    await sleep(SETTLE_MS);
    for (const d of [d24, d30])
      assert.equal(
        (await api.attempts({ event_id: id, destination_id: d.id })).length,
        2,
        'a failed manual attempt is not retried either',
      );
    await assertHealthy(again, 'the manual retries');
    assert.equal(sluice.exitCode, undefined, `the process is still up:\n${sluice.output.slice(-2000)}`);
  });

  test('over time and over memory: each makes one failed attempt naming its budget', async () => {
    await tenant(api, 'budgets');
    const slow = await api.createDestination('budgets', s3Destination(s3, 'evil', SLOW, ['slow']));
    const poll = pollHealth(sluice.url);
    const slowEvent = await api.publish({ tenant_id: 'budgets', topic: 'slow', data: { a: 'x' } });
    // The memory budget on a node of its own whose time limit (api.key_templates) is far out of reach: on a
    // busy machine, a heap filling up to its limit can take longer than the default 1 s, and the time limit
    // would stop it first. Its smaller heap (32 MiB) shows that max_memory is the one applied.
    const roomy = await startSluice(dataDir(), { time_limit: '5m', max_memory: '32MiB' });
    await tenant(roomy.api, 'budgets');
    const hungry = await roomy.api.createDestination('budgets', s3Destination(s3, 'evil', HUNGRY, ['hungry']));
    const hungryEvent = await roomy.api.publish({
      tenant_id: 'budgets',
      topic: 'hungry',
      data: { big: 'y'.repeat(1 << 20) },
    });
    for (const [node, e, d, message] of [
      [{ sluice, api }, slowEvent, slow, OVER_TIME],
      [roomy, hungryEvent, hungry, OVER_32_MIB],
    ] as const) {
      await waitForAttempts(
        node.sluice,
        node.api,
        { event_id: e.id, destination_id: d.id },
        (a) => a.length >= 1,
        `the attempt of ${d.id}`,
      );
      await sleep(SETTLE_MS);
      assertOneFailedAttempt(
        await node.api.attempts({ event_id: e.id, destination_id: d.id }),
        message,
        String(message),
      );
    }
    assert.equal(roomy.sluice.exitCode, undefined, `the roomy node is still up:\n${roomy.sluice.output.slice(-2000)}`);
    await assertHealthy(poll, 'the evaluations');
    assert.equal(sluice.exitCode, undefined, `the process is still up:\n${sluice.output.slice(-2000)}`);

    // a template evaluated after those still gives its key
    await tenant(api, 'after');
    await api.createDestination('after', s3Destination(s3, 'normal', `join('/', ['after', data.order_id])`));
    await api.publish({ tenant_id: 'after', topic: 'orders', data: { order_id: 'a-1' } });
    await sluice.until(
      'the key of a normal template after the failed ones',
      async () => (await s3.keys('normal')).includes('after/a-1'),
      WAIT_MS,
    );
  });

  test('a restart with such a delivery pending starts, listens and fails it the same way', async () => {
    await tenant(api, 'restart');
    const slow = await api.createDestination('restart', s3Destination(s3, 'evil', SLOW));
    const d30 = await api.createDestination('restart', s3Destination(s3, 'evil', doubling(30)));
    const { id } = await api.publish({ tenant_id: 'restart', topic: 'orders', data: { a: 'x' } });
    // killed at once: an attempt over budget takes at least a second (or close to it) to be recorded, so the
    // deliveries are still pending, and the next process evaluates them as it starts
    await sluice.kill9();
    ({ sluice, api } = await startSluice(dir));
    const poll = pollHealth(sluice.url);
    for (const [d, message] of [
      [slow, OVER_TIME],
      [d30, OVER_BUDGET],
    ] as const) {
      await waitForAttempts(
        sluice,
        api,
        { event_id: id, destination_id: d.id },
        (a) => a.length >= 1,
        `the attempt of ${d.id}`,
      );
    }
    await sleep(SETTLE_MS);
    for (const [d, message] of [
      [slow, OVER_TIME],
      [d30, OVER_BUDGET],
    ] as const) {
      assertOneFailedAttempt(
        await api.attempts({ event_id: id, destination_id: d.id }),
        message,
        `${d.id} after the restart`,
      );
    }
    await assertHealthy(poll, 'the evaluations at start');
    assert.equal(sluice.exitCode, undefined, `the process is still up:\n${sluice.output.slice(-2000)}`);

    // and a graceful stop and start again, with those destinations still there
    assert.equal(await sluice.stop(), 0, `a clean stop:\n${sluice.output.slice(-2000)}`);
    ({ sluice, api } = await startSluice(dir));
    const health = await fetch(`${sluice.url}/health`, { signal: AbortSignal.timeout(HEALTH_BOUND_MS) });
    assert.equal(health.status, 200);
  });

  test('key_template is at most 1,024 characters, at create and at PATCH', async () => {
    await tenant(api, 'length');
    const longest = `'${'k'.repeat(1022)}'`; // a raw string literal: the key kkk...
    assert.equal(longest.length, 1024);
    const tooLong = `'${'k'.repeat(1023)}'`;
    const message = 'config.key_template failed length validation: at most 1024 characters';

    const path = '/tenants/length/destinations';
    assertValidation(
      await api.call('POST', path, s3Destination(s3, 'normal', tooLong)),
      [message],
      'create with 1,025 characters',
    );
    const created = await api.createDestination('length', s3Destination(s3, 'normal', longest));
    assert.equal(created.config.key_template, longest, '1,024 characters are accepted');
    assertValidation(
      await api.call('PATCH', `${path}/${created.id}`, { config: { key_template: tooLong } }),
      [message],
      'PATCH with 1,025 characters',
    );
    const got = await api.call('GET', `${path}/${created.id}`);
    assert.equal(got.body.config.key_template, longest, `a refused PATCH changes nothing: ${got.text}`);
    // far longer (and nested too deep to compile): refused for its length alone, it is not compiled
    const huge = await api.call('POST', path, s3Destination(s3, 'normal', `${'('.repeat(5_000)}@${')'.repeat(5_000)}`));
    assertValidation(huge, [message], 'create with 10,001 characters');
    assert.deepEqual(huge.body.data, [message], `only the length is named: ${huge.text}`);
  });
});
