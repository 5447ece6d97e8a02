import { gunzip, gzipSync } from 'node:zlib';
import { promisify } from 'node:util';
import { isUtf8 } from 'node:buffer';
import { HttpError } from '../http/http-error.js';
import { DECISION_ID, jsonString, LABELS_ID, scanJsonArray, TIMESTAMP } from '../json/array-scan.js';
import { OPEN_OBJECT } from '../json/chars.js';
import { MAX_JSON_DEPTH } from '../json/limits.js';
import type { DecisionEventFields, NewChunk } from '../buffer/types.js';
import { decisionKey } from './recently-accepted.js';

const gunzipAsync = promisify(gunzip);

/** Decisions of one stream are cut into chunks of at most this many bytes, to keep reads small. */
const CHUNK_TARGET_BYTES = 1024 * 1024;

/** Distinct (hour, OPA instance) pairs one request may file decisions under; OPA's chunks span one or two. */
const MAX_STREAMS_PER_REQUEST = 64;

export interface DecodeLimits {
  maxDecodedBytes: number;
}

export interface DecodedRequest {
  chunks: NewChunk[];
  decisions: number;
  /** Decisions without an RFC 3339 `timestamp`: filed under the hour they arrived. */
  untimed: number;
  /** Bytes the chunks take in the buffer (compressed). */
  storedBytes: number;
  /** Bytes the chunks hold in memory until they are stored (payloads, and texts kept for a tenant's events). */
  heldBytes: number;
}

/** Body bytes as sent -> JSON text, enforcing the decoded size limit (gzip-bomb safe). */
export async function decodeBody(
  body: Buffer,
  contentEncoding: string | undefined,
  limits: DecodeLimits,
): Promise<Buffer> {
  const encoding = (contentEncoding ?? '').trim().toLowerCase();
  if (encoding === '' || encoding === 'identity') {
    if (body.length > limits.maxDecodedBytes) throw tooLarge(limits.maxDecodedBytes);
    return body;
  }
  if (encoding !== 'gzip' && encoding !== 'x-gzip') {
    throw new HttpError(415, `unsupported Content-Encoding "${contentEncoding}": send gzip or no encoding`, {
      content_encoding: contentEncoding,
    });
  }
  try {
    // maxOutputLength stops inflating as soon as the limit is passed, so a gzip bomb costs at most the limit.
    return await gunzipAsync(body, { maxOutputLength: limits.maxDecodedBytes });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError) throw tooLarge(limits.maxDecodedBytes);
    throw new HttpError(400, `body is not valid gzip: ${e.message}`, { reason: 'invalid_gzip' });
  }
}

function tooLarge(limit: number): HttpError {
  return new HttpError(
    413,
    `decoded body is larger than ingest.max_decoded_bytes (${limit} bytes): send smaller chunks`,
    { reason: 'decoded_too_large', limit },
  );
}

export interface ChunkLimits {
  /** ingest.max_decisions_per_request */
  maxDecisions: number;
  /** Also return each decision's decision_id and timestamp (for decisions that become a tenant's events). */
  eventFields?: boolean;
  /** gzip level of the stored chunks (buffer.compression_level), 1-9; 0 stores them uncompressed. */
  compressionLevel?: number;
}

/**
 * Validates an OPA upload (a JSON array of decision objects) and cuts it into chunks per UTC hour of each
 * decision's own timestamp. Nothing is returned unless the whole request is valid.
 *
 * One validating scan of the bytes (scanJsonArray) checks the JSON, bounds depth and count as it goes (a few
 * KiB of gzip cannot cost gigabytes) and finds the fields chunks are filed by; no object is built. Each
 * decision is stored as its own bytes, sliced from the body: never re-serialized, so its text stays exactly
 * as sent.
 */
