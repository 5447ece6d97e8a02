import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import type { OutputConfig } from '../config/schema.js';
import { s3ConnectionOf } from '../sinks/s3/s3-sink.js';
import { arrayElementTexts } from '../json/array-scan.js';

/** Listing and reading back the objects an output wrote: S3 or a directory, same keys. */
export interface OutputObjects {
  /** Keys under a prefix, in key order. */
  list(prefix: string): Promise<string[]>;
  /** The names one level below a prefix (`a/` for `a/b/c`), for walking partitions and instances. */
  children(prefix: string): Promise<string[]>;
  read(key: string): Promise<Buffer>;
  close(): void;
}

export function outputObjects(output: OutputConfig): OutputObjects {
  if (output.type === 's3') return new S3Objects(output);
  if (output.type === 'file') return new FileObjects(output.path);
  throw new Error(`output ${output.name} is of type ${output.type}: only s3 and file outputs can be read back`);
}

class S3Objects implements OutputObjects {
  private readonly client: S3Client;
  private readonly bucket: string;

  constructor(output: Extract<OutputConfig, { type: 's3' }>) {
    const c = s3ConnectionOf(output);
    this.bucket = c.bucket;
    this.client = new S3Client({ region: c.region, endpoint: c.endpoint, forcePathStyle: c.forcePathStyle, credentials: c.credentials });
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    for (let page = 0; page < 100_000; page++) {
      const res = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of res.Contents ?? []) if (o.Key) keys.push(o.Key);
      if (!res.IsTruncated) break;
      token = res.NextContinuationToken;
    }
    return keys;
  }

  async children(prefix: string): Promise<string[]> {
    const names: string[] = [];
    let token: string | undefined;
    for (let page = 0; page < 100_000; page++) {
      const res = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }));
      for (const p of res.CommonPrefixes ?? []) if (p.Prefix) names.push(p.Prefix);
      if (!res.IsTruncated) break;
      token = res.NextContinuationToken;
    }
    if (names.length > 0) return names;
    // Some S3-compatible stores (s3rver among them) ignore Delimiter: derive the level from the keys.
    const below = (await this.list(prefix)).map((key) => key.slice(prefix.length)).filter((rest) => rest.includes('/'));
    return [...new Set(below.map((rest) => `${prefix}${rest.slice(0, rest.indexOf('/') + 1)}`))].sort();
  }

  async read(key: string): Promise<Buffer> {
    const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
    return Buffer.from(await res.Body!.transformToByteArray());
  }

  close(): void {
    this.client.destroy();
  }
}

class FileObjects implements OutputObjects {
  constructor(private readonly root: string) {}

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    const walk = (dir: string, rel: string) => {
      let entries;
      try {
        entries = readdirSync(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const key = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          if (prefix.startsWith(`${key}/`) || key.startsWith(prefix) || `${key}/`.startsWith(prefix)) walk(path.join(dir, e.name), key);
        } else if (key.startsWith(prefix) && !e.name.startsWith('.') && !e.name.endsWith('.tmp')) {
          // `<key>.<random>.tmp` is an object the file output is still writing (it is renamed once complete):
          // reading it would fail on a partial file or, once renamed, yield its decisions twice
          keys.push(key);
        }
      }
    };
    walk(this.root, '');
    return keys.sort();
  }

  async children(prefix: string): Promise<string[]> {
    try {
      return readdirSync(path.join(this.root, prefix), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => `${prefix}${e.name}/`).sort();
    } catch {
      return [];
    }
  }

  async read(key: string): Promise<Buffer> {
    return readFileSync(path.join(this.root, key));
  }

  close(): void {}
}

/** A decision read back from an output: its text as stored, and its value (for filtering only). */
export interface StoredDecision {
  text: string;
  decision: Record<string, unknown>;
}

/**
 * The decisions of an object, whatever its format: NDJSON / JSON lines, a JSON array or one decision, gzip or
 * not. Each keeps its exact text (so what is printed is what is stored: number text, key order), cut out of
 * a JSON array by its elements' spans; JSON.parse (iterative in V8, so any depth) gives the values to filter on.
 */
export function decisionsOf(key: string, body: Buffer): StoredDecision[] {
  const bytes = key.endsWith('.gz') || (body[0] === 0x1f && body[1] === 0x8b) ? gunzipSync(body) : body;
  const text = bytes.toString('utf8').trim();
  if (text === '') return [];
  if (text.startsWith('[')) {
    const values = JSON.parse(text) as Array<Record<string, unknown>>;
    const texts = arrayElementTexts(Buffer.from(text));
    return values.map((decision, i) => ({ text: texts[i]!, decision }));
  }
  const lines = key.endsWith('.json') && !text.includes('\n') ? [text] : text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.map((line) => ({ text: line, decision: JSON.parse(line) as Record<string, unknown> }));
}
