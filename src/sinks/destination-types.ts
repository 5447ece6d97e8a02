import type { Logger } from 'pino';
import type { z } from 'zod';
import type { Destination, StoredEvent } from '../store/types.js';
import type { EndpointGuard } from './endpoint-guard.js';
import type { Sink, StoredObject } from './types.js';

/** A field of `GET /destination-types`, in the shape Outpost's clients parse (their field types only). */
export interface FieldDescription {
  key: string;
  type: 'text' | 'checkbox' | 'key_value_map' | 'select';
  label: string;
  description: string;
  required: boolean;
  default?: string;
  sensitive?: boolean;
  /** The values of a `select`. */
  options?: Array<{ label: string; value: string }>;
}

/** A destination's `config.batching`: few large objects instead of one per event (delivery batches, encodes). */
export interface DestinationBatching {
  max_events: number;
  max_bytes: number;
  max_age: number;
  format: 'ndjson' | 'json_array' | 'parquet';
  /** gzip or none for lines and arrays; inside the file (zstd, snappy, gzip or none) for Parquet. */
  compression: 'gzip' | 'none' | 'zstd' | 'snappy';
  parquet?: { row_group_bytes: number };
}

/**
 * How a destination type makes the object of one event (a destination without `config.batching`). Made once
 * by the dispatcher (it may hold processes: key templates are evaluated off the event loop) and closed when
 * the dispatcher stops.
 */
export interface EventObjects {
  /** The event's object key, fixed (stored) before the first attempt: a retry writes the same object. */
  key(event: StoredEvent, destination: Destination): Promise<string>;
  /**
   * The code recorded for an error of key() that the event itself causes (`key_template`): evaluated again on
   * the same event it fails again, so it is not retried. Undefined for any other error (retried as usual).
   */
  keyFailureCode(err: unknown): string | undefined;
  /** The event's object under `key`. */
  object(event: StoredEvent, destination: Destination, key: string): StoredObject;
  close(): Promise<void>;
}

/**
 * A kind of destination tenants can create (`POST /tenants/{id}/destinations` with its `type`): its config and
 * credentials schemas, for validation and for `/destination-types`, and the sink its events are written with.
 * Listed once in registry.ts.
 */
/**
 * The bound of the work that making one event's object may take (api.key_templates): a tenant's expression
 * (an aws_s3 key_template) can ask for unbounded time and memory.
 */
export interface EventObjectBudget {
  timeMs: number;
  maxMemoryBytes: number;
}

export interface DestinationType {
  type: string;
  label: string;
  description: string;
  config: z.ZodType<Record<string, unknown>>;
  credentials: z.ZodType<Record<string, string>>;
  configFields: FieldDescription[];
  credentialFields: FieldDescription[];
  /** Where it writes, for logs and the console; never with credentials. */
  target(destination: Destination): string;
  /** The sink of a saved destination; `guard` checks every connection it makes (a tenant chose where it goes). */
  createSink(destination: Destination, opts: { requestTimeout: number; guard: EndpointGuard }): Sink;
  /** A saved destination's batching, or undefined: one object per event, made by eventObjects. */
  batching(destination: Destination): DestinationBatching | undefined;
  /** Per-event objects of this type: keys and bodies. */
  eventObjects(log: Logger, budget: EventObjectBudget): EventObjects;
  /** Where an attempt wrote `key`, as its `response_data` says it (`{bucket, key}`); never with credentials. */
  location(destination: Destination, key: string): Record<string, unknown>;
  /**
   * Checks of a parsed config that need the server's config (where destinations may connect), as field
   * problems (`{path: ['endpoint'], message: 'is not allowed: ...'}`); run when a destination is saved.
   */
  check?(config: Record<string, unknown>, guard: EndpointGuard): Array<{ path: string[]; message: string }>;
  /**
   * Config fields the credentials are given for: changing one drops the stored credentials unless new ones
   * come in the same request, so that nobody can point someone else's keys at a place of their choosing.
   */
  credentialsBoundTo?: readonly string[];
  /**
   * A config as a form built from configFields sends it (flat keys such as `batching.max_events`, values as
   * text) turned into the nested config the schema parses; a config already nested passes unchanged.
   */
  unflatten?(config: Record<string, unknown>): Record<string, unknown>;
}

/** The shape of `GET /destination-types`, as Outpost answers it. */
export function describeType(t: DestinationType) {
  return {
    type: t.type,
    label: t.label,
    description: t.description,
    config_fields: t.configFields,
    credential_fields: t.credentialFields,
  };
}
