import { compile } from '@jmespath-community/jmespath';
import { z } from 'zod';
import { duration, optionalText, size } from '../../config/fields.js';
import type { Destination } from '../../store/types.js';
import type { DestinationType, FieldDescription } from '../destination-types.js';
import type { EndpointGuard } from '../endpoint-guard.js';
import { bucketNameProblem } from '../s3/bucket-name.js';
import { S3Sink, type S3Connection } from '../s3/s3-sink.js';
import { MAX_KEY_TEMPLATE_CHARS } from './key-template.js';
import { S3EventObjects } from './event-object.js';

/** The storage classes Outpost's aws_s3 destination accepts. */
const STORAGE_CLASSES = [
  'STANDARD',
  'REDUCED_REDUNDANCY',
  'STANDARD_IA',
  'ONEZONE_IA',
  'INTELLIGENT_TIERING',
  'GLACIER',
  'DEEP_ARCHIVE',
  'GLACIER_IR',
] as const;

/** AWS regions (`us-east-1`) and what S3-compatible stores use (`auto` for R2, `garage`, ...). */
const REGION = /^[a-z0-9]+(-[a-z0-9]+)*$/;

/**
 * Whether a key_template compiles. Only a template within MAX_KEY_TEMPLATE_CHARS is compiled (a longer one is
 * refused for its length alone); compiling is linear in its length, evaluating it is not (that runs in a worker:
 * key-template-pool.ts).
 */
function compiles(template: string): boolean {
  if (template.length > MAX_KEY_TEMPLATE_CHARS) return true;
  try {
    compile(template);
    return true;
  } catch {
    return false;
  }
}

/**
 * Outpost's message for a field left out ("config.bucket is required") or of another type. The API's own
 * bodies say the same (api/validation.ts); a sink does not reach up into the API for it.
 */
const required = (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : 'failed type validation');

/** Optional config values: Outpost clients send "" for a field left empty. */
const optional = <T extends z.ZodType<unknown, string>>(schema: T) => optionalText.pipe(schema.optional());

/**
 * `compression` is gzip or none for lines and arrays (default gzip); for `format: parquet` the compression
 * inside the file, zstd (its default), snappy, gzip or none.
 */
const batching = z.preprocess(
  withParquetCompression,
  z
    .strictObject({
      max_events: z.number({ error: 'failed type validation' }).int().positive().default(10_000),
      max_bytes: size('64MiB').refine((v) => v > 0, 'must be greater than 0'),
      max_age: duration('10s').refine((v) => v > 0, 'must be greater than 0'),
      format: z.enum(['ndjson', 'json_array', 'parquet'], { error: 'failed enum validation' }).default('ndjson'),
      compression: z.enum(['gzip', 'none', 'zstd', 'snappy'], { error: 'failed enum validation' }).default('gzip'),
    })
    .superRefine((b, ctx) => {
      if (b.format !== 'parquet' && (b.compression === 'zstd' || b.compression === 'snappy'))
        ctx.addIssue({
          code: 'custom',
          path: ['compression'],
          message: `failed enum validation: ${b.compression} is for format parquet; ndjson and json_array take gzip or none`,
        });
    }),
);

/** zstd where format is parquet and compression is not given (the field's own default, gzip, is for lines). */
function withParquetCompression(input: unknown): unknown {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return input;
  const b = input as Record<string, unknown>;
  return b.format === 'parquet' && b.compression === undefined ? { ...b, compression: 'zstd' } : b;
}

export type BatchingConfig = z.output<typeof batching>;

