/**
 * The real OPA (v0.61 in ../shared/bin) sending its decision logs to the real `sluice serve`: every decision
 * OPA answered a query with lands exactly once and unaltered, also when Sluice restarts in the middle.
 * Skipped, with the reason, where no OPA binary is found (see helpers/opa-server.ts).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { findOpa, OpaProcess } from './helpers/opa-server.js';
import { SluiceProcess, tempDir } from './helpers/sluice.js';

const opa = findOpa();
const skip = 'missing' in opa ? opa.missing : false;
const QUERIES = 3000;

const POLICY = `package authz

import future.keywords.if

default allow := false

allow if input.user == "alice"

allow if {
  input.user == "bob"
  input.method == "GET"
}
`;

interface Sent {
  input: Record<string, unknown>;
  result: unknown;
}

function dirFor(t: TestContext): string {
  const dir = tempDir('sluice-opa-test-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function sluiceConfig(dir: string, listen = '127.0.0.1:0'): Record<string, unknown> {
  return {
    listen,
    data_dir: path.join(dir, 'data'),
    shutdown_timeout: '10s',
    outputs: [{ name: 'local', type: 'file', path: path.join(dir, 'objects'), batch: { max_age: '200ms' } }],
  };
}

async function startOpa(t: TestContext, serviceUrl: string): Promise<OpaProcess> {
  const server = new OpaProcess((opa as { bin: string }).bin, { policy: POLICY, serviceUrl });
  t.after(() => server.stop());
  return server.start();
}

/** Every decision in the file output's complete objects. */
function landed(root: string): Array<Record<string, unknown>> {
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ndjson.gz') && statSync(path.join(root, f)).isFile())
    .flatMap((f) =>
      gunzipSync(readFileSync(path.join(root, f)))
        .toString('utf8')
        .trim()
        .split('\n'),
    )
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/**
 * `count` policy queries, `concurrency` at a time; each answer's decision_id is recorded with the input sent.
 * `onProgress` sees the number answered so far after each answer.
 */
async function query(
  opaUrl: string,
  count: number,
  sent: Map<string, Sent>,
  onProgress?: (done: number) => Promise<void> | void,
  concurrency = 16,
): Promise<void> {
  let next = 0;
  const users = ['alice', 'bob', 'carol'];
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const input = {
        user: users[i % 3],
        method: i % 2 === 0 ? 'GET' : 'POST',
        path: ['salary', String(i)],
        nonce: randomUUID(),
        n: i,
      };
      const res = await fetch(`${opaUrl}/v1/data/authz/allow`, {
        method: 'POST',
        body: JSON.stringify({ input }),
        headers: { 'content-type': 'application/json' },
        signal: AbortSignal.timeout(30_000),
      });
      assert.equal(res.status, 200, `OPA answers the query: ${await res.clone().text()}`);
      const answer = (await res.json()) as { decision_id?: string; result: unknown };
      assert.ok(answer.decision_id, `OPA returns a decision_id with decision logs on: ${JSON.stringify(answer)}`);
      sent.set(answer.decision_id, { input, result: answer.result });
      await onProgress?.(sent.size);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Waits (bounded) until every decision OPA answered is in the objects, then checks each is there once, as sent. */
async function assertLandedOnce(
  sluice: SluiceProcess,
  opaServer: OpaProcess,
  root: string,
  sent: Map<string, Sent>,
  t: TestContext,
): Promise<void> {
  let stored: Array<Record<string, unknown>> = [];
  await sluice
    .until(
      `${sent.size} decisions from OPA in the objects`,
      () => {
        stored = landed(root);
        const ids = new Set(stored.map((d) => d.decision_id));
        for (const id of sent.keys()) if (!ids.has(id)) return false;
        return true;
      },
      90_000,
    )
    .catch((err: Error) => {
      const ids = new Set(landed(root).map((d) => d.decision_id));
      const missing = [...sent.keys()].filter((id) => !ids.has(id)).length;
      throw new Error(
        `${missing} of ${sent.size} decisions never landed\n--- opa output ---\n${opaServer.output.slice(-4000)}\n${err.message}`,
      );
    });
  const counts = new Map<unknown, number>();
  for (const d of stored) counts.set(d.decision_id, (counts.get(d.decision_id) ?? 0) + 1);
  const duplicated = [...counts].filter(([, n]) => n > 1);
  const unknown = [...counts.keys()].filter((id) => !sent.has(id as string));
  t.diagnostic(
    `${sent.size} decisions answered by OPA, ${stored.length} stored, ${duplicated.length} duplicated, ${unknown.length} unknown`,
  );
  assert.deepEqual(duplicated, [], 'no decision is stored twice');
  assert.deepEqual(unknown, [], 'nothing is stored that OPA did not answer');
  for (const d of stored) {
    const expected = sent.get(d.decision_id as string)!;
    assert.deepEqual(d.input, expected.input, `decision ${d.decision_id as string}: the input as sent`);
    assert.deepEqual(d.result, expected.result, `decision ${d.decision_id as string}: the result OPA answered`);
    assert.equal(d.path, 'authz/allow');
  }
}

test(`real OPA: ${QUERIES} decisions land exactly once, unaltered`, { skip }, async (t) => {
  const dir = dirFor(t);
  const sluice = new SluiceProcess({ config: sluiceConfig(dir) });
  t.after(() => sluice.kill9());
  await sluice.start();
  const opaServer = await startOpa(t, sluice.url);

  const sent = new Map<string, Sent>();
  await query(opaServer.url, QUERIES, sent);
  assert.equal(sent.size, QUERIES, 'every query got its own decision_id');
  await assertLandedOnce(sluice, opaServer, path.join(dir, 'objects'), sent, t);
});

test(`real OPA: ${QUERIES} decisions land exactly once across a Sluice restart in the middle`, { skip }, async (t) => {
  const dir = dirFor(t);
  const first = new SluiceProcess({ config: sluiceConfig(dir) });
  t.after(() => first.kill9());
  await first.start();
  const listen = new URL(first.url).host; // the restart listens where OPA sends
  const opaServer = await startOpa(t, first.url);
  const second = new SluiceProcess({ config: sluiceConfig(dir, listen) });
  t.after(() => second.kill9());

  const sent = new Map<string, Sent>();
  let restart: Promise<void> | undefined;
  await query(opaServer.url, QUERIES, sent, (done) => {
    // a third of the way: SIGTERM while OPA queries and uploads, then the same port and data_dir again
    if (done < QUERIES / 3 || restart) return;
    restart = (async () => {
      const stoppedAt = Date.now();
      assert.equal(await first.stop('SIGTERM'), 0, `the first sluice exits 0:\n${first.output.slice(-3000)}`);
      t.diagnostic(`sluice stopped ${Date.now() - stoppedAt} ms after SIGTERM`);
      // down until OPA has tried an upload and failed (it tries every 1-2 s), so its retry is what delivers
      for (let i = 0; i < 400 && !/log upload failed/i.test(opaServer.output); i++) await sleep(50);
      assert.match(opaServer.output, /log upload failed/i, 'OPA tried to upload while Sluice was down');
      await second.start();
    })();
  });
  await restart;
  assert.equal(sent.size, QUERIES, 'every query got its own decision_id');
  assert.ok(second.url.endsWith(listen), `the second sluice listens on ${listen}: ${second.url}`);
  await assertLandedOnce(second, opaServer, path.join(dir, 'objects'), sent, t);
  t.diagnostic(`OPA logged ${opaServer.output.match(/log upload failed/gi)?.length ?? 0} failed uploads, all retried`);
});
