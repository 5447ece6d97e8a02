/**
 * A destination's JMESPath key_template and the checks of the keys it gives. This module is what the key
 * template process (key-template-child.ts) loads: it imports nothing else of Sluice.
 */
import { search } from '@jmespath-community/jmespath';
import type { JSONValue } from '@jmespath-community/jmespath';

/** S3 refuses longer keys. */
export const MAX_KEY_BYTES = 1024;
/** The longest key_template a destination may be saved with. */
export const MAX_KEY_TEMPLATE_CHARS = 1024;
/** The longest error message of a template's evaluation that is kept (an error may quote what it was given). */
const MAX_MESSAGE_CHARS = 1000;

/** A key template that cannot give a key for this event: the attempt fails and is not retried. */
export class KeyTemplateError extends Error {}

/**
 * What a key template is evaluated over, as plain data (it crosses to a worker thread). `data` is the event's
 * data as stored (JSON text): it is parsed where the template runs, off the event loop.
 */
export interface KeyTemplateTask {
  template: string;
  data: string;
  metadata: Record<string, string>;
  time: Record<string, string>;
}

/**
 * The object key a key_template gives for an event, or a KeyTemplateError. The work of a template is not
 * bounded by its length (each `| [@, @][]` doubles it): this runs only in the key template worker, under a
 * time and memory budget (key-template-pool.ts), never on the event loop. Only a checked key (at most
 * MAX_KEY_BYTES) or a short message comes out of it.
 */
export function templatedObjectKey(task: KeyTemplateTask): string {
  const context = { data: JSON.parse(task.data) as JSONValue, metadata: task.metadata, time: task.time };
  let value: unknown;
  try {
    value = search(context, task.template);
  } catch (err) {
    throw new KeyTemplateError(
      `key_template failed on this event: ${String((err as Error)?.message).slice(0, MAX_MESSAGE_CHARS)}`,
    );
  }
  const key = typeof value === 'number' || typeof value === 'boolean' ? String(value) : value;
  if (key === null || key === undefined || key === '')
    throw new KeyTemplateError('key_template produced no key (null or an empty string) for this event');
  if (typeof key !== 'string')
    throw new KeyTemplateError(
      `key_template must produce a string, not ${Array.isArray(key) ? 'an array' : 'an object'}`,
    );
  if (Buffer.byteLength(key) > MAX_KEY_BYTES)
    throw new KeyTemplateError(
      `key_template produced a key of ${Buffer.byteLength(key)} bytes; S3 keys are at most ${MAX_KEY_BYTES}`,
    );
  return checkedSegments(key, 'key_template');
}

/**
 * Refuses keys with a leading "/", an empty, "." or ".." segment. S3 keeps such keys as they are, but the key
 * becomes the request path, and servers and proxies in front of S3-compatible stores resolve dot segments:
 * `bucket/../../admin` would reach another path than the bucket's.
 */
export function checkedSegments(key: string, source: string): string {
  const segments = key.split('/');
  const bad = key.startsWith('/')
    ? 'starts with "/"'
    : segments.includes('..')
      ? 'has a ".." segment'
      : segments.includes('.')
        ? 'has a "." segment'
        : segments.includes('')
          ? 'has an empty segment ("//" or a trailing "/")'
          : undefined;
  if (bad)
    throw new KeyTemplateError(
      `${source} produced a key that ${bad}; keys must not start with "/" nor hold empty, "." or ".." segments`,
    );
  return key;
}
