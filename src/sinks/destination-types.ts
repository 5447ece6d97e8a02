import type { z } from 'zod';
import type { Destination } from '../store/types.js';
import type { EndpointGuard } from './endpoint-guard.js';
import type { Sink } from './types.js';

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

/**
 * A kind of destination tenants can create (`POST /tenants/{id}/destinations` with its `type`): its config and
 * credentials schemas, for validation and for `/destination-types`, and the sink its events are written with.
 * Listed once in registry.ts.
 */
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
