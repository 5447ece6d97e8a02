/**
 * /ready and /api/v1/healthz report the store: a real server process asks its store a trivial query on each
 * probe. (A store that cannot be reached is test/unit/ready.test.ts: an SQLite file cannot be made unreachable
 * under a running process; a network store's suite stops its server.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { SluiceProcess, tempDir } from './helpers/sluice.js';

test('/ready says the store is reachable, with the pending deliveries; healthz says the store is healthy', async (t) => {
  const dir = tempDir('sluice-health-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sluice = await new SluiceProcess({
    config: {
      data_dir: path.join(dir, 'data'),
      outputs: [{ name: 'local', type: 'file', path: path.join(dir, 'objects') }],
    },
  }).start();
  t.after(() => sluice.kill9());

  const res = await fetch(`${sluice.url}/ready`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200);
  const ready = (await res.json()) as {
    status: string;
    events: { writable: boolean; pending_deliveries: number | null };
    store: { status: string; error: string | null };
  };
  assert.equal(ready.status, 'ok');
  assert.deepEqual(ready.store, { status: 'ok', error: null });
  assert.deepEqual(ready.events, { writable: true, pending_deliveries: 0 });

  const health = await fetch(`${sluice.url}/api/v1/healthz`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(health.status, 200);
  const body = (await health.json()) as { workers: Record<string, { status: string }> };
  assert.equal(body.workers.store?.status, 'healthy');
});
