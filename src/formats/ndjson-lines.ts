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
