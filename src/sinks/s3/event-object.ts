import { search } from '@jmespath-community/jmespath';
import type { JSONValue } from '@jmespath-community/jmespath';
import { parseEventTime, timeFields } from '../../sources/event-time.js';
import type { Destination, StoredEvent, StringMap } from '../../store/types.js';
import type { StoredObject } from '../types.js';
import { md5 } from '../../delivery/encode.js';

/** S3 refuses longer keys. */
const MAX_KEY_BYTES = 1024;

/** A key template that cannot give a key for this event: the attempt fails and is not retried. */
export class KeyTemplateError extends Error {}

/**
 * The S3 user metadata of an event's object: the system's `event-id`, `topic`, `timestamp` (Unix seconds),
 * then the destination's delivery_metadata, then the event's own metadata; later ones win.
 */
export function objectMetadata(event: StoredEvent, destination: Destination): StringMap {
  return {
    'event-id': event.id,
    topic: event.topic,
    timestamp: String(Math.floor(event.time_ms / 1000)),
    ...destination.delivery_metadata,
    ...event.metadata,
  };
}

/** The object key: `<RFC3339 nano time>_<event id>.json`, or the destination's JMESPath key_template. */
export function eventObjectKey(event: StoredEvent, metadata: StringMap, template: string | undefined): string {
  const time = parseEventTime(event.time) ?? { rfc3339Nano: event.time, ms: event.time_ms };
  if (!template) return checkedSegments(`${time.rfc3339Nano}_${event.id}.json`, 'the default key (from the event id)');
  const context = { data: JSON.parse(event.data) as JSONValue, metadata, time: timeFields(time) };
  let value: unknown;
  try {
    value = search(context, template);
  } catch (err) {
    throw new KeyTemplateError(`key_template failed on this event: ${(err as Error).message}`);
  }
  const key = typeof value === 'number' || typeof value === 'boolean' ? String(value) : value;
  if (key === null || key === undefined || key === '') throw new KeyTemplateError('key_template produced no key (null or an empty string) for this event');
  if (typeof key !== 'string') throw new KeyTemplateError(`key_template must produce a string, not ${Array.isArray(key) ? 'an array' : 'an object'}`);
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new KeyTemplateError(`key_template produced a key of ${Buffer.byteLength(key)} bytes; S3 keys are at most ${MAX_KEY_BYTES}`);
  return checkedSegments(key, 'key_template');
}

/**
 * Refuses keys with a leading "/", an empty, "." or ".." segment. S3 keeps such keys as they are, but the key
 * becomes the request path, and servers and proxies in front of S3-compatible stores resolve dot segments:
 * `bucket/../../admin` would reach another path than the bucket's.
 */
function checkedSegments(key: string, source: string): string {
  const segments = key.split('/');
  const bad = key.startsWith('/') ? 'starts with "/"'
    : segments.includes('..') ? 'has a ".." segment'
      : segments.includes('.') ? 'has a "." segment'
        : segments.includes('') ? 'has an empty segment ("//" or a trailing "/")'
          : undefined;
  if (bad) throw new KeyTemplateError(`${source} produced a key that ${bad}; keys must not start with "/" nor hold empty, "." or ".." segments`);
  return key;
}

/** One event as one object: the body is the event's data. */
export function eventObject(event: StoredEvent, metadata: StringMap, key: string): StoredObject {
  const body = Buffer.from(event.data);
  return { key, body, contentType: 'application/json', contentMD5: md5(body), metadata };
}
