/**
 * JSON text as a tree that remembers where every value came from, so that editing one part of a document
 * and writing it back changes that part only.
 *
 * Why not JSON.parse + JSON.stringify: a JS value cannot hold what a decision or an event says exactly.
 * Numbers become doubles (`12345678901234567890123` -> `1.2345678901234568e+22`, `9007199254740993` ->
 * `9007199254740992`, `1E+400` -> `null`, `-0.0` -> `0`) and objects put integer-like keys first
 * (`{"b":1,"2":2}` -> `{"2":2,"b":1}`). Here each node keeps its span in the source text; a number is only
 * its text; object members stay an ordered array (duplicates included). `toText` writes an untouched node
 * as its exact source slice and rebuilds only containers an edit made, each run of their untouched members
 * again one slice of the source (so only the text next to a change is new). `lossless-json` (4.3) was the
 * other candidate, tried: it keeps number text, but its objects are JS objects (integer-like keys still move
 * first), it rewrites string escapes, and it parses and stringifies recursively (20,000 levels overflow).
 *
 * Parsing is iterative (an explicit stack, no recursion), so no nesting depth overflows the call stack;
 * `maxDepth` refuses deeper input with a JsonDepthError. `toText` is iterative too. Nodes are never changed
 * after parsing: edits (`withMember`, `withoutMember`, `withItem`, `withoutItem`) return new containers that
 * share every untouched child, so a tree can be read while an edited copy of it is built.
 *
 * Duplicate keys: lookups take the last member with a key (as JSON.parse and Go's encoding/json do); an
 * edit of a key drops its earlier duplicates, so a removed or masked value never survives as a shadowed copy.
 */

import {
  BACKSLASH,
  CLOSE_ARRAY,
  CLOSE_OBJECT,
  COLON,
  COMMA,
  DOT,
  isSpace,
  MINUS,
  OPEN_ARRAY,
  OPEN_OBJECT,
  PLUS,
  QUOTE,
} from './chars.js';

export type JsonNode = JsonObject | JsonArray | JsonScalar;

interface Spanned {
  /** The text this node was parsed from (one string shared by every node of a document). */
  readonly src: string;
  /** Offsets of the node's own text in `src`, end exclusive; both -1 for a container made by an edit. */
  readonly start: number;
  readonly end: number;
}

export interface JsonObject extends Spanned {
  readonly type: 'object';
  /** In source order, duplicates included. */
  readonly members: readonly JsonMember[];
}

export interface JsonArray extends Spanned {
  readonly type: 'array';
  readonly items: readonly JsonNode[];
}

export interface JsonScalar extends Spanned {
  readonly type: 'string' | 'number' | 'true' | 'false' | 'null';
  /** A string whose text has a backslash escape (decoding it takes more than dropping the quotes). */
  readonly escaped: boolean;
}

export interface JsonMember {
  /** The key's text with its quotes is `src.slice(keyStart, keyEnd)`. */
  readonly src: string;
  readonly keyStart: number;
  readonly keyEnd: number;
  /** The key's text has a backslash escape. */
  readonly escaped: boolean;
  readonly value: JsonNode;
}

/** Text that is not JSON; `position` is the UTF-16 offset where it went wrong. */
export class JsonSyntaxError extends SyntaxError {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(message);
    this.name = 'JsonSyntaxError';
  }
}

/** JSON nested deeper than the parser was allowed to go. */
export class JsonDepthError extends JsonSyntaxError {
  constructor(
    readonly maxDepth: number,
    position: number,
  ) {
    super(`JSON nested deeper than ${maxDepth} levels (at position ${position})`, position);
    this.name = 'JsonDepthError';
  }
}

/** JSON with more values where the parser keeps them than it was allowed to keep (`maxKept`). */
export class JsonTooManyValuesError extends RangeError {
  constructor(
    readonly maxKept: number,
    readonly position: number,
  ) {
    super(`JSON with more than ${maxKept.toLocaleString('en')} values to read (at position ${position})`);
    this.name = 'JsonTooManyValuesError';
  }
}

// The parser's own mutable shapes; callers see them through the readonly interfaces above.
interface MObject {
  type: 'object';
  src: string;
  start: number;
  end: number;
  members: MMember[];
}
interface MArray {
  type: 'array';
  src: string;
  start: number;
  end: number;
  items: JsonNode[];
}
interface MMember {
  src: string;
  keyStart: number;
  keyEnd: number;
  escaped: boolean;
  value: JsonNode;
}

