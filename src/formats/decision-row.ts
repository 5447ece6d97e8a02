/**
 * One OPA decision (its stored JSON text) split into the typed columns of the Parquet decision schema
 * (src/formats/parquet-decisions.ts), independent of any Parquet writer.
 *
 * Every value is read from the decision's own text: a JSON column holds the exact source slice of its value
 * (number text, key order and escapes as OPA sent them: a 20-digit integer stays 20 digits, which a
 * JSON.parse + JSON.stringify round trip would round), never a re-serialization. The one change: a lone
 * UTF-16 surrogate becomes U+FFFD, in strings and in JSON text alike (src/formats/well-formed.ts). A value that does not fit
 * its typed column (a `timestamp` that is not RFC 3339, a `req_id` that is not an int64, `labels` with a
 * non-string value, ...) is not an error: the column is null and the member goes to `extra`, with every
 * top-level member the schema has no column for, so nothing the decision said is lost.
 */

import { COLON, COMMA, isSpace, OPEN_OBJECT } from '../json/chars.js';
import {
  keyIs,
  parseJson,
  stringValue,
  visitMembers,
  type JsonMember,
  type JsonNode,
  type JsonScalar,
} from '../json/source-tree.js';
import { rfc3339Micros, rfc3339Nano } from './rfc3339.js';
import { wellFormed, wellFormedJson } from './well-formed.js';

export interface DecisionRow {
  decision_id: string | null;
  path: string | null;
  /** Microseconds since the epoch, UTC. */
  timestamp: bigint | null;
  /** In source order; keys are unique (a decision with duplicate label keys keeps its labels in `extra`). */
  labels: Array<[key: string, value: string]> | null;
  requested_by: string | null;
  req_id: bigint | null;
  revision: string | null;
  bundles: string | null;
  input: string | null;
  result: string | null;
  metrics: string | null;
  nd_builtin_cache: string | null;
  erased: string[] | null;
  masked: string[] | null;
  /**
   * A JSON object of the members that have no column or did not fit theirs, in source order, each written
   * as its source text; null when there are none. For a decision that is not a JSON object at all, its
   * whole text.
   */
  extra: string | null;
}

const STRING_FIELDS = ['decision_id', 'path', 'requested_by', 'revision'] as const;
const JSON_FIELDS = ['bundles', 'input', 'result', 'metrics', 'nd_builtin_cache'] as const;
const LIST_FIELDS = ['erased', 'masked'] as const;
/** Every member name with a column of its own, in the order the members are tried. */
const TYPED_FIELDS: readonly string[] = [
  ...STRING_FIELDS,
  ...JSON_FIELDS,
  ...LIST_FIELDS,
  'timestamp',
  'labels',
  'req_id',
];

/**
 * A decision is read one member at a time (visitMembers), each value as its span: nothing inside `input`,
 * `result`, ... becomes a node, and no member is held after it is read. A full tree costs ~60 bytes of the
 * encoder's heap per JSON value, and a hostile decision of a few MiB (`"input":[0,0,...]` or a million
 * members) took the encoder thread past its heap limit, on every retry of its batch. `labels`, `erased` and
 * `masked`, whose elements are columns, are parsed on their own when their text is at most
 * COLLECTION_MAX_CHARS characters: beyond that (no OPA decision comes near it) the member goes to `extra`, as
 * every member that does not fit its column does.
 */
const COLLECTION_MAX_CHARS = 64 * 1024;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** The row of one decision's JSON text. Throws JsonSyntaxError on text that is not JSON. */
export function decisionRow(text: string): DecisionRow {
  const row: DecisionRow = {
    decision_id: null,
    path: null,
    timestamp: null,
    labels: null,
    requested_by: null,
    req_id: null,
    revision: null,
    bundles: null,
    input: null,
    result: null,
    metrics: null,
    nd_builtin_cache: null,
    erased: null,
    masked: null,
    extra: null,
  };
  if (text.charCodeAt(firstNonSpace(text)) !== OPEN_OBJECT) {
    // not an object: kept whole in `extra`, nothing in it read (the parse keeps no node of it)
    const root = parseJson(text, Infinity, 0);
    row.extra = wellFormedJson(text.slice(root.start, root.end));
    return row;
  }
  startReading(text);
  try {
    visitMembers(text, readMember);
    endRun();
  } catch (err) {
    // not JSON: what was read of it is not kept until the next decision
    startReading('');
    throw err;
  }
  const { typed, extra } = reading;
  let sorted = true;
  for (let f = 0; f < TYPED_FIELDS.length; f++) {
    const member = typed[f];
    if (member === undefined) continue;
    const field = TYPED_FIELDS[f]!;
    if (setTyped(row, field, member.value)) {
      // A timestamp the column cannot give back as it was sent (OPA's nanoseconds, an offset other than Z,
      // an escape in its text) keeps that text in `extra` as well, where readers of the decision's text take
      // it from: the column holds its instant (to the microsecond) for queries.
      if (field !== 'timestamp' || timestampTextKept(row.timestamp!, member.value)) continue;
    }
    sorted &&= extra.length === 0 || extra[extra.length - 1]!.at < member.keyStart;
    extra.push({ at: member.keyStart, text: memberText(member) });
  }
  startReading('');
  if (extra.length === 0) return row;
  if (!sorted) extra.sort((a, b) => a.at - b.at);
  row.extra = `{${extra.map((e) => e.text).join(',')}}`;
  return row;
}