export function decisionsToChunks(
  json: Buffer,
  partition: string,
  receivedAt: number,
  limits: ChunkLimits,
): DecodedRequest {
  if (!isUtf8(json)) throw new HttpError(400, 'body is not valid UTF-8 JSON', { reason: 'invalid_utf8' });
  // one validating pass over the bytes: no object is built for a decision Sluice stores as bytes
  const scan = scanJsonArray(json, { maxDepth: MAX_JSON_DEPTH, maxElements: limits.maxDecisions, fields: true });
  if (scan.kind === 'too_deep') {
    throw new HttpError(
      400,
      `a decision nests deeper than ${MAX_JSON_DEPTH} levels (at byte ${scan.at}): nothing was stored`,
      { reason: 'too_deep', max_depth: MAX_JSON_DEPTH },
    );
  }
  if (scan.kind === 'too_many') {
    throw new HttpError(
      413,
      `the request holds more than ingest.max_decisions_per_request (${limits.maxDecisions}) decisions: send smaller chunks`,
      { reason: 'too_many_decisions', limit: limits.maxDecisions },
    );
  }
  if (scan.kind === 'invalid')
    throw new HttpError(400, `body is not valid JSON: ${scan.message}`, { reason: 'invalid_json' });
  if (scan.kind !== 'array') throw notAnArray(json);
  const { spans } = scan;
  const fields = scan.fields!;
  const count = spans.length / 2;
  for (let i = 0; i < count; i++) {
    if (json[spans[2 * i]!] !== OPEN_OBJECT) {
      throw new HttpError(400, `element ${i} of the array is not a decision object`, {
        reason: 'not_an_object',
        index: i,
      });
    }
  }
  const fallbackHour = new Date(receivedAt).toISOString().slice(0, 13);
  // one chunk per hour and OPA instance (labels.id): outputs may batch per instance, as Enterprise OPA did
  const groups = new Map<string, Group>();
  const chunks: NewChunk[] = [];
  let untimed = 0;
  const field = (i: number, which: number) => {
    const from = fields[6 * i + which]!;
    return from < 0 ? undefined : jsonString(json, from, fields[6 * i + which + 1]!);
  };
  // NDJSON needs one line per decision. JSON strings cannot hold a raw CR or LF, so in a valid text (OPA never
  // sends it pretty-printed) every one is whitespace: spaces in their place keep each decision's text otherwise
  // exact, and its span the same.
  const text = scan.controlBytes ? withoutLineBreaks(json) : json;
  for (let i = 0; i < count; i++) {
    const start = spans[2 * i]!;
    const end = spans[2 * i + 1]!;
    const timestamp = field(i, TIMESTAMP);
    let hour = hourOf(timestamp);
    let instance = field(i, LABELS_ID) ?? '';
    let key = `${hour}\u0000${instance}`;
    if (hour === undefined || (!groups.has(key) && groups.size >= MAX_STREAMS_PER_REQUEST)) {
      // Kept (OPA sent it), filed under the arrival hour, and counted: see "Timestamps" in the README. A
      // request spread over more hours and instances than any OPA chunk is (each would be a batch and an
      // object of its own) files the rest together the same way.
      untimed++;
      hour = fallbackHour;
      if (groups.size >= MAX_STREAMS_PER_REQUEST) instance = '';
      key = `${hour}\u0000${instance}`;
    }
    let group = groups.get(key);
    if (!group)
      groups.set(
        key,
        (group = { hour, instance, spans: [], ids: [], events: limits.eventFields ? [] : undefined, bytes: 0 }),
      );
    group.spans.push(start, end);
    const id = field(i, DECISION_ID);
    const decisionId = id === '' ? undefined : id;
    // digested here, in the decode threads, not on the event loop
    group.ids.push(decisionId === undefined ? '' : decisionKey(decisionId));
    group.events?.push({ id: decisionId, timestamp });
    group.bytes += end - start + 1;
    if (group.bytes >= CHUNK_TARGET_BYTES) {
      chunks.push(toChunk(text, partition, group, limits));
      groups.delete(key);
    }
  }
  for (const group of groups.values()) chunks.push(toChunk(text, partition, group, limits));
  let storedBytes = 0;
  let heldBytes = 0;
  for (const c of chunks) {
    storedBytes += c.payload.length;
    heldBytes += c.payload.length + (c.text?.length ?? 0);
  }
  return { chunks, decisions: count, untimed, storedBytes, heldBytes };
}

/**
 * The error for a body that does not start with `[`: JSON of another kind (an object, a string) is told it
 * must be an array; text that is not JSON at all is told so. The body is read as the one element of an array,
 * by the same bounded scan (a copy, on this error path only).
 */
