/**
 * How V8 sizes the heaps of the server's threads, set once as the server starts (README "Performance").
 *
 * - Old generations grow by half of what a full collection left live (`--heap-growing-percent=50`), not
 *   by V8's default of up to 4x: at full load with a Parquet output the event loop's old generation went
 *   to ~100 MiB of mostly garbage before V8 collected it, against ~35 MiB live. The flag is read at every
 *   full collection, so it applies to every thread from here on.
 * - `npm start` and the image give node `--max-semi-space-size=8`, the event loop's young generation. V8
 *   applies that flag to every isolate made while it is set, over the young generation each worker pool
 *   asks for in its resourceLimits (decoder-pool.ts, parquet-encoder.ts): the Parquet encoder's 8 MiB was
 *   16. The flag is read only when a heap is made, and the event loop's exists by now: clearing it gives
 *   every worker thread made after this the young generation its pool asks for.
 *
 * A growing percent given to node (its command line, NODE_OPTIONS) is the operator's and is left as it is;
 * the semi-space flag is cleared whoever gave it (it has done its work for the event loop).
 */
import v8 from 'node:v8';

const HEAP_GROWING_PERCENT = 50;

/** `nodeArgs`: node's own options, from its command line and NODE_OPTIONS. */
export function applyHeapPolicy(
  nodeArgs: readonly string[] = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)],
): void {
  const given = (flag: string) => nodeArgs.some((a) => a === flag || a.startsWith(`${flag}=`));
  if (!given('--heap-growing-percent')) v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  v8.setFlagsFromString('--max-semi-space-size=0');
}
