/**
 * Field paths for the rule language: dotted paths (`input.user.role`) and JSON pointers (RFC 6901,
 * `/input/user/role`, `~1` for `/` and `~0` for `~`), parsed once at build time into segment lists.
 *
 * Lookups walk a source tree (src/json/source-tree.ts): object members by key (so `input.constructor` is
 * missing, never a prototype member) and arrays by a decimal index, the way OPA's mask code walks
 * `[]interface{}` with strconv.Atoi.
 */
import { memberOf, type JsonNode } from '../json/source-tree.js';

/** Parses an RFC 6901 pointer into its unescaped segments; a string with the problem when it is not one. */
export function parsePointer(pointer: string): string[] | string {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) return 'a JSON pointer starts with /';
  const segments = pointer.slice(1).split('/');
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s.includes('~')) {
      if (/~(?![01])/.test(s)) return `"${pointer}": in a JSON pointer ~ must be followed by 0 (for ~) or 1 (for /)`;
      segments[i] = s.replace(/~1/g, '/').replace(/~0/g, '~');
    }
  }
  return segments;
}

export const FIELD_HINT = 'a dotted path such as input.user.role, or a JSON pointer such as /input/user/role';

/** Parses a condition's field: a JSON pointer when it starts with `/`, else a dotted path. */
export function parseField(field: string): string[] | string {
  if (field === '') return `a field needs a path: ${FIELD_HINT}`;
  if (field.startsWith('/')) return parsePointer(field);
  const segments = field.split('.');
  if (segments.some((s) => s === '')) return `"${field}" has an empty segment: write ${FIELD_HINT}`;
  return segments;
}

/**
 * An array index as OPA's strconv.Atoi reads it (decimal digits, an optional sign), or -1 when the segment
 * is not one or is negative.
 */
export function arrayIndex(segment: string): number {
  if (!/^[+-]?\d+$/.test(segment)) return -1;
  const n = Number(segment);
  return Number.isSafeInteger(n) && n >= 0 ? n : -1;
}

/**
 * The node at `segments` below `root` in a source tree, or undefined when any step is missing (an absent
 * key, an index out of range, a step through a scalar). Objects answer with their last member of a key,
 * as JSON.parse would.
 */
export function nodeAt(root: JsonNode, segments: readonly string[]): JsonNode | undefined {
  let node: JsonNode | undefined = root;
  for (let i = 0; i < segments.length && node !== undefined; i++) node = childOf(node, segments[i]!);
  return node;
}

/** One step of `nodeAt`. */
export function childOf(node: JsonNode, segment: string): JsonNode | undefined {
  if (node.type === 'object') return memberOf(node, segment);
  if (node.type === 'array') {
    const index = arrayIndex(segment);
    return index >= 0 && index < node.items.length ? node.items[index] : undefined;
  }
  return undefined;
}
