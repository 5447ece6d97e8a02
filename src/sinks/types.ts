import { createHash } from 'node:crypto';

/** One object to write, fully encoded: a sink only transports it. */
export interface StoredObject {
  key: string;
  body: Buffer;
  contentType: string;
  contentEncoding?: string;
  /** Base64 MD5 of the body (`md5`), sent so the store verifies what it received. */
  contentMD5: string;
  /** User metadata (S3 `x-amz-meta-*`); sinks without metadata ignore it. */
  metadata?: Record<string, string>;
  /** How many decisions the body holds, when known (an object of one decision per object has none: 1). */
  count?: number;
  /**
   * Gives the body's memory back to be used again (delivery/body-buffers.ts). Whoever uploads the object calls it
   * once no attempt will read the body again; the body must not be read after it. Absent: nothing to give back.
   */
  releaseBody?: () => void;
}

/** A body's `contentMD5`. */
export function md5(body: Buffer): string {
  return createHash('md5').update(body).digest('base64');
}

/**
 * Where an output's objects go. Batching, encoding and retries live in delivery: a sink writes one object
 * and says whether a failure is worth retrying soon.
 */
export interface Sink {
  /** A short description for logs and /ready, never with credentials: `s3://bucket` or `file:///path`. */
  readonly target: string;
  /**
   * Writes the object. Its body is the caller's again once the returned promise settles (its memory is used
   * for the next body): a sink that keeps anything of it for later copies it.
   */
  put(object: StoredObject, signal: AbortSignal): Promise<void>;
  close(): void;
}

/**
 * A failed write. `permanent` means retrying cannot fix it without a change outside Sluice (a missing bucket,
 * denied access, wrong credentials): delivery keeps the data and keeps trying, slowly, and says so loudly.
 */
export class SinkError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Thrown by `put` when the receiver took every decision of the object but these: each was sent alone and
 * still refused as too large (413), which no retry can change. The object counts as delivered without them;
 * the caller sets each aside (the output's dead letter) and completes the batch. Called again with the same
 * object instead, the sink re-sends only these decisions.
 */
export class RefusedDecisionsError extends SinkError {
  constructor(
    message: string,
    /** Each refused decision: its index in the object, its text, and the receiver's answer. */
    readonly refused: ReadonlyArray<{ index: number; decision: string; error: string }>,
    /** Decisions of the object the receiver acknowledged. */
    readonly delivered: number,
  ) {
    super(message, true, 'HTTP 413');
  }
}

/** An HTTP answer that a later try may not get: a timeout, throttling, or a server error. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/**
 * Listing and reading back the objects an output wrote (S3 or a directory, same keys): what `sluice query`,
 * `sluice tail` and the console's decision lookup read. Only outputs whose provider has a reader have one.
 */
export interface OutputObjects {
  /** Keys under a prefix, in key order. */
  list(prefix: string): Promise<string[]>;
  /** The names one level below a prefix (`a/` for `a/b/c`), for walking partitions and instances. */
  children(prefix: string): Promise<string[]>;
  read(key: string): Promise<Buffer>;
  /** An object's length in bytes. */
  size(key: string): Promise<number>;
  /** Bytes [start, end) of an object: Parquet objects are read footer first, then only the columns needed. */
  readRange(key: string, start: number, end: number): Promise<Buffer>;
  close(): void;
}

/**
 * Where a query engine finds an output's objects, for `sluice table`: the URL its keys are under
 * (`s3://bucket/` or a directory, ending in `/`), and for S3 how to reach the store. Never credentials.
 */
export interface ObjectLocation {
  /** `s3://<bucket>/` or the absolute path of a directory, with a trailing `/`; keys follow it. */
  root: string;
  s3?: { region: string; endpoint?: string; forcePathStyle: boolean };
}
