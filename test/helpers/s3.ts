import S3rver from 's3rver';
import { mkdtempSync, rmSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, HeadObjectCommand, ListObjectsCommand, S3Client } from '@aws-sdk/client-s3';

export const S3_KEY = 'S3RVER';
export const S3_SECRET = 'S3RVER';

/** A real S3-speaking server (s3rver) on 127.0.0.1, which can be stopped and started again on the same port. */
export class TestS3 {
  private server: S3rver | undefined;
  readonly directory = mkdtempSync(path.join(tmpdir(), 'sluice-s3-'));
  port = 0;
  readonly client: S3Client;
  private clientEndpoint = { url: '' };

  constructor(private readonly buckets: string[] = ['logs']) {
    this.client = new S3Client({
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: S3_KEY, secretAccessKey: S3_SECRET },
      endpoint: async () => ({ url: new URL(this.clientEndpoint.url) }),
      // bounded, so a test reading a stuck s3rver fails instead of waiting for ever
      requestHandler: { connectionTimeout: 5_000, requestTimeout: 30_000 },
    });
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = new S3rver({
      port: this.port,
      address: '127.0.0.1',
      silent: true,
      directory: this.directory,
      configureBuckets: this.buckets.map((name) => ({ name, configs: [] })),
    });
    const address = (await this.server.run()) as unknown as { port: number };
    this.port = address.port;
    this.clientEndpoint.url = this.endpoint;
  }

  /**
   * Stops listening and drops open connections: a client that keeps retrying on keep-alive connections (a
   * sluice whose uploads fail) would otherwise hold close() open for ever.
   */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = server.close();
    (server as unknown as { httpServer?: { closeAllConnections?: () => void } }).httpServer?.closeAllConnections?.();
    await closed;
  }

  /**
   * Every object key in a bucket, sorted. ListObjects (v1) pages by the last key: s3rver's v2 continuation
   * tokens use a cipher OpenSSL 3 refuses (HTTP 500), so a bucket of more than 1000 objects cannot be listed by v2.
   */
  async keys(bucket = 'logs'): Promise<string[]> {
    const keys: string[] = [];
    let marker: string | undefined;
    for (let page = 0; page < 10_000; page++) {
      const res = await this.client.send(new ListObjectsCommand({ Bucket: bucket, Marker: marker }));
      for (const o of res.Contents ?? []) keys.push(o.Key!);
      if (!res.IsTruncated || !res.Contents?.length) break;
      marker = res.Contents[res.Contents.length - 1]!.Key;
    }
    return keys.sort();
  }

  async object(
    key: string,
    bucket = 'logs',
  ): Promise<{
    body: Buffer;
    contentType?: string;
    contentEncoding?: string;
    storageClass?: string;
    metadata?: Record<string, string>;
  }> {
    const res = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const body = Buffer.from(await res.Body!.transformToByteArray());
    const head = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return {
      body,
      contentType: res.ContentType,
      contentEncoding: res.ContentEncoding,
      storageClass: head.StorageClass,
      metadata: res.Metadata,
    };
  }

  /** The decisions of every object in the bucket, decoded by each object's extension. */
  async decisions(bucket = 'logs'): Promise<Array<{ key: string; decision: Record<string, unknown> }>> {
    const out: Array<{ key: string; decision: Record<string, unknown> }> = [];
    for (const key of await this.keys(bucket)) {
      const { body } = await this.object(key, bucket);
      for (const decision of decodeObject(key, body)) out.push({ key, decision });
    }
    return out;
  }
}

/** Decodes an object body written by Sluice: `.gz` is gunzipped, `.ndjson` split in lines, `.json` parsed. */
export function decodeObject(key: string, body: Buffer): Array<Record<string, unknown>> {
  const text = (key.endsWith('.gz') ? gunzipSync(body) : body).toString('utf8');
  const name = key.replace(/\.gz$/, '');
  if (name.endsWith('.ndjson'))
    return text
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l));
  const parsed = JSON.parse(text);
  return Array.isArray(parsed) ? parsed : [parsed];
}

/** A started s3rver, stopped and removed when the test ends (even when it fails). */
export async function s3For(t: TestContext, buckets: string[] = ['logs']): Promise<TestS3> {
  const s3 = new TestS3(buckets);
  await s3.start();
  t.after(async () => {
    await s3.stop().catch(() => {});
    rmSync(s3.directory, { recursive: true, force: true });
  });
  return s3;
}
