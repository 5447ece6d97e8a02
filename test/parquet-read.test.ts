/**
 * The read side of Parquet outputs and the tables of every queryable output, as a user meets them: Parquet
 * objects in the exact key layout an output writes (the groundwork writer, into a file output's directory
 * and a real s3rver bucket) and NDJSON.gz objects as the real service writes them; `sluice query`, the
 * console's lookup and `sluice table` run as built; the DuckDB statements `sluice table` prints run as
 * printed (@duckdb/node-api), and so do the README's example queries ("Querying your decisions").
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { loadConfig } from '../src/config/load.js';
import type { OutputConfig } from '../src/config/schema.js';
import { tableStatement } from '../src/commands/table.js';
import { duckdb, type DuckDb } from './helpers/duckdb.js';
import { checkView, EXPECTED, runScript } from './helpers/duckdb-checks.js';
import { postDecisions } from './helpers/opa.js';
import { daysAgo, putObject, queryDecisions, writeParquetObjects } from './helpers/parquet-objects.js';
import { S3_KEY, S3_SECRET, s3For } from './helpers/s3.js';
import { runCli, SluiceProcess, tempDir } from './helpers/sluice.js';

function dirFor(t: TestContext): string {
  const dir = tempDir('sluice-parquet-read-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function configFile(dir: string, config: Record<string, unknown>): string {
  const file = path.join(dir, 'sluice.yaml');
  writeFileSync(file, stringify({ listen: '127.0.0.1:0', data_dir: path.join(dir, 'data'), ...config }));
  return file;
}

/** An output of a config file as the commands read it, in `format: parquet` (the write side's format). */
function asParquet(file: string, name: string): OutputConfig {
  const output = loadConfig(file).outputs.find((o) => o.name === name)!;
  return { ...output, format: 'parquet' } as unknown as OutputConfig;
}

async function duckdbFor(t: TestContext): Promise<DuckDb> {
  const db = await duckdb();
  t.after(() => db.close());
  return db;
}

/** An odd decision: a timestamp that is not RFC 3339 and a req_id that is not an integer (kept in `extra`). */
const ODD = `{"labels":{"id":"opa-1"},"decision_id":"odd-1","path":"authz/allow","input":{"user":{"name":"carol"}},"result":true,"timestamp":"yesterday","req_id":1.5,"custom":{"x":1}}`;

test('Parquet objects of a file output: sluice query by id gives each decision exact; the DuckDB view sluice table prints runs, with the README queries', async (t) => {
  const dir = dirFor(t);
  const objects = path.join(dir, 'objects');
  const sent = queryDecisions();
  const keys = await writeParquetObjects({ dir: objects }, [...sent, { partition: 'default', text: ODD }], {
    rowGroupBytes: 600,
  });
  assert.ok(
    keys.every((k) => /^(default|acme)\/dt=\d{4}-\d{2}-\d{2}\/hour=\d{2}\/archive-.*\.parquet$/.test(k)),
    keys.join(),
  );
  const file = configFile(dir, { outputs: [{ name: 'archive', type: 'file', path: objects }] });

  // a plain decision, one with 20-digit integers in input and result, and the odd one
  for (const d of [sent[2]!, sent.find((s) => s.id === 'alice-result')!, { id: 'odd-1', text: ODD }]) {
    const res = await runCli(['query', '-c', file, '-o', 'archive', '--from', '30d', '--decision-id', d.id]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, `${d.text}\n`, `${d.id} comes back exactly`);
  }
  const denied = await runCli([
    'query',
    '-c',
    file,
    '-o',
    'archive',
    '--from',
    '7d',
    '--path',
    'authz/allow',
    '--where',
    'result=false',
    '--where',
    'input.user.name=bob',
  ]);
  assert.equal(denied.code, 0, denied.stderr);
  assert.deepEqual(
    denied.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { decision_id: string }).decision_id)
      .sort(),
    [...EXPECTED.deniedLastWeek].sort(),
  );
  const none = await runCli(['query', '-c', file, '-o', 'archive', '--from', '30d', '--decision-id', 'no-such-id']);
  assert.equal(none.code, 1);

  const statement = await tableStatement(asParquet(file, 'archive'), { engine: 'duckdb' });
  assert.match(statement, /read_parquet\('.*\/objects\/\*\/dt=\*\/hour=\*\/\*\.parquet', hive_partitioning = true/);
  const db = await duckdbFor(t);
  await runScript(db, statement);
  await checkView(db, 'archive', sent.concat([]), 'exact');
  const [odd] = await db.all(
    `SELECT "timestamp", req_id, extra::VARCHAR AS extra FROM archive WHERE decision_id = 'odd-1'`,
  );
  assert.deepEqual(odd, {
    timestamp: null,
    req_id: null,
    extra: '{"timestamp":"yesterday","req_id":1.5,"custom":{"x":1}}',
  });

  // an object that is not Parquet, or cut short, under a Parquet key: one line, exit 2, no stack
  const first = path.join(objects, keys[0]!);
  for (const body of [Buffer.from('PAR1 not really'), readFileSync(first).subarray(0, 100)]) {
    writeFileSync(path.join(path.dirname(first), 'broken.parquet'), body);
    const broken = await runCli(['query', '-c', file, '-o', 'archive', '--from', '30d', '--decision-id', 'x']);
    assert.equal(broken.code, 2, broken.stdout + broken.stderr);
    assert.match(broken.stderr, /^cannot read the output: .*$/m);
    assert.doesNotMatch(broken.stderr, /^\s+at /m);
  }
});

