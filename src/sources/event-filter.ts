/**
 * Outpost's destination `filter`: a destination receives an event of its topics only when the event matches
 * it. The matching is a port of Outpost's `internal/simplejsonmatch` (itself a port of hookdeck's
 * simple-json-match), kept to its semantics so that a filter written for Outpost routes the same events here:
 * `{ "data": { "amount": { "$gte": 100 } } }`, `$eq $neq $gt $gte $lt $lte $in $nin $startsWith $endsWith
 * $exist`, and `$or $and $not` at any level; a primitive against an array matches when any element does.
 *
 * Two departures: Outpost treats a key it does not know (`$regex`) as a field name, so such a filter quietly
 * matches nothing; Sluice refuses it when the destination is saved (filterProblems), naming the field. And
 * `$not` under a field (`{"status": {"$not": {"$in": [...]}}}`, an example of Outpost's docs) negates here,
 * where Outpost's matcher never matches it.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** What a filter is matched against, as Outpost builds it from an event. */
export interface FilterInput {
  id: string;
  topic: string;
  /** RFC 3339 in UTC, whole seconds (Outpost formats it with Go's time.RFC3339). */
  time: string;
  metadata: Record<string, string>;
  data: unknown;
}

const COMPARISON = new Set([
  '$eq',
  '$neq',
  '$gt',
  '$gte',
  '$lt',
  '$lte',
  '$in',
  '$nin',
  '$startsWith',
  '$endsWith',
  '$exist',
]);
const LOGICAL = new Set(['$or', '$and', '$not']);
/** Bounds on a filter a tenant stores (it is evaluated on every publish to its topics). */
const MAX_FILTER_BYTES = 16 * 1024;
const MAX_FILTER_DEPTH = 32;

/** The filter input of an event: time to whole seconds as Outpost formats it. */
export function filterInput(
  event: { id: string; topic: string; time_ms: number; metadata: Record<string, string> },
  data: unknown,
): FilterInput {
  return {
    id: event.id,
    topic: event.topic,
    time: new Date(Math.floor(event.time_ms / 1000) * 1000).toISOString().replace('.000Z', 'Z'),
    metadata: event.metadata,
    data,
  };
}

/** Whether the event matches; an empty filter matches every event. */
export function matchesFilter(filter: Record<string, unknown>, input: FilterInput): boolean {
  if (Object.keys(filter).length === 0) return true;
  return matchSchema(input as unknown as Json, filter as Json);
}

/**
 * What is wrong with a filter, as field messages under `filter` (`filter.data.amount.$gte: ...`): not an
 * object, an unknown `$` operator, `$or`/`$and` without an array of objects, `$exist` without a boolean,
 * larger than 16 KiB or nested deeper than 32 levels.
 */
export function filterProblems(filter: unknown): Array<{ path: string[]; message: string }> {
  if (typeof filter !== 'object' || filter === null || Array.isArray(filter))
    return [{ path: [], message: 'failed type validation (an object)' }];
  if (Buffer.byteLength(JSON.stringify(filter)) > MAX_FILTER_BYTES)
    return [{ path: [], message: `failed max validation (at most ${MAX_FILTER_BYTES} bytes)` }];
  const problems: Array<{ path: string[]; message: string }> = [];
  const walk = (value: unknown, path: string[]) => {
    if (path.length > MAX_FILTER_DEPTH) {
      problems.push({ path, message: `failed max validation (nested deeper than ${MAX_FILTER_DEPTH} levels)` });
      return;
    }
    if (Array.isArray(value)) {
      value.forEach((v, i) => walk(v, [...path, String(i)]));
      return;
    }
    if (typeof value !== 'object' || value === null) return;
    for (const [key, sub] of Object.entries(value)) {
      const at = [...path, key];
      if (key.startsWith('$') && !COMPARISON.has(key) && !LOGICAL.has(key)) {
        problems.push({ path: at, message: `is not a known operator (${[...COMPARISON, ...LOGICAL].join(', ')})` });
        continue;
      }
      if (
        (key === '$or' || key === '$and') &&
        (!Array.isArray(sub) || sub.some((s) => typeof s !== 'object' || s === null || Array.isArray(s)))
      ) {
        problems.push({ path: at, message: 'failed type validation (an array of filters)' });
        continue;
      }
      if (key === '$exist' && typeof sub !== 'boolean') {
        problems.push({ path: at, message: 'failed type validation (true or false)' });
        continue;
      }
      walk(sub, at);
    }
  };
  walk(filter, []);
  return problems;
}

// ---- the matching, as simplejsonmatch does it (recursivelyMatchValue answers "mismatch", as there)

function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isPrimitive(v: unknown): v is null | boolean | number | string {
  return v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string';
}

function matchSchema(input: Json, schema: Json): boolean {
  try {
    return matchSchemaUnsafe(input, schema);
  } catch {
    // as Outpost: a failure while matching (it recovers from a panic) is no match
    return false;
  }
}