/**
 * What decisionRow has read of the decision it is reading: the last member of each typed name (the value
 * JSON.parse reads; earlier ones are shadowed), by its index in TYPED_FIELDS, and every other member's text
 * at its place in the source, a run of compact members (`"key":value`, separated by exactly ",") as one slice,
 * which is the text those members joined by "," would make. decisionRow is synchronous and never re-entered,
 * so one of these serves every call and no closure is made per decision.
 */
const reading = {
  text: '',
  typed: new Array<JsonMember | undefined>(TYPED_FIELDS.length),
  extra: [] as Array<{ at: number; text: string }>,
  runStart: -1,
  runEnd: -1,
};

/** Sets `reading` for a new text ('' once done, so that nothing read is held). */
function startReading(text: string): void {
  reading.text = text;
  reading.typed.fill(undefined);
  reading.extra = [];
  reading.runStart = -1;
}

function readMember(member: JsonMember): void {
  const { text } = reading;
  for (let f = 0; f < TYPED_FIELDS.length; f++) {
    if (keyIs(member, TYPED_FIELDS[f]!)) {
      endRun();
      reading.typed[f] = member;
      return;
    }
  }
  const compact = member.value.start === member.keyEnd + 1 && text.charCodeAt(member.keyEnd) === COLON;
  if (
    compact &&
    reading.runStart >= 0 &&
    member.keyStart === reading.runEnd + 1 &&
    text.charCodeAt(reading.runEnd) === COMMA
  ) {
    reading.runEnd = member.value.end;
    return;
  }
  endRun();
  if (!compact) reading.extra.push({ at: member.keyStart, text: memberText(member) });
  else {
    reading.runStart = member.keyStart;
    reading.runEnd = member.value.end;
  }
}

function endRun(): void {
  if (reading.runStart < 0) return;
  reading.extra.push({
    at: reading.runStart,
    text: wellFormedJson(reading.text.slice(reading.runStart, reading.runEnd)),
  });
  reading.runStart = -1;
}

function firstNonSpace(text: string): number {
  let i = 0;
  while (isSpace(text.charCodeAt(i))) i++;
  return i;
}

/** Whether the timestamp column, written as RFC3339Nano in UTC, is the member's text byte for byte. */
function timestampTextKept(micros: bigint, value: JsonNode): boolean {
  return value.src.slice(value.start, value.end) === `"${rfc3339Nano(micros)}"`;
}

/** Puts a member's value in its typed column; false if it does not fit there. */
function setTyped(row: DecisionRow, field: string, value: JsonNode): boolean {
  switch (field) {
    case 'decision_id':
    case 'path':
    case 'requested_by':
    case 'revision': {
      const s = stringOf(value);
      if (s === undefined) return false;
      row[field] = s;
      return true;
    }
    case 'bundles':
    case 'input':
    case 'result':
    case 'metrics':
    case 'nd_builtin_cache':
      row[field] = wellFormedJson(value.src.slice(value.start, value.end));
      return true;
    case 'erased':
    case 'masked': {
      const list = collection(value, 'array');
      if (list === undefined) return false;
      const items: string[] = [];
      for (const item of list.items) {
        const s = stringOf(item);
        if (s === undefined) return false;
        items.push(s);
      }
      row[field] = items;
      return true;
    }
    case 'timestamp': {
      const s = stringOf(value);
      const micros = s === undefined ? undefined : rfc3339Micros(s);
      if (micros === undefined) return false;
      row.timestamp = micros;
      return true;
    }
    case 'labels': {
      const map = collection(value, 'object');
      if (map === undefined) return false;
      const labels: Array<[string, string]> = [];
      const keys = new Set<string>();
      for (const m of map.members) {
        const key = keyText(m);
        const s = stringOf(m.value);
        if (s === undefined || keys.has(key)) return false;
        keys.add(key);
        labels.push([key, s]);
      }
      row.labels = labels;
      return true;
    }
    case 'req_id': {
      if (value.type !== 'number') return false;
      const digits = value.src.slice(value.start, value.end);
      if (!/^-?\d+$/.test(digits)) return false;
      const n = BigInt(digits);
      if (n < INT64_MIN || n > INT64_MAX) return false;
      row.req_id = n;
      return true;
    }
    default:
      return false;
  }
}

/**
 * A member's value (an array or an object) parsed with its elements, which the root's parse does not keep;
 * undefined when it is not of that type or its text is longer than COLLECTION_MAX_CHARS.
 */
function collection<T extends 'array' | 'object'>(
  value: JsonNode,
  type: T,
): Extract<JsonNode, { type: T }> | undefined {
  if (value.type !== type || value.end - value.start > COLLECTION_MAX_CHARS) return undefined;
  return parseJson(value.src.slice(value.start, value.end), Infinity, 1) as Extract<JsonNode, { type: T }>;
}

/** A string node's value (only an escape can make a lone surrogate: the text itself is decoded UTF-8), else undefined. */
function stringOf(node: JsonNode): string | undefined {
  if (node.type !== 'string') return undefined;
  const s = stringValue(node as JsonScalar);
  return node.escaped ? wellFormed(s) : s;
}

function keyText(m: JsonMember): string {
  return m.escaped
    ? wellFormed(JSON.parse(m.src.slice(m.keyStart, m.keyEnd)) as string)
    : m.src.slice(m.keyStart + 1, m.keyEnd - 1);
}

function memberText(m: JsonMember): string {
  return wellFormedJson(`${m.src.slice(m.keyStart, m.keyEnd)}:${m.value.src.slice(m.value.start, m.value.end)}`);
}
