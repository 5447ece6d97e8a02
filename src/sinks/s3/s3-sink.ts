import { PutObjectCommand, S3Client, S3ServiceException, type StorageClass } from '@aws-sdk/client-s3';
import { SinkError, type Sink, type StoredObject } from '../types.js';
import { ENDPOINT_NOT_ALLOWED, type EndpointGuard } from '../endpoint-guard.js';
import { bucketNameProblem } from './bucket-name.js';
import { isPermanentS3Error, sanitizedFailure } from './errors.js';

/** The longest error a tenant destination's attempt records. */
const MAX_TENANT_ERROR = 2048;

/** Where and how to write: the part of an output's or a destination's config the S3 client needs. */
export interface S3Connection {
  bucket: string;
  region: string;
  endpoint?: string;
  forcePathStyle: boolean;
  /** Static keys; without them the SDK's default chain (env, web identity, ECS, profile, IMDS). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  storageClass: string;
  requestTimeout: number;
  /**
   * Set for tenant destinations, whose endpoint a tenant chose: every connection is checked by it, and
   * errors carry codes and statuses, never the words of the answer. Unset for the operator's outputs.
   */
  guard?: EndpointGuard;
}

/** PutObject to any S3-compatible store: AWS S3, MinIO, Ceph, R2, GCS (interoperability mode). */
export class S3Sink implements Sink {
  readonly target: string;
  private readonly client: S3Client;

  constructor(private readonly connection: S3Connection) {
    this.target = `s3://${connection.bucket}`;
    this.client = new S3Client({
      region: connection.region,
      endpoint: connection.endpoint,
      forcePathStyle: connection.forcePathStyle,
      credentials: connection.credentials,
      // Delivery owns retries (backoff without end, visible in /ready); one SDK attempt per try.
      maxAttempts: 1,
      // We send Content-MD5 ourselves; flexible checksums would add trailers some S3-compatible stores reject.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // The guard's agents check each address connected to (after DNS): a save-time check alone would let
      // DNS rebinding through.
      requestHandler: {
        connectionTimeout: 5_000,
        requestTimeout: connection.requestTimeout,
        ...connection.guard?.agents(),
      },
    });
  }

  async put(object: StoredObject, signal: AbortSignal): Promise<void> {
    // A destination saved before bucket names were checked: its name must not become a request path.
    const bucketProblem = this.connection.guard ? bucketNameProblem(this.connection.bucket) : undefined;
    if (bucketProblem)
      throw new SinkError(
        `PutObject ${this.target}/${object.key} not sent: the bucket name ${bucketProblem}`.slice(0, MAX_TENANT_ERROR),
        true,
        'InvalidBucketName',
      );
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.connection.bucket,
          Key: object.key,
          Body: object.body,
          ContentLength: object.body.length,
          ContentType: object.contentType,
          ContentEncoding: object.contentEncoding,
          ContentMD5: object.contentMD5,
          Metadata: object.metadata,
          StorageClass: this.connection.storageClass as StorageClass,
        }),
        { abortSignal: signal },
      );
    } catch (err) {
      const code =
        err instanceof S3ServiceException ? err.name : ((err as NodeJS.ErrnoException).code ?? (err as Error).name);
      const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
      if (this.connection.guard) {
        // A refusal by the guard is Sluice's own message; anything else is told by code and status only.
        const own = (err as NodeJS.ErrnoException).code === ENDPOINT_NOT_ALLOWED ? (err as Error).message : undefined;
        const answered = status ?? (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        const safe = sanitizedFailure(code, answered, own);
        // bounded: the key is at most 1024 bytes, and a bucket stored before names were checked is cut
        const message = `PutObject ${this.target}/${object.key} failed: ${safe.message}`.slice(0, MAX_TENANT_ERROR);
        throw new SinkError(message, isPermanentS3Error(safe.code, answered), safe.code, { cause: err });
      }
      const message = `PutObject ${this.target}/${object.key} failed: ${code}${status ? ` (HTTP ${status})` : ''}: ${(err as Error).message}`;
      throw new SinkError(message, isPermanentS3Error(code, status), code, { cause: err });
    }
  }

  close(): void {
    this.client.destroy();
  }
}
