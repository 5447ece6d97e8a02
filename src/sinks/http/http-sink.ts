import { isRetryableStatus, SinkError, type Sink, type StoredObject } from '../types.js';
import { redactUrl, scrub, secretPartsOf } from '../redact-url.js';

export interface HttpTarget {
  url: string;
  headers: Record<string, string>;
  timeout: number;
}

/**
 * POSTs each object to a URL (an `http` output, or an OPA decision log service for a `service` output).
 * 2xx is delivered; 408, 429, 5xx and network errors are retried by delivery; any other answer means the
 * receiver refuses (wrong URL, credentials): permanent, said loudly, and still retried slowly.
 * The object's key goes along as `Idempotency-Key`, the same on every retry of the batch.
 */
export class HttpSink implements Sink {
  readonly target: string;
  /** What of the URL may be a secret (path tokens, query values), to scrub from every error message. */
  private readonly secrets: string[];

  constructor(private readonly http: HttpTarget) {
    // shown in /ready, the console and logs: never the URL's userinfo, path or query values
    this.target = redactUrl(http.url);
    this.secrets = secretPartsOf(http.url);
  }

  async put(object: StoredObject, signal: AbortSignal): Promise<void> {
    let response: Response;
    try {
      response = await fetch(this.http.url, {
        method: 'POST',
        headers: {
          'content-type': object.contentType,
          ...(object.contentEncoding ? { 'content-encoding': object.contentEncoding } : {}),
          'idempotency-key': object.key,
          ...this.http.headers,
        },
        body: object.body as unknown as BodyInit,
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.http.timeout)]),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      const code = cause?.code ?? (err as Error).name;
      // fetch's own messages may quote the whole URL
      throw new SinkError(`POST ${this.target} failed: ${code}: ${scrub((err as Error).message, this.http.url, this.secrets)}`, false, code, { cause: err });
    }
    // the body is read so the connection can be reused; a short excerpt helps the operator
    const text = (await response.text().catch(() => '')).slice(0, 200);
    if (response.ok) return;
    // the receiver's answer may echo the path or the query (a token) back
    const excerpt = scrub(text, this.http.url, this.secrets);
    throw new SinkError(`POST ${this.target} answered ${response.status}${excerpt ? `: ${excerpt}` : ''}`, !isRetryableStatus(response.status), `HTTP ${response.status}`);
  }

  close(): void {}
}