function notAnArray(json: Buffer): HttpError {
  const asElement = scanJsonArray(Buffer.concat([Buffer.of(0x5b), json, Buffer.of(0x5d)]), {
    maxDepth: MAX_JSON_DEPTH,
    maxElements: 1,
  });
  if (asElement.kind === 'too_deep') {
    return new HttpError(400, `the body nests deeper than ${MAX_JSON_DEPTH} levels: nothing was stored`, {
      reason: 'too_deep',
      max_depth: MAX_JSON_DEPTH,
    });
  }
  if (asElement.kind !== 'array' || asElement.spans.length !== 2) {
    return new HttpError(400, `body is not valid JSON${asElement.kind === 'invalid' ? `: ${asElement.message}` : ''}`, {
      reason: 'invalid_json',
    });
  }
  return new HttpError(400, 'body must be a JSON array of decision objects, as OPA sends it', {
    reason: 'not_an_array',
  });
}

interface Group {
  hour: string;
  instance: string;
  /** Byte spans in the text of the group's decisions: start, end, start, end, ... */
  spans: number[];
  ids: string[];
  events: DecisionEventFields[] | undefined;
  bytes: number;
}

/** A copy of the text with every CR and LF a space. */
function withoutLineBreaks(json: Buffer): Buffer {
  const copy = Buffer.from(json);
  for (let j = 0; j < copy.length; j++) if (copy[j] === 0x0a || copy[j] === 0x0d) copy[j] = 0x20;
  return copy;
}

/**
 * A chunk of one group's lines, compressed here, once: the WAL write and the buffer shrink several times, and
 * outputs writing gzip NDJSON concatenate the stored members instead of compressing again. Every buffer a
 * chunk carries owns its whole ArrayBuffer (not a slice of Node's shared pool), so the decode thread hands
 * it to the event loop by transfer, not by copy.
 */
function toChunk(text: Buffer, partition: string, group: Group, limits: ChunkLimits): NewChunk {
  const ndjson = Buffer.allocUnsafeSlow(group.bytes);
  const { spans } = group;
  let at = 0;
  for (let k = 0; k < spans.length; k += 2) {
    at += text.copy(ndjson, at, spans[k]!, spans[k + 1]!);
    ndjson[at++] = 0x0a;
  }
  const level = limits.compressionLevel ?? 0;
  const payload = level > 0 ? ownBuffer(gzipSync(ndjson, { level })) : ndjson;
  return {
    partition,
    hour: group.hour,
    instance: group.instance,
    count: spans.length / 2,
    payload,
    compressed: level > 0,
    bytes: group.bytes,
    decisionKeys: group.ids,
    events: group.events,
    text: group.events && level > 0 ? ndjson : undefined,
  };
}

/** `buf` itself when it spans its whole ArrayBuffer, else a copy that does (transferable without harm). */
function ownBuffer(buf: Buffer): Buffer {
  if (buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength) return buf;
  const own = Buffer.allocUnsafeSlow(buf.length);
  buf.copy(own);
  return own;
}

const UTC_TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):\d{2}:\d{2}(\.\d+)?Z$/;

/**
 * `YYYY-MM-DDTHH` in UTC of an RFC 3339 timestamp, or undefined when there is none.
 * OPA writes UTC (`...Z`), which is read without building a Date; offsets are converted.
 */
export function hourOf(timestamp: unknown): string | undefined {
  if (typeof timestamp !== 'string') return undefined;
  const m = UTC_TIMESTAMP.exec(timestamp);
  if (m) {
    const month = Number(m[2]);
    const day = Number(m[3]);
    const hour = Number(m[4]);
    if (month >= 1 && month <= 12 && day >= 1 && day <= 31 && hour <= 23) return timestamp.slice(0, 13);
    return undefined;
  }
  const millis = Date.parse(timestamp);
  if (Number.isNaN(millis)) return undefined;
  const iso = new Date(millis).toISOString();
  // years outside 0000-9999 come out as +0123456 and would not make a valid key
  return iso.length === 24 ? iso.slice(0, 13) : undefined;
}
