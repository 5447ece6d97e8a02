/**
 * How deep JSON text nests, found without parsing it: run on untrusted request bodies before JSON.parse
 * builds anything, so that a body nested a million levels deep costs one pass over its characters and
 * nothing later (validation, serialization, a key template) ever sees it.
 *
 * It never recurses and ends on any input. On invalid JSON the answer is approximate, which is fine: the
 * caller still parses what passes, and the parser refuses invalid text.
 */
import { MAX_JSON_DEPTH } from './limits.js';

/** Whether `text` opens more than `maxDepth` containers inside one another (`{}` is depth 1). */
export function exceedsDepth(text: string, maxDepth: number = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      i = closingQuote(text, i);
      if (i < 0) return false;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > maxDepth) return true;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    }
  }
  return false;
}

/** The index of the quote that closes the string opening at `open`, or -1 when it never closes. */
function closingQuote(text: string, open: number): number {
  let i = open;
  for (;;) {
    i = text.indexOf('"', i + 1);
    if (i < 0) return -1;
    let backslashes = 0;
    for (let j = i - 1; j > open && text.charCodeAt(j) === 0x5c; j--) backslashes++;
    if (backslashes % 2 === 0) return i;
  }
}
