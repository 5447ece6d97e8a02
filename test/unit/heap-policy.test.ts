/**
 * The heap policy (src/heap-policy.ts): with node's `--max-semi-space-size=8`, as `npm start` gives it, a
 * worker thread made after the policy is applied gets the young generation its resourceLimits ask for, not
 * the flag's. Measured in a child process, which has the flag as the server does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

const POLICY = new URL('../../src/heap-policy.ts', import.meta.url).href;

/**
 * The largest the worker's new space grew while it kept 200,000 objects alive in turn (bounded loop); a
 * module, as the child's --input-type makes every evaluated worker.
 */
const WORKER = `
  import v8 from 'node:v8';
  import { parentPort } from 'node:worker_threads';
  const ring = new Array(200000);
  let max = 0;
  for (let i = 0; i < 4000000; i++) {
    ring[i % ring.length] = { i };
    if (i % 20000 === 0) max = Math.max(max, v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size);
  }
  parentPort.postMessage(max);
`;

function workerNewSpaceMiB(apply: boolean): number {
  const script = `
    import { Worker } from 'node:worker_threads';
    import { applyHeapPolicy } from ${JSON.stringify(POLICY)};
    if (${apply}) applyHeapPolicy();
    const worker = new Worker(${JSON.stringify(WORKER)}, { eval: true, resourceLimits: { maxYoungGenerationSizeMb: 8 } });
    worker.on('message', (bytes) => { console.log(bytes); process.exit(0); });
  `;
  const out = execFileSync(
    process.execPath,
    ['--max-semi-space-size=8', '--import', 'tsx', '--input-type=module', '-e', script],
    { encoding: 'utf8', timeout: 60_000 },
  );
  return Number(out.trim()) / (1024 * 1024);
}

test("a worker made after the policy gets its pool's young generation, not --max-semi-space-size's", () => {
  const without = workerNewSpaceMiB(false);
  const withPolicy = workerNewSpaceMiB(true);
  assert.ok(without > 8, `without the policy the flag's 2 x 8 MiB semi-spaces apply: ${without} MiB`);
  assert.ok(withPolicy <= 8, `with it, resourceLimits' 8 MiB young generation: ${withPolicy} MiB`);
});