/** config.batching's fields for GET /destination-types, under dotted keys (see unflattenBatching). */
const BATCHING_FIELDS: FieldDescription[] = [
  {
    key: 'batching.max_events',
    type: 'text',
    label: 'Batch: max events',
    description: 'Batched objects instead of one per event: at most this many events per object (default 10000)',
    required: false,
  },
  {
    key: 'batching.max_bytes',
    type: 'text',
    label: 'Batch: max bytes',
    description: 'At most this much data per object, e.g. 64MiB (default)',
    required: false,
  },
  {
    key: 'batching.max_age',
    type: 'text',
    label: 'Batch: max age',
    description: 'An object is written at the latest this long after its first event, e.g. 10s (default)',
    required: false,
  },
  {
    key: 'batching.format',
    type: 'select',
    label: 'Batch: format',
    description:
      'One event data per line (ndjson), a JSON array, or Parquet (columns id, topic, time, metadata, data; .parquet)',
    required: false,
    default: 'ndjson',
    options: [
      { label: 'NDJSON', value: 'ndjson' },
      { label: 'JSON array', value: 'json_array' },
      { label: 'Parquet', value: 'parquet' },
    ],
  },
  {
    key: 'batching.compression',
    type: 'select',
    label: 'Batch: compression',
    description:
      'gzip (.gz) or none; for Parquet the compression inside the file: zstd (default for Parquet), snappy, gzip or none',
    required: false,
    default: 'gzip',
    options: [
      { label: 'gzip', value: 'gzip' },
      { label: 'none', value: 'none' },
      { label: 'zstd (Parquet)', value: 'zstd' },
      { label: 'snappy (Parquet)', value: 'snappy' },
    ],
  },
];

const config = z.strictObject({
  bucket: z.string({ error: required }).min(1, 'is required'),
  region: z.string({ error: required }).min(1, 'is required').regex(REGION, 'failed pattern validation'),
  key_template: optional(
    z
      .string()
      .max(MAX_KEY_TEMPLATE_CHARS, `failed length validation: at most ${MAX_KEY_TEMPLATE_CHARS} characters`)
      .refine(compiles, 'failed pattern validation'),
  ),
  storage_class: optional(
    z
      .string()
      .transform((v) => v.toUpperCase())
      .pipe(z.enum(STORAGE_CLASSES, { error: 'failed enum validation' })),
  ),
  endpoint: optional(z.url({ error: 'failed pattern validation' })),
  batching: batching.optional(),
});

/**
 * A stored destination's config, as delivery reads it: the key_template is not checked again here (it is
 * compiled and evaluated in the key template worker), so one saved before the length limit is still read.
 */
const storedConfig = config.extend({ key_template: optional(z.string()) });

const credentials = z.strictObject({
  key: z.string({ error: required }).min(1, 'is required'),
  secret: z.string({ error: required }).min(1, 'is required'),
  session: optional(z.string()),
});

export type AwsS3Config = z.output<typeof config>;

