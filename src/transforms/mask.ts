/**
 * Applies mask entries to a decision the way OPA's decision logger does (plugins/logs/mask.go,
 * maskRule.Mask / removeValue / mkdirp), without mutating the decision it is given: containers are
 * copied only along the paths that change, each at most once per decision.
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
 * Deviation: segments are RFC 6901 (`~1` is `/`, `~0` is `~`); OPA instead URL-path-escapes segments,
 * which only differs for keys with characters such as spaces or `/`. The recorded pointer is the path
 * as written in the configuration.
 */
import { arrayIndex, parsePointer } from './json-path.js';
import { compileCondition, type Predicate } from './conditions.js';
import { MASK_ROOTS, type JsonValue, type MaskEntry } from './rules-schema.js';

export interface CompiledMask {
  op: 'remove' | 'upsert';
  /** The pointer recorded in `erased` / `masked`. */
  pointer: string;
  /** input | result | nd_builtin_cache */
  root: string;
  /** The segments below the root. */
  rest: string[];
  /** `rest` without its last segment. */
  parentPath: string[];
  value: JsonValue | undefined;
  when: Predicate | undefined;
}

type Container = Record<string, unknown> | unknown[];

const hasOwn = Object.prototype.hasOwnProperty;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Sets an own property, also for a key named __proto__ (which plain assignment would treat as the prototype). */
function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
  else obj[key] = value;
}

export function compileMask(entry: MaskEntry): CompiledMask {
  const rule = typeof entry === 'string' ? { op: 'remove' as const, path: entry, value: undefined, when: undefined } : entry;
  const segments = parsePointer(rule.path);
  // rulesSchema has rejected malformed paths; this guards direct callers
  if (typeof segments === 'string' || !(MASK_ROOTS as readonly string[]).includes(segments[0] ?? '')) {
    throw new Error(`a mask path must start with /input, /result or /nd_builtin_cache, not "${rule.path}"`);
  }
  return {
    op: rule.op,
    pointer: rule.path,
    root: segments[0]!,
    rest: segments.slice(1),
    parentPath: segments.slice(1, -1),
    value: rule.value,
    when: rule.when ? compileCondition(rule.when) : undefined,
  };
}

/**
 * A shallow copy of an object or array, optionally without one key. Object.assign and a keyed loop are
 * several times faster than spread on JSON.parse'd objects, and copying without the key avoids `delete`
 * (which moves an object to slow dictionary mode); an own `__proto__` key takes the spread path, since
 * assignment would set the prototype instead.
 */
function shallowCopy(node: Container, without?: string): Container {
  if (Array.isArray(node)) return node.slice();
  if (hasOwn.call(node, '__proto__')) {
    const copy = { ...node };
    if (without !== undefined) delete copy[without];
    return copy;
  }
  if (without === undefined) return Object.assign({}, node);
  const copy: Record<string, unknown> = {};
  for (const key in node) if (key !== without && hasOwn.call(node, key)) copy[key] = node[key];
  return copy;
}

/** A copy-on-write view of one decision. */
class Draft {
  /** Containers this draft made (copies or new objects): changed in place. Few per decision: an array. */
  private readonly owned: object[] = [];
  decision: Record<string, unknown>;

  constructor(original: Record<string, unknown>) {
    this.decision = original;
  }

  private own<T extends Container>(node: T, without?: string): T {
    if (this.owned.includes(node)) {
      if (without !== undefined) delete (node as Record<string, unknown>)[without];
      return node;
    }
    const copy = shallowCopy(node, without) as T;
    this.owned.push(copy);
    return copy;
  }

  private top(): Record<string, unknown> {
    this.decision = this.own(this.decision);
    return this.decision;
  }

