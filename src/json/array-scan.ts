/**
 * One validating pass over the bytes of a top-level JSON array: it finds the byte span of each element, checks
 * the whole text against JSON's grammar (RFC 8259) and, for OPA uploads, notes where the three fields Sluice
 * reads from each decision are (`timestamp`, `decision_id`, `labels.id`), without building a single object.
 *
 * It replaces JSON.parse on ingest's hot path: building a decision's objects costs several times what reading
 * its bytes once does, and Sluice stores the bytes, never the objects. It runs first on every upload, on
 * untrusted bytes: it never recurses (depth is a counter over a fixed-size stack), never reads past the buffer,
 * moves forward on every step, and refuses depth and element counts beyond its bounds as it meets them.
 * UTF-8 validity is the caller's (Node's native isUtf8); everything else JSON.parse would refuse, this refuses.
 */

import {
  BACKSLASH,
  CLOSE_ARRAY,
  CLOSE_OBJECT,
  COLON,
  COMMA,
  DOT,
  MINUS,
  OPEN_ARRAY,
  OPEN_OBJECT,
  PLUS,
  QUOTE,
} from './chars.js';

export type ArrayScan =
  | {
      kind: 'array';
      /** start0, end0, start1, end1, ...: byte offsets, end exclusive, whitespace trimmed. */
      spans: number[];
      /**
       * With `fields`: per element, the spans (quotes included) of the string values of `timestamp`,
       * `decision_id` and `labels.id`, as six offsets, -1 where the element has no such string. As JSON.parse
       * does, the last of duplicate keys wins.
       */
      fields?: number[];
      /** Whether the text holds any byte below 0x20 (then tab, LF or CR, as whitespace: nothing else is valid). */
      controlBytes: boolean;
    }
  | { kind: 'not_an_array' }
  | { kind: 'invalid'; at: number; message: string }
  | { kind: 'too_deep'; at: number }
  | { kind: 'too_many' };

export interface ArrayScanLimits {
  /** Nesting levels an element may have (an element `{}` has 1). */
  maxDepth: number;
  maxElements: number;
  /** Also find each element's decision fields (see ArrayScan.fields). */
  fields?: boolean;
}

/** Offsets of one element's field spans in ArrayScan.fields. */
export const TIMESTAMP = 0;
export const DECISION_ID = 2;
export const LABELS_ID = 4;
const FIELD_STRIDE = 6;

// what the scan expects next
const VALUE = 0;
const VALUE_OR_CLOSE = 1; // just after `[`
const KEY = 2; // after `,` in an object
const KEY_OR_CLOSE = 3; // just after `{`
const COLON_NEXT = 4;
const COMMA_OR_CLOSE = 5;

// the field the value about to be read belongs to
const NO_FIELD = -1;
const LABELS = 6;

/** Bytes that may follow a backslash in a JSON string, besides `u`. */
const SIMPLE_ESCAPES = new Uint8Array(256);
for (const c of '"\\/bfnrt') SIMPLE_ESCAPES[c.charCodeAt(0)] = 1;
const HEX = new Uint8Array(256);
for (const c of '0123456789abcdefABCDEF') HEX[c.charCodeAt(0)] = 1;

/** The keys whose values the scan notes, at one level: each name (quotes included) and the field it is. */
interface FieldKeys {
  names: Array<{ quoted: Buffer; name: string; field: number }>;
  shortest: number;
}

function fieldKeys(entries: Array<[name: string, field: number]>): FieldKeys {
  const names = entries.map(([name, field]) => ({ quoted: Buffer.from(JSON.stringify(name)), name, field }));
  return { names, shortest: Math.min(...names.map((n) => n.quoted.length)) };
}

/** Keys of a decision (the element object) and of its `labels` object. */
const ELEMENT_KEYS = fieldKeys([
  ['timestamp', TIMESTAMP],
  ['decision_id', DECISION_ID],
  ['labels', LABELS],
]);
const LABELS_KEYS = fieldKeys([['id', LABELS_ID]]);

/**
 * Why the text is not JSON, as numbers and a constant: the message is made only once the scan has stopped
 * (invalidMessage). TurboFan takes number-to-string for pure and moved the `${i}` of the loop's error
 * messages above the branches that throw them: the scan then made a string of its position at every token of
 * every valid body (~3 KiB a decision, which the decode threads' scavenges copied and promoted).
 */
class Invalid extends Error {
  constructor(
    readonly at: number,
    readonly problem: Problem,
    /** The byte the problem is about (unmatched, unexpected, control), or where a string opened (unterminated). */
    readonly detail = 0,
  ) {
    super();
  }
}

type Problem =
  | 'key'
  | 'colon'
  | 'comma'
  | 'ends'
  | 'unmatched'
  | 'after'
  | 'unterminated'
  | 'escape'
  | 'control'
  | 'unexpected'
  | 'decimal'
  | 'exponent';

