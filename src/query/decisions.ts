/**
 * Finding decisions in what an output wrote, for `sluice query` and `tail` and the console: the keys that may
 * hold decisions of a time range (as far as the output's key layout tells), and the decisions of those objects
 * that pass a filter, each with its text as stored.
 */
import type { OutputConfig } from '../config/schema.js';
import { parseDuration } from '../config/units.js';
import { keyLayout } from '../delivery/key-layouts.js';
import { parseJson, stringValue, toText, type JsonNode } from '../json/source-tree.js';
import { parseEventTime } from '../time/event-time.js';
import { nodeAt } from '../transforms/json-path.js';
import type { OutputObjects } from '../sinks/types.js';
import { decisionsOf, isParquetKey, parquetDecisions, type StoredDecision } from './stored-decisions.js';

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

/** `field=value` options. */
export function parseWhere(items: string[]): Array<[string, string]> {
  return items.map((item) => {
    const i = item.indexOf('=');
    if (i <= 0) throw new Error(`--where takes field=value, not "${item}"`);
    return [item.slice(0, i), item.slice(i + 1)];
  });
}

/** `--from` / `--to`: RFC 3339, or a duration ago (`15m`, `2h`, `7d`), or `now`. */
export function parseWhen(text: string, now = Date.now()): number | undefined {
  if (text === 'now') return now;
  const ago = parseDuration(text);
  if (ago !== undefined && /[a-z]$/i.test(text)) return now - ago;
  return parseEventTime(text)?.ms;
}

/** The keys that may hold decisions of [from, to]: the output's key layout lists only what it can narrow to. */
export function candidateKeys(
  output: OutputConfig,
  objects: OutputObjects,
  from: number,
  to: number,
): Promise<string[]> {
  return keyLayout(output.key).keysBetween(objects, output.name, from, to);
}

/**
 * Reads the candidate objects and yields the decisions that pass the filter, each with its stored text (a
 * Parquet object's decisions as their rows give them back; a decision_id lookup reads only that column first).
 */
export async function* matchingDecisions(
  objects: OutputObjects,
  keys: string[],
  filter: DecisionFilter,
  onObject?: () => void,
): AsyncGenerator<StoredDecision> {
  for (const key of keys) {
    if (isParquetKey(key)) {
      for await (const d of parquetDecisions(objects, key, filter.decisionId)) if (matches(d, filter)) yield d;
      onObject?.();
      continue;
    }
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
