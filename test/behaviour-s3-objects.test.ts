/**
 * What an s3 output's settings put on the objects themselves: every key template placeholder in the keys of
 * real objects (S3 and file outputs alike), and `storage_class`, `session_token` and `compression_level` on
 * each PUT and its bytes. s3rver keeps neither the storage class nor the token, so a recording proxy in front
 * of it shows what each request carried. Against the real `sluice serve` process, on 127.0.0.1 only.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync, inflateRawSync } from 'node:zlib';
import { S3_KEY, S3_SECRET, s3For } from './helpers/s3.js';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { decisions, postDecisions } from './helpers/opa.js';
import { objectsUnder } from './helpers/files.js';
import { RecordingProxy } from './helpers/recording-proxy.js';

const WAIT_MS = 20_000;

function dirFor(t: TestContext): string {
  const dir = tempDir('sluice-s3-objects-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function serve(t: TestContext, config: Record<string, unknown>): Promise<SluiceProcess> {
  const sluice = new SluiceProcess({ config: { shutdown_timeout: '2s', ...config } });
  t.after(() => sluice.kill9());
  await sluice.start();
  return sluice;
}

const idsOf = (text: string) =>
  text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { decision_id: string }).decision_id);

/**
 * The gzip members of a body, one after another, each with its XFL header byte: zlib writes 2 for level 9, 4 for
 * level 1, 0 for the levels between.
 */
function gzipMembers(body: Buffer): Array<{ xfl: number; length: number }> {
  const members: Array<{ xfl: number; length: number }> = [];
  for (let offset = 0; offset < body.length && members.length < 10_000; ) {
    assert.ok(body[offset] === 0x1f && body[offset + 1] === 0x8b, `a gzip member starts at byte ${offset}`);
    assert.equal(body[offset + 3], 0, 'no optional header fields (as zlib writes them)');
    const { engine } = inflateRawSync(body.subarray(offset + 10), { info: true }) as unknown as {
      engine: { bytesWritten: number };
    };
    const length = 10 + engine.bytesWritten + 8;
    members.push({ xfl: body[offset + 8]!, length });
    offset += length;
  }
  return members;
}

test('key templates: {year} {month} {day} {hour} {output} {partition} {first} {last} {batch} {ext} in the keys of real objects, in S3 and on disk', async (t) => {
  const dir = dirFor(t);
  const s3 = await s3For(t, ['logs']);
  const template = 'opa/{year}/{month}/{day}/{hour}/{output}/{partition}/{first}_{last}/{batch}.{ext}';
  const sluice = await serve(t, {
    data_dir: path.join(dir, 'data'),
    outputs: [
      {
        name: 'dated',
        type: 's3',
        bucket: 'logs',
        endpoint: s3.endpoint,
        force_path_style: true,
        access_key_id: S3_KEY,
        secret_access_key: S3_SECRET,
        key: template,
        batch: { max_age: '200ms' },
      },
      {
        name: 'disk',
        type: 'file',
        path: path.join(dir, 'objects'),
        key: template,
        format: 'json_array',
        compression: 'none',
        batch: { max_age: '200ms' },
      },
    ],
  });
  const march = decisions(3, { timestamp: '2026-03-04T05:06:07.123456Z' });
  const newYear = decisions(2, { timestamp: '2025-12-31T23:59:59Z' });
  assert.equal((await postDecisions(sluice.url, march, { partition: 'eu' })).status, 200);
  assert.equal((await postDecisions(sluice.url, newYear, { partition: 'eu' })).status, 200);
  await sluice.until(
    'both outputs delivered',
    async () => (await sluice.ready()).outputs.every((o) => o.delivered.events === 5),
    WAIT_MS,
  );

  const bufferId = '([0-9a-f]+)';
  const expected = (output: string, ext: string) => [
    new RegExp(
      `^opa/2025/12/31/23/${output}/eu/0000000000000004_0000000000000005/${output}-${bufferId}-0000000000000004-0000000000000005\\.${ext.replace('.', '\\.')}$`,
    ),
    new RegExp(
      `^opa/2026/03/04/05/${output}/eu/0000000000000001_0000000000000003/${output}-${bufferId}-0000000000000001-0000000000000003\\.${ext.replace('.', '\\.')}$`,
    ),
  ];
  const s3Keys = await s3.keys('logs');
  assert.equal(s3Keys.length, 2, `one object per stream: ${s3Keys.join(', ')}`);
  const matches = expected('dated', 'ndjson.gz').map((re, i) => re.exec(s3Keys[i]!));
  matches.forEach((m, i) => assert.ok(m, `${s3Keys[i]} is the template's key`));
  assert.equal(new Set(matches.map((m) => m![1])).size, 1, 'one buffer id in every key');
  assert.deepEqual(
    idsOf(gunzipSync((await s3.object(s3Keys[1]!)).body).toString('utf8')),
    march.map((d) => d.decision_id as string),
    'positions 1-3: the first request',
  );
  assert.deepEqual(
    idsOf(gunzipSync((await s3.object(s3Keys[0]!)).body).toString('utf8')),
    newYear.map((d) => d.decision_id as string),
    'positions 4-5: the second',
  );

  const files = objectsUnder(path.join(dir, 'objects'))
    .map((o) => ({ key: path.relative(path.join(dir, 'objects'), o.file).split(path.sep).join('/'), text: o.text }))
    .sort((a, b) => (a.key < b.key ? -1 : 1));
  assert.equal(files.length, 2, `the file output: ${files.map((f) => f.key).join(', ')}`);
  expected('disk', 'json').forEach((re, i) => assert.match(files[i]!.key, re));
  assert.deepEqual(
    (JSON.parse(files[1]!.text) as Array<{ decision_id: string }>).map((d) => d.decision_id),
    march.map((d) => d.decision_id as string),
  );
  assert.equal(await sluice.stop(), 0);
});