test('Parquet objects in an s3rver bucket: sluice query and the console find a decision by id, exact; the Athena DDL projects the hive layout', async (t) => {
  const dir = dirFor(t);
  const s3 = await s3For(t, ['logs']);
  const sent = queryDecisions();
  await writeParquetObjects({ s3, bucket: 'logs' }, sent, { compression: 'snappy' });
  const output = {
    name: 'archive',
    type: 's3',
    bucket: 'logs',
    endpoint: s3.endpoint,
    force_path_style: true,
    access_key_id: S3_KEY,
    secret_access_key: S3_SECRET,
  };
  const file = configFile(dir, { outputs: [output] });
  const target = sent.find((d) => d.id === 'bob-deny-3')!;
  const res = await runCli(['query', '-c', file, '-o', 'archive', '--from', '7d', '--decision-id', target.id]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stdout, `${target.text}\n`);

  const sluice = await new SluiceProcess({ cwd: dir, args: ['--config', file] }).start();
  t.after(() => sluice.kill9());
  const lookup = await fetch(`${sluice.url}/ui/api/decisions?output=archive&decision_id=${target.id}&from=7d`);
  const body = await lookup.text();
  assert.equal(lookup.status, 200, body);
  assert.ok(body.startsWith(`{"decisions":[${target.text}],`), body);

  // NDJSON and Parquet tables of the same keys; partitions are those in the bucket (a prefix that is no
  // partition name, which could break the enum's list or its quoting, is not one)
  await putObject({ s3, bucket: 'logs' }, "not,a'partition/dt=2026-01-01/x.txt", Buffer.from('x'));
  const ndjson = await runCli(['table', '-c', file, '-o', 'archive']);
  assert.equal(ndjson.code, 0, ndjson.stderr);
  const athena = await tableStatement(asParquet(file, 'archive'), { engine: 'athena' });
  for (const ddl of [ndjson.stdout, athena]) {
    assert.match(ddl, /^CREATE EXTERNAL TABLE IF NOT EXISTS archive \(/m);
    assert.match(ddl, /^PARTITIONED BY \(`partition` string, `dt` date, `hour` int\)$/m);
    assert.match(ddl, /^LOCATION 's3:\/\/logs\/'$/m);
    assert.match(ddl, /'projection\.enabled' = 'true'/);
    assert.match(ddl, /'projection\.partition\.type' = 'enum',\n {2}'projection\.partition\.values' = 'acme,default'/);
    assert.match(
      ddl,
      /'projection\.dt\.type' = 'date',\n {2}'projection\.dt\.format' = 'yyyy-MM-dd',\n {2}'projection\.dt\.range' = 'NOW-1YEARS,NOW',\n {2}'projection\.dt\.interval' = '1',\n {2}'projection\.dt\.interval\.unit' = 'DAYS'/,
    );
    assert.match(
      ddl,
      /'projection\.hour\.type' = 'integer',\n {2}'projection\.hour\.range' = '0,23',\n {2}'projection\.hour\.digits' = '2'/,
    );
    assert.match(ddl, /'storage\.location\.template' = 's3:\/\/logs\/\$\{partition\}\/dt=\$\{dt\}\/hour=\$\{hour\}\/'/);
    assert.doesNotMatch(ddl, /MSCK/);
  }
  assert.match(ndjson.stdout, /ROW FORMAT SERDE 'org\.openx\.data\.jsonserde\.JsonSerDe'/);
  assert.match(ndjson.stdout, /`timestamp` string/);
  assert.match(athena, /^STORED AS PARQUET$/m);
  assert.match(athena, /`timestamp` timestamp,\n {2}`labels` map<string,string>,/);
  assert.match(athena, /`extra` string\n\)/);
  const since = await tableStatement(asParquet(file, 'archive'), {
    engine: 'athena',
    partitions: 'injected',
    since: '2026-01-01',
  });
  assert.match(since, /'projection\.partition\.type' = 'injected'/);
  assert.match(since, /'projection\.dt\.range' = '2026-01-01,NOW'/);

  const view = await runCli(['table', '-c', file, '-o', 'archive', '--engine', 'duckdb']);
  assert.equal(view.code, 0, view.stderr);
  assert.match(
    view.stdout,
    new RegExp(
      `CREATE OR REPLACE SECRET "sluice_archive" \\(TYPE s3, KEY_ID '<access_key_id>', SECRET '<secret_access_key>', REGION 'us-east-1', ENDPOINT '127\\.0\\.0\\.1:${s3.port}', USE_SSL false, URL_STYLE 'path', SCOPE 's3://logs/'\\);`,
    ),
  );
  assert.match(view.stdout, /read_json\('s3:\/\/logs\/\*\/dt=\*\/hour=\*\/\*\.ndjson\.gz'/);
  assert.ok(!view.stdout.includes(S3_SECRET) && !ndjson.stdout.includes(S3_SECRET), 'no credentials printed');
});

test('NDJSON.gz objects as the service writes them: the DuckDB view sluice table prints runs, and the README queries give the same rows', async (t) => {
  const dir = dirFor(t);
  const objects = path.join(dir, 'objects');
  const file = configFile(dir, {
    outputs: [{ name: 'archive', type: 'file', path: objects, batch: { max_age: '200ms' } }],
  });
  const sluice = await new SluiceProcess({ cwd: dir, args: ['--config', file] }).start();
  t.after(() => sluice.kill9());
  const sent = queryDecisions();
  for (const partition of ['default', 'acme']) {
    const mine = sent.filter((d) => d.partition === partition).map((d) => JSON.parse(d.text));
    const res = await postDecisions(sluice.url, mine, { partition: partition === 'default' ? undefined : partition });
    assert.equal(res.status, 200);
  }
  await sluice.until(
    'every decision in the objects',
    async () => (await sluice.ready()).outputs[0]!.delivered.events === sent.length,
  );
  assert.ok(readdirSync(objects).includes('acme'));

  const res = await runCli(['table', '-c', file, '-o', 'archive', '--engine', 'duckdb']);
  assert.equal(res.code, 0, res.stderr);
  assert.match(
    res.stdout,
    /read_json\('.*\/objects\/\*\/dt=\*\/hour=\*\/\*\.ndjson\.gz', format = 'newline_delimited'/,
  );
  const db = await duckdbFor(t);
  await runScript(db, res.stdout);
  await checkView(db, 'archive', sent, 'parsed');
});

test('sluice table: outputs without objects to query exit 2; each key layout gets the partition columns it has', async (t) => {
  const dir = dirFor(t);
  const file = configFile(dir, {
    outputs: [
      { name: 'web', type: 'http', url: 'http://127.0.0.1:9/logs' },
      { name: 'local', type: 'file', path: path.join(dir, 'o') },
      { name: 'arrays', type: 's3', bucket: 'logs', format: 'json_array' },
      { name: 'hourly', type: 's3', bucket: 'logs', key: 'hourly-per-decision' },
      { name: 'dated', type: 's3', bucket: 'logs', key: 'opa/{output}/{year}/{month}/{day}/{hour}/{batch}.{ext}' },
      { name: 'named', type: 's3', bucket: 'logs', key: 'tenant={partition}/day={date}/{batch}/{hour}.{ext}' },
      { name: 'eopa', type: 's3', bucket: 'logs', key: 'eopa' },
    ],
  });
  for (const [args, message] of [
    [['-o', 'web'], /output web is of type http: it stores no objects a query engine can read/],
    [['-o', 'local'], /output local is a file output: Athena reads S3 only; use --engine duckdb/],
    [['-o', 'arrays'], /Athena's JsonSerDe cannot read \(it reads JSON one object per line\)/],
    [['-o', 'nope'], /no output named "nope"/],
    [['-o', 'local', '--engine', 'spark'], /--engine is athena or duckdb/],
    [['-o', 'hourly', '--since', 'last year'], /--since takes a date/],
  ] as const) {
    const res = await runCli(['table', '-c', file, ...args]);
    assert.equal(res.code, 2, `${args.join(' ')}: ${res.stdout}${res.stderr}`);
    assert.match(res.stderr, message);
    assert.equal(res.stdout, '');
  }
  const hourly = await runCli(['table', '-c', file, '-o', 'hourly']);
  assert.equal(hourly.code, 0, hourly.stderr);
  assert.match(hourly.stdout, /PARTITIONED BY \(`dt` string\)/);
  assert.match(
    hourly.stdout,
    /'projection\.dt\.format' = 'yyyy\/MM\/dd\/HH',\n {2}'projection\.dt\.range' = 'NOW-1YEARS,NOW',\n {2}'projection\.dt\.interval' = '1',\n {2}'projection\.dt\.interval\.unit' = 'HOURS'/,
  );
  assert.match(hourly.stdout, /'storage\.location\.template' = 's3:\/\/logs\/\$\{dt\}\/'/);

  const dated = await runCli(['table', '-c', file, '-o', 'dated', '--since', '2026-03-01']);
  assert.match(dated.stdout, /PARTITIONED BY \(`dt` string\)/);
  assert.match(dated.stdout, /'projection\.dt\.range' = '2026\/03\/01\/00,NOW'/);
  assert.match(dated.stdout, /'storage\.location\.template' = 's3:\/\/logs\/opa\/dated\/\$\{dt\}\/'/);

  const named = await runCli(['table', '-c', file, '-o', 'named', '--partitions', 'a,b']);
  assert.equal(named.code, 0, named.stderr);
  assert.match(named.stdout, /PARTITIONED BY \(`tenant` string, `day` date\)/);
  assert.match(named.stdout, /'projection\.tenant\.values' = 'a,b'/);
  assert.match(named.stdout, /'storage\.location\.template' = 's3:\/\/logs\/tenant=\$\{tenant\}\/day=\$\{day\}\/'/);
  assert.match(named.stdout, /-- the key's level "\{batch\}" is not a partition column/);
  const namedView = await runCli(['table', '-c', file, '-o', 'named', '--engine', 'duckdb']);
  assert.match(namedView.stdout, /read_json\('s3:\/\/logs\/tenant=\*\/day=\*\/\*\*\/\*\.ndjson\.gz'/);
  assert.match(namedView.stdout, /hive_types = \{'tenant': VARCHAR, 'day': DATE\}/);
  assert.match(namedView.stdout, /PROVIDER credential_chain/);

  const eopa = await runCli(['table', '-c', file, '-o', 'eopa']);
  assert.equal(eopa.code, 0, eopa.stderr);
  assert.doesNotMatch(eopa.stdout, /PARTITIONED BY|TBLPROPERTIES/);
  assert.match(eopa.stdout, /-- the eopa layout has no partition columns/);
  assert.match(eopa.stdout, /^LOCATION 's3:\/\/logs\/';$/m);
  assert.ok(daysAgo(0).endsWith('123Z'));
});

test('a real Parquet output, end to end: sluice query gives each decision back byte for byte (OPA nanosecond timestamps too), and the DuckDB view sluice table prints runs the README queries', async (t) => {
  const dir = dirFor(t);
  const objects = path.join(dir, 'objects');
  const file = configFile(dir, {
    outputs: [{ name: 'archive', type: 'file', path: objects, format: 'parquet', batch: { max_age: '200ms' } }],
  });
  const sluice = await new SluiceProcess({ cwd: dir, args: ['--config', file] }).start();
  t.after(() => sluice.kill9());
  // OPA sends nanoseconds: every other decision gets nine fraction digits
  const sent = queryDecisions().map((d, i) =>
    i % 2 === 0 ? { ...d, text: d.text.replace(/"timestamp":"([^"]*)123Z"/, '"timestamp":"$1123789Z"') } : d,
  );
  assert.ok(sent.some((d) => /\.\d{9}Z"/.test(d.text)));
  for (const partition of ['default', 'acme']) {
    const mine = sent.filter((d) => d.partition === partition).map((d) => d.text);
    const body = Buffer.from(`[${mine.join(',')}]`);
    const res = await postDecisions(sluice.url, body, { partition: partition === 'default' ? undefined : partition });
    assert.equal(res.status, 200);
  }
  await sluice.until(
    'every decision in the objects',
    async () => (await sluice.ready()).outputs[0]!.delivered.events === sent.length,
  );
  for (const d of sent) {
    const res = await runCli(['query', '-c', file, '-o', 'archive', '--from', '30d', '--decision-id', d.id]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, `${d.text}\n`, `${d.id} comes back as sent`);
  }
  const res = await runCli(['table', '-c', file, '-o', 'archive', '--engine', 'duckdb']);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, /read_parquet\(/);
  const db = await duckdbFor(t);
  await runScript(db, res.stdout);
  await checkView(db, 'archive', sent, 'exact');
});