  /**
   * The container at `root`/`segments`, made ours (copied) along the way; the path must exist. With
   * `without`, that key is left out of (or deleted from) the returned container.
   */
  private ownPath(root: string, segments: readonly string[], without?: string): Container {
    const top = this.top();
    let node = this.own(top[root] as Container, segments.length === 0 ? without : undefined);
    setOwn(top, root, node);
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i]!;
      const last = i === segments.length - 1;
      if (Array.isArray(node)) {
        const index = arrayIndex(segment);
        const child = this.own(node[index] as Container, last ? without : undefined);
        node[index] = child;
        node = child;
      } else {
        const child = this.own(node[segment] as Container, last ? without : undefined);
        setOwn(node, segment, child);
        node = child;
      }
    }
    return node;
  }

  private record(field: 'erased' | 'masked', pointer: string): void {
    const top = this.top();
    const existing = hasOwn.call(top, field) ? top[field] : undefined;
    if (Array.isArray(existing)) {
      const list = this.own(existing);
      list.push(pointer);
      top[field] = list;
    } else {
      const list = [pointer];
      this.owned.push(list);
      top[field] = list;
    }
  }

  /** The root value a mask works on, or undefined when the decision has none (OPA: a nil Input/Result). */
  private rootValue(root: string): unknown {
    const v = hasOwn.call(this.decision, root) ? this.decision[root] : undefined;
    return v === null ? undefined : v;
  }

  remove(m: CompiledMask): void {
    const rootValue = this.rootValue(m.root);
    if (rootValue === undefined) return;
    const { rest } = m;
    if (rest.length === 0) {
      this.decision = this.own(this.decision, m.root);
      this.record('erased', m.pointer);
      return;
    }
    // walk (read only) to the parent of the target; every step must exist
    let node: unknown = rootValue;
    for (let i = 0; i < rest.length - 1; i++) {
      const segment = rest[i]!;
      if (Array.isArray(node)) {
        const index = arrayIndex(segment);
        if (index < 0 || index >= node.length) return;
        node = node[index];
      } else if (isObject(node)) {
        if (!hasOwn.call(node, segment)) return;
        node = node[segment];
      } else {
        return;
      }
    }
    const target = rest[rest.length - 1]!;
    if (isObject(node)) {
      if (!hasOwn.call(node, target)) return;
      this.ownPath(m.root, m.parentPath, target);
    } else if (Array.isArray(node)) {
      const index = arrayIndex(target);
      // OPA splices an element out through the array's own parent, so a top-level array is left alone
      if (index < 0 || index >= node.length || rest.length < 2) return;
      const parent = this.ownPath(m.root, m.parentPath) as unknown[];
      parent.splice(index, 1);
    } else {
      return;
    }
    this.record('erased', m.pointer);
  }

  upsert(m: CompiledMask): void {
    const rootValue = this.rootValue(m.root);
    if (rootValue === undefined) return;
    const { rest } = m;
    if (rest.length === 0) {
      setOwn(this.top(), m.root, m.value);
      this.record('masked', m.pointer);
      return;
    }
    if (!isObject(rootValue)) return;
    // walk (read only): existing steps must be objects or in-range array elements; from the first
    // missing key on, OPA creates objects, which always succeeds
    let node: unknown = rootValue;
    let missingFrom = -1;
    for (let i = 0; i < rest.length - 1; i++) {
      const segment = rest[i]!;
      if (isObject(node)) {
        if (!hasOwn.call(node, segment)) {
          missingFrom = i;
          break;
        }
        node = node[segment];
      } else if (Array.isArray(node)) {
        const index = arrayIndex(segment);
        if (index < 0 || index >= node.length) return;
        node = node[index];
      } else {
        return;
      }
    }
    const target = rest[rest.length - 1]!;
    if (missingFrom >= 0) {
      let parent = this.ownPath(m.root, rest.slice(0, missingFrom)) as Record<string, unknown>;
      for (let i = missingFrom; i < rest.length - 1; i++) {
        const created: Record<string, unknown> = {};
        this.owned.push(created);
        setOwn(parent, rest[i]!, created);
        parent = created;
      }
      setOwn(parent, target, m.value);
    } else if (isObject(node)) {
      setOwn(this.ownPath(m.root, m.parentPath) as Record<string, unknown>, target, m.value);
    } else if (Array.isArray(node)) {
      const index = arrayIndex(target);
      if (index < 0 || index >= node.length) return;
      (this.ownPath(m.root, m.parentPath) as unknown[])[index] = m.value;
    } else {
      return;
    }
    this.record('masked', m.pointer);
  }
}

/**
 * Applies `masks` in order. Each entry's `when` is evaluated against `decision` as given (before any
 * masking), as OPA evaluates its mask rule once on the unmasked event. Returns `decision` itself when
 * nothing changed, else a copy that shares every untouched part with it.
 */
export function applyMasks(masks: readonly CompiledMask[], decision: Record<string, unknown>): Record<string, unknown> {
  let draft: Draft | undefined;
  for (const m of masks) {
    if (m.when && !m.when(decision)) continue;
    draft ??= new Draft(decision);
    if (m.op === 'remove') draft.remove(m);
    else draft.upsert(m);
  }
  return draft ? draft.decision : decision;
}
