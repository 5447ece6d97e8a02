/**
 * `sluice serve` with `store.type: postgres`, as a real process: it refuses to start, in one line, without the
 * secrets every node must share, and when its database cannot be reached.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCli, tempDir } from './helpers/sluice.js';

/** The message of the fatal line `sluice serve` logs when it cannot start. */
function startFailure(stderr: string): string {
  const line = stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg?: string; err?: { message?: string } })
    .find((l) => l.msg === 'cannot start');
  assert.ok(line, `a "cannot start" line in:\n${stderr}`);
  return line.err?.message ?? '';
}

function configIn(dir: string, url: string): string {
  const file = path.join(dir, 'sluice.yaml');
  writeFileSync(
    file,
    `listen: 127.0.0.1:0\ndata_dir: ${path.join(dir, 'data')}\nstore:\n  type: postgres\n  url: ${url}\n  schema: sluice_serve_refused\n`,
  );
  return file;
}

test('serve with store.type postgres refuses to start without a shared encryption_key and jwt_secret', async (t) => {
  const dir = tempDir('sluice-pg-serve-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env = { SLUICE_ENCRYPTION_KEY: '', SLUICE_JWT_SECRET: '' };
  const res = await runCli(['serve', '--config', configIn(dir, 'postgres://postgres@127.0.0.1:5432/test')], { env });
  assert.equal(res.code, 1, res.stdout + res.stderr);
  const message = startFailure(res.stderr);
  assert.match(message, /^store\.type is postgres, and api\.encryption_key and api\.jwt_secret are not set/);
  assert.match(message, /the same value on every node/);
});

test('serve with store.type postgres refuses to start when its database cannot be reached', async (t) => {
  const dir = tempDir('sluice-pg-serve-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env = { SLUICE_ENCRYPTION_KEY: 'k', SLUICE_JWT_SECRET: 's' };
  const res = await runCli(['serve', '--config', configIn(dir, 'postgres://postgres:hunter2@127.0.0.1:1/test')], {
    env,
  });
  assert.equal(res.code, 1, res.stdout + res.stderr);
  assert.match(
    startFailure(res.stderr),
    /^cannot open the PostgreSQL store at postgres:\/\/postgres:redacted@127\.0\.0\.1:1\/test \(schema sluice_serve_refused\): connect ECONNREFUSED/,
  );
  assert.ok(!res.stderr.includes('hunter2'), 'the password is not in the log');
});
