/**
 * Finds the byte span of each element of a top-level JSON array, and refuses what is too deep or too many,
 * before anything parses the body into objects.
 *
 * It runs first on every OPA upload, on untrusted bytes: it never recurses, never reads past the buffer and
 * ends on any input (each step moves forward). It checks only what it needs to cut the array (brackets match,
 * strings end); full validation is JSON.parse's job afterwards, so on valid JSON the spans are exact and on
 * invalid JSON the caller throws the spans away.
 */

import { BACKSLASH, CLOSE_ARRAY, CLOSE_OBJECT, COMMA, isSpace, OPEN_ARRAY, OPEN_OBJECT, QUOTE } from './chars.js';

export type ArrayScan =
  | { kind: 'array'; /** start0, end0, start1, end1, ...: byte offsets, end exclusive, whitespace trimmed. */ spans: number[] }
  | { kind: 'not_an_array' }
  | { kind: 'invalid'; at: number }
  | { kind: 'too_deep'; at: number }
  | { kind: 'too_many' };

export interface ArrayScanLimits {
  /** Nesting levels an element may have (an element `{}` has 1). */
  maxDepth: number;
  maxElements: number;
}


export function scanJsonArray(buf: Uint8Array, limits: ArrayScanLimits): ArrayScan {
  const n = buf.length;
  let i = 0;
  while (i < n && isSpace(buf[i]!)) i++;
  if (i === n || buf[i] !== OPEN_ARRAY) return { kind: 'not_an_array' };
  // depth 1 is the top-level array; an element's own levels are depth - 1
  const maxDepth = limits.maxDepth + 1;
  // which bracket opened each level, so that `[}` is caught here and not miscounted
  const opened = new Uint8Array(maxDepth + 1);
  opened[1] = OPEN_ARRAY;
  let depth = 1;
  const spans: number[] = [];
  let start = -1;
  let lastEnd = -1;
  for (i++; i < n; i++) {
    const c = buf[i]!;
    if (c === QUOTE) {
      if (start < 0) start = i;
      i = endOfString(buf, i);
      if (i < 0) return { kind: 'invalid', at: n };
      lastEnd = i + 1;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (start < 0) start = i;
      if (++depth > maxDepth) return { kind: 'too_deep', at: i };
      opened[depth] = c;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      if (opened[depth] !== (c === CLOSE_OBJECT ? OPEN_OBJECT : OPEN_ARRAY)) return { kind: 'invalid', at: i };
      if (depth === 1) {
        if (start >= 0) spans.push(start, lastEnd);
        else if (spans.length > 0) return { kind: 'invalid', at: i }; // `[1,]`
        if (spans.length / 2 > limits.maxElements) return { kind: 'too_many' };
        for (i++; i < n; i++) if (!isSpace(buf[i]!)) return { kind: 'invalid', at: i };
        return { kind: 'array', spans };
      }
      depth--;
      lastEnd = i + 1;
    } else if (c === COMMA && depth === 1) {
      if (start < 0) return { kind: 'invalid', at: i };
      spans.push(start, lastEnd);
      if (spans.length / 2 > limits.maxElements) return { kind: 'too_many' };
      start = -1;
    } else if (!isSpace(c)) {
      // a scalar's bytes (or a colon or comma inside a container): part of the current element
      if (start < 0) start = i;
      lastEnd = i + 1;
    }
  }
  return { kind: 'invalid', at: n };
}

/** Index of the closing quote of the string opened at `open`, or -1 when it never closes. */
function endOfString(buf: Uint8Array, open: number): number {
  let i = open;
  for (;;) {
    i = buf.indexOf(QUOTE, i + 1);
    if (i < 0) return -1;
    let backslashes = 0;
    for (let j = i - 1; j > open && buf[j] === BACKSLASH; j--) backslashes++;
    if (backslashes % 2 === 0) return i;
  }
}

/**
 * The source text of each element of a JSON array that JSON.parse has already accepted: for reading arrays
 * back (`sluice send`, `sluice query` over json_array objects), where no bound applies but the input's own
 * size (a level takes two bytes, an element at least one).
 */
export function arrayElementTexts(bytes: Uint8Array): string[] {
  const scan = scanJsonArray(bytes, { maxDepth: Math.ceil(bytes.length / 2), maxElements: bytes.length });
  if (scan.kind !== 'array') throw new Error('not a JSON array');
  const decoder = new TextDecoder();
  const texts: string[] = [];
  for (let i = 0; i < scan.spans.length; i += 2) texts.push(decoder.decode(bytes.subarray(scan.spans[i], scan.spans[i + 1])));
  return texts;
}
