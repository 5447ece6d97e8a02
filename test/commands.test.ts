/**
 * The command line for people: sluice status, send, query and tail, run as a user runs them (the built CLI in
 * its own process) against the real server and s3rver on 127.0.0.1.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { stringify } from 'yaml';
import { S3_KEY, S3_SECRET, s3For } from './helpers/s3.js';
import { runCli, SluiceProcess, tempDir } from './helpers/sluice.js';
import { decisions } from './helpers/opa.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/cli.js');

function dirFor(t: TestContext): string {
  const dir = tempDir('sluice-commands-');
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
  writeFileSync(file, stringify({ listen: '127.0.0.1:0', data_dir: path.join(dir, 'data'), ...config }));
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

/** Decisions spread over the last `minutes` minutes, newest first. */
function recent(count: number, minutes: number): Array<Record<string, unknown>> {
  const now = Date.now();
  return decisions(count).map((d, i) => ({
    ...d,
    timestamp: new Date(now - Math.floor((i * minutes * 60_000) / count)).toISOString(),
  }));
}

test('sluice send: NDJSON, a gzip JSON array and stdin, in OPA-sized chunks; a re-run adds nothing; a refusal exits 1', async (t) => {
  const dir = dirFor(t);
  const { sluice } = await serve(t, dir, { ingest: { tokens: ['tok'] }, outputs: [fileOutput(dir, 'local')] });
  const sent = recent(400, 10);
  const ndjson = path.join(dir, 'd.ndjson');
  writeFileSync(ndjson, sent.map((d) => JSON.stringify(d)).join('\n'));
  const first = await runCli(['send', ndjson, '--url', sluice.url, '--token', 'tok', '--chunk-bytes', '8192']);
  assert.equal(first.code, 0, first.stdout + first.stderr);
  const summary = /done: 400 of 400 decisions sent to .* in (\d+) requests \(400 accepted, 0 already there/.exec(
    first.stdout,
  );
  assert.ok(summary, first.stdout);
  assert.ok(Number(summary[1]) > 1, 'more than one request: chunks are cut at --chunk-bytes');
  assert.doesNotMatch(first.stdout, /\x1b\[/, 'no progress bar escapes when stdout is not a terminal');

  const again = await runCli(['send', ndjson, '--url', sluice.url, '--token', 'tok']);
  assert.equal(again.code, 0);
  assert.match(again.stdout, /\(0 accepted, 400 already there/, 'a re-run is recognised as OPA re-sends');

  const array = path.join(dir, 'd.json.gz');
  writeFileSync(array, gzipSync(JSON.stringify(decisions(5))));
  const gz = await runCli(['send', array, '--url', sluice.url, '--token', 'tok', '--partition', 'replay']);
  assert.equal(gz.code, 0, gz.stdout + gz.stderr);
  assert.match(gz.stdout, /5 of 5 decisions sent to .*\/logs\/replay/);

  const viaStdin = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const child = spawn(process.execPath, [CLI, 'send', '-', '--url', sluice.url, '--token', 'tok'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.on('exit', (code) => resolve({ code, stdout }));
    child.stdin.end(
      decisions(3)
        .map((d) => JSON.stringify(d))
        .join('\n'),
    );
  });
  assert.equal(viaStdin.code, 0);
  assert.match(viaStdin.stdout, /3 of 3 decisions sent/);

  const refused = await runCli(['send', ndjson, '--url', sluice.url, '--token', 'wrong']);
  assert.equal(refused.code, 1, 'a 401 is not retried: exit 1');
  assert.match(refused.stderr, /answered 401/);
  const bad = path.join(dir, 'bad.ndjson');
  writeFileSync(bad, '{"decision_id": 1}\n{oops\n');
  const unreadable = await runCli(['send', bad, '--url', sluice.url]);
  assert.equal(unreadable.code, 2);
  assert.match(unreadable.stderr, /line 2 is not JSON/);
});

test('sluice status: a table of the buffer and outputs; exit 0 ok, 1 degraded, 2 unreachable', async (t) => {
  const dir = dirFor(t);
  const s3 = await s3For(t, ['logs']);
  const { sluice } = await serve(t, dir, {
    outputs: [
      fileOutput(dir, 'local'),
      {
        name: 'gone',
        type: 's3',
        bucket: 'no-such-bucket',
        endpoint: s3.endpoint,
        force_path_style: true,
        access_key_id: S3_KEY,
        secret_access_key: S3_SECRET,
        batch: { max_age: '200ms' },
        retry: { initial_backoff: '100ms', max_backoff: '200ms' },
      },
    ],
  });
  const ok = await runCli(['status', '--url', sluice.url]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /buffer: writable/);
  assert.match(ok.stdout, /^store: ok$/m);
  assert.match(ok.stdout, /local .*file/);
  await fetch(`${sluice.url}/logs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(decisions(2)),
  });
  await sluice.until('the s3 output fails', async () =>
    (await sluice.ready()).outputs.some((o) => o.name === 'gone' && o.state === 'failing'),
  );
  const degraded = await runCli(['status', '--url', sluice.url]);
  assert.equal(degraded.code, 1, degraded.stdout);
  assert.match(degraded.stdout, /gone .*failing.*NoSuchBucket/s);
  const json = await runCli(['status', '--url', sluice.url, '--json']);
  assert.equal((JSON.parse(json.stdout) as { status: string }).status, 'degraded');
  const none = await runCli(['status', '--url', 'http://127.0.0.1:1']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /cannot reach sluice/);
});

test('sluice status: the base URL or any URL under it (/ready, /ui, /api/v1/...); anything else one line, exit 2', async (t) => {
  const dir = dirFor(t);
  const { sluice } = await serve(t, dir, { outputs: [fileOutput(dir, 'local')] });
  const host = sluice.url.replace(/^http:\/\//, '');
  for (const url of [
    sluice.url,
    `${sluice.url}/`,
    `${sluice.url}/ready`,
    `${sluice.url}/ui/`,
    `${sluice.url}/api/v1/tenants?limit=1`,
    host,
  ]) {
    const res = await runCli(['status', '--url', url]);
    assert.equal(res.code, 0, `${url}: ${res.stdout}${res.stderr}`);
    assert.ok(res.stdout.startsWith(`sluice at ${sluice.url}: ok\n`), `${url}: named by its base URL:\n${res.stdout}`);
    assert.match(res.stdout, /local .*file/);
  }
  // a URL that is not a Sluice's: which URL answered what, never a stack
  const notSluice = await runCli(['status', '--url', `${sluice.url}/nothing-here`]);
  assert.equal(notSluice.code, 2, notSluice.stderr);
  assert.match(notSluice.stderr, /^\S+\/nothing-here\/ready answered HTTP 404, not Sluice's \/ready/);
  for (const bad of ['ftp://127.0.0.1/', 'http://[nope']) {
    const res = await runCli(['status', '--url', bad]);
    assert.equal(res.code, 2, `${bad}: ${res.stderr}`);
    assert.equal(res.stderr.trim().split('\n').length, 1, `${bad}: one line: ${res.stderr}`);
    assert.match(res.stderr, /--url takes/);
  }
});

test('sluice query and tail without -c: the embedded defaults, and their only output (local) without -o', async (t) => {
  const cwd = dirFor(t);
  const file = path.join(cwd, 'sluice.yaml');
  // the embedded defaults but a free port: data_dir ./data, one file output "local" in ./data/objects
  writeFileSync(
    file,
    stringify({
      listen: '127.0.0.1:0',
      outputs: [{ name: 'local', type: 'file', path: './data/objects', batch: { max_age: '200ms' } }],
    }),
  );
  const sluice = await new SluiceProcess({ cwd, args: ['--config', file] }).start();
  t.after(() => sluice.kill9());
  const sent = decisions(3);
  assert.equal(
    (
      await fetch(`${sluice.url}/logs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(sent),
      })
    ).status,
    200,
  );
  await sluice.until('the object', async () => (await sluice.ready()).outputs[0]!.delivered.events === 3);
  for (const args of [['query'], ['query', '-o', 'local', '--from', '1h']]) {
    const found = await runCli(args, { cwd });
    assert.equal(found.code, 0, `${args.join(' ')}: ${found.stderr}`);
    const ids = found.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { decision_id: string }).decision_id)
      .sort();
    assert.deepEqual(ids, sent.map((d) => d.decision_id as string).sort(), args.join(' '));
  }
  const wrong = await runCli(['query', '-o', 'archive'], { cwd });
  assert.equal(wrong.code, 2);
  assert.match(wrong.stderr, /no output named "archive" in the embedded defaults; outputs: local/);
  const tail = await runCli(['tail', '--max', 'x'], { cwd });
  assert.equal(tail.code, 2, 'tail takes the defaults too, and checks its own arguments');
  assert.match(tail.stderr, /--max must be an integer/);
});