function invalidMessage({ at, problem, detail }: Invalid): string {
  switch (problem) {
    case 'key':
      return `expected a string key at byte ${at}`;
    case 'colon':
      return `expected ':' at byte ${at}`;
    case 'comma':
      return `expected ',' or a closing bracket at byte ${at}`;
    case 'ends':
      return 'the text ends before the array does';
    case 'unmatched':
      return `unmatched '${String.fromCharCode(detail)}' at byte ${at}`;
    case 'after':
      return `unexpected text after the array at byte ${at}`;
    case 'unterminated':
      return `a string opened at byte ${detail} never ends`;
    case 'escape':
      return `a bad escape at byte ${at}`;
    case 'control':
      return `a control character (0x${detail.toString(16).padStart(2, '0')}) in a string at byte ${at}`;
    case 'unexpected':
      return `unexpected '${printable(detail)}' at byte ${at}`;
    case 'decimal':
      return `a digit must follow the decimal point at byte ${at}`;
    case 'exponent':
      return `a digit must follow the exponent at byte ${at}`;
  }
}

export function scanJsonArray(buf: Uint8Array, limits: ArrayScanLimits): ArrayScan {
  try {
    return scan(buf, limits);
  } catch (err) {
    if (err instanceof Invalid) return { kind: 'invalid', at: err.at, message: invalidMessage(err) };
    throw err;
  }
}

function scan(buf: Uint8Array, limits: ArrayScanLimits): ArrayScan {
  const n = buf.length;
  let i = skipSpace(buf, 0);
  if (i === n || buf[i] !== OPEN_ARRAY) return { kind: 'not_an_array' };
  // depth 1 is the top-level array; an element's own levels are depth - 1
  const maxDepth = limits.maxDepth + 1;
  // which bracket opened each level: a closing bracket must match it
  const opened = new Uint8Array(maxDepth + 1);
  opened[1] = OPEN_ARRAY;
  let depth = 1;
  let state = VALUE_OR_CLOSE;
  const spans: number[] = [];
  const fields: number[] | undefined = limits.fields ? [] : undefined;
  const withFields = fields !== undefined;
  // compact JSON (what OPA sends) has no byte below 0x20: its strings are cut with native searches
  const controlBytes = hasControlBytes(buf);
  const strings = controlBytes ? undefined : new StringEnds(buf);
  let start = -1;
  let field = NO_FIELD;
  /** The depth of the `labels` object being read, or 0. */
  let labelsDepth = 0;
  for (i++; i < n; i++) {
    const c = buf[i]!;
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) continue;
    switch (state) {
      case VALUE_OR_CLOSE:
        if (c === CLOSE_ARRAY) {
          if (depth === 1) return finish(buf, i, spans, fields, controlBytes);
          depth--;
          state = COMMA_OR_CLOSE;
          break;
        }
      // falls through: a value
      case VALUE: {
        if (depth === 1) {
          start = i;
          if (withFields) fields.push(-1, -1, -1, -1, -1, -1);
        }
        const valueField = field;
        field = NO_FIELD;
        if (c === QUOTE) {
          const end = strings ? strings.endOf(i) : endOfStringByBytes(buf, i);
          if (valueField === LABELS) setField(fields!, LABELS_ID, -1, -1);
          else if (withFields && valueField >= 0) setField(fields, valueField, i, end + 1);
          i = end;
          state = COMMA_OR_CLOSE;
        } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
          if (++depth > maxDepth) return { kind: 'too_deep', at: i };
          opened[depth] = c;
          state = c === OPEN_OBJECT ? KEY_OR_CLOSE : VALUE_OR_CLOSE;
          if (valueField === LABELS) {
            setField(fields!, LABELS_ID, -1, -1);
            if (c === OPEN_OBJECT) labelsDepth = depth;
          } else if (withFields && valueField >= 0) {
            setField(fields, valueField, -1, -1);
          }
        } else {
          i = endOfScalar(buf, i, c);
          if (withFields && valueField >= 0) setField(fields, valueField === LABELS ? LABELS_ID : valueField, -1, -1);
          state = COMMA_OR_CLOSE;
        }
        break;
      }
      case KEY_OR_CLOSE:
        if (c === CLOSE_OBJECT) {
          close(depth, c, i);
          if (depth === labelsDepth) labelsDepth = 0;
          depth--;
          state = COMMA_OR_CLOSE;
          break;
        }
      // falls through: a key
      case KEY: {
        if (c !== QUOTE) throw new Invalid(i, 'key');
        const end = strings ? strings.endOf(i) : endOfStringByBytes(buf, i);
        if (withFields)
          field =
            depth === 2
              ? fieldOf(buf, i, end + 1, ELEMENT_KEYS)
              : depth === labelsDepth
                ? fieldOf(buf, i, end + 1, LABELS_KEYS)
                : NO_FIELD;
        i = end;
        state = COLON_NEXT;
        break;
      }
      case COLON_NEXT:
        if (c !== COLON) throw new Invalid(i, 'colon');
        state = VALUE;
        break;
      case COMMA_OR_CLOSE:
        if (c === COMMA) {
          if (depth === 1) {
            spans.push(start, lastNonSpace(buf, i) + 1);
            if (spans.length / 2 > limits.maxElements) return { kind: 'too_many' };
          }
          state = opened[depth] === OPEN_OBJECT ? KEY : VALUE;
        } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
          close(depth, c, i);
          if (depth === 1) {
            spans.push(start, lastNonSpace(buf, i) + 1);
            if (spans.length / 2 > limits.maxElements) return { kind: 'too_many' };
            return finish(buf, i, spans, fields, controlBytes);
          }
          if (depth === labelsDepth) labelsDepth = 0;
          depth--;
        } else {
          throw new Invalid(i, 'comma');
        }
        break;
    }
  }
  throw new Invalid(n, 'ends');

  function close(level: number, c: number, at: number): void {
    if (opened[level] !== (c === CLOSE_OBJECT ? OPEN_OBJECT : OPEN_ARRAY)) throw new Invalid(at, 'unmatched', c);
  }
}