test('s3 output: storage_class and session_token on every PUT; compression_level makes each object one gzip stream at that level', async (t) => {
  const dir = dirFor(t);
  const s3 = await s3For(t, ['logs']);
  const proxy = await new RecordingProxy(s3.port).start();
  t.after(() => proxy.stop());
  const common = {
    type: 's3',
    bucket: 'logs',
    endpoint: proxy.endpoint,
    force_path_style: true,
    access_key_id: S3_KEY,
    secret_access_key: S3_SECRET,
    key: '{output}/{batch}.{ext}',
    batch: { max_age: '2s' },
  };
  const sluice = await serve(t, {
    data_dir: path.join(dir, 'data'),
    outputs: [
      {
        ...common,
        name: 'cold',
        storage_class: 'STANDARD_IA',
        session_token: 'session-token-of-cold',
        compression_level: 9,
      },
      { ...common, name: 'plain' },
    ],
  });
  // three requests inside one max_age: three stored chunks (gzip members at buffer.compression_level 1)
  const sent = [decisions(40), decisions(40), decisions(40)];
  for (const chunk of sent) assert.equal((await postDecisions(sluice.url, chunk)).status, 200);
  await sluice.until(
    'both outputs delivered',
    async () => (await sluice.ready()).outputs.every((o) => o.delivered.events === 120),
    WAIT_MS,
  );

  const puts = (output: string) =>
    proxy.requests.filter((r) => r.method === 'PUT' && r.url.startsWith(`/logs/${output}/`));
  assert.ok(
    puts('cold').length >= 1 && puts('plain').length >= 1,
    `PUTs went through the proxy: ${proxy.requests.map((r) => `${r.method} ${r.url}`).join(', ')}`,
  );
  for (const put of puts('cold')) {
    assert.equal(put.headers['x-amz-storage-class'], 'STANDARD_IA', `storage_class on ${put.url}`);
    assert.equal(put.headers['x-amz-security-token'], 'session-token-of-cold', `session_token on ${put.url}`);
    assert.match(String(put.headers.authorization), /x-amz-security-token/, 'the token is signed with the request');
  }
  for (const put of puts('plain')) {
    assert.ok(
      put.headers['x-amz-storage-class'] === undefined || put.headers['x-amz-storage-class'] === 'STANDARD',
      `the default storage class: ${put.headers['x-amz-storage-class']}`,
    );
    assert.equal(put.headers['x-amz-security-token'], undefined, 'no session token where none is configured');
  }

  const all = sent
    .flat()
    .map((d) => d.decision_id as string)
    .sort();
  const read = async (output: string) => {
    const keys = (await s3.keys('logs')).filter((k) => k.startsWith(`${output}/`));
    return Promise.all(keys.map(async (key) => ({ key, body: (await s3.object(key)).body })));
  };
  const cold = await read('cold');
  for (const { key, body } of cold) {
    const members = gzipMembers(body);
    assert.equal(members.length, 1, `${key}: compressed again as one gzip stream, not the stored chunks`);
    assert.equal(members[0]!.xfl, 2, `${key}: at level 9 (XFL 2)`);
  }
  assert.deepEqual(
    cold.flatMap(({ body }) => idsOf(gunzipSync(body).toString('utf8'))).sort(),
    all,
    'cold: every decision once',
  );
  const plain = await read('plain');
  const plainMembers = plain.flatMap(({ body }) => gzipMembers(body));
  assert.equal(
    plainMembers.length,
    3,
    'without compression_level the objects are the stored chunks, one gzip member each',
  );
  assert.ok(
    plainMembers.every((m) => m.xfl === 4),
    'stored at buffer.compression_level 1 (XFL 4)',
  );
  assert.deepEqual(
    plain.flatMap(({ body }) => idsOf(gunzipSync(body).toString('utf8'))).sort(),
    all,
    'plain: every decision once',
  );
  assert.equal(await sluice.stop(), 0);
});