function matchSchemaUnsafe(input: Json, schema: Json): boolean {
  if (isObject(schema) && Object.hasOwn(schema, '$not')) {
    const negated = matchSchema(input, schema.$not!);
    if (Object.keys(schema).length === 1) return !negated;
    if (negated) return false;
  }
  if (isPrimitive(input) || Array.isArray(input)) return !mismatch(input, schema);
  if (isObject(schema)) {
    for (const [key, sub] of Object.entries(schema)) {
      if (key === '$not') continue;
      if (key === '$or' && Array.isArray(sub)) {
        if (!sub.some((s) => matchSchema(input, s))) return false;
        continue;
      }
      if (key === '$and' && Array.isArray(sub)) {
        if (!sub.every((s) => matchSchema(input, s))) return false;
        continue;
      }
      if (!Object.hasOwn(input, key)) {
        if (isObject(sub) && sub.$exist === false) continue;
        return false;
      }
      if (mismatch(input[key]!, sub)) return false;
    }
    return true;
  }
  return !mismatch(input, schema);
}

function mismatch(input: Json, schema: Json): boolean {
  // `{"status": {"$not": {"$in": [...]}}}`, as Outpost's filter docs show it: Outpost's matcher takes $not only
  // where the value is an object (a field's value never matches it there); here it negates under any value
  if (isObject(schema) && Object.hasOwn(schema, '$not')) {
    const { $not: negated, ...rest } = schema;
    if (!mismatch(input, negated!)) return true;
    return Object.keys(rest).length > 0 && mismatch(input, rest);
  }
  if (isPrimitive(schema)) {
    if (isPrimitive(input)) return !looselyEqual(input, schema);
    if (Array.isArray(input)) return !input.some((v) => !mismatch(v, schema));
    if (isObject(input)) return true;
  }
  if (Array.isArray(input)) {
    if (Array.isArray(schema)) return !schema.every((sub) => input.some((item) => !mismatch(item, sub)));
    if (isObject(schema) && Object.keys(schema).some((k) => COMPARISON.has(k))) {
      for (const [op, value] of Object.entries(schema)) {
        if (COMPARISON.has(op) && !applyOperator(op, input, value)) return true;
      }
      return false;
    }
    return !input.some((v) => !mismatch(v, schema));
  }
  if (isObject(schema)) {
    if (Object.hasOwn(schema, '$or') && Array.isArray(schema.$or))
      return !schema.$or.some((s) => matchSchema(input, s));
    const operators = Object.entries(schema).filter(([k]) => COMPARISON.has(k));
    if (operators.length > 0) return operators.some(([op, value]) => !applyOperator(op, input, value));
    if (isPrimitive(input)) return true;
    return !matchSchema(input, schema);
  }
  return true;
}

/** Equality of primitives: numbers, strings and booleans each among themselves; null only with null. */
function looselyEqual(a: Json, b: Json): boolean {
  if (a === null || b === null) return a === b;
  return typeof a === typeof b && a === b;
}

/** An operator's answer; a type it does not apply to is false (Outpost's ErrUnsupportedType). */
function applyOperator(op: string, v: Json, compare: Json): boolean {
  switch (op) {
    case '$eq':
      return deepEqual(v, compare);
    case '$neq':
      return !deepEqual(v, compare);
    case '$gt':
    case '$gte':
    case '$lt':
    case '$lte':
      return compareOrdered(op, v, compare);
    case '$in':
      return within(v, compare) ?? false;
    case '$nin': {
      const inside = within(v, compare);
      return inside === undefined ? false : !inside;
    }
    case '$startsWith':
    case '$endsWith': {
      if (typeof v !== 'string') return false;
      const test = (c: string) => (op === '$startsWith' ? v.startsWith(c) : v.endsWith(c));
      if (typeof compare === 'string') return test(compare);
      if (!Array.isArray(compare)) return false;
      // in order, as Outpost: a match before an element that is not a string still counts
      for (const c of compare) {
        if (typeof c !== 'string') return false;
        if (test(c)) return true;
      }
      return false;
    }
    case '$exist':
      // reached only for a field that is there (a missing one is decided in matchSchemaUnsafe)
      return compare === true;
    default:
      return false;
  }
}

function deepEqual(a: Json, b: Json): boolean {
  if (isPrimitive(a) && isPrimitive(b)) return looselyEqual(a, b);
  // as Outpost: JSON of both (Go sorts map keys when it marshals; so do we)
  return canonical(a) === canonical(b);
}

function canonical(v: Json): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isObject(v))
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(v[k]!)}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

function compareOrdered(op: string, v: Json, c: Json): boolean {
  const comparable =
    (typeof v === 'string' && typeof c === 'string') || (typeof v === 'number' && typeof c === 'number');
  if (!comparable) return false;
  const a = v as string | number;
  const b = c as string | number;
  return op === '$gt' ? a > b : op === '$gte' ? a >= b : op === '$lt' ? a < b : a <= b;
}

/** `$in`: v among an array, a substring of a string, or an array holding compare; undefined where it does not apply. */
function within(v: Json, compare: Json): boolean | undefined {
  if (Array.isArray(compare)) {
    if (!isPrimitive(v)) return undefined;
    return compare.some((item) => isPrimitive(item) && looselyEqual(v, item));
  }
  if (typeof v === 'string') return typeof compare === 'string' ? v.includes(compare) : undefined;
  if (Array.isArray(v))
    return v.some((item) => isPrimitive(item) && isPrimitive(compare) && looselyEqual(item, compare));
  return undefined;
}
