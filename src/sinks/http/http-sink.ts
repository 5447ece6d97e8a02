import { isRetryableStatus, SinkError, type Sink, type StoredObject } from '../types.js';

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

  constructor(private readonly http: HttpTarget) {
    const url = new URL(http.url);
    // never the credentials of a URL in logs
    url.username = '';
    url.password = '';
    this.target = url.toString();
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
      throw new SinkError(`POST ${this.target} failed: ${code}: ${(err as Error).message}`, false, code, { cause: err });
    }
    // the body is read so the connection can be reused; a short excerpt helps the operator
    const text = (await response.text().catch(() => '')).slice(0, 200);
    if (response.ok) return;
    throw new SinkError(`POST ${this.target} answered ${response.status}${text ? `: ${text}` : ''}`, !isRetryableStatus(response.status), `HTTP ${response.status}`);
  }

  close(): void {}
}
