/**
 * Compiles conditions (see rules-schema.ts) into predicates on a decision, once, so that evaluating a
 * rule per decision is a few property reads and comparisons.
 *
 * Semantics, chosen to read like the Rego a user would otherwise write in OPA's `system.log.drop`:
 * a missing value (absent key, index out of range, a step through a non-container) makes every
 * operator false except `exists: false`, as an undefined reference makes a Rego expression undefined;
 * `not` negates, so `not: {field: x, equals: 1}` is true when x is missing. A present `null` exists.
 * `equals`/`in` are deep JSON equality (object key order does not matter, array order does);
 * `prefix` and `matches` only apply to strings; `matches` is an unanchored JS RegExp test, like Rego's
 * regex.match (anchor with ^ and $).
 */
import { memberOf, stringValue, toValue, type JsonNode } from '../json/source-tree.js';
import { nodeAt, parseField } from './json-path.js';
import type { Condition, JsonValue } from './rules-schema.js';

/**
 * A test on a decision's source tree (src/json/source-tree.ts). Scalars are compared from their text
 * without building JS values; a container is turned into a JS value (JSON.parse of its slice) only when a
 * condition compares it with a composite value.
 */
export type Predicate = (decision: JsonNode) => boolean;

const hasOwn = Object.prototype.hasOwnProperty;

/** Deep equality of JSON values. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!hasOwn.call(b, k) || !jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
      return false;
  }
  return true;
}

function getter(field: string): (decision: JsonNode) => JsonNode | undefined {
  const segments = parseField(field);
  // rulesSchema has rejected malformed fields; this guards direct callers
  if (typeof segments === 'string') throw new Error(segments);
  if (segments.length === 1) {
    const key = segments[0]!;
    return (d) => (d.type === 'object' ? memberOf(d, key) : undefined);
  }
  return (d) => nodeAt(d, segments);
}

/** Whether a node is the scalar `expected` (strict equality of the JS values, as JSON.parse would give them). */
function isScalar(node: JsonNode, expected: string | number | boolean | null): boolean {
  switch (node.type) {
    case 'string':
      return typeof expected === 'string' && stringValue(node) === expected;
    case 'number':
      return typeof expected === 'number' && Number(node.src.slice(node.start, node.end)) === expected;
    case 'true':
      return expected === true;
    case 'false':
      return expected === false;
    case 'null':
      return expected === null;
    default:
      return false;
  }
}

const isContainer = (node: JsonNode) => node.type === 'object' || node.type === 'array';

/** Compiles a validated condition into a predicate. */
export function compileCondition(c: Condition): Predicate {
  if ('all' in c) {
    const parts = c.all.map(compileCondition);
    return (d) => parts.every((p) => p(d));
  }
  if ('any' in c) {
    const parts = c.any.map(compileCondition);
    return (d) => parts.some((p) => p(d));
  }
  if ('not' in c) {
    const inner = compileCondition(c.not);
    return (d) => !inner(d);
  }
  const get = getter(c.field);
  if ('equals' in c) {
    const expected = c.equals;
    if (expected === null || typeof expected !== 'object') {
      return (d) => {
        const v = get(d);
        return v !== undefined && isScalar(v, expected);
      };
    }
    return (d) => {
      const v = get(d);
      return v !== undefined && isContainer(v) && jsonEqual(toValue(v), expected);
    };
  }
  if ('in' in c) {
    const scalars = new Set<JsonValue>(c.in.filter((v) => v === null || typeof v !== 'object'));
    const composites = c.in.filter((v) => v !== null && typeof v === 'object');
    return (d) => {
      const v = get(d);
      if (v === undefined) return false;
      if (!isContainer(v)) return scalars.has(toValue(v) as JsonValue);
      if (composites.length === 0) return false;
      const value = toValue(v);
      return composites.some((e) => jsonEqual(value, e));
    };
  }
  if ('prefix' in c) {
    const prefix = c.prefix;
    return (d) => {
      const v = get(d);
      return v !== undefined && v.type === 'string' && stringValue(v).startsWith(prefix);
    };
  }
  if ('matches' in c) {
    const re = new RegExp(c.matches);
    return (d) => {
      const v = get(d);
      return v !== undefined && v.type === 'string' && re.test(stringValue(v));
    };
  }
  if ('exists' in c) {
    const want = c.exists;
    return (d) => (get(d) !== undefined) === want;
  }
  throw new Error(`not a condition: ${JSON.stringify(c)}`);
}