/** Outpost's `aws_s3`: one object per event (or batches, with `config.batching`), keys from JMESPath. */
export const awsS3: DestinationType = {
  type: 'aws_s3',
  label: 'AWS S3',
  description:
    'Store events in an Amazon S3 bucket or any S3-compatible store: one object per event, or batched objects.',
  config: config as unknown as z.ZodType<Record<string, unknown>>,
  credentials: credentials as unknown as z.ZodType<Record<string, string>>,
  configFields: [
    { key: 'bucket', type: 'text', label: 'Bucket', description: 'The S3 bucket name', required: true },
    { key: 'region', type: 'text', label: 'Region', description: 'AWS region (e.g., us-east-1)', required: true },
    {
      key: 'key_template',
      type: 'text',
      label: 'Key template',
      description: 'JMESPath expression for the S3 object key',
      required: false,
    },
    {
      key: 'storage_class',
      type: 'select',
      label: 'Storage class',
      description: 'S3 storage class (any case)',
      required: false,
      default: 'STANDARD',
      options: STORAGE_CLASSES.map((c) => ({ label: c, value: c })),
    },
    {
      key: 'endpoint',
      type: 'text',
      label: 'Endpoint',
      description:
        'Custom endpoint URL (MinIO, Ceph, R2, LocalStack); implies path-style. http or https, public addresses only unless the operator allows more',
      required: false,
    },
    // config.batching is an object; Outpost's field types have none, so its fields are described one by one
    // under their dotted keys (a form may send them so, or send config.batching nested): any one of them set
    // makes the destination batched
    ...BATCHING_FIELDS,
  ],
  credentialFields: [
    {
      key: 'key',
      type: 'text',
      label: 'Access key ID',
      description: 'AWS Access Key ID',
      required: true,
      sensitive: true,
    },
    {
      key: 'secret',
      type: 'text',
      label: 'Secret access key',
      description: 'AWS Secret Access Key',
      required: true,
      sensitive: true,
    },
    {
      key: 'session',
      type: 'text',
      label: 'Session token',
      description: 'AWS Session Token (for temporary credentials)',
      required: false,
      sensitive: true,
    },
  ],
  target: (d) => `s3://${String(d.config.bucket)}`,
  createSink: (d, { requestTimeout, guard }) => new S3Sink(s3ConnectionOfDestination(d, requestTimeout, guard)),
  batching: (d) => awsS3ConfigOf(d).batching,
  eventObjects: (log, budget) => new S3EventObjects(log, budget, (d) => awsS3ConfigOf(d).key_template),
  location: (d, key) => ({ bucket: String(d.config.bucket), key }),
  check: (c, guard) => {
    const problems: Array<{ path: string[]; message: string }> = [];
    const bucketProblem = typeof c.bucket === 'string' ? bucketNameProblem(c.bucket) : undefined;
    if (bucketProblem) problems.push({ path: ['bucket'], message: bucketProblem });
    const endpointProblem = typeof c.endpoint === 'string' ? guard.endpointProblem(c.endpoint) : undefined;
    if (endpointProblem) problems.push({ path: ['endpoint'], message: endpointProblem });
    return problems;
  },
  // The keys are for a store (endpoint), a bucket in it and the region they are signed for.
  credentialsBoundTo: ['endpoint', 'bucket', 'region'],
  unflatten: unflattenBatching,
};

/**
 * `batching.max_events` and the like folded into `batching`; flat keys win over nested ones, "" (a form's
 * empty field) is left out, and max_events given as text becomes a number.
 */
function unflattenBatching(input: Record<string, unknown>): Record<string, unknown> {
  const flat = Object.keys(input).filter((k) => k.startsWith('batching.'));
  if (flat.length === 0) return input;
  const out: Record<string, unknown> = {};
  const nested = input.batching;
  const batching: Record<string, unknown> =
    typeof nested === 'object' && nested !== null && !Array.isArray(nested) ? { ...nested } : {};
  for (const [k, v] of Object.entries(input)) {
    if (k === 'batching') continue;
    if (!k.startsWith('batching.')) {
      out[k] = v;
      continue;
    }
    if (v === '' || v === null || v === undefined) continue;
    const field = k.slice('batching.'.length);
    batching[field] = field === 'max_events' && typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  }
  if (Object.keys(batching).length > 0 || nested !== undefined)
    out.batching = Object.keys(batching).length > 0 ? batching : nested;
  return out;
}

/**
 * A destination's S3 connection: a custom endpoint implies path-style requests; `guard` checks every
 * connection it makes (a tenant chose the endpoint).
 */
export function s3ConnectionOfDestination(
  destination: Destination,
  requestTimeout: number,
  guard: EndpointGuard,
): S3Connection {
  const c = storedConfig.parse(destination.config);
  const k = destination.credentials;
  return {
    bucket: c.bucket,
    region: c.region,
    endpoint: c.endpoint,
    forcePathStyle: c.endpoint !== undefined,
    credentials: { accessKeyId: k.key ?? '', secretAccessKey: k.secret ?? '', sessionToken: k.session || undefined },
    storageClass: c.storage_class ?? 'STANDARD',
    requestTimeout,
    guard,
  };
}

export function awsS3ConfigOf(destination: Destination): AwsS3Config {
  return storedConfig.parse(destination.config);
}
