/**
 * The kinds of value a configuration field can hold (sizes, durations, optional text) and the batch limits
 * every output has: what the main schema and each sink provider's own fields are written with. Imports
 * nothing of Sluice but units, so a provider can use it without reaching the schema that composes it.
 */
import { z } from 'zod';
import { parseDuration, parseSize } from './units.js';

function toBytes(value: string | number, ctx: z.RefinementCtx): number {
  const bytes = parseSize(value);
  if (bytes === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a size (write e.g. 512KiB, 64MiB, 1GiB)` });
    return z.NEVER;
  }
  return bytes;
}

function toMillis(value: string | number, ctx: z.RefinementCtx): number {
  const millis = parseDuration(value);
  if (millis === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a duration (write e.g. 500ms, 10s, 5m, 1h)` });
    return z.NEVER;
  }
  return millis;
}

/** A size in bytes written as `64MiB`, `1GiB`, `512KB` or a number of bytes. */
export const size = (fallback: string) => z.union([z.number(), z.string()]).default(fallback).transform(toBytes);

/** A size without a default (an optional field, or one whose default is a number of bytes). */
export const sizeItem = z.union([z.number(), z.string()]).transform(toBytes);

/** A duration in milliseconds written as `500ms`, `10s`, `5m`, `1h` or a number of milliseconds. */
export const duration = (fallback: string) => z.union([z.number(), z.string()]).default(fallback).transform(toMillis);

/** A duration without a default: an item of a list. */
export const durationItem = z.union([z.number(), z.string()]).transform(toMillis);

/** An optional string where an empty value (e.g. `${VAR:-}`) means "not set". */
export const optionalText = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v === '' ? undefined : v));

/** An output's `batch`: a batch closes at the first of these limits it reaches. */
export const batchWith = (maxEvents: number, maxBytes: string, maxAge: string) =>
  z
    .strictObject({
      max_events: z.number().int().positive().default(maxEvents),
      max_bytes: size(maxBytes).refine((v) => v > 0, 'must be greater than 0'),
      max_age: duration(maxAge).refine((v) => v > 0, 'must be greater than 0'),
    })
    .prefault({});
