/**
 * 413s are said loudly but once: OPA re-sends a refused chunk for ever, so a size limit below OPA's upload
 * size is a misconfiguration an operator must see, without a log line per retry. RateLimitedLog (the helper)
 * on a fake clock; the 413 warnings from the real `sluice serve`.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { RateLimitedLog } from '../src/observability/rate-limited-log.js';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { decisions, postDecisions } from './helpers/opa.js';

function recorder() {
  const lines: Array<{ level: string; fields: Record<string, unknown>; message: string }> = [];
  const record = (level: string) => (fields: object, message: string) =>
    lines.push({ level, fields: fields as Record<string, unknown>, message });
  return { lines, log: { warn: record('warn'), error: record('error') } };
}

test('RateLimitedLog: one line per key and interval, then one with the count it stood for', () => {
  let now = 1_000_000;
  const { lines, log } = recorder();
  const limited = new RateLimitedLog(log, 60_000, () => now);
  assert.equal(limited.warn('a', { n: 1 }, 'first'), true);
  assert.equal(limited.warn('a', { n: 2 }, 'again'), false);
  now += 59_999;
  assert.equal(limited.warn('a', { n: 3 }, 'still within the minute'), false);
  assert.equal(limited.error('b', { n: 4 }, 'another key'), true, 'keys are independent');
  now += 1;
  assert.equal(limited.warn('a', { n: 5 }, 'a minute later'), true);
  assert.deepEqual(lines, [
    { level: 'warn', fields: { n: 1 }, message: 'first' },
    { level: 'error', fields: { n: 4 }, message: 'another key' },
    { level: 'warn', fields: { n: 5, suppressed: 2 }, message: 'a minute later' },
  ]);
});

test('RateLimitedLog: remembers at most maxKeys keys, forgetting the one logged longest ago', () => {
  let now = 0;
  const { lines, log } = recorder();
  const limited = new RateLimitedLog(log, 60_000, () => now, 2);
  limited.warn('a', {}, 'a');
  now += 1;
  limited.warn('b', {}, 'b');
  limited.warn('c', {}, 'c'); // a is forgotten
  assert.equal(limited.warn('b', {}, 'b'), false, 'b is still remembered');
  assert.equal(limited.warn('a', {}, 'a'), true, 'a was forgotten, so it logs again (and b, now the oldest, goes)');
  assert.equal(limited.warn('c', {}, 'c'), false, 'c is still remembered');
  assert.equal(limited.warn('b', {}, 'b'), true, 'b was forgotten');
  assert.deepEqual(
    lines.map((l) => l.message),
    ['a', 'b', 'c', 'a', 'b'],
  );
});

function dirFor(t: TestContext): string {
  const dir = tempDir('sluice-too-large-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('413s: one warning per cause naming the setting to raise, not one per request', async (t) => {
  const dir = dirFor(t);
  const sluice = new SluiceProcess({
    config: {
      data_dir: path.join(dir, 'data'),
      ingest: { max_body_bytes: '2KiB', max_decoded_bytes: '8KiB' },
      outputs: [{ name: 'local', type: 'file', path: path.join(dir, 'objects') }],
    },
  });
  t.after(() => sluice.kill9());
  await sluice.start();

  const bulky = decisions(60); // random ids: ~7 KiB of gzip, over max_body_bytes
  assert.ok(gzipSync(JSON.stringify(bulky)).length > 2048);
  const inflating = decisions(1, { input: { padding: 'x'.repeat(20_000) } }); // well under 2 KiB of gzip, 20 KB decoded
  assert.ok(gzipSync(JSON.stringify(inflating)).length < 2048);
  for (let i = 0; i < 3; i++) {
    const res = await postDecisions(sluice.url, bulky);
    assert.equal(res.status, 413, await res.text());
  }
  for (let i = 0; i < 3; i++) {
    const res = await postDecisions(sluice.url, inflating);
    const text = await res.text();
    assert.equal(res.status, 413, text);
    assert.equal((JSON.parse(text) as { data: { reason: string } }).data.reason, 'decoded_too_large');
  }
  // the log is complete once the process has exited (pino writes stderr synchronously)
  assert.equal(await sluice.stop('SIGTERM'), 0);

  const warnings = sluice.output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: number; msg: string; reason?: string; setting?: string; limit?: number })
    .filter((l) => l.level === 40 && /413/.test(l.msg));
  assert.deepEqual(
    warnings.map((w) => [w.reason, w.setting, w.limit]),
    [
      ['body_too_large', 'ingest.max_body_bytes', 2048],
      ['decoded_too_large', 'ingest.max_decoded_bytes', 8192],
    ],
    `one warning per cause:\n${warnings.map((w) => w.msg).join('\n')}`,
  );
  for (const w of warnings) {
    assert.match(w.msg, new RegExp(`raise ${w.setting!.replace('.', '\\.')}`));
    assert.match(w.msg, /OPA retries this chunk for ever/);
    t.diagnostic(w.msg);
  }
});
