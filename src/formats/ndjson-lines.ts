/** The lines of an NDJSON buffer as text: split at each LF, a final line without one included, blank lines (and a CR before the LF) dropped. */
export function* ndjsonLines(buf: Buffer): Generator<string> {
  let start = 0;
  while (start < buf.length) {
    let end = buf.indexOf(0x0a, start);
    if (end === -1) end = buf.length;
    let last = end;
    if (last > start && buf[last - 1] === 0x0d) last--;
    if (last > start && !isBlank(buf, start, last)) yield buf.toString('utf8', start, last);
    start = end + 1;
  }
}

function isBlank(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = buf[i];
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return false;
  }
  return true;
}

/** The NDJSON lines of a chunk (first decision at `pos`) whose positions are in [first, last]. */
export function linesInRange(payload: Buffer, pos: number, first: number, last: number): Buffer {
  let start = 0;
  let position = pos;
  while (position < first) {
    start = payload.indexOf(0x0a, start) + 1;
    position++;
  }
  let end = start;
  while (position <= last && end < payload.length) {
    end = payload.indexOf(0x0a, end) + 1;
    position++;
  }
  return payload.subarray(start, end);
}
