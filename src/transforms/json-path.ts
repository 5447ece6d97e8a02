/**
 * Field paths for the rule language: dotted paths (`input.user.role`) and JSON pointers (RFC 6901,
 * `/input/user/role`, `~1` for `/` and `~0` for `~`), parsed once at build time into segment lists.
 *
 * Lookups read own properties only (so `input.constructor` is missing, not a prototype member) and
 * step into arrays by a decimal index, the way OPA's mask code walks `[]interface{}` with strconv.Atoi.
 */

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

const hasOwn = Object.prototype.hasOwnProperty;

/** The value at `segments` in `root`, or undefined when any step is missing. */
export function lookup(root: unknown, segments: readonly string[]): unknown {
  let node = root;
  for (const segment of segments) {
    if (node === null || typeof node !== 'object') return undefined;
    if (Array.isArray(node)) {
      const index = arrayIndex(segment);
      if (index < 0 || index >= node.length) return undefined;
      node = node[index];
    } else {
      if (!hasOwn.call(node, segment)) return undefined;
      node = (node as Record<string, unknown>)[segment];
    }
  }
  return node;
}
