/**
 * Finds the source text of each element of a top-level JSON array.
 *
 * Decisions are stored exactly as OPA sent them: re-serializing a parsed object would reorder integer-like
 * keys and round integers beyond 2^53. The input MUST already have passed JSON.parse as an array: this
 * scanner trusts its validity and only tracks strings and nesting depth to find element boundaries.
 */
export function splitJsonArray(text: string): Array<[start: number, end: number]> {
  const spans: Array<[number, number]> = [];
  let i = text.indexOf('[') + 1;
  const n = text.length;
  let depth = 0;
  let start = -1;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      if (start < 0) start = i;
      i = endOfString(text, i);
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (start < 0) start = i;
      depth++;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      if (depth === 0) {
        // the closing bracket of the top-level array
        if (start >= 0) spans.push([start, trimEnd(text, i)]);
        break;
      }
      depth--;
    } else if (c === 0x2c /* , */ && depth === 0) {
      spans.push([start, trimEnd(text, i)]);
      start = -1;
    } else if (start < 0 && c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) {
      start = i; // a scalar element; arrays of decisions never have them, but the split stays correct
    }
  }
  return spans;
}

/** Index of the closing quote of the string that opens at `open`. */
function endOfString(text: string, open: number): number {
  let i = open;
  for (;;) {
    i = text.indexOf('"', i + 1);
    let backslashes = 0;
    for (let j = i - 1; text.charCodeAt(j) === 0x5c; j--) backslashes++;
    if (backslashes % 2 === 0) return i;
  }
}

function trimEnd(text: string, end: number): number {
  let e = end;
  while (e > 0) {
    const c = text.charCodeAt(e - 1);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    e--;
  }
  return e;
}