test('sluice query: by time range, decision id, path and --where, over file and S3 outputs and the eopa layout; exit 1 when none', async (t) => {
  const dir = dirFor(t);
  const s3 = await s3For(t, ['logs']);
  const { sluice, file } = await serve(t, dir, {
    outputs: [
      fileOutput(dir, 'archive'),
      fileOutput(dir, 'eopa', { key: 'eopa' }),
      {
        name: 'bucket',
        type: 's3',
        bucket: 'logs',
        endpoint: s3.endpoint,
        force_path_style: true,
        access_key_id: S3_KEY,
        secret_access_key: S3_SECRET,
        batch: { max_age: '200ms' },
      },
    ],
  });
  const sent = recent(60, 120).map((d, i) => ({
    ...d,
    path: i % 3 === 0 ? 'authz/admin' : 'authz/allow',
    result: i % 2 === 0,
  }));
  const res = await fetch(`${sluice.url}/logs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(sent),
  });
  assert.equal(res.status, 200);
  await sluice.until('all three outputs delivered', async () =>
    (await sluice.ready()).outputs.every((o) => o.delivered.events === 60),
  );

  const within = (minutes: number) =>
    sent.filter((d) => Date.parse(d.timestamp as string) >= Date.now() - minutes * 60_000);
  for (const output of ['archive', 'eopa', 'bucket']) {
    const last30 = await runCli(['query', '-c', file, '-o', output, '--from', '30m']);
    assert.equal(last30.code, 0, last30.stderr);
    const ids = last30.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { decision_id: string }).decision_id)
      .sort();
    assert.deepEqual(
      ids,
      within(30)
        .map((d) => d.decision_id as string)
        .sort(),
      `${output}: the decisions of the last 30 minutes`,
    );
  }
  const one = sent[7]!;
  const byId = await runCli([
    'query',
    '-c',
    file,
    '-o',
    'archive',
    '--from',
    '3h',
    '--decision-id',
    one.decision_id as string,
  ]);
  assert.deepEqual(JSON.parse(byId.stdout), one, 'the decision as it was sent');
  const filtered = await runCli([
    'query',
    '-c',
    file,
    '-o',
    'bucket',
    '--from',
    '3h',
    '--path',
    'authz/admin',
    '--where',
    'result=false',
    '--format',
    'table',
  ]);
  const expected = sent
    .filter((d) => d.path === 'authz/admin' && d.result === false)
    .map((d) => d.decision_id as string);
  for (const id of expected) assert.ok(filtered.stdout.includes(id), `table lists ${id}`);
  assert.match(filtered.stderr, new RegExp(`^${expected.length} decisions`, 'm'));
  const none = await runCli([
    'query',
    '-c',
    file,
    '-o',
    'archive',
    '--from',
    '3h',
    '--decision-id',
    'no-such-decision',
  ]);
  assert.equal(none.code, 1);
  const wrong = await runCli(['query', '-c', file, '-o', 'nope']);
  assert.equal(wrong.code, 2);
  assert.match(wrong.stderr, /no output named "nope".*archive, eopa, bucket/);
});

test('sluice tail: prints the decisions of objects that land after it starts, then stops at --max', async (t) => {
  const dir = dirFor(t);
  const { sluice, file } = await serve(t, dir, { outputs: [fileOutput(dir, 'archive')] });
  const earlier = decisions(3);
  assert.equal(
    (
      await fetch(`${sluice.url}/logs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(earlier),
      })
    ).status,
    200,
  );
  await sluice.until('the first objects', async () => (await sluice.ready()).outputs[0]!.delivered.events === 3);
  const child = spawn(
    process.execPath,
    [CLI, 'tail', '-c', file, '-o', 'archive', '--interval', '200ms', '--max', '2'],
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

  // tail says nothing when its first listing is done, and objects that land before it are (rightly) not
  // printed: so one decision at a time is posted, each waited for in the objects, until tail has printed two.
  const later = new Set<string>();
  for (let i = 0; i < 60 && code === undefined; i++) {
    const [d] = decisions(1);
    assert.equal(
      (
        await fetch(`${sluice.url}/logs`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify([d]),
        })
      ).status,
      200,
    );
    later.add(d!.decision_id as string);
    await sluice.until(
      `decision ${i + 1} after tail started, in the objects`,
      async () => (await sluice.ready()).outputs[0]!.delivered.events === 3 + later.size,
    );
    await untilOrTimeout(exited, 1_000);
  }
  await untilOrTimeout(exited, 15_000);
  assert.equal(code, 0, `tail exits 0 after --max decisions: ${stdout}`);
  const ids = stdout
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { decision_id: string }).decision_id);
  assert.equal(ids.length, 2, `--max 2 prints two decisions: ${stdout}`);
  assert.equal(new Set(ids).size, 2, 'each decision once');
  for (const id of ids) assert.ok(later.has(id), `only decisions that landed after it started: ${id}`);
});

