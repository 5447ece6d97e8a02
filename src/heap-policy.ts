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
 * A flag given on node's command line is the operator's and is left as it is, the semi-space one aside
 * (it has done its work for the event loop).
 */
import v8 from 'node:v8';

const HEAP_GROWING_PERCENT = 50;

export function applyHeapPolicy(execArgv: readonly string[] = process.execArgv): void {
  const given = (flag: string) => execArgv.some((a) => a === flag || a.startsWith(`${flag}=`));
  if (!given('--heap-growing-percent')) v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  v8.setFlagsFromString('--max-semi-space-size=0');
}
