/**
 * A decision's JSON text from its row of the Parquet decision schema: the inverse of decision-row.ts, for
 * `sluice query` and the console reading Parquet objects.
 *
 * What comes back byte for byte: every JSON column (`bundles`, `input`, `result`, `metrics`,
 * `nd_builtin_cache`) and every member kept in `extra` is its source text as the writer kept it (number
 * text, escapes, key order inside). What is rebuilt, because the row holds values, not text:
 *
 * - the order of the top-level members: the order of OPA's EventV1 (labels, decision_id, ..., path, input,
 *   result, ..., requested_by, timestamp, metrics, req_id, request_context), which is what OPA sends; a
 *   member OPA does not have goes at the end, or just before the next member of `extra` that OPA has;
 * - strings (decision_id, path, requested_by, revision, label keys and values, erased and masked) as Go's
 *   encoding/json, which OPA logs with, writes them: `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u003c`
 *   ..., control characters as `\n`, `\t`, `\u0001` ...; every other character as itself;
 * - `timestamp` as RFC 3339 in UTC with the fraction's trailing zeros cut (Go's RFC3339Nano), from the
 *   column's microseconds: digits past the sixth and a non-UTC offset are not in the column;
 * - `req_id` as the integer's decimal digits;
 * - no whitespace between members.
 *
 * So a decision as OPA sends it comes back exactly, except a timestamp with more than six fractional digits
 * (OPA's nanoseconds), which comes back cut to microseconds. A member in `extra` that has a column name wins
 * over that column: a writer that keeps a timestamp's text there gets it back exactly.
 */

import { rfc3339Nano } from './rfc3339.js';
import { keyOf, parseJson, type JsonMember, type JsonNode } from '../json/source-tree.js';
import type { DecisionRow } from './decision-row.js';

/** OPA's EventV1 members in the order Go's encoding/json writes them (its struct's field order). */
const OPA_ORDER: readonly string[] = [
  'labels',
  'decision_id',
  'batch_decision_id',
  'trace_id',
  'span_id',
  'revision',
  'bundles',
  'path',
  'query',
  'input',
  'result',
  'mapped_result',
  'intermediate_results',
  'nd_builtin_cache',
  'erased',
  'masked',
  'error',
  'requested_by',
  'timestamp',
  'metrics',
  'req_id',
  'request_context',
  'custom',
];
const RANK = new Map(OPA_ORDER.map((name, i) => [name, i]));

/** The typed columns, each with how its value is written as JSON text. */
const TYPED: ReadonlyArray<[name: keyof DecisionRow, text: (row: DecisionRow) => string | null | undefined]> = [
  ['labels', (r) => r.labels && `{${r.labels.map(([k, v]) => `${goString(k)}:${goString(v)}`).join(',')}}`],
  ['decision_id', (r) => stringText(r.decision_id)],
  ['revision', (r) => stringText(r.revision)],
  ['bundles', (r) => r.bundles ?? undefined],
  ['path', (r) => stringText(r.path)],
  ['input', (r) => r.input ?? undefined],
  ['result', (r) => r.result ?? undefined],
  ['nd_builtin_cache', (r) => r.nd_builtin_cache ?? undefined],
  ['erased', (r) => r.erased && `[${r.erased.map(goString).join(',')}]`],
  ['masked', (r) => r.masked && `[${r.masked.map(goString).join(',')}]`],
  ['requested_by', (r) => stringText(r.requested_by)],
  ['timestamp', (r) => (r.timestamp === null ? undefined : `"${rfc3339Nano(r.timestamp)}"`)],
  ['metrics', (r) => r.metrics ?? undefined],
  ['req_id', (r) => (r.req_id === null ? undefined : r.req_id.toString())],
];

function stringText(s: string | null): string | undefined {
  return s === null ? undefined : goString(s);
}

/** The decision's JSON text. */
export function decisionText(row: DecisionRow): string {
  const extra = row.extra === null ? undefined : parseJson(row.extra);
  // a decision that is not an object is all in `extra`, as it was
  if (extra !== undefined && extra.type !== 'object') return row.extra!;
  const extraMembers = extra?.type === 'object' ? extra.members : [];
  const inExtra = new Set(extraMembers.map(keyOf));
  const members: Array<{ rank: number; order: number; text: string }> = [];
  for (const [name, text] of TYPED) {
    if (inExtra.has(name)) continue;
    const value = text(row);
    if (value !== undefined && value !== null)
      members.push({ rank: RANK.get(name)!, order: members.length, text: `"${name}":${value}` });
  }
  const ranks = extraRanks(extraMembers);
  extraMembers.forEach((m, i) => {
    members.push({ rank: ranks[i]!, order: members.length, text: memberText(m) });
  });
  members.sort((a, b) => a.rank - b.rank || a.order - b.order);
  return `{${members.map((m) => m.text).join(',')}}`;
}

/**
 * Where each member of `extra` goes among OPA's members: its own rank, or for a name OPA does not have,
 * just before the nearest OPA member that follows it in `extra`, else at the end (where clients add theirs).
 */
function extraRanks(members: readonly JsonMember[]): number[] {
  const own = members.map((m) => RANK.get(keyOf(m)));
  return own.map((rank, i) => {
    if (rank !== undefined) return rank;
    for (let j = i + 1; j < own.length; j++) if (own[j] !== undefined) return own[j]! - 0.5;
    return OPA_ORDER.length;
  });
}

function memberText(m: JsonMember): string {
  const value: JsonNode = m.value;
  return `${m.src.slice(m.keyStart, m.keyEnd)}:${value.src.slice(value.start, value.end)}`;
}

const GO_ESCAPES: Record<string, string> = {
  '"': '\\"',
  '\\': '\\\\',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\b': '\\b',
  '\f': '\\f',
  '<': '\\u003c',
  '>': '\\u003e',
  '&': '\\u0026',
  '\u2028': '\\u2028',
  '\u2029': '\\u2029',
};

/** A JSON string as Go's encoding/json (1.22 and later) writes it, HTML escaping on. */
export function goString(s: string): string {
  return `"${s.replace(/["\\<>&\u0000-\u001f\u2028\u2029]/g, (c) => GO_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}"`;
}

export { rfc3339Nano };
