import { z } from 'zod';
import { duration, optionalText } from '../../config/fields.js';
import { outputProvider, type ProviderConfig } from '../provider.js';
import { S3Sink, type S3Connection } from './s3-sink.js';
import { S3Objects } from './s3-objects.js';

export const STORAGE_CLASSES = [
  'STANDARD',
  'REDUCED_REDUNDANCY',
  'STANDARD_IA',
  'ONEZONE_IA',
  'INTELLIGENT_TIERING',
  'GLACIER',
  'DEEP_ARCHIVE',
  'GLACIER_IR',
  'EXPRESS_ONEZONE',
] as const;

const fields = {
  bucket: z.string().min(3, 'must be a bucket name'),
  region: z.string().min(1).default('us-east-1'),
  endpoint: optionalText.pipe(z.url({ message: 'must be a URL such as http://127.0.0.1:9000' }).optional()),
  force_path_style: z.boolean().default(false),
  access_key_id: optionalText,
  secret_access_key: optionalText,
  session_token: optionalText,
  storage_class: z.enum(STORAGE_CLASSES).default('STANDARD'),
  request_timeout: duration('60s'),
};

export type S3OutputConfig = ProviderConfig<typeof fields>;

/** PutObject of each batch to any S3-compatible store; read back with ListObjectsV2 and GetObject. */
export const s3Output = outputProvider({
  type: 's3',
  fields,
  storesObjects: true,
  check: (o, ctx) => {
    if (Boolean(o.access_key_id) !== Boolean(o.secret_access_key)) {
      ctx.addIssue({
        code: 'custom',
        path: [o.access_key_id ? 'secret_access_key' : 'access_key_id'],
        message:
          'access_key_id and secret_access_key go together: set both, or neither to use the default credential chain',
      });
    }
  },
  createSink: (o) => new S3Sink(s3ConnectionOf(o)),
  target: (o) => `s3://${o.bucket}`,
  reader: (o) => new S3Objects(s3ConnectionOf(o)),
  location: (o) => ({
    root: `s3://${o.bucket}/`,
    s3: { region: o.region, endpoint: o.endpoint, forcePathStyle: o.force_path_style },
  }),
});

function s3ConnectionOf(config: S3OutputConfig): S3Connection {
  return {
    bucket: config.bucket,
    region: config.region,
    endpoint: config.endpoint,
    forcePathStyle: config.force_path_style,
    credentials:
      config.access_key_id && config.secret_access_key
        ? {
            accessKeyId: config.access_key_id,
            secretAccessKey: config.secret_access_key,
            sessionToken: config.session_token,
          }
        : undefined,
    storageClass: config.storage_class,
    requestTimeout: config.request_timeout,
  };
}
