/**
 * Applies mask entries to a decision the way OPA's decision logger does (plugins/logs/mask.go,
 * maskRule.Mask / removeValue / mkdirp), on the decision's source tree (src/json/source-tree.ts) and
 * without changing it: containers are rebuilt only along the paths that change, and everything else is
 * written back as its exact source text. So a masked decision differs from the one received only at the
 * masked pointers and in the `erased` / `masked` lists: number text (big integers, exponents, -0.0), key
 * order and whitespace elsewhere are as OPA sent them; rebuilt containers are written compactly.
 *
 * OPA semantics mirrored here:
 * - The first pointer segment picks the decision's `input`, `result` or `nd_builtin_cache`; when that
 *   is absent (or null) the entry does nothing and records nothing.
 * - remove `/input` (the whole value) deletes the field and records the pointer in `erased`.
 * - remove of a deeper path walks objects by key and arrays by decimal index; when every step and the
 *   target exist it deletes the key (objects) or splices the element out (arrays, later elements shift)
 *   and appends the pointer to `erased`. A missing step or target changes and records nothing. As in OPA,
 *   an element of a top-level array (`/input/0` when input is an array) is not removed.
 * - upsert `/input` replaces the whole value; a deeper upsert needs an object at the top, walks objects
 *   (creating missing intermediate objects) and in-range array elements, then sets the key, or replaces
 *   an in-range array element (no appending, no `-`), and appends the pointer to `masked`. A step through
 *   a non-container, or an index out of range, changes and records nothing.
 * - Entries apply in order, each to the result of the previous ones; `erased` and `masked` are appended
 *   to whatever the decision already carries.
 * - Duplicate keys: a step or a target is the last member of its key (the one JSON.parse and OPA's Go
 *   decoder keep); an edit drops the earlier duplicates along its path, so no removed value survives as a
 *   shadowed copy.
 * Deviation: segments are RFC 6901 (`~1` is `/`, `~0` is `~`); OPA instead URL-path-escapes segments,
 * which only differs for keys with characters such as spaces or `/`. The recorded pointer is the path
 * as written in the configuration.
 */
import {
  arrayNode,
  fromValue,
  memberOf,
  singleMember,
  withAppended,
  withItem,
  withMember,
  withoutItem,
  withoutMember,
  type JsonArray,
  type JsonNode,
  type JsonObject,
} from '../json/source-tree.js';
import { arrayIndex, parsePointer } from './json-path.js';
import { compileCondition, type Predicate } from './conditions.js';
import { MASK_ROOTS, type MaskEntry } from './rules-schema.js';

export interface CompiledMask {
  op: 'remove' | 'upsert';
  /** The pointer recorded in `erased` / `masked`. */
  pointer: string;
  /** The pointer as a JSON string node, appended to `erased` / `masked`. */
  pointerNode: JsonNode;
  /** input | result | nd_builtin_cache */
  root: string;
  /** The segments below the root. */
  rest: string[];
  /** The upserted value as a tree (parsed once; trees are never changed, so every decision shares it). */
  value: JsonNode | undefined;
  when: Predicate | undefined;
}

export function compileMask(entry: MaskEntry): CompiledMask {
  const rule =
    typeof entry === 'string' ? { op: 'remove' as const, path: entry, value: undefined, when: undefined } : entry;
  const segments = parsePointer(rule.path);
  // rulesSchema has rejected malformed paths; this guards direct callers
  if (typeof segments === 'string' || !(MASK_ROOTS as readonly string[]).includes(segments[0] ?? '')) {
    throw new Error(`a mask path must start with /input, /result or /nd_builtin_cache, not "${rule.path}"`);
  }
  return {
    op: rule.op,
    pointer: rule.path,
    pointerNode: fromValue(rule.path),
    root: segments[0]!,
    rest: segments.slice(1),
    value: rule.value === undefined ? undefined : fromValue(rule.value),
    when: rule.when ? compileCondition(rule.when) : undefined,
  };
}

/**
 * Walks `segments` from `from` (read only), pushing each container passed through onto `chain`; stops
 * early at a missing key when `stopAtMissing` (returning its index), else fails. Returns the index where
 * the walk stopped (segments.length when it got through), or -1 when a step is impossible: an index out of
 * range, or a step through a scalar.
 */
function walk(from: JsonNode, segments: readonly string[], chain: JsonNode[], stopAtMissing: boolean): number {
  let node = from;
  chain.push(node);
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    let child: JsonNode | undefined;
    if (node.type === 'object') {
      child = memberOf(node, segment);
      if (child === undefined) return stopAtMissing ? i : -1;
    } else if (node.type === 'array') {
      const index = arrayIndex(segment);
      if (index < 0 || index >= node.items.length) return -1;
      child = node.items[index]!;
    } else {
      return -1;
    }
    node = child;
    chain.push(node);
  }
  return segments.length;
}

