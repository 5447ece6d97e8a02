/**
 * The sink registry: every output type it lists is a type of the config (with the shared fields and its own
 * defaults), nothing else is, and what the registry says of each (target, read back) comes from its provider.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { configSchema } from '../../src/config/schema.js';
import {
  canReadBack,
  DESTINATION_TYPES,
  notReadableMessage,
  OUTPUT_PROVIDERS,
  READABLE_OUTPUT_TYPES,
  targetOf,
} from '../../src/sinks/registry.js';

const REQUIRED: Record<string, Record<string, unknown>> = {
  s3: { bucket: 'logs' },
  file: { path: 'objects' },
  console: {},
  http: { url: 'http://127.0.0.1:9000/ingest' },
  service: { url: 'http://127.0.0.1:8181' },
};

function parseOutput(output: Record<string, unknown>) {
  const result = configSchema.safeParse({ outputs: [output] });
  return result.success
    ? { output: result.data.outputs![0]!, issues: [] }
    : { output: undefined, issues: result.error.issues };
}

test('the registry lists the output types in the order the config names them', () => {
  assert.deepEqual(
    OUTPUT_PROVIDERS.map((p) => p.type),
    ['s3', 'file', 'console', 'http', 'service'],
  );
  assert.deepEqual([...READABLE_OUTPUT_TYPES], ['s3', 'file']);
  assert.deepEqual([...DESTINATION_TYPES.keys()], ['aws_s3']);
});

test('each registered type parses with the shared fields and its own defaults', () => {
  for (const provider of OUTPUT_PROVIDERS) {
    const { output, issues } = parseOutput({ name: 'o', type: provider.type, ...REQUIRED[provider.type] });
    assert.deepEqual(issues, [], provider.type);
    assert.equal(output!.type, provider.type);
    assert.equal(
      output!.key,
      '{partition}/dt={date}/hour={hour}/{batch}.{ext}',
      `${provider.type}: the shared key default`,
    );
    assert.equal(output!.upload_concurrency, 4, `${provider.type}: a shared default`);
  }
  const defaults = (type: string) => parseOutput({ name: 'o', type, ...REQUIRED[type] }).output!;
  assert.equal(defaults('s3').compression, 'gzip');
  assert.equal(defaults('console').compression, 'none', "console's own default for a shared field");
  const service = defaults('service');
  assert.equal(service.format, 'json_array');
  assert.equal(service.batch.max_events, 10_000, "service's own batch");
  assert.equal(defaults('http').batch.max_events, 1_000_000, 'the shared batch');
  const file = defaults('file') as { path?: string };
  assert.equal(file.path, path.resolve('objects'), 'a relative path is resolved');
});

test('a type no provider has is refused, naming every registered type', () => {
  const { issues } = parseOutput({ name: 'o', type: 'ftp' });
  assert.equal(issues.length, 1);
  assert.deepEqual(issues[0]!.path, ['outputs', 0, 'type']);
  assert.equal(issues[0]!.message, 'type must be one of: s3, file, console, http, service');
});

test("a provider's check runs on its fields, and fields of other types are unknown to it", () => {
  const { issues } = parseOutput({ name: 'o', type: 's3', bucket: 'logs', access_key_id: 'AKIA' });
  assert.deepEqual(
    issues.map((i) => [i.path.join('.'), i.message]),
    [
      [
        'outputs.0.secret_access_key',
        'access_key_id and secret_access_key go together: set both, or neither to use the default credential chain',
      ],
    ],
  );
  const other = parseOutput({ name: 'o', type: 'console', bucket: 'logs' });
  assert.deepEqual(
    other.issues.map((i) => i.code),
    ['unrecognized_keys'],
  );
});

test('targets come from the providers, without secrets; only s3 and file can be read back', () => {
  const of = (type: string, extra: Record<string, unknown> = {}) =>
    parseOutput({ name: 'o', type, ...REQUIRED[type], ...extra }).output!;
  assert.equal(targetOf(of('s3')), 's3://logs');
  assert.equal(targetOf(of('file')), `file://${path.resolve('objects')}`);
  assert.equal(targetOf(of('console')), 'console://stdout');
  assert.equal(
    targetOf(of('http', { url: 'https://h.example:8443/in/tok3n?api_key=k3y' })),
    'https://h.example:8443/[redacted]?api_key=[redacted]',
  );
  assert.equal(targetOf(of('service')), 'http://127.0.0.1:8181/[redacted]');
  assert.deepEqual(
    OUTPUT_PROVIDERS.map((p) => canReadBack(of(p.type))),
    [true, true, false, false, false],
  );
  assert.equal(
    notReadableMessage(of('console')),
    'output o is of type console: only s3 and file outputs can be read back',
  );
});
