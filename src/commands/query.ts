import cliProgress from 'cli-progress';
import Table from 'cli-table3';
import type { OutputConfig } from '../config/schema.js';
import { parseJson, toText } from '../json/source-tree.js';
import { candidateKeys, matchingDecisions, type DecisionFilter } from '../query/decisions.js';
import { outputObjects } from '../sinks/registry.js';
import { nodeAt } from '../transforms/json-path.js';

/** Exit codes of `sluice query` and `sluice tail`. */
export const QUERY_EXIT = { found: 0, none: 1, unusable: 2 } as const;

/** The start of a decision's `result` as stored, for the table. */
function resultText(text: string): string {
  const result = nodeAt(parseJson(text), ['result']);
  return result === undefined ? 'null' : toText(result).slice(0, 60);
}

/** `sluice query`: prints the matching decisions as NDJSON or a table. */
export async function query(
  output: OutputConfig,
  filter: DecisionFilter,
  opts: { format: 'ndjson' | 'table'; progress: boolean },
): Promise<number> {
  const objects = outputObjects(output);
  try {
    const keys = await candidateKeys(output, objects, filter.from, filter.to);
    const bar =
      opts.progress && keys.length > 10
        ? new cliProgress.SingleBar(
            { format: 'reading [{bar}] {value}/{total} objects', stream: process.stderr, hideCursor: true },
            cliProgress.Presets.shades_classic,
          )
        : undefined;
    bar?.start(keys.length, 0);
    const table =
      opts.format === 'table'
        ? new Table({
            head: ['timestamp', 'decision_id', 'path', 'result'],
            style: process.stdout.isTTY ? undefined : { head: [], border: [] },
          })
        : undefined;
    let found = 0;
    for await (const { text, decision: d } of matchingDecisions(objects, keys, filter, () => bar?.increment())) {
      found++;
      if (table)
        table.push([String(d.timestamp ?? ''), String(d.decision_id ?? ''), String(d.path ?? ''), resultText(text)]);
      else process.stdout.write(`${text}\n`);
    }
    bar?.stop();
    if (table) console.log(table.toString());
    console.error(
      `${found} decision${found === 1 ? '' : 's'} in ${keys.length} object${keys.length === 1 ? '' : 's'} of output ${output.name}`,
    );
    return found > 0 ? QUERY_EXIT.found : QUERY_EXIT.none;
  } finally {
    objects.close();
  }
}

/** `sluice tail`: prints decisions of new objects as they land, until interrupted (or `max` decisions). */
export async function tail(
  output: OutputConfig,
  filter: Omit<DecisionFilter, 'from' | 'to'>,
  opts: { intervalMs: number; max?: number; signal: AbortSignal },
): Promise<number> {
  const objects = outputObjects(output);
  const since = Date.now() - 3_600_000;
  const seen = new Set(await candidateKeys(output, objects, since, Date.now()));
  let printed = 0;
  try {
    while (!opts.signal.aborted) {
      await new Promise((resolve) => setTimeout(resolve, opts.intervalMs));
      const keys = (await candidateKeys(output, objects, Date.now() - 3_600_000, Date.now() + 3_600_000)).filter(
        (k) => !seen.has(k),
      );
      for (const key of keys) seen.add(key);
      for await (const { text } of matchingDecisions(objects, keys, { ...filter, from: -Infinity, to: Infinity })) {
        process.stdout.write(`${text}\n`);
        if (opts.max !== undefined && ++printed >= opts.max) return QUERY_EXIT.found;
      }
    }
    return printed > 0 ? QUERY_EXIT.found : QUERY_EXIT.none;
  } finally {
    objects.close();
  }
}
