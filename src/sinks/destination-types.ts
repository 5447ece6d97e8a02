import type { z } from 'zod';
import type { Destination } from '../store/types.js';
import { awsS3 } from './s3/aws-s3-destination.js';

export interface FieldDescription {
  key: string;
  type: 'text' | 'object';
  label: string;
  description: string;
  required: boolean;
  default?: string;
  sensitive?: boolean;
}

/** A kind of destination tenants can create: its config and credentials schemas, for validation and for `/destination-types`. */
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
}

export const DESTINATION_TYPES: ReadonlyMap<string, DestinationType> = new Map([[awsS3.type, awsS3]]);

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
