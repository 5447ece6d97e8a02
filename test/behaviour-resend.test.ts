/**
 * What bounds the memory of OPA's re-sends (`ingest.dedupe`): a re-send is recognised only within `window`, at
 * most `max_entries` keys are remembered (the oldest go first, also after a restart), and `window: 0` turns it
 * off. Against the real `sluice serve` process and a file output, on 127.0.0.1 only.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { decision, decisions, postDecisions } from './helpers/opa.js';
import { linesUnder } from './helpers/files.js';

interface Setup {
  sluice: SluiceProcess;
  objects: string;
  config: Record<string, unknown>;
}

async function serve(t: TestContext, dedupe: Record<string, unknown>): Promise<Setup> {
  const dir = tempDir('sluice-resend-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const objects = path.join(dir, 'objects');
  const config = {
    data_dir: path.join(dir, 'data'),
    shutdown_timeout: '2s',
    ingest: { dedupe },
    outputs: [{ name: 'local', type: 'file', path: objects, batch: { max_age: '100ms' } }],
  };
  const sluice = new SluiceProcess({ config });
  t.after(() => sluice.kill9());
  await sluice.start();
  return { sluice, objects, config };
}

async function answer(url: string, body: unknown[]): Promise<Record<string, unknown>> {
  const res = await postDecisions(url, body);
  const text = await res.text();
  assert.equal(res.status, 200, `POST /logs: ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/** How many times each decision_id is in the objects. */
function copies(objects: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of linesUnder(objects)) {
    const id = (JSON.parse(line) as { decision_id: string }).decision_id;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

/**
 * Posts a marker decision and waits until it is in the objects: everything acknowledged before it has had its
 * turn, so counting copies after this cannot miss a late object.
 */
async function settle(s: Setup): Promise<void> {
  const marker = decision();
  assert.deepEqual(await answer(s.sluice.url, [marker]), { accepted: 1 });
  await s.sluice.until('the marker decision in the objects', () => copies(s.objects).has(marker.decision_id as string));
}

test('ingest.dedupe.window: a re-send inside the window is acknowledged and not stored; after the window it is stored again', async (t) => {
  const s = await serve(t, { window: '2s' });
  const chunk = decisions(2);
  const firstSent = Date.now();
  assert.deepEqual(await answer(s.sluice.url, chunk), { accepted: 2 });
  assert.deepEqual(
    await answer(s.sluice.url, chunk),
    { accepted: 0, duplicate_request: true },
    'the same bytes again, inside the window',
  );

  // The same chunk, again and again, until it is stored: each answer inside the window is a duplicate.
  let stored: Record<string, unknown> | undefined;
  let duplicatesSeen = 0;
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const again = await answer(s.sluice.url, chunk);
    if (again.duplicate_request !== true) {
      stored = again;
      break;
    }
    assert.deepEqual(again, { accepted: 0, duplicate_request: true });
    duplicatesSeen++;
    await sleep(100);
  }
  const elapsed = Date.now() - firstSent;
  assert.deepEqual(stored, { accepted: 2 }, 'once the window has passed, the chunk is a new request: stored again');
  assert.ok(elapsed > 2_000, `not before the window (2 s) has passed: ${elapsed} ms`);
  assert.ok(duplicatesSeen > 0, 'the re-sends before that were recognised');

  await settle(s);
  const counts = copies(s.objects);
  for (const d of chunk)
    assert.equal(
      counts.get(d.decision_id as string),
      2,
      `${d.decision_id as string}: stored once, and once more after the window`,
    );
});

test('ingest.dedupe.max_entries: the oldest keys are forgotten first, in memory and after a restart', async (t) => {
  // each one-decision request is two keys: its body's digest and its decision_id
  const s = await serve(t, { window: '10m', max_entries: 2 });
  const [a, b, c] = [decision(), decision(), decision()];
  for (const d of [a, b, c]) assert.deepEqual(await answer(s.sluice.url, [d]), { accepted: 1 });
  assert.deepEqual(
    await answer(s.sluice.url, [c]),
    { accepted: 0, duplicate_request: true },
    'the newest request is remembered',
  );
  assert.deepEqual(
    await answer(s.sluice.url, [a]),
    { accepted: 1 },
    'the oldest was forgotten to keep max_entries: stored again',
  );

  // what a restart reads back is bounded the same way: the newest keys (a's, stored just now), not older ones
  await s.sluice.stop();
  const again = new SluiceProcess({ config: s.config });
  t.after(() => again.kill9());
  await again.start();
  const after = { ...s, sluice: again };
  assert.deepEqual(
    await answer(again.url, [a]),
    { accepted: 0, duplicate_request: true },
    'the newest request, after the restart',
  );
  assert.deepEqual(await answer(again.url, [b]), { accepted: 1 }, 'an older one is not read back beyond max_entries');

  await settle(after);
  const counts = copies(s.objects);
  assert.equal(counts.get(a.decision_id as string), 2, 'a: stored again once forgotten');
  assert.equal(counts.get(b.decision_id as string), 2, 'b: stored again after the restart');
  assert.equal(counts.get(c.decision_id as string), 1, 'c: its re-send was recognised');
});

test('ingest.dedupe.window: 0 (or max_entries: 0) turns re-send detection off: every request is stored', async (t) => {
  for (const dedupe of [{ window: 0 }, { max_entries: 0 }]) {
    const s = await serve(t, dedupe);
    const chunk = decisions(2);
    assert.deepEqual(await answer(s.sluice.url, chunk), { accepted: 2 });
    assert.deepEqual(
      await answer(s.sluice.url, chunk),
      { accepted: 2 },
      `${JSON.stringify(dedupe)}: the same bytes again are stored`,
    );
    assert.deepEqual(
      await answer(s.sluice.url, [chunk[0]!, decision()]),
      { accepted: 2 },
      `${JSON.stringify(dedupe)}: a decision_id again is stored`,
    );
    await settle(s);
    const counts = copies(s.objects);
    assert.equal(
      counts.get(chunk[0]!.decision_id as string),
      3,
      `${JSON.stringify(dedupe)}: three copies of the first decision`,
    );
    assert.equal(counts.get(chunk[1]!.decision_id as string), 2, `${JSON.stringify(dedupe)}: two of the second`);
    await s.sluice.stop();
  }
});
