/**
 * The command line as a user runs it (the built CLI in its own process): `sluice query` over the
 * hourly-per-decision, outpost and custom key layouts with `--from`/`--to`; `sluice tail --path/--where`;
 * `sluice send` retrying 429 and 5xx answers of a real HTTP server; `sluice serve` stopped with SIGINT (Ctrl-C).
 * Against the real `sluice serve` process, on 127.0.0.1 only.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { stringify } from 'yaml';
import { runCli, SluiceProcess, tempDir } from './helpers/sluice.js';
import { decision, decisions, postDecisions } from './helpers/opa.js';
import { linesUnder } from './helpers/files.js';
import { Receiver } from './helpers/receiver.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/cli.js');
const WAIT_MS = 20_000;

function dirFor(t: TestContext): string {
  const dir = tempDir('sluice-behaviour-cli-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A config file and a running sluice from it. */
async function serve(
  t: TestContext,
  dir: string,
  config: Record<string, unknown>,
): Promise<{ sluice: SluiceProcess; file: string }> {
  const file = path.join(dir, 'sluice.yaml');
  writeFileSync(
    file,
    stringify({ listen: '127.0.0.1:0', data_dir: path.join(dir, 'data'), shutdown_timeout: '5s', ...config }),
  );
  const sluice = await new SluiceProcess({ cwd: dir, args: ['--config', file] }).start();
  t.after(() => sluice.kill9());
  return { sluice, file };
}

const fileOutput = (dir: string, name: string, extra: Record<string, unknown> = {}) => ({
  name,
  type: 'file',
  path: path.join(dir, name),
  batch: { max_age: '200ms' },
  ...extra,
});

const idsOf = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { decision_id: string }).decision_id)
    .sort();
const idsOfDecisions = (ds: Array<Record<string, unknown>>) => ds.map((d) => d.decision_id as string).sort();

test('sluice query over the hourly-per-decision, outpost and custom layouts: --from and --to bound the decisions by their timestamp', async (t) => {
  const dir = dirFor(t);
  const layouts = {
    hourly: 'hourly-per-decision',
    outpost: 'outpost',
    // a template that starts with the time: listed hour by hour
    dated: '{output}/{year}/{month}/{day}/{hour}/{batch}.{ext}',
    // one that cannot be narrowed by time: every key is read, the timestamps decide
    flat: 'by-partition/{partition}/{batch}.{ext}',
  };
  const { sluice, file } = await serve(t, dir, {
    outputs: Object.entries(layouts).map(([name, key]) => fileOutput(dir, name, { key })),
  });
  const now = Date.now();
  const at = (msAgo: number) => new Date(now - msAgo).toISOString();
  // decisions that arrive now, with timestamps of three hours ago, two hours ago and five minutes ago (OPA
  // uploads late after an outage: the hourly layout files them under the hour they arrived)
  const old = decisions(2, { timestamp: at(3 * 3_600_000) });
  const mid = decisions(2, { timestamp: at(2 * 3_600_000) });
  const recent = decisions(2, { timestamp: at(5 * 60_000) });
  assert.equal((await postDecisions(sluice.url, [...old, ...mid, ...recent])).status, 200);
  await sluice.until(
    'every output delivered',
    async () => (await sluice.ready()).outputs.every((o) => o.delivered.events === 6),
    WAIT_MS,
  );

  for (const output of Object.keys(layouts)) {
    const ask = async (args: string[], want: Array<Record<string, unknown>>, what: string) => {
      const res = await runCli(['query', '-c', file, '-o', output, ...args]);
      assert.equal(res.code, want.length > 0 ? 0 : 1, `${output} ${what}: exit code; ${res.stderr}`);
      assert.deepEqual(idsOf(res.stdout), idsOfDecisions(want), `${output} ${what}`);
    };
    await ask(['--from', '4h', '--to', '90m'], [...old, ...mid], '--from 4h --to 90m');
    await ask(['--from', '150m', '--to', '90m'], mid, '--from 150m --to 90m');
    await ask(['--from', '4h', '--to', at(150 * 60_000)], old, '--to as an RFC 3339 time');
    await ask(['--from', '30m'], recent, '--from 30m (to now)');
    await ask(['--from', '10h', '--to', '5h'], [], 'a range with no decision');
    await ask(['--from', '4h', '--decision-id', mid[1]!.decision_id as string], [mid[1]!], '--decision-id');
  }
});

