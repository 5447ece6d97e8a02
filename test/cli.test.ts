/**
 * The `sluice` command line, run as a real process: `check` on valid and invalid configurations, `--help`,
 * and `serve` on its embedded defaults.
 */
import { objectKeysUnder } from './helpers/files.js';
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { existsSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { decodeObject } from './helpers/s3.js';
import { runCli, SluiceProcess, tempDir } from './helpers/sluice.js';
import { decisions, postDecisions } from './helpers/opa.js';

/** A variable no environment sets; passed as undefined so the child surely does not inherit it. */
const UNSET = 'SLUICE_TEST_SURELY_UNSET_VAR';

function workDir(t: TestContext): string {
  // resolved: the child's cwd is the real path, and the temp dir may be under a symlink (/var -> /private/var on macOS)
  const dir = realpathSync(tempDir('sluice-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeConfig(dir: string, yaml: string, name = 'sluice.yaml'): string {
  const file = path.join(dir, name);
  writeFileSync(file, yaml);
  return file;
}

/** The problem lines of `check`'s stderr: `  <path>: <message>`. */
function problems(stderr: string): Array<{ path: string; message: string }> {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('  '))
    .map((l) => {
      const i = l.indexOf(': ');
      return { path: l.slice(2, i), message: l.slice(i + 2) };
    });
}

test('check: a valid configuration prints ok with its outputs and exits 0', async (t) => {
  const dir = workDir(t);
  const file = writeConfig(
    dir,
    `
listen: 127.0.0.1:9181
data_dir: ${dir}/data
buffer: { max_bytes: 2GiB }
ingest:
  tokens: [one, two]
  max_body_bytes: 16MiB
  max_decoded_bytes: 512MB
log: { level: warn }
shutdown_timeout: 1m
outputs:
  - name: archive
    type: s3
    bucket: decision-logs
    region: eu-west-1
    endpoint: http://127.0.0.1:9000
    force_path_style: true
    storage_class: STANDARD_IA
    format: ndjson
    compression: gzip
    key: "opa/{year}/{month}/{day}/{hour}/{partition}-{batch}.{ext}"
    batch: { max_events: 5000, max_bytes: 32MiB, max_age: 30s }
    retry: { initial_backoff: 500ms, max_backoff: 1m }
    upload_concurrency: 8
  - name: local_copy
    type: file
    path: ${dir}/objects
    format: json_array
    compression: none
`,
  );
  const res = await runCli(['check', '--config', file]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stderr, '', 'nothing on stderr');
  const lines = res.stdout.trimEnd().split('\n');
  assert.equal(lines[0], `${file}: ok`);
  assert.match(res.stdout, /listen 127\.0\.0\.1:9181/);
  assert.ok(res.stdout.includes(`data_dir ${dir}/data`), res.stdout);
  assert.ok(
    res.stdout.includes(
      'output archive: s3://decision-logs, key opa/{year}/{month}/{day}/{hour}/{partition}-{batch}.{ext}',
    ),
    res.stdout,
  );
  assert.ok(
    res.stdout.includes(
      `output local_copy: file://${dir}/objects, key {partition}/dt={date}/hour={hour}/{batch}.{ext}`,
    ),
    res.stdout,
  );
});

test('check: an empty configuration is valid and shows the embedded defaults', async (t) => {
  const dir = workDir(t);
  const file = writeConfig(dir, '');
  const res = await runCli(['check', '-c', file], { cwd: dir });
  assert.equal(res.code, 0, res.stderr);
  assert.ok(res.stdout.includes(`listen 127.0.0.1:8181, data_dir ${path.join(dir, 'data')}`), res.stdout);
  assert.ok(
    res.stdout.includes(
      `output local: file://${path.join(dir, 'data', 'objects')}, key {partition}/dt={date}/hour={hour}/{batch}.{ext}`,
    ),
    res.stdout,
  );
});

const OUT = 'outputs:\n  - name: a\n    type: file\n    path: /tmp/sluice-never-written\n';

const invalid: Array<{ name: string; yaml: string; expect: Array<[string, RegExp]> }> = [
  {
    name: 'an unknown top-level field',
    yaml: 'listen: 127.0.0.1:9000\nbufer: { max_bytes: 1GiB }\n',
    expect: [['bufer', /unknown field/]],
  },
  {
    name: 'an unknown field in an output',
    yaml: `${OUT}    bucketname: logs\n`,
    expect: [['outputs.0.bucketname', /unknown field/]],
  },
  {
    name: 'an unknown field in a batch',
    yaml: `${OUT}    batch: { max_event: 10 }\n`,
    expect: [['outputs.0.batch.max_event', /unknown field/]],
  },
  {
    name: 'a wrong type',
    yaml: `${OUT}    batch: { max_events: ten }\n`,
    expect: [['outputs.0.batch.max_events', /expected number/]],
  },
  { name: 'a number where host:port is expected', yaml: 'listen: 8181\n', expect: [['listen', /expected string/]] },
  {
    name: 'a bad size',
    yaml: `${OUT}    batch: { max_bytes: lots }\n`,
    expect: [['outputs.0.batch.max_bytes', /"lots" is not a size/]],
  },
  {
    name: 'a bad size unit',
    yaml: 'buffer: { max_bytes: 10 potatoes }\n',
    expect: [['buffer.max_bytes', /"10 potatoes" is not a size/]],
  },
  {
    name: 'a bad duration',
    yaml: `${OUT}    batch: { max_age: soon }\n`,
    expect: [['outputs.0.batch.max_age', /"soon" is not a duration/]],
  },
  {
    name: 'a bad top-level duration',
    yaml: 'shutdown_timeout: 5 minutes\n',
    expect: [['shutdown_timeout', /not a duration/]],
  },
  {
    name: 'a key template without {batch}',
    yaml: `${OUT}    key: "{partition}/{date}/{hour}.{ext}"\n`,
    expect: [['outputs.0.key', /must contain \{batch\}/]],
  },
  {
    name: 'a key template with an unknown placeholder',
    yaml: `${OUT}    key: "{partition}/{minute}/{batch}.{ext}"\n`,
    expect: [['outputs.0.key', /unknown placeholder \{minute\}/]],
  },
  {
    name: 'an unknown output type',
    yaml: 'outputs:\n  - { name: a, type: file, path: /tmp/x }\n  - { name: b, type: ftp, path: /tmp/x }\n',
    expect: [['outputs.1.type', /s3, file/]],
  },
  {
    name: 'duplicate output names',
    yaml: 'outputs:\n  - { name: same, type: file, path: /tmp/x }\n  - { name: same, type: file, path: /tmp/y }\n',
    expect: [['outputs.1.name', /"same" is used twice/]],
  },
  {
    name: 'a ${VAR} that is not set',
    yaml: `outputs:\n  - { name: a, type: s3, bucket: logs, endpoint: "\${${UNSET}}" }\n`,
    expect: [['outputs.0.endpoint', new RegExp(`environment variable ${UNSET} is not set`)]],
  },
  {
    name: 'one key without the other',
    yaml: 'outputs:\n  - { name: a, type: s3, bucket: logs, access_key_id: AKIA }\n',
    expect: [['outputs.0.secret_access_key', /go together/]],
  },
  {
    name: 'a value out of range',
    yaml: `${OUT}    upload_concurrency: 0\n`,
    expect: [['outputs.0.upload_concurrency', /.+/]],
  },
  {
    name: 'several problems at once',
    yaml: `listen: nowhere\noutputs:\n  - name: a\n    type: file\n    path: /tmp/x\n    batch: { max_bytes: lots, max_age: soon }\n    colour: red\n  - { name: b, type: s3, bucket: logs, endpoint: "\${${UNSET}}", format: orc }\n`,
    expect: [
      ['listen', /host:port/],
      ['outputs.0.batch.max_bytes', /"lots" is not a size/],
      ['outputs.0.batch.max_age', /"soon" is not a duration/],
      ['outputs.0.colour', /unknown field/],
      ['outputs.1.endpoint', new RegExp(`${UNSET} is not set`)],
      ['outputs.1.format', /ndjson/],
    ],
  },
];

describe('check: invalid configurations exit 1 and print each problem at the path of its field', {
  concurrency: 4,
}, () => {
  for (const c of invalid) {
    test(`${c.name}`, async (t) => {
      const dir = workDir(t);
      const file = writeConfig(dir, c.yaml);
      const res = await runCli(['check', '--config', file], { env: { [UNSET]: undefined } });
      assert.equal(res.code, 1, `exit code; stdout: ${res.stdout} stderr: ${res.stderr}`);
      assert.doesNotMatch(res.stdout, /: ok/);
      const n = c.expect.length;
      assert.ok(
        res.stderr.includes(`${file}: ${n} problem${n === 1 ? '' : 's'}\n`),
        `header names the file and counts ${n} problem(s):\n${res.stderr}`,
      );
      const found = problems(res.stderr);
      assert.equal(found.length, n, `one line per problem:\n${res.stderr}`);
      for (const [fieldPath, message] of c.expect) {
        assert.ok(
          found.some((p) => p.path === fieldPath && message.test(p.message)),
          `"  ${fieldPath}: ${message}" in:\n${res.stderr}`,
        );
      }
    });
  }
});

test('serve refuses an invalid configuration with the same messages, exit 1', async (t) => {
  const dir = workDir(t);
  const file = writeConfig(dir, `${OUT}    batch: { max_bytes: lots }\n`);
  const res = await runCli(['serve', '--config', file], { cwd: dir });
  assert.equal(res.code, 1, res.stdout + res.stderr);
  assert.ok(res.stderr.includes('  outputs.0.batch.max_bytes: "lots" is not a size'), res.stderr);
  assert.equal(existsSync(path.join(dir, 'data')), false, 'nothing created');
});

test('check: a missing file or a missing --config is an error', async (t) => {
  const dir = workDir(t);
  const missing = await runCli(['check', '--config', path.join(dir, 'nope.yaml')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /nope\.yaml: 1 problem\n {2}\(file\): cannot read/);
  const noFlag = await runCli(['check']);
  assert.equal(noFlag.code, 2, 'a missing --config is a usage error: 2');
  assert.match(noFlag.stderr, /--config/);
  const notYaml = await runCli(['check', '-c', writeConfig(dir, 'listen: [unclosed\n', 'bad.yaml')]);
  assert.equal(notYaml.code, 1);
  assert.match(notYaml.stderr, /\(file\): not valid YAML/);
  const notMapping = await runCli(['check', '-c', writeConfig(dir, '- a\n- b\n', 'list.yaml')]);
  assert.equal(notMapping.code, 1);
  assert.match(notMapping.stderr, /\(root\): the configuration must be a mapping/);
});

test('${VAR} and ${VAR:-default} interpolation, and $$ for a literal $', async (t) => {
  const dir = workDir(t);
  const file = writeConfig(
    dir,
    `
listen: "\${SLUICE_TEST_LISTEN:-127.0.0.1:9999}"
data_dir: "\${SLUICE_TEST_DATA:-${dir}/fallback}"
outputs:
  - name: a
    type: s3
    bucket: "\${SLUICE_TEST_BUCKET}"
    endpoint: "\${SLUICE_TEST_ENDPOINT:-}"
    key: "cost$$/{batch}.{ext}"
`,
  );
  const fallback = await runCli(['check', '-c', file], {
    env: {
      SLUICE_TEST_LISTEN: undefined,
      SLUICE_TEST_DATA: '',
      SLUICE_TEST_BUCKET: 'from-env',
      SLUICE_TEST_ENDPOINT: undefined,
    },
  });
  assert.equal(fallback.code, 0, fallback.stderr);
  assert.ok(
    fallback.stdout.includes(`listen 127.0.0.1:9999, data_dir ${dir}/fallback`),
    `defaults used (an empty variable counts as unset):\n${fallback.stdout}`,
  );
  assert.ok(fallback.stdout.includes('output a: s3://from-env, key cost$/{batch}.{ext}'), fallback.stdout);

  const set = await runCli(['check', '-c', file], {
    env: { SLUICE_TEST_LISTEN: '127.0.0.1:7777', SLUICE_TEST_DATA: `${dir}/set`, SLUICE_TEST_BUCKET: 'other-bucket' },
  });
  assert.equal(set.code, 0, set.stderr);
  assert.ok(set.stdout.includes(`listen 127.0.0.1:7777, data_dir ${dir}/set`), set.stdout);
  assert.ok(set.stdout.includes('output a: s3://other-bucket'), set.stdout);

  const unset = await runCli(['check', '-c', file], { env: { SLUICE_TEST_BUCKET: undefined } });
  assert.equal(unset.code, 1);
  assert.ok(
    problems(unset.stderr).some(
      (p) => p.path === 'outputs.0.bucket' && p.message.includes('SLUICE_TEST_BUCKET is not set'),
    ),
    unset.stderr,
  );
});

test('argument errors exit 2 with one line, for every command; help and --version exit 0', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['check'], /required option '-c, --config <file>'/],
    [['check', '-c', 'x.yaml', '--bogus'], /unknown option '--bogus'/],
    [['serve', '--frobnicate'], /unknown option '--frobnicate'/],
    [['status', '--nope'], /unknown option '--nope'/],
    [['send'], /missing required argument 'file'/],
    [['send', 'a', 'b'], /too many arguments|unknown/],
    [['query', '--format', 'xml'], /--format is ndjson or table/],
    [['tail', '--interval', 'soon'], /--interval takes a duration/],
    [['send', '-', '--concurrency', 'many'], /--concurrency must be an integer/],
    [['no-such-command'], /unknown command 'no-such-command'/],
  ];
  for (const [args, message] of cases) {
    const res = await runCli(args);
    assert.equal(res.code, 2, `sluice ${args.join(' ')}: ${res.stderr}`);
    assert.match(res.stderr, message, `sluice ${args.join(' ')}`);
    assert.equal(res.stderr.trim().split('\n').length, 1, `one line, no stack: ${res.stderr}`);
  }
  assert.equal((await runCli(['--version'])).code, 0);
  assert.equal((await runCli(['status', '--help'])).code, 0);
});