test('sluice query skips the files the file output is still writing (*.tmp)', async (t) => {
  const dir = dirFor(t);
  const { sluice, file } = await serve(t, dir, { outputs: [fileOutput(dir, 'archive')] });
  const sent = decisions(3);
  assert.equal(
    (
      await fetch(`${sluice.url}/logs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(sent),
      })
    ).status,
    200,
  );
  await sluice.until('the object', async () => (await sluice.ready()).outputs[0]!.delivered.events === 3);
  const objects = (readdirSync(path.join(dir, 'archive'), { recursive: true }) as string[]).filter((f) =>
    f.endsWith('.ndjson.gz'),
  );
  assert.equal(objects.length, 1, `one object: ${objects.join(', ')}`);
  // what the file output leaves beside the key while it writes: <key>.<random>.tmp, partial or complete
  const object = path.join(dir, 'archive', objects[0]!);
  const body = readFileSync(object);
  writeFileSync(`${object}.0123456789ab.tmp`, body.subarray(0, body.length >> 1));
  writeFileSync(`${object}.ba9876543210.tmp`, body);

  const found = await runCli(['query', '-c', file, '-o', 'archive', '--from', '1h']);
  assert.equal(found.code, 0, found.stderr);
  const ids = found.stdout
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { decision_id: string }).decision_id)
    .sort();
  assert.deepEqual(
    ids,
    sent.map((d) => d.decision_id as string).sort(),
    'each decision once, from the complete object only',
  );
  assert.match(found.stderr, /^3 decisions in 1 object/m);
});

/** Resolves when `promise` does or after `ms`, whichever is first; the timer never outlives it. */
async function untilOrTimeout(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    promise,
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

test('--help of every command has examples', async () => {
  for (const command of ['serve', 'check', 'status', 'send', 'query', 'tail']) {
    const help = await runCli([command, '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Examples:\n\s+sluice /, `${command} --help`);
  }
});