// Per-parse state of the string scanner (parsing is synchronous and never re-entered).
/** Set by `stringEnd`: whether the string it just scanned has an escape. */
let lastEscaped = false;
/** The document has no character below U+0020 at all (compact JSON): strings can be found with indexOf. */
let noControl = false;
/** The first backslash at or after the last string scanned quickly (-1: none left), for that fast path. */
let nextBackslash = -1;

const CONTROL = /[\u0000-\u001f]/;

/**
 * Parses JSON text (RFC 8259, exactly what JSON.parse accepts) into a tree of spans over `src`. Throws
 * JsonSyntaxError on invalid text, JsonDepthError past `maxDepth` nested containers (`{}` has depth 1).
 *
 * `keepDepth`: containers nested deeper than this are checked as thoroughly but keep no members or items
 * (their span is exact, their `members`/`items` empty), so a reader that needs only the top of a document
 * (the Parquet row of a decision reads its members and their spans) does not pay for a node per value
 * below it. Such a tree is for reading: an edit of a container past `keepDepth` would lose its contents.
 *
 * `maxKept`: at most this many values kept in containers (those within `keepDepth`), else a
 * JsonTooManyValuesError, so that a reader bounds its tree's memory whatever the document holds (a 60 MB
 * array of 30 million zeros would be a 2.4 GB tree).
 */
export function parseJson(src: string, maxDepth = Infinity, keepDepth = Infinity, maxKept = Infinity): JsonNode {
  return parse(src, maxDepth, keepDepth, undefined, maxKept);
}

/**
 * Parses JSON text as parseJson does (the same checks, the same errors), handing each member of a root object
 * to `visit` in source order and keeping none of them (the returned root has no members), each value a span
 * whose containers keep no elements: a reader of a document's members holds one at a time, however many
 * members and elements there are.
 */
export function visitMembers(src: string, visit: (member: JsonMember) => void): JsonNode {
  return parse(src, Infinity, 1, visit, Infinity);
}

function parse(
  src: string,
  maxDepth: number,
  keepDepth: number,
  visit: ((m: JsonMember) => void) | undefined,
  maxKept: number,
): JsonNode {
  const n = src.length;
  // values kept by their containers so far: a tree's memory is about 80 bytes a value, whatever the text
  let kept = 0;
  const stack: Array<MObject | MArray> = [];
  noControl = !CONTROL.test(src);
  nextBackslash = noControl ? src.indexOf('\\') : -1;
  let i = skipSpace(src, 0);
  for (;;) {
    // a value starts at i
    let value: JsonNode;
    // a scalar that no container keeps is not made (`keepDepth`)
    const keep = stack.length <= keepDepth;
    const c = src.charCodeAt(i);
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (stack.length >= maxDepth) throw new JsonDepthError(maxDepth, i);
      const start = i;
      i = src.charCodeAt(++i) <= 0x20 ? skipSpace(src, i) : i;
      if (c === OPEN_OBJECT) {
        const obj: MObject = { type: 'object', src, start, end: -1, members: [] };
        if (src.charCodeAt(i) !== CLOSE_OBJECT) {
          stack.push(obj);
          i = readKey(src, obj, i, stack.length <= keepDepth);
          continue;
        }
        obj.end = ++i;
        value = obj;
      } else {
        const arr: MArray = { type: 'array', src, start, end: -1, items: [] };
        if (src.charCodeAt(i) !== CLOSE_ARRAY) {
          stack.push(arr);
          continue;
        }
        arr.end = ++i;
        value = arr;
      }
    } else if (c === QUOTE) {
      const end = stringEnd(src, i);
      value = !keep ? UNKEPT : { type: 'string', src, start: i, end, escaped: lastEscaped };
      i = end;
    } else if (c === MINUS || (c >= 0x30 && c <= 0x39)) {
      const end = numberEnd(src, i);
      value = !keep ? UNKEPT : { type: 'number', src, start: i, end, escaped: false };
      i = end;
    } else if (c === 0x74 && src.startsWith('true', i)) {
      value = !keep ? UNKEPT : { type: 'true', src, start: i, end: i + 4, escaped: false };
      i += 4;
    } else if (c === 0x66 && src.startsWith('false', i)) {
      value = !keep ? UNKEPT : { type: 'false', src, start: i, end: i + 5, escaped: false };
      i += 5;
    } else if (c === 0x6e && src.startsWith('null', i)) {
      value = !keep ? UNKEPT : { type: 'null', src, start: i, end: i + 4, escaped: false };
      i += 4;
    } else {
      throw unexpected(src, i, 'a value');
    }
    // the value is complete: hand it to its container, closing every container that ends here
    for (;;) {
      const top = stack[stack.length - 1];
      if (top === undefined) {
        if (i < n) i = skipSpace(src, i);
        if (i < n) throw unexpected(src, i, 'the end of the text');
        return value;
      }
      if (stack.length <= keepDepth) {
        if (++kept > maxKept) throw new JsonTooManyValuesError(maxKept, i);
        if (top.type === 'array') top.items.push(value);
        else if (visit !== undefined && stack.length === 1) {
          const member = top.members.pop()!;
          member.value = value;
          visit(member);
        } else top.members[top.members.length - 1]!.value = value;
      }
      let d = src.charCodeAt(i);
      if (d <= 0x20) d = src.charCodeAt((i = skipSpace(src, i)));
      if (d === COMMA) {
        i = src.charCodeAt(++i) <= 0x20 ? skipSpace(src, i) : i;
        if (top.type === 'object') i = readKey(src, top, i, stack.length <= keepDepth);
        break;
      }
      if (d !== (top.type === 'object' ? CLOSE_OBJECT : CLOSE_ARRAY))
        throw unexpected(src, i, top.type === 'object' ? '"," or "}"' : '"," or "]"');
      top.end = ++i;
      stack.pop();
      value = top;
    }
  }
}

