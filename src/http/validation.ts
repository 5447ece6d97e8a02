/**
 * The 422 answers of Outpost's API, whose clients show their messages: `<field> is required`, `<field> failed
 * <rule> validation`, every problem named in `data`; and the metadata quota, checked the same way.
 */
import type { z } from 'zod';
import { HttpError } from './http-error.js';

/** Outpost's field messages are "<field> is required" or "<field> failed <rule> validation". */
export const required = (issue: { input?: unknown }) =>
  issue.input === undefined ? 'is required' : 'failed type validation';

/**
 * Zod issues as the messages Outpost's clients show: the field's dotted path, then what is wrong, e.g.
 * `config.bucket is required`, `config.storage_class failed enum validation`.
 */
export function issueMessages(issues: readonly z.core.$ZodIssue[], prefix: string[] = []): string[] {
  const messages: string[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path.map(String)];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) messages.push(`${[...path, key].join('.')} is not a known field`);
      continue;
    }
    messages.push(fieldMessage(path, issue.message));
  }
  return messages;
}

/** Problems found outside a schema (`{path: ['endpoint'], message: 'is not allowed: ...'}`) as the same messages. */
export function problemMessages(
  problems: ReadonlyArray<{ path: string[]; message: string }>,
  prefix: string[] = [],
): string[] {
  return problems.map((p) => fieldMessage([...prefix, ...p.path], p.message));
}

/** 422 "validation error" with every problem named in `data`. */
export function validationError(messages: string[]): HttpError {
  return new HttpError(422, 'validation error', messages);
}

/**
 * A route schema's validation failure (fastify-type-provider-zod) as the 422 naming every field; a query
 * parameter the route does not know is a 400 naming it (Outpost's clients must not believe a filter applied).
 */
export function schemaValidationError(error: {
  validation: Array<{ instancePath: string; message?: string; keyword?: string; params?: Record<string, unknown> }>;
  validationContext?: string;
}): HttpError {
  if (error.validationContext === 'querystring') {
    const unknown = error.validation
      .filter((v) => v.keyword === 'unrecognized_keys')
      .flatMap((v) => (v.params?.keys as string[] | undefined) ?? []);
    if (unknown.length > 0) {
      return new HttpError(400, `unknown query parameter${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}`, {
        reason: 'unknown_parameter',
        parameters: unknown,
      });
    }
  }
  const prefix = error.validationContext === 'querystring' ? ['query'] : [];
  return validationError(
    error.validation.map((v) => {
      if (v.keyword === 'unrecognized_keys')
        return `${[...prefix, ...v.instancePath.split('/').filter(Boolean)].join('.') || 'body'}: not known fields: ${((v.params?.keys as string[]) ?? []).join(', ')}`;
      return fieldMessage([...prefix, ...v.instancePath.split('/').filter(Boolean)], v.message ?? 'is not valid');
    }),
  );
}

/** A string map's size for api.quotas.metadata_bytes: the UTF-8 bytes of its keys and values. */
export function metadataBytes(map: Record<string, string>): number {
  let bytes = 0;
  for (const [k, v] of Object.entries(map)) bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
  return bytes;
}

/**
 * 422 naming api.quotas.metadata_bytes (`limit`) when one of the maps (by field name) is larger than it: each
 * map counts alone (a destination's metadata and delivery_metadata may each be that large).
 */
export function checkMetadataQuota(limit: number, maps: Record<string, Record<string, string> | undefined>): void {
  for (const [field, map] of Object.entries(maps)) {
    if (map === undefined) continue;
    const bytes = metadataBytes(map);
    if (bytes > limit) {
      throw new HttpError(
        422,
        `${field} is ${bytes} bytes (keys and values), over api.quotas.metadata_bytes (${limit})`,
        { reason: 'quota_exceeded', quota: 'api.quotas.metadata_bytes', limit, field, bytes },
      );
    }
  }
}

function fieldMessage(path: string[], message: string): string {
  const field = path.join('.') || 'body';
  return /^(is |failed )/.test(message) ? `${field} ${message}` : `${field}: ${message}`;
}
