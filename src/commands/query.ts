import cliProgress from 'cli-progress';
import Table from 'cli-table3';
import type { OutputConfig } from '../config/schema.js';
import { keyLayout } from '../delivery/key-layouts.js';
import { parseEventTime } from '../sources/event-time.js';
import { parseDuration } from '../config/units.js';
import { parseJson, stringValue, toText, type JsonNode } from '../json/source-tree.js';
import { nodeAt } from '../transforms/json-path.js';
import { outputObjects } from '../sinks/registry.js';
import type { OutputObjects } from '../sinks/types.js';
import { decisionsOf, type StoredDecision } from './stored-decisions.js';

export interface DecisionFilter {
  from: number;
  to: number;
  decisionId?: string;
  path?: string;
  /**
   * `field=value` pairs over dotted paths of the decision, compared as text: a string by its value, anything
   * else by its JSON text as stored (a number also by the shortest text of its double, as before).
   */
  where: Array<[string, string]>;
}

/** Exit codes of `sluice query` and `sluice tail`. */
export const QUERY_EXIT = { found: 0, none: 1, unusable: 2 } as const;

/** `--from` / `--to`: RFC 3339, or a duration ago (`15m`, `2h`, `7d`), or `now`. */
export function parseWhen(text: string, now = Date.now()): number | undefined {
  if (text === 'now') return now;
  const ago = parseDuration(text);
  if (ago !== undefined && /[a-z]$/i.test(text)) return now - ago;
  return parseEventTime(text)?.ms;
}

/** `field=value` options. */
export function parseWhere(items: string[]): Array<[string, string]> {
  return items.map((item) => {
    const i = item.indexOf('=');
    if (i <= 0) throw new Error(`--where takes field=value, not "${item}"`);
    return [item.slice(0, i), item.slice(i + 1)];
  });
}

/** The keys that may hold decisions of [from, to]: the output's key layout lists only what it can narrow to. */
export function candidateKeys(output: OutputConfig, objects: OutputObjects, from: number, to: number): Promise<string[]> {
  return keyLayout(output.key).keysBetween(objects, output.name, from, to);
}

/** Reads the candidate objects and yields the decisions that pass the filter, each with its stored text. */
export async function* matchingDecisions(objects: OutputObjects, keys: string[], filter: DecisionFilter, onObject?: () => void): AsyncGenerator<StoredDecision> {
  for (const key of keys) {
    const decisions = decisionsOf(key, await objects.read(key));
    onObject?.();
    for (const d of decisions) if (matches(d, filter)) yield d;
  }
}

export function matches({ text, decision: d }: StoredDecision, f: DecisionFilter): boolean {
  const time = typeof d.timestamp === 'string' ? parseEventTime(d.timestamp)?.ms : undefined;
  if (time !== undefined && (time < f.from || time > f.to)) return false;
  if (f.decisionId !== undefined && d.decision_id !== f.decisionId) return false;
  if (f.path !== undefined && String(d.path ?? '').replace(/^\//, '') !== f.path.replace(/^\//, '')) return false;
  if (f.where.length === 0) return true;
  // the stored text, not the parsed value: numbers and objects compare as written (no recursive stringify)
  const tree = parseJson(text);
  for (const [field, value] of f.where) {
    const found = nodeAt(tree, field.split('.'));
    if (found === undefined || !textMatches(found, value)) return false;
  }
  return true;
}

function textMatches(node: JsonNode, value: string): boolean {
  if (node.type === 'string') return stringValue(node) === value;
  const text = toText(node);
  return text === value || (node.type === 'number' && String(Number(text)) === value);
}

/** The start of a decision's `result` as stored, for the table. */
function resultText(text: string): string {
  const result = nodeAt(parseJson(text), ['result']);
  return result === undefined ? 'null' : toText(result).slice(0, 60);
}

/** `sluice query`: prints the matching decisions as NDJSON or a table. */
export async function query(output: OutputConfig, filter: DecisionFilter, opts: { format: 'ndjson' | 'table'; progress: boolean }): Promise<number> {
  const objects = outputObjects(output);
  try {
    const keys = await candidateKeys(output, objects, filter.from, filter.to);
    const bar = opts.progress && keys.length > 10
      ? new cliProgress.SingleBar({ format: 'reading [{bar}] {value}/{total} objects', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
      : undefined;
    bar?.start(keys.length, 0);
    const table = opts.format === 'table'
      ? new Table({ head: ['timestamp', 'decision_id', 'path', 'result'], style: process.stdout.isTTY ? undefined : { head: [], border: [] } })
      : undefined;
    let found = 0;
    for await (const { text, decision: d } of matchingDecisions(objects, keys, filter, () => bar?.increment())) {
      found++;
      if (table) table.push([String(d.timestamp ?? ''), String(d.decision_id ?? ''), String(d.path ?? ''), resultText(text)]);
      else process.stdout.write(`${text}\n`);
    }
    bar?.stop();
    if (table) console.log(table.toString());
    console.error(`${found} decision${found === 1 ? '' : 's'} in ${keys.length} object${keys.length === 1 ? '' : 's'} of output ${output.name}`);
    return found > 0 ? QUERY_EXIT.found : QUERY_EXIT.none;
  } finally {
    objects.close();
  }
}

/** `sluice tail`: prints decisions of new objects as they land, until interrupted (or `max` decisions). */
export async function tail(output: OutputConfig, filter: Omit<DecisionFilter, 'from' | 'to'>, opts: { intervalMs: number; max?: number; signal: AbortSignal }): Promise<number> {
  const objects = outputObjects(output);
  const since = Date.now() - 3_600_000;
  const seen = new Set(await candidateKeys(output, objects, since, Date.now()));
  let printed = 0;
  try {
    while (!opts.signal.aborted) {
      await new Promise((resolve) => setTimeout(resolve, opts.intervalMs));
      const keys = (await candidateKeys(output, objects, Date.now() - 3_600_000, Date.now() + 3_600_000)).filter((k) => !seen.has(k));
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
