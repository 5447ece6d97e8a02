import { PutObjectCommand, S3Client, S3ServiceException, type StorageClass } from '@aws-sdk/client-s3';
import type { S3OutputConfig } from '../../config/schema.js';
import { SinkError, type Sink, type StoredObject } from '../types.js';
import { isPermanentS3Error } from './errors.js';

/** PutObject to any S3-compatible store: AWS S3, MinIO, Ceph, R2, GCS (interoperability mode). */
export class S3Sink implements Sink {
  readonly target: string;
  private readonly client: S3Client;

  constructor(private readonly config: S3OutputConfig) {
    this.target = `s3://${config.bucket}`;
    this.client = new S3Client({
      region: config.region,
      endpoint: config.endpoint,
      forcePathStyle: config.force_path_style,
      // Static keys when configured; otherwise the SDK's default chain (env, web identity, ECS, profile, IMDS).
      credentials: config.access_key_id && config.secret_access_key
        ? { accessKeyId: config.access_key_id, secretAccessKey: config.secret_access_key, sessionToken: config.session_token }
        : undefined,
      // Delivery owns retries (backoff without end, visible in /ready); one SDK attempt per try.
      maxAttempts: 1,
      // We send Content-MD5 ourselves; flexible checksums would add trailers some S3-compatible stores reject.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: 5_000, requestTimeout: config.request_timeout },
    });
  }

  async put(object: StoredObject, signal: AbortSignal): Promise<void> {
    try {
      await this.client.send(new PutObjectCommand({
        Bucket: this.config.bucket,
        Key: object.key,
        Body: object.body,
        ContentLength: object.body.length,
        ContentType: object.contentType,
        ContentEncoding: object.contentEncoding,
        ContentMD5: object.contentMD5,
        StorageClass: this.config.storage_class as StorageClass,
      }), { abortSignal: signal });
    } catch (err) {
      const code = err instanceof S3ServiceException ? err.name : (err as NodeJS.ErrnoException).code ?? (err as Error).name;
      const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
      const message = `PutObject ${this.target}/${object.key} failed: ${code}${status ? ` (HTTP ${status})` : ''}: ${(err as Error).message}`;
      throw new SinkError(message, isPermanentS3Error(code, status), code, { cause: err });
    }
  }

  close(): void {
    this.client.destroy();
  }
}