/**
 * Puts `replacement` in place of the last node of `chain` (the nodes from a root value down, each the
 * child of the one before at `segments[i]`) and rebuilds every container above it; returns the new root value.
 */
function rebuild(chain: readonly JsonNode[], segments: readonly string[], replacement: JsonNode): JsonNode {
  let node = replacement;
  for (let i = chain.length - 2; i >= 0; i--) {
    const parent = chain[i]!;
    node =
      parent.type === 'array'
        ? withItem(parent, arrayIndex(segments[i]!), node)
        : withMember(parent as JsonObject, segments[i]!, node);
  }
  return node;
}

/** The decision with `pointer` appended to its `erased` or `masked` list (made when absent or not a list). */
function record(decision: JsonObject, field: 'erased' | 'masked', pointer: JsonNode): JsonObject {
  const existing = memberOf(decision, field);
  const list = existing?.type === 'array' ? withAppended(existing, pointer) : arrayNode([pointer]);
  return withMember(decision, field, list);
}

/** The root value a mask works on, or undefined when the decision has none (OPA: a nil Input/Result). */
function rootValue(decision: JsonObject, root: string): JsonNode | undefined {
  const v = memberOf(decision, root);
  return v === undefined || v.type === 'null' ? undefined : v;
}

function remove(decision: JsonObject, m: CompiledMask): JsonObject {
  const value = rootValue(decision, m.root);
  if (value === undefined) return decision;
  const { rest } = m;
  if (rest.length === 0) return record(withoutMember(decision, m.root), 'erased', m.pointerNode);
  // every step to the target's parent must exist
  const chain: JsonNode[] = [];
  if (walk(value, rest.slice(0, -1), chain, false) < 0) return decision;
  const parent = chain[chain.length - 1]!;
  const target = rest[rest.length - 1]!;
  let changed: JsonNode;
  if (parent.type === 'object') {
    if (memberOf(parent, target) === undefined) return decision;
    changed = withoutMember(parent, target);
  } else if (parent.type === 'array') {
    const index = arrayIndex(target);
    // OPA splices an element out through the array's own parent, so a top-level array is left alone
    if (index < 0 || index >= parent.items.length || rest.length < 2) return decision;
    changed = withoutItem(parent, index);
  } else {
    return decision;
  }
  return record(withMember(decision, m.root, rebuild(chain, rest, changed)), 'erased', m.pointerNode);
}

function upsert(decision: JsonObject, m: CompiledMask): JsonObject {
  const value = rootValue(decision, m.root);
  if (value === undefined) return decision;
  const { rest } = m;
  const newValue = m.value!;
  if (rest.length === 0) return record(withMember(decision, m.root, newValue), 'masked', m.pointerNode);
  if (value.type !== 'object') return decision;
  // existing steps must be objects or in-range array elements; from the first missing key on, OPA creates
  // objects, which always succeeds
  const chain: JsonNode[] = [];
  const parents = rest.slice(0, -1);
  const stopped = walk(value, parents, chain, true);
  if (stopped < 0) return decision;
  const target = rest[rest.length - 1]!;
  const parent = chain[chain.length - 1]!;
  let changed: JsonNode;
  if (stopped < parents.length) {
    // parent is the object missing rest[stopped]: it gets the chain of new objects down to the target
    let created: JsonNode = singleMember(target, newValue);
    for (let i = parents.length - 1; i > stopped; i--) created = singleMember(parents[i]!, created);
    changed = withMember(parent as JsonObject, parents[stopped]!, created);
  } else if (parent.type === 'object') {
    changed = withMember(parent, target, newValue);
  } else if (parent.type === 'array') {
    const index = arrayIndex(target);
    if (index < 0 || index >= parent.items.length) return decision;
    changed = withItem(parent as JsonArray, index, newValue);
  } else {
    return decision;
  }
  return record(withMember(decision, m.root, rebuild(chain, rest, changed)), 'masked', m.pointerNode);
}

/**
 * Applies `masks` in order. Each entry's `when` is evaluated against `decision` as given (before any
 * masking), as OPA evaluates its mask rule once on the unmasked event. Returns `decision` itself when
 * nothing changed, else a new tree that shares every untouched node with it.
 */
export function applyMasks(masks: readonly CompiledMask[], decision: JsonNode): JsonNode {
  if (decision.type !== 'object') return decision;
  let out: JsonObject = decision;
  for (const m of masks) {
    if (m.when && !m.when(decision)) continue;
    out = m.op === 'remove' ? remove(out, m) : upsert(out, m);
  }
  return out;
}
