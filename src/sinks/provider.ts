import type { z } from 'zod';
import type { ObjectLocation, OutputObjects, Sink } from './types.js';

/**
 * The fields every output has (name, batch, format, compression, key, retry, rules ...) are validated by
 * config/schema.ts; these are the ones a provider reads.
 */
export type SharedOutputConfig = {
  name: string;
  /** zlib level of objects compressed again (unset: the buffer's chunks as they are). */
  compression_level?: number;
};

/** An output's config as its provider gets it: the shared fields and its own, validated and with defaults. */
export type ProviderConfig<Fields extends z.ZodRawShape> = SharedOutputConfig & z.output<z.ZodObject<Fields>>;

/**
 * An output type (`outputs[].type`): everything about it in one place, listed once in registry.ts.
 *
 * config/schema.ts makes each provider's schema from the shared output fields followed by `type` and the
 * provider's `fields` (a field of the shared ones named again, e.g. `compression`, gets the provider's
 * default instead, in its place), then runs `check`. Delivery batches, encodes and retries; the sink the
 * provider makes only writes one object.
 */
export interface OutputProvider<Type extends string = string, Fields extends z.ZodRawShape = z.ZodRawShape> {
  readonly type: Type;
  /** Its own config fields (zod), and the shared ones it gives another default. */
  readonly fields: Fields;
  /**
   * It stores each object whole, under its key (a bucket, a directory), so any format fits it, Parquet
   * included; an output that sends or prints decisions (http, service, console) takes NDJSON and JSON arrays.
   */
  readonly storesObjects?: boolean;
  /** Checks across its fields (as zod issues at their paths), run once they are parsed. */
  check?(config: ProviderConfig<Fields>, ctx: z.RefinementCtx): void;
  createSink(config: ProviderConfig<Fields>): Sink;
  /** Where it writes, for `sluice check`, /ready and logs, without making a client; never with secrets. */
  target(config: ProviderConfig<Fields>): string;
  /** How to list and read back what it wrote, for `sluice query` and the console; absent: it cannot be read back. */
  reader?(config: ProviderConfig<Fields>): OutputObjects;
  /** Where a query engine (Athena, DuckDB) reads its objects, for `sluice table`; absent: not queryable. */
  location?(config: ProviderConfig<Fields>): ObjectLocation;
}

/** A provider with its types checked (and `Type` kept as the literal the config's `type` is). */
export function outputProvider<Type extends string, Fields extends z.ZodRawShape>(
  provider: OutputProvider<Type, Fields>,
): OutputProvider<Type, Fields> {
  return provider;
}
