import { gunzip, gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { scanJsonArray } from '../../json/array-scan.js';
import { MAX_JSON_DEPTH } from '../../json/limits.js';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/**
 * Cutting one object (a batch) into requests on decision boundaries, as OPA cuts its buffer into chunks of at
 * most `upload_size_limit_bytes`: pure functions of the object's bytes and the limits, so the same object
 * always gives the same pieces with the same bytes (a piece re-sent after a restart is the piece sent before).
 */

export interface RequestLimits {
  /** Body bytes of one request as sent (compressed when the output compresses); unset: no limit. */
  maxBytes?: number;
  /** Decisions in one request; unset: no limit. */
  maxDecisions?: number;
}

/** How the pieces of an object are compressed: as the object is (its Content-Encoding), at the output's level. */
export interface PieceEncoding {
  compression: 'gzip' | 'none';
  level?: number;
}

/**
 * An object's decisions: its decoded text, its format (a JSON array, or NDJSON lines) and each decision's byte
 * span in the text (start0, end0, start1, ...).
 */
export interface ObjectDecisions {
  text: Buffer;
  format: 'ndjson' | 'json_array';
  spans: number[];
}

/** Decisions `first`..`last` (indices in the object, inclusive) and their request body. */
export interface Piece {
  first: number;
  last: number;
  body: Buffer;
}

/**
 * The decisions of an object body, told from its bytes (an output's objects may be of the format it had when
 * their batch was sealed): a JSON array, or else NDJSON lines (a decision is an object, so a line never starts
 * with `[`; one decision alone is one line). Undefined when an array does not scan.
 */
export async function decisionsOf(body: Buffer, contentEncoding?: string): Promise<ObjectDecisions | undefined> {
  const text = contentEncoding === 'gzip' ? await gunzipAsync(body) : body;
  let i = 0;
  while (i < text.length && (text[i] === 0x20 || text[i] === 0x0a || text[i] === 0x0d || text[i] === 0x09)) i++;
  if (text[i] === 0x5b) {
    const scan = scanJsonArray(text, { maxDepth: MAX_JSON_DEPTH, maxElements: Number.MAX_SAFE_INTEGER });
    return scan.kind === 'array' ? { text, format: 'json_array', spans: scan.spans } : undefined;
  }
  // NDJSON lines hold no raw newline: every newline ends a decision
  const spans: number[] = [];
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf(0x0a, start);
    if (end < 0) end = text.length;
    if (end > start) spans.push(start, end);
    start = end + 1;
  }
  return { text, format: 'ndjson', spans };
}

/** The text of decision `index`. */
export function decisionText(d: ObjectDecisions, index: number): string {
  return d.text.subarray(d.spans[2 * index], d.spans[2 * index + 1]).toString('utf8');
}

/** The request body of decisions first..last: a JSON array or NDJSON lines as the object is, compressed as it is. */
export async function encodePiece(
  d: ObjectDecisions,
  encoding: PieceEncoding,
  first: number,
  last: number,
): Promise<Buffer> {
  const parts: Buffer[] = [];
  const separator = Buffer.from(d.format === 'ndjson' ? '\n' : ',');
  if (d.format === 'json_array') parts.push(Buffer.from('['));
  for (let i = first; i <= last; i++) {
    if (i > first) parts.push(separator);
    parts.push(d.text.subarray(d.spans[2 * i], d.spans[2 * i + 1]));
  }
  parts.push(Buffer.from(d.format === 'ndjson' ? '\n' : ']'));
  const text = Buffer.concat(parts);
  return encoding.compression === 'gzip' ? gzipAsync(text, { level: encoding.level ?? 6 }) : text;
}

/**
 * Decisions first..last in requests within the limits: first in equal groups of at most `maxDecisions`, then
 * each group that is too large in `ceil(size / (90 % of maxBytes))` parts of about equal uncompressed bytes,
 * again until every part fits. A single decision over `maxBytes` is a piece of its own.
 */
export async function cutPieces(
  d: ObjectDecisions,
  encoding: PieceEncoding,
  limits: RequestLimits,
  first: number,
  last: number,
): Promise<Piece[]> {
  const n = last - first + 1;
  if (n <= 0) return [];
  const groups = limits.maxDecisions ? Math.ceil(n / limits.maxDecisions) : 1;
  const pieces: Piece[] = [];
  for (let g = 0, start = first; g < groups; g++) {
    const end = first + Math.round((n * (g + 1)) / groups) - 1;
    await fit(d, encoding, limits.maxBytes, start, end, pieces);
    start = end + 1;
  }
  return pieces;
}

async function fit(
  d: ObjectDecisions,
  encoding: PieceEncoding,
  maxBytes: number | undefined,
  first: number,
  last: number,
  out: Piece[],
): Promise<void> {
  const body = await encodePiece(d, encoding, first, last);
  if (maxBytes === undefined || body.length <= maxBytes || first === last) {
    out.push({ first, last, body });
    return;
  }
  // each part has fewer decisions than this one: the recursion ends, at single decisions at the latest
  const parts = Math.min(last - first + 1, Math.max(2, Math.ceil(body.length / (maxBytes * 0.9))));
  for (const [a, b] of splitByBytes(d.spans, first, last, parts)) await fit(d, encoding, maxBytes, a, b, out);
}

/** Decisions first..last (at least `parts` of them) in `parts` ranges of about equal bytes, none empty. */
export function splitByBytes(spans: number[], first: number, last: number, parts: number): Array<[number, number]> {
  const base = spans[2 * first]!;
  const total = spans[2 * last + 1]! - base;
  const ranges: Array<[number, number]> = [];
  let start = first;
  for (let k = 1; k < parts; k++) {
    const goal = base + (total * k) / parts;
    let end = start;
    // leaves at least one decision for each part still to come
    while (end < last - (parts - k) && spans[2 * end + 1]! < goal) end++;
    ranges.push([start, end]);
    start = end + 1;
  }
  ranges.push([start, last]);
  return ranges;
}
