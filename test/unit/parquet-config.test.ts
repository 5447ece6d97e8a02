/**
 * `format: parquet` in the configuration: zstd by default, the codecs and row groups it takes, and a clear
 * problem for every combination that cannot work (asked of each type's provider, not of its name).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildConfig } from '../../src/config/load.js';
import { OUTPUT_PROVIDERS } from '../../src/sinks/registry.js';
import { extension } from '../../src/delivery/encode.js';
import { encodingOfKey } from '../../src/delivery/event-batch-object.js';
import { awsS3 } from '../../src/sinks/aws-s3/destination-type.js';

const file = { name: 'x', type: 'file', path: '/tmp/sluice-parquet-config' };

function output(o: Record<string, unknown>) {
  return buildConfig({ outputs: [{ ...file, ...o }] }, 'test').outputs[0]! as Record<string, unknown>;
}

function problems(o: Record<string, unknown>): string {
  try {
    buildConfig({ outputs: [{ ...file, ...o }] }, 'test');
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail(`accepted: ${JSON.stringify(o)}`);
}

test('format parquet: zstd by default, snappy, gzip and none inside the file; row groups of the default size unless set', () => {
  const parquet = output({ format: 'parquet' });
  assert.equal(parquet.compression, 'zstd');
  assert.equal(parquet.parquet, undefined);
  for (const compression of ['zstd', 'snappy', 'gzip', 'none'])
    assert.equal(output({ format: 'parquet', compression }).compression, compression);
  assert.deepEqual(output({ format: 'parquet', parquet: { row_group_bytes: '16MiB' } }).parquet, {
    row_group_bytes: 16 * 1024 * 1024,
  });
  assert.equal(output({}).compression, 'gzip', 'NDJSON keeps gzip');
  assert.equal(extension({ format: 'parquet', compression: 'gzip' }), 'parquet', 'never .parquet.gz');
  for (const key of ['hive', 'eopa', '{output}/{date}/{batch}.{ext}'])
    assert.equal(output({ format: 'parquet', key }).key, key);
});

test('format parquet: the combinations that cannot work are problems at their field', () => {
  assert.match(
    problems({ format: 'parquet', compression_level: 3 }),
    /outputs\.0\.compression_level: is for gzip NDJSON/,
  );
  assert.match(problems({ compression: 'zstd' }), /outputs\.0\.compression: zstd is for format: parquet/);
  assert.match(
    problems({ format: 'json_array', compression: 'snappy' }),
    /outputs\.0\.compression: snappy is for format: parquet/,
  );
  assert.match(problems({ parquet: { row_group_bytes: '8MiB' } }), /outputs\.0\.parquet: is for format: parquet/);
  assert.match(
    problems({ format: 'parquet', parquet: { row_group_bytes: '1GiB' } }),
    /row_group_bytes: must be between 64KiB and 32MiB/,
  );
  assert.match(
    problems({ format: 'parquet', parquet: { row_group_bytes: '1KiB' } }),
    /row_group_bytes: must be between/,
  );
  assert.match(problems({ format: 'parquet', parquet: { rows: 5 } }), /outputs\.0\.parquet/);
  for (const key of ['eopa-per-decision', 'hourly-per-decision', 'outpost'])
    assert.match(
      problems({ format: 'parquet', key }),
      new RegExp(`outputs\\.0\\.key: ${key} writes one JSON document per decision`),
    );
  assert.match(problems({ format: 'orc' }), /outputs\.0\.format/);
});

test('format parquet is for the providers that store objects; the others are told so', () => {
  const stores = OUTPUT_PROVIDERS.filter((p) => p.storesObjects).map((p) => p.type);
  assert.deepEqual(stores, ['s3', 'file']);
  const others: Record<string, Record<string, unknown>> = {
    console: { type: 'console' },
    http: { type: 'http', url: 'http://127.0.0.1:9/x' },
  };
  for (const [type, o] of Object.entries(others))
    assert.match(
      problems({ ...o, path: undefined, format: 'parquet' }),
      new RegExp(`outputs\\.0\\.format: parquet is for outputs that store objects \\(s3, file\\): a ${type} output`),
    );
  // the service output speaks OPA's protocol: gzip JSON arrays only
  assert.match(
    problems({ type: 'service', path: undefined, url: 'http://127.0.0.1:9', format: 'parquet' }),
    /outputs\.0\.format/,
  );
});

test('batched destinations: batching.format parquet (zstd by default); zstd or snappy without it is refused', () => {
  const parse = (batching: Record<string, unknown>) =>
    awsS3.config.safeParse({ bucket: 'b', region: 'us-east-1', batching });
  const parquet = parse({ format: 'parquet' });
  assert.ok(parquet.success);
  assert.equal((parquet.data.batching as { compression: string }).compression, 'zstd');
  const snappy = parse({ format: 'parquet', compression: 'snappy' });
  assert.ok(snappy.success);
  const lines = parse({ format: 'ndjson', compression: 'zstd' });
  assert.ok(!lines.success);
  assert.match(lines.error.issues[0]!.message, /zstd is for format parquet/);
  assert.deepEqual(lines.error.issues[0]!.path, ['batching', 'compression']);
  // flat form fields fold into batching
  const flat = awsS3.config.safeParse(
    awsS3.unflatten!({ bucket: 'b', region: 'us-east-1', 'batching.format': 'parquet' }),
  );
  assert.ok(flat.success);
  assert.deepEqual((flat.data.batching as { format: string }).format, 'parquet');
});

test("a batch's key says what its object holds, whatever the destination's batching says by the upload", () => {
  const parquet = { format: 'parquet', compression: 'snappy' } as const;
  const lines = { format: 'ndjson', compression: 'gzip' } as const;
  assert.deepEqual(encodingOfKey('orders/dt=2026-05-01/hour=10/d-1-2.parquet', parquet), parquet);
  assert.deepEqual(encodingOfKey('orders/dt=2026-05-01/hour=10/d-1-2.parquet', lines), {
    format: 'parquet',
    compression: 'zstd',
  });
  assert.deepEqual(encodingOfKey('orders/dt=2026-05-01/hour=10/d-1-2-r3.ndjson.gz', parquet), lines);
  assert.deepEqual(encodingOfKey('o/d-1-2.json', parquet), { format: 'json_array', compression: 'none' });
  assert.deepEqual(encodingOfKey('o/d-1-2.ndjson', lines), { format: 'ndjson', compression: 'none' });
});