test('--help on serve and check exits 0 with usage', async () => {
  for (const [command, mention] of [
    ['serve', /embedded defaults/],
    ['check', /Validate a configuration/],
  ] as const) {
    const res = await runCli([command, '--help']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, new RegExp(`^Usage: sluice ${command} \\[options\\]`));
    assert.match(res.stdout, /-c, --config <file>/);
    assert.match(res.stdout, mention);
    assert.match(res.stdout, new RegExp(`Examples:\\n\\s+sluice ${command}`));
  }
  const top = await runCli(['--help']);
  assert.equal(top.code, 0);
  assert.match(top.stdout, /serve/);
  assert.match(top.stdout, /check/);
});

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

test('serve without --config: 127.0.0.1:8181, buffer in ./data, objects in ./data/objects; SIGTERM flushes and exits 0', async (t) => {
  if (!(await portIsFree(8181))) {
    t.skip('127.0.0.1:8181 is in use');
    return;
  }
  const cwd = tempDir('sluice-cli-');
  const sluice = new SluiceProcess({ cwd });
  t.after(async () => {
    await sluice.stop('SIGKILL');
    rmSync(cwd, { recursive: true, force: true });
  });
  await sluice.start();
  assert.equal(sluice.url, 'http://127.0.0.1:8181');
  assert.ok(existsSync(path.join(cwd, 'data', 'buffer.sqlite')), 'the buffer lives in ./data');
  const ready = await sluice.ready();
  assert.deepEqual(
    ready.outputs.map((o) => o.name),
    ['local'],
  );

  const objects = path.join(cwd, 'data', 'objects');
  const first = decisions(3);
  assert.equal((await postDecisions(sluice.url, first)).status, 200);
  // the embedded batch.max_age is 10 s
  await sluice.until(
    'the first batch written under ./data/objects',
    () => objectKeysUnder(objects).length === 1,
    20_000,
  );
  const [key] = objectKeysUnder(objects);
  const hour = String(first[0]!.timestamp).slice(0, 13);
  const m =
    /^default\/dt=(\d{4}-\d{2}-\d{2})\/hour=(\d{2})\/local-([0-9a-f]{8})-0000000000000001-0000000000000003\.ndjson\.gz$/.exec(
      key!,
    );
  assert.ok(m, `default key layout: ${key}`);
  assert.equal(`${m[1]}T${m[2]}`, hour, 'UTC date and hour of the decisions');
  assert.deepEqual(decodeObject(key!, readFileSync(path.join(objects, key!))), first);

  // what is still in an open batch at SIGTERM is written before the process exits
  const second = decisions(2);
  assert.equal((await postDecisions(sluice.url, second, { partition: 'late' })).status, 200);
  const code = await sluice.stop('SIGTERM', 15_000);
  assert.equal(code, 0, sluice.output.slice(-2000));
  const late = objectKeysUnder(objects).filter((k) => k.startsWith('late/'));
  assert.equal(late.length, 1, objectKeysUnder(objects).join(', '));
  assert.match(
    late[0]!,
    new RegExp(
      `^late/dt=\\d{4}-\\d{2}-\\d{2}/hour=\\d{2}/local-${m[3]}-0000000000000004-0000000000000005\\.ndjson\\.gz$`,
    ),
  );
  assert.deepEqual(decodeObject(late[0]!, readFileSync(path.join(objects, late[0]!))), second);
});