function finish(
  buf: Uint8Array,
  close: number,
  spans: number[],
  fields: number[] | undefined,
  controlBytes: boolean,
): ArrayScan {
  const after = skipSpace(buf, close + 1);
  if (after < buf.length) throw new Invalid(after, 'after');
  return fields ? { kind: 'array', spans, fields, controlBytes } : { kind: 'array', spans, controlBytes };
}

function setField(fields: number[], field: number, from: number, to: number): void {
  const at = fields.length - FIELD_STRIDE + field;
  fields[at] = from;
  fields[at + 1] = to;
}

/** Which of `keys` the key at buf[from, to) (quotes included) names, as JSON.parse reads it, or NO_FIELD. */
function fieldOf(buf: Uint8Array, from: number, to: number, keys: FieldKeys): number {
  // `"time\u0073tamp"` is `timestamp` to JSON.parse. An escape makes a key longer than what it decodes to, so
  // only a key longer than the shortest name can be one with escapes; it is decoded once, not once per name.
  if (to - from > keys.shortest && hasBackslash(buf, from, to)) {
    const key = JSON.parse(
      Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('utf8', from, to),
    ) as string;
    for (const n of keys.names) if (n.name === key) return n.field;
    return NO_FIELD;
  }
  // without escapes a key is a name only when it is written exactly as it
  for (const n of keys.names) if (isPlainKey(buf, from, to, n.quoted)) return n.field;
  return NO_FIELD;
}

/** Whether the key at buf[from, to) (quotes included) is `quoted` byte for byte. */
function isPlainKey(buf: Uint8Array, from: number, to: number, quoted: Buffer): boolean {
  const length = to - from;
  if (length !== quoted.length) return false;
  for (let k = 1; k < length - 1; k++) if (buf[from + k] !== quoted[k]) return false;
  return true;
}

function hasBackslash(buf: Uint8Array, from: number, to: number): boolean {
  for (let k = from; k < to; k++) if (buf[k] === BACKSLASH) return true;
  return false;
}

/** The value of the JSON string at buf[from, to) (quotes included), escapes decoded as JSON.parse does. */
export function jsonString(buf: Buffer, from: number, to: number): string {
  return hasBackslash(buf, from, to)
    ? (JSON.parse(buf.toString('utf8', from, to)) as string)
    : buf.toString('utf8', from + 1, to - 1);
}

/**
 * Whether the text holds any byte below 0x20. None may be inside a string; outside, only tab, LF and CR may
 * (as whitespace). OPA sends compact JSON with none: then a string ends at the next quote that no backslash
 * escapes, found with native searches (StringEnds); otherwise every string byte is checked (endOfStringByBytes).
 */
function hasControlBytes(buf: Uint8Array): boolean {
  for (let c = 0; c < 0x20; c++) if (buf.indexOf(c) >= 0) return true;
  return false;
}

/** String ends in a text without control bytes: native searches for quotes and backslashes, escapes checked. */
class StringEnds {
  /** Position of the next backslash at or after where the last search started (-1: none left). */
  private backslash = -2;

  constructor(private readonly buf: Uint8Array) {}