/** A placeholder until the member's value is parsed. */
const PENDING: JsonNode = { type: 'null', src: 'null', start: 0, end: 4, escaped: false };
/** Stands for a scalar below `keepDepth`, which no container keeps. */
const UNKEPT: JsonNode = { type: 'null', src: 'null', start: 0, end: 4, escaped: false };

/** Reads `"key" :` at i (into a new member of `obj` when `keep`); returns where its value starts. */
function readKey(src: string, obj: MObject, i: number, keep: boolean): number {
  if (src.charCodeAt(i) !== QUOTE) throw unexpected(src, i, 'a string key');
  const end = stringEnd(src, i);
  if (keep) obj.members.push({ src, keyStart: i, keyEnd: end, escaped: lastEscaped, value: PENDING });
  const colon = src.charCodeAt(end) === COLON ? end : skipSpace(src, end);
  if (src.charCodeAt(colon) !== COLON) throw unexpected(src, colon, '":"');
  const value = colon + 1;
  return src.charCodeAt(value) <= 0x20 ? skipSpace(src, value) : value;
}

function skipSpace(src: string, i: number): number {
  for (;;) {
    const c = src.charCodeAt(i);
    if (!isSpace(c)) return i;
    i++;
  }
}

const HEX = /^[0-9a-fA-F]{4}$/;

/** The offset after the closing quote of the string opening at `open`; sets `lastEscaped`. */
function stringEnd(src: string, open: number): number {
  if (noControl) {
    // no control character anywhere, so a string is valid up to its quote unless a backslash comes first
    const quote = src.indexOf('"', open + 1);
    if (nextBackslash >= 0 && nextBackslash <= open) nextBackslash = src.indexOf('\\', open);
    if (quote >= 0 && (nextBackslash < 0 || nextBackslash > quote)) {
      lastEscaped = false;
      return quote + 1;
    }
  }
  return escapedStringEnd(src, open);
}

