/**
 * An `http` output against a receiver that refuses or does not answer: a 4xx other than 408/429 is a refusal
 * retrying cannot fix (the output shows `failing`, says so at error level, keeps the decisions and keeps
 * trying), 429 is a passing error (`retrying`), and a receiver that does not answer within `timeout` has its
 * request cut and sent again. Nothing is lost and every try carries the same bytes and Idempotency-Key.
 * Against the real `sluice serve` process and a real HTTP server on 127.0.0.1.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { SluiceProcess, tempDir, type ReadyStatus } from './helpers/sluice.js';
import { decisions, postDecisions } from './helpers/opa.js';
import { Receiver, type Answer } from './helpers/receiver.js';

const WAIT_MS = 20_000;

async function setup(
  t: TestContext,
  output: Record<string, unknown>,
): Promise<{ sluice: SluiceProcess; receiver: Receiver }> {
  const receiver = await new Receiver().start();
  t.after(() => receiver.stop());
  const dir = tempDir('sluice-http-output-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sluice = new SluiceProcess({
    config: {
      data_dir: path.join(dir, 'data'),
      shutdown_timeout: '2s',
      outputs: [
        {
          name: 'siem',
          type: 'http',
          url: `${receiver.url}/ingest`,
          format: 'ndjson',
          compression: 'none',
          batch: { max_age: '100ms' },
          retry: { initial_backoff: '100ms', max_backoff: '300ms' },
          ...output,
        },
      ],
    },
  });
  t.after(() => sluice.kill9());
  await sluice.start();
  return { sluice, receiver };
}

type OutputStatus = ReadyStatus['outputs'][number];

async function output(sluice: SluiceProcess): Promise<OutputStatus> {
  return (await sluice.ready()).outputs.find((o) => o.name === 'siem')!;
}

/** Waits until the output's status satisfies `check` and returns it. */
async function outputWhen(
  sluice: SluiceProcess,
  what: string,
  check: (o: OutputStatus) => boolean,
): Promise<OutputStatus> {
  let last: OutputStatus | undefined;
  try {
    await sluice.until(what, async () => check((last = await output(sluice))), WAIT_MS);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- last output status ---\n${JSON.stringify(last)}`);
  }
  return last!;
}

const ids = (body: Buffer) =>
  body
    .toString('utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { decision_id: string }).decision_id);

test('http output: 429 is retried as passing; a 401 makes it failing, logged at error, decisions kept; once the receiver takes it, delivered once', async (t) => {
  const { sluice, receiver } = await setup(t, {});
  let mode: Exclude<Answer, 'hang'> = { status: 429, body: '{"error":"slow down"}' };
  const statuses: number[] = [];
  receiver.answer = (_request, index) => {
    statuses[index] = mode.status;
    return mode;
  };
  const sent = decisions(4);
  assert.equal((await postDecisions(sluice.url, sent)).status, 200);

  const retrying = await outputWhen(
    sluice,
    '429: retrying',
    (o) => o.state === 'retrying' && /429/.test(o.last_error?.message ?? ''),
  );
  assert.equal(retrying.delivered.events, 0);
  assert.ok(!sluice.logLines().some((l) => l.level === 50 && l.output === 'siem'), 'a 429 is not said at error level');

  mode = { status: 401, body: '{"error":"bad token"}' };
  const failing = await outputWhen(
    sluice,
    '401: failing',
    (o) => o.state === 'failing' && /401/.test(o.last_error?.message ?? ''),
  );
  assert.equal(failing.last_error?.code, 'HTTP 401', JSON.stringify(failing.last_error));
  assert.equal(failing.delivered.events, 0, 'nothing counted delivered');
  const refusedBefore = receiver.requests.length;
  await sluice.until(
    'the 401 is tried again (slowly, in case it gets fixed)',
    () => receiver.requests.length >= refusedBefore + 2,
    WAIT_MS,
  );
  await sluice.until(
    'an error log line naming the output',
    () => sluice.logLines().some((l) => l.level === 50 && l.output === 'siem' && /401/.test(JSON.stringify(l))),
    WAIT_MS,
  );
  const ready = await sluice.ready();
  assert.ok(ready.buffer.chunks > 0, `the decisions stay buffered: ${JSON.stringify(ready.buffer)}`);

  mode = { status: 200, body: '{}' };
  await outputWhen(sluice, 'delivered and ok', (o) => o.state === 'ok' && o.delivered.events === 4);
  const accepted = receiver.requests.filter((_, i) => statuses[i] === 200);
  assert.equal(accepted.length, 1, `one request was answered 200: ${JSON.stringify(statuses)}`);
  assert.deepEqual(
    ids(accepted[0]!.body),
    sent.map((d) => d.decision_id as string),
    'the accepted request holds every decision, in order',
  );
  const keys = new Set(receiver.requests.map((r) => r.headers['idempotency-key']));
  assert.equal(keys.size, 1, `every try carries the same Idempotency-Key: ${[...keys].join(', ')}`);
  assert.ok(
    receiver.requests.every((r) => r.body.equals(receiver.requests[0]!.body)),
    'and the same bytes',
  );
  await sluice.until(
    'the buffer emptied once delivered',
    async () => (await sluice.ready()).buffer.chunks === 0,
    WAIT_MS,
  );
  assert.equal(await sluice.stop(), 0);
});

test('http output: a receiver that does not answer within timeout has its request cut and retried (retrying, not failing); then delivered', async (t) => {
  // 2 s, so that the lower bound below leaves a loaded machine a second between the client starting its timer
  // and the receiver seeing the request
  const { sluice, receiver } = await setup(t, { timeout: '2s' });
  let hang = true;
  receiver.answer = () => (hang ? 'hang' : { status: 200, body: '{}' });
  const sent = decisions(3);
  assert.equal((await postDecisions(sluice.url, sent)).status, 200);

  const waiting = await outputWhen(
    sluice,
    'timed out: retrying',
    (o) => o.state === 'retrying' && o.last_error !== null,
  );
  assert.match(
    `${waiting.last_error?.code} ${waiting.last_error?.message}`,
    /timeout/i,
    `the error says it timed out: ${JSON.stringify(waiting.last_error)}`,
  );
  await sluice.until(
    'a second try after the first was cut',
    () => receiver.requests.length >= 2 && receiver.requests[0]!.cutAt !== undefined,
    WAIT_MS,
  );
  const first = receiver.requests[0]!;
  const heldMs = first.cutAt! - first.at;
  assert.ok(heldMs >= 1_000, `the request was cut at the timeout (2 s), not before: ${heldMs} ms`);
  assert.ok(heldMs < 15_000, `the request was cut at the timeout, not left open: ${heldMs} ms`);
  assert.equal((await output(sluice)).state, 'retrying', 'a timeout is a passing error: retrying, not failing');

  hang = false;
  await outputWhen(sluice, 'delivered and ok', (o) => o.state === 'ok' && o.delivered.events === 3);
  const answered = receiver.requests.filter((r) => r.cutAt === undefined);
  assert.equal(answered.length, 1, `one request was answered: ${receiver.requests.length} requests`);
  assert.deepEqual(
    ids(answered[0]!.body),
    sent.map((d) => d.decision_id as string),
    'it holds every decision, in order',
  );
  const keys = new Set(receiver.requests.map((r) => r.headers['idempotency-key']));
  assert.equal(keys.size, 1, 'every try carries the same Idempotency-Key');
  assert.ok(
    receiver.requests.every((r) => r.body.equals(answered[0]!.body)),
    'and the same bytes',
  );
  assert.equal(await sluice.stop(), 0);
});