  endOf(open: number): number {
    const { buf } = this;
    let from = open + 1;
    let quote = -1;
    for (;;) {
      // searched again only once an escape has passed it (`\"`): searching from every escape would cost the
      // distance to the quote per escape, quadratic for a long string of escapes (`"\n\n...\n"`)
      if (quote < from) {
        quote = buf.indexOf(QUOTE, from);
        if (quote < 0) throw new Invalid(buf.length, 'unterminated', open);
      }
      if (this.backslash !== -1 && this.backslash < from) this.backslash = buf.indexOf(BACKSLASH, from);
      if (this.backslash < 0 || this.backslash > quote) return quote;
      // an escape before the quote: check it, and go on after it (it may be the quote's own `\"`)
      from = this.backslash + escapeLength(buf, this.backslash);
    }
  }
}

/** Bytes the escape at `at` (a backslash) takes; throws when it is not one JSON has. */
function escapeLength(buf: Uint8Array, at: number): number {
  const e = buf[at + 1] ?? 0;
  if (SIMPLE_ESCAPES[e]) return 2;
  if (e === 0x75 && HEX[buf[at + 2] ?? 0] && HEX[buf[at + 3] ?? 0] && HEX[buf[at + 4] ?? 0] && HEX[buf[at + 5] ?? 0])
    return 6; // \uXXXX
  throw new Invalid(at, 'escape');
}

/** Index of the closing quote of the string opened at `open`; throws on a control character or a bad escape. */
function endOfStringByBytes(buf: Uint8Array, open: number): number {
  const n = buf.length;
  for (let i = open + 1; i < n; i++) {
    const c = buf[i]!;
    if (c === QUOTE) return i;
    if (c < 0x20) throw new Invalid(i, 'control', c);
    if (c === BACKSLASH) i += escapeLength(buf, i) - 1;
  }
  throw new Invalid(n, 'unterminated', open);
}

/** Index of the last byte of the number or literal starting at `at`; throws when there is none. */
function endOfScalar(buf: Uint8Array, at: number, c: number): number {
  if (c === 0x74) return literal(buf, at, 'true');
  if (c === 0x66) return literal(buf, at, 'false');
  if (c === 0x6e) return literal(buf, at, 'null');
  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  let i = at;
  if (buf[i] === MINUS) i++;
  if (buf[i] === 0x30) i++;
  else if (isDigit(buf[i])) while (isDigit(buf[i])) i++;
  else throw new Invalid(at, 'unexpected', buf[at]);
  if (buf[i] === DOT) {
    i++;
    if (!isDigit(buf[i])) throw new Invalid(i, 'decimal');
    while (isDigit(buf[i])) i++;
  }
  if (buf[i] === 0x65 || buf[i] === 0x45) {
    i++;
    if (buf[i] === PLUS || buf[i] === MINUS) i++;
    if (!isDigit(buf[i])) throw new Invalid(i, 'exponent');
    while (isDigit(buf[i])) i++;
  }
  return i - 1;
}

function literal(buf: Uint8Array, at: number, word: string): number {
  for (let k = 1; k < word.length; k++) {
    if (buf[at + k] !== word.charCodeAt(k)) throw new Invalid(at, 'unexpected', buf[at]);
  }
  return at + word.length - 1;
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x39;
}

function printable(c: number | undefined): string {
  return c !== undefined && c >= 0x20 && c < 0x7f
    ? String.fromCharCode(c)
    : `\\x${(c ?? 0).toString(16).padStart(2, '0')}`;
}

function skipSpace(buf: Uint8Array, from: number): number {
  let i = from;
  while (i < buf.length && (buf[i] === 0x20 || buf[i] === 0x0a || buf[i] === 0x0d || buf[i] === 0x09)) i++;
  return i;
}

/** The last byte before `at` that is not whitespace (the end of the element a comma or bracket follows). */
function lastNonSpace(buf: Uint8Array, at: number): number {
  let i = at - 1;
  while (buf[i] === 0x20 || buf[i] === 0x0a || buf[i] === 0x0d || buf[i] === 0x09) i--;
  return i;
}

/**
 * The source text of each element of a JSON array: for reading arrays back (`sluice send`, `sluice query`
 * over json_array objects), where no bound applies but the input's own size (a level takes two bytes, an
 * element at least one).
 */
export function arrayElementTexts(bytes: Uint8Array): string[] {
  const scan = scanJsonArray(bytes, { maxDepth: Math.ceil(bytes.length / 2), maxElements: bytes.length });
  if (scan.kind === 'invalid') throw new Error(`not valid JSON: ${scan.message}`);
  if (scan.kind !== 'array') throw new Error('not a JSON array');
  const decoder = new TextDecoder();
  const texts: string[] = [];
  for (let i = 0; i < scan.spans.length; i += 2)
    texts.push(decoder.decode(bytes.subarray(scan.spans[i], scan.spans[i + 1])));
  return texts;
}