test('sluice tail --path and --where: only the matching decisions of the objects that land after it starts', async (t) => {
  const dir = dirFor(t);
  const { sluice, file } = await serve(t, dir, { outputs: [fileOutput(dir, 'archive')] });
  const child = spawn(
    process.execPath,
    [
      CLI,
      'tail',
      '-c',
      file,
      '-o',
      'archive',
      '--interval',
      '200ms',
      '--path',
      'authz/admin',
      '--where',
      'result=false',
      '--where',
      'input.user.name=alice',
      '--max',
      '2',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => child.kill('SIGKILL'));
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  let code: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.on('exit', (c) => {
      code = c;
      resolve();
    }),
  );

  // Each round, one object: three decisions that miss one filter each, then one that matches them all. tail
  // prints nothing to say its first listing is done, so rounds go on until it has printed two.
  const matching = new Set<string>();
  const user = { name: 'alice', roles: ['admin'] };
  for (let round = 0; round < 40 && code === undefined; round++) {
    const object = [
      decision({ path: 'authz/allow', result: false, input: { user } }),
      decision({ path: 'authz/admin', result: true, input: { user } }),
      decision({ path: 'authz/admin', result: false, input: { user: { name: 'bob' } } }),
      decision({ path: 'authz/admin', result: false, input: { user } }),
    ];
    matching.add(object[3]!.decision_id as string);
    assert.equal((await postDecisions(sluice.url, object)).status, 200);
    await sluice.until(
      `round ${round + 1} in the objects`,
      async () => (await sluice.ready()).outputs[0]!.delivered.events === 4 * (round + 1),
      WAIT_MS,
    );
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 600))]);
  }
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000))]);
  assert.equal(code, 0, `tail exits 0 after --max decisions: ${stdout}`);
  const printed = stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { decision_id: string; path: string; result: boolean });
  assert.equal(printed.length, 2, `--max 2: ${stdout}`);
  for (const d of printed) {
    assert.ok(matching.has(d.decision_id), `only decisions matching --path and every --where: ${JSON.stringify(d)}`);
    assert.equal(d.path, 'authz/admin');
    assert.equal(d.result, false);
  }
});

test('sluice send retries 429 and 5xx answers with the same bytes until accepted; exhausted retries exit 1', async (t) => {
  const dir = dirFor(t);
  const receiver = await new Receiver().start();
  t.after(() => receiver.stop());
  const sent = decisions(3);
  const file = path.join(dir, 'decisions.ndjson');
  writeFileSync(file, sent.map((d) => JSON.stringify(d)).join('\n'));

  const answers = [
    { status: 429, headers: { 'retry-after': '1' } },
    { status: 503 },
    { status: 500 },
    { status: 200, body: '{"accepted":3}' },
  ];
  receiver.answer = (_request, index) => answers[Math.min(index, answers.length - 1)]!;
  const ok = await runCli(['send', file, '--url', receiver.url, '--partition', 'replay', '--retries', '5']);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(
    ok.stdout,
    /done: 3 of 3 decisions sent to .*\/logs\/replay in 4 requests \(3 accepted, 0 already there, 3 retries\)/,
  );
  assert.equal(receiver.requests.length, 4, 'one request and three retries');
  for (const r of receiver.requests) {
    assert.equal(r.method, 'POST');
    assert.equal(r.url, '/logs/replay');
    assert.equal(r.headers['content-encoding'], 'gzip');
    assert.ok(r.body.equals(receiver.requests[0]!.body), 'every retry sends the same bytes');
  }
  assert.deepEqual(
    JSON.parse(gunzipSync(receiver.requests[0]!.body).toString('utf8')),
    sent,
    'a gzip JSON array of the decisions as in the file',
  );

  // a receiver that never recovers: the retries end, and so does send, with exit 1 naming the answer
  receiver.requests.length = 0;
  receiver.answer = () => ({ status: 503, body: '{"message":"down"}' });
  const exhausted = await runCli(['send', file, '--url', receiver.url, '--retries', '2']);
  assert.equal(exhausted.code, 1, exhausted.stdout + exhausted.stderr);
  assert.equal(receiver.requests.length, 3, 'the request and its two retries, no more');
  assert.match(
    exhausted.stderr,
    /gave up after 2 retries: .* answered 503/,
    `the last answer is named: ${exhausted.stderr}`,
  );
});

test('serve on SIGINT (Ctrl-C): stops taking requests, writes the open batches, and exits 0', async (t) => {
  const dir = dirFor(t);
  // max_age 1h: only the flush at the signal can write the object within this test
  const { sluice } = await serve(t, dir, {
    outputs: [{ name: 'archive', type: 'file', path: path.join(dir, 'archive'), batch: { max_age: '1h' } }],
  });
  const sent = decisions(5);
  assert.equal((await postDecisions(sluice.url, sent)).status, 200);
  assert.equal(linesUnder(path.join(dir, 'archive')).length, 0, 'nothing written before the signal');
  const code = await sluice.stop('SIGINT', 20_000);
  assert.equal(code, 0, `SIGINT exits 0 (null: it had to be killed):\n${sluice.output.slice(-2000)}`);
  const stopping = sluice.logLines().find((l) => /stopping/.test(l.msg ?? ''));
  assert.equal(stopping?.signal, 'SIGINT', `the stop is logged with its signal: ${JSON.stringify(stopping)}`);
  assert.deepEqual(
    linesUnder(path.join(dir, 'archive'))
      .map((l) => (JSON.parse(l) as { decision_id: string }).decision_id)
      .sort(),
    idsOfDecisions(sent),
    'the open batch was written before the exit',
  );
  assert.ok(
    sluice.logLines().some((l) => /stopped; everything delivered/.test(l.msg ?? '')),
    'and it says everything was delivered',
  );
});
