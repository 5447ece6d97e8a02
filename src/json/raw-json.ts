/**
 * JSON answers that embed stored JSON text as it is: a decision or an event's data goes out byte for byte
 * (number text, key order) and is never parsed and re-serialized, so no depth of it can overflow a recursive
 * serializer.
 *
 * JSON.rawJSON would do this natively, but only for primitives and only from Node 21; this serializer is the
 * small iterative equivalent for values that contain RawJson anywhere.
 */

/** JSON text to be written as it is (the caller vouches that it is valid JSON). */
export class RawJson {
  constructor(readonly text: string) {}
}

interface Frame {
  close: string;
  entries: Array<[key: string | undefined, value: unknown]>;
  next: number;
  wrote: boolean;
}

/**
 * JSON.stringify of `value` (compact; `toJSON` honoured, undefined members skipped and undefined array
 * elements written as null, as JSON.stringify does), with every RawJson written as its text. Iterative: the
 * structure around the raw parts is the answer's own (a few levels), but nothing here depends on that.
 */
export function stringifyWithRaw(value: unknown): string {
  const parts: string[] = [];
  const stack: Frame[] = [];
  const write = (v: unknown, inArray: boolean): void => {
    if (
      v !== null &&
      typeof v === 'object' &&
      typeof (v as { toJSON?: unknown }).toJSON === 'function' &&
      !(v instanceof RawJson)
    ) {
      v = (v as { toJSON: () => unknown }).toJSON();
    }
    if (v instanceof RawJson) {
      parts.push(v.text);
    } else if (Array.isArray(v)) {
      parts.push('[');
      stack.push({ close: ']', entries: v.map((item) => [undefined, item]), next: 0, wrote: false });
    } else if (v !== null && typeof v === 'object') {
      parts.push('{');
      stack.push({ close: '}', entries: Object.entries(v), next: 0, wrote: false });
    } else {
      const text = typeof v === 'function' || typeof v === 'symbol' ? undefined : JSON.stringify(v);
      parts.push(text === undefined ? (inArray ? 'null' : '') : text);
    }
  };
  write(value, false);
  for (let top = stack[stack.length - 1]; top !== undefined; top = stack[stack.length - 1]) {
    if (top.next === top.entries.length) {
      parts.push(top.close);
      stack.pop();
      continue;
    }
    const [key, v] = top.entries[top.next++]!;
    if (key !== undefined) {
      // object members whose value JSON cannot write are left out, as JSON.stringify does
      if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
      parts.push(`${top.wrote ? ',' : ''}${JSON.stringify(key)}:`);
    } else if (top.wrote) {
      parts.push(',');
    }
    top.wrote = true;
    write(v, key === undefined);
  }
  return parts.join('');
}