/** `stringEnd` one character at a time: escapes checked, control characters refused. */
function escapedStringEnd(src: string, open: number): number {
  let escaped = false;
  const n = src.length;
  for (let i = open + 1; i < n; i++) {
    const c = src.charCodeAt(i);
    if (c === QUOTE) {
      lastEscaped = escaped;
      return i + 1;
    }
    if (c === BACKSLASH) {
      escaped = true;
      const e = src.charCodeAt(i + 1);
      if (e === 0x75 /* u */) {
        if (!HEX.test(src.slice(i + 2, i + 6)))
          throw new JsonSyntaxError(`invalid JSON at position ${i}: \\u must be followed by 4 hex digits`, i);
        i += 5;
      } else if (
        e === QUOTE ||
        e === BACKSLASH ||
        e === 0x2f ||
        e === 0x62 ||
        e === 0x66 ||
        e === 0x6e ||
        e === 0x72 ||
        e === 0x74
      ) {
        i++;
      } else {
        throw new JsonSyntaxError(`invalid JSON at position ${i}: a bad escape in a string`, i);
      }
    } else if (c < 0x20) {
      throw new JsonSyntaxError(`invalid JSON at position ${i}: a control character in a string`, i);
    }
  }
  throw new JsonSyntaxError(`invalid JSON at position ${open}: a string that never ends`, open);
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

/** The offset after the number starting at i: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`. */
function numberEnd(src: string, i: number): number {
  const start = i;
  if (src.charCodeAt(i) === MINUS) i++;
  const first = src.charCodeAt(i);
  if (first === 0x30) i++;
  else if (isDigit(first)) while (isDigit(src.charCodeAt(++i)));
  else throw new JsonSyntaxError(`invalid JSON at position ${start}: not a number`, start);
  if (src.charCodeAt(i) === DOT) {
    if (!isDigit(src.charCodeAt(++i)))
      throw new JsonSyntaxError(`invalid JSON at position ${i}: a digit must follow the decimal point`, i);
    while (isDigit(src.charCodeAt(++i)));
  }
  const e = src.charCodeAt(i);
  if (e === 0x65 || e === 0x45) {
    const sign = src.charCodeAt(++i);
    if (sign === PLUS || sign === MINUS) i++;
    if (!isDigit(src.charCodeAt(i)))
      throw new JsonSyntaxError(`invalid JSON at position ${i}: a digit must follow the exponent`, i);
    while (isDigit(src.charCodeAt(++i)));
  }
  return i;
}

function unexpected(src: string, i: number, expected: string): JsonSyntaxError {
  if (i >= src.length) return new JsonSyntaxError(`invalid JSON: the text ends where ${expected} should be`, i);
  return new JsonSyntaxError(`invalid JSON at position ${i}: ${JSON.stringify(src[i])} where ${expected} should be`, i);
}

// ---------------------------------------------------------------------------------------------------------
// Reading

/** A string node's value. */
export function stringValue(node: JsonScalar): string {
  return node.escaped
    ? (JSON.parse(node.src.slice(node.start, node.end)) as string)
    : node.src.slice(node.start + 1, node.end - 1);
}

/** A member's decoded key. */
export function keyOf(m: JsonMember): string {
  return m.escaped
    ? (JSON.parse(m.src.slice(m.keyStart, m.keyEnd)) as string)
    : m.src.slice(m.keyStart + 1, m.keyEnd - 1);
}

/** Whether a member's key is `key`, without decoding it in the common (unescaped) case. */
export function keyIs(m: JsonMember, key: string): boolean {
  if (!m.escaped) return m.keyEnd - m.keyStart - 2 === key.length && m.src.startsWith(key, m.keyStart + 1);
  return keyOf(m) === key;
}

/** The value of the last member named `key` (the one JSON.parse keeps), or undefined. */
export function memberOf(obj: JsonObject, key: string): JsonNode | undefined {
  const members = obj.members;
  for (let i = members.length - 1; i >= 0; i--) if (keyIs(members[i]!, key)) return members[i]!.value;
  return undefined;
}

/**
 * The node's JSON text: its exact source for untouched nodes. A container an edit made is written from its
 * parts, where each run of members (or elements) that still stand as they stood in the source is one slice
 * of it, the whitespace and commas between them included: only the text next to a change is new (compact).
 */
export function toText(node: JsonNode): string {
  if (node.start >= 0) return node.src.slice(node.start, node.end);
  const parts: string[] = [];
  const open: Array<JsonObject | JsonArray> = [];
  const next: number[] = [];
  let pending: JsonNode | undefined = node;
  for (;;) {
    if (pending !== undefined) {
      if (pending.start >= 0) {
        parts.push(pending.src.slice(pending.start, pending.end));
      } else {
        // only containers are ever made by an edit
        const container = pending as JsonObject | JsonArray;
        parts.push(container.type === 'object' ? '{' : '[');
        open.push(container);
        next.push(0);
      }
      pending = undefined;
    }
    const top = open[open.length - 1];
    if (top === undefined) return parts.join('');
    const k = next[next.length - 1]!;
    if (top.type === 'object') {
      const members = top.members;
      if (k === members.length) {
        parts.push('}');
        open.pop();
        next.pop();
        continue;
      }
      if (k > 0) parts.push(',');
      const m = members[k]!;
      if (intact(m)) {
        let j = k;
        for (
          let n = members[j + 1];
          n !== undefined && n.src === m.src && intact(n) && between(m.src, members[j]!.value.end, n.keyStart, COMMA);
          n = members[++j + 1]
        );
        parts.push(m.src.slice(m.keyStart, members[j]!.value.end));
        next[next.length - 1] = j + 1;
        continue;
      }
      parts.push(m.src.slice(m.keyStart, m.keyEnd), ':');
      pending = m.value;
    } else {
      const items = top.items;
      if (k === items.length) {
        parts.push(']');
        open.pop();
        next.pop();
        continue;
      }
      if (k > 0) parts.push(',');
      const item = items[k]!;
      if (item.start >= 0) {
        let j = k;
        for (
          let n = items[j + 1];
          n !== undefined && n.start >= 0 && n.src === item.src && between(item.src, items[j]!.end, n.start, COMMA);
          n = items[++j + 1]
        );
        parts.push(item.src.slice(item.start, items[j]!.end));
        next[next.length - 1] = j + 1;
        continue;
      }
      pending = item;
    }
    next[next.length - 1] = k + 1;
  }
}

/** A member whose key and value stand in its source as parsed: `"key" : value` is one slice. */
function intact(m: JsonMember): boolean {
  const v = m.value;
  return v.start >= 0 && v.src === m.src && between(m.src, m.keyEnd, v.start, COLON);
}

/** Whether `src[from, to)` is `separator` with only JSON whitespace around it. */
function between(src: string, from: number, to: number, separator: number): boolean {
  if (to === from + 1) return src.charCodeAt(from) === separator;
  let seen = false;
  for (let i = from; i < to; i++) {
    const c = src.charCodeAt(i);
    if (c === separator && !seen) seen = true;
    else if (!isSpace(c)) return false;
  }
  return seen;
}

/**
 * The node as a JS value (JSON.parse of its text, which is iterative in V8): for conditions that compare
 * small parts of a document, never for writing it back.
 */
export function toValue(node: JsonNode): unknown {
  switch (node.type) {
    case 'string':
      return stringValue(node);
    case 'number':
      return Number(node.src.slice(node.start, node.end));
    case 'true':
      return true;
    case 'false':
      return false;
    case 'null':
      return null;
    default:
      return JSON.parse(toText(node));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Building and editing (never in place)

/** The tree of a JS value (JSON.stringify'd once, then parsed): for values from the configuration. */
export function fromValue(value: unknown): JsonNode {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError('not a JSON value');
  return parseJson(text);
}

function newMember(key: string, value: JsonNode): JsonMember {
  const text = JSON.stringify(key);
  return { src: text, keyStart: 0, keyEnd: text.length, escaped: text.includes('\\'), value };
}

/** An object made of members (for edits). */
export function objectNode(members: readonly JsonMember[]): JsonObject {
  return { type: 'object', src: '', start: -1, end: -1, members };
}

/** An array made of items (for edits). */
export function arrayNode(items: readonly JsonNode[]): JsonArray {
  return { type: 'array', src: '', start: -1, end: -1, items };
}

/** An object with one member. */
export function singleMember(key: string, value: JsonNode): JsonObject {
  return objectNode([newMember(key, value)]);
}

/**
 * `obj` with `key` set to `value`: the last member of that key gets the value in place (its earlier
 * duplicates are dropped), or a member is appended when there is none.
 */
export function withMember(obj: JsonObject, key: string, value: JsonNode): JsonObject {
  const members = obj.members;
  let last = -1;
  let duplicates = 0;
  for (let i = members.length - 1; i >= 0; i--) {
    if (keyIs(members[i]!, key)) {
      if (last < 0) last = i;
      else duplicates++;
    }
  }
  if (last < 0) return objectNode([...members, newMember(key, value)]);
  const out: JsonMember[] = [];
  for (let i = 0; i < members.length; i++) {
    const m = members[i]!;
    if (i === last) out.push({ src: m.src, keyStart: m.keyStart, keyEnd: m.keyEnd, escaped: m.escaped, value });
    else if (duplicates === 0 || i > last || !keyIs(m, key)) out.push(m);
  }
  return objectNode(out);
}

/** `obj` without any member named `key`; `obj` itself when it has none. */
export function withoutMember(obj: JsonObject, key: string): JsonObject {
  const kept = obj.members.filter((m) => !keyIs(m, key));
  return kept.length === obj.members.length ? obj : objectNode(kept);
}

/** `arr` with the element at `index` (in range) replaced. */
export function withItem(arr: JsonArray, index: number, value: JsonNode): JsonArray {
  const items = arr.items.slice();
  items[index] = value;
  return arrayNode(items);
}

/** `arr` with `value` appended. */
export function withAppended(arr: JsonArray, value: JsonNode): JsonArray {
  return arrayNode([...arr.items, value]);
}

/** `arr` without the element at `index` (in range); later elements shift down. */
export function withoutItem(arr: JsonArray, index: number): JsonArray {
  const items = arr.items.slice();
  items.splice(index, 1);
  return arrayNode(items);
}
