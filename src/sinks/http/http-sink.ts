import { gunzipSync } from 'node:zlib';
import { isRetryableStatus, RefusedDecisionsError, SinkError, type Sink, type StoredObject } from '../types.js';
import { redactUrl, scrub, secretPartsOf } from '../redact-url.js';
import {
  cutPieces,
  decisionsOf,
  decisionText,
  splitByBytes,
  encodePiece,
  type ObjectDecisions,
  type PieceEncoding,
  type RequestLimits,
} from './request-pieces.js';

export interface HttpTarget {
  url: string;
  headers: Record<string, string>;
  timeout: number;
  /** The most one request carries; a larger object goes in several requests. Unset: each object whole. */
  limits?: RequestLimits;
  /** The zlib level of requests cut out of a gzip object (the output's compression_level). */
  compressionLevel?: number;
}

/** One request of an object: decisions first..last of it, or the whole object as it is (`whole`). */
interface Request {
  first: number;
  last: number;
  /**
   * A piece's own bytes; empty for the whole object, which is sent from the object of each put: a delivery
   * remembered across puts must not keep a body, whose memory its caller uses again once the put settles.
   */
  body: Buffer;
  whole: boolean;
  state: 'pending' | 'acknowledged' | 'refused';
  refusal?: string;
}

/** The requests of an object being delivered, and which of them the receiver acknowledged. */
interface Delivery {
  md5: string;
  count: number;
  requests: Request[];
}

/** Objects whose delivery is remembered between tries (a few uploads are in flight per output at once). */
const REMEMBERED_DELIVERIES = 64;

/**
 * POSTs each object to a URL (an `http` output, or an OPA decision log service for a `service` output).
 * 2xx is delivered; 408, 429, 5xx and network errors are retried by delivery; any other answer means the
 * receiver refuses (wrong URL, credentials): permanent, said loudly, and still retried slowly.
 *
 * An object larger than `limits` (a service output: 1 MiB compressed, 10,000 decisions) goes in several
 * requests cut on decision boundaries, in order, each a complete body of the output's format; a 413 for a
 * request of several decisions cuts it in two and sends the halves. The sink remembers which requests of an
 * object were acknowledged, so a retry (of the same object, in this process) resumes after them. A decision
 * refused alone with 413 cannot be delivered by any retry: once the rest is acknowledged, put throws a
 * RefusedDecisionsError naming it.
 *
 * `Idempotency-Key` is the object's key when the object goes whole, `<key>#<first>-<last>` (decision indices
 * in the object, from 0) for a piece: the same on every retry, and always for the same bytes.
 */
export class HttpSink implements Sink {
  readonly target: string;
  /** What of the URL may be a secret (path tokens, query values), to scrub from every error message. */
  private readonly secrets: string[];
  private readonly deliveries = new Map<string, Delivery>();

  constructor(private readonly http: HttpTarget) {
    // shown in /ready, the console and logs: never the URL's userinfo, path or query values
    this.target = redactUrl(http.url);
    this.secrets = secretPartsOf(http.url);
  }

  async put(object: StoredObject, signal: AbortSignal): Promise<void> {
    let delivery = this.deliveries.get(object.key);
    if (delivery?.md5 !== object.contentMD5) {
      delivery = await this.plan(object);
      this.deliveries.delete(object.key);
      this.deliveries.set(object.key, delivery);
      for (const key of this.deliveries.keys()) {
        if (this.deliveries.size <= REMEMBERED_DELIVERIES) break;
        this.deliveries.delete(key);
      }
    }
    const { requests } = delivery;
    // decoded only when a request must be cut after a 413 (or a refusal reported), once per try
    let decoded: Promise<ObjectDecisions | undefined> | undefined;
    const decode = () => (decoded ??= this.decode(object));
    // each cut replaces a request by two of fewer decisions: at most `count` requests in all
    for (let i = 0; i < requests.length; i++) {
      const request = requests[i]!;
      if (request.state === 'acknowledged') continue;
      const key = request.whole ? object.key : `${object.key}#${request.first}-${request.last}`;
      const answer = await this.post(object, request.whole ? object.body : request.body, key, signal);
      if (answer.ok) {
        request.state = 'acknowledged';
        request.body = Buffer.alloc(0);
        continue;
      }
      if (answer.status === 413 && request.last > request.first) {
        const d = await decode();
        if (d && d.spans.length / 2 === delivery.count) {
          const halves: Request[] = [];
          for (const [first, last] of splitByBytes(d.spans, request.first, request.last, 2)) {
            halves.push({
              first,
              last,
              body: await encodePiece(d, this.encodingOf(object), first, last),
              whole: false,
              state: 'pending',
            });
          }
          requests.splice(i, 1, ...halves);
          i--;
          continue;
        }
      }
      if (answer.status === 413 && request.first === request.last) {
        // one decision the receiver refuses as too large: the others go on
        request.state = 'refused';
        request.refusal = answer.message;
        continue;
      }
      throw answer.error;
    }
    const refused = requests.filter((r) => r.state === 'refused');
    if (refused.length === 0) {
      this.deliveries.delete(object.key);
      return;
    }
    const d = await decode();
    const textOf = (index: number) =>
      d
        ? decisionText(d, index)
        : (object.contentEncoding === 'gzip' ? gunzipSync(object.body) : object.body).toString('utf8');
    throw new RefusedDecisionsError(
      `${refused[0]!.refusal} (${refused.length} decision${refused.length === 1 ? '' : 's'} refused alone: too large for the receiver)`,
      refused.map((r) => ({ index: r.first, decision: textOf(r.first), error: r.refusal! })),
      delivery.count - refused.length,
    );
  }

  close(): void {
    this.deliveries.clear();
  }

  /** The requests of an object: itself when it is within the limits (or cannot be cut), else its pieces. */
  private async plan(object: StoredObject): Promise<Delivery> {
    const count = object.count ?? 1;
    const { limits } = this.http;
    const whole = (): Delivery => ({
      md5: object.contentMD5,
      count,
      requests: [{ first: 0, last: count - 1, body: Buffer.alloc(0), whole: true, state: 'pending' }],
    });
    const fits =
      (limits?.maxBytes === undefined || object.body.length <= limits.maxBytes) &&
      (limits?.maxDecisions === undefined || count <= limits.maxDecisions);
    if (fits || count <= 1) return whole();
    const decoded = await this.decode(object);
    if (!decoded || decoded.spans.length / 2 !== count) return whole();
    const pieces = await cutPieces(decoded, this.encodingOf(object), limits ?? {}, 0, count - 1);
    if (pieces.length === 1) return whole();
    return {
      md5: object.contentMD5,
      count,
      requests: pieces.map((p) => ({ ...p, whole: false, state: 'pending' as const })),
    };
  }

  /** Pieces are compressed as their object is. */
  private encodingOf(object: StoredObject): PieceEncoding {
    return { compression: object.contentEncoding === 'gzip' ? 'gzip' : 'none', level: this.http.compressionLevel };
  }

  private async decode(object: StoredObject): Promise<ObjectDecisions | undefined> {
    try {
      return await decisionsOf(object.body, object.contentEncoding);
    } catch {
      return undefined; // bytes that do not decode: sent whole, never cut
    }
  }

  private async post(
    object: StoredObject,
    body: Buffer,
    key: string,
    signal: AbortSignal,
  ): Promise<{ ok: true } | { ok: false; status?: number; message: string; error: SinkError }> {
    let response: Response;
    try {
      response = await fetch(this.http.url, {
        method: 'POST',
        headers: {
          'content-type': object.contentType,
          ...(object.contentEncoding ? { 'content-encoding': object.contentEncoding } : {}),
          'idempotency-key': key,
          ...this.http.headers,
        },
        body: body as unknown as BodyInit,
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.http.timeout)]),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      const code = cause?.code ?? (err as Error).name;
      // fetch's own messages may quote the whole URL
      const message = `POST ${this.target} failed: ${code}: ${scrub((err as Error).message, this.http.url, this.secrets)}`;
      return { ok: false, message, error: new SinkError(message, false, code, { cause: err }) };
    }
    // the body is read so the connection can be reused; a short excerpt helps the operator
    const text = (await response.text().catch(() => '')).slice(0, 200);
    if (response.ok) return { ok: true };
    // the receiver's answer may echo the path or the query (a token) back
    const excerpt = scrub(text, this.http.url, this.secrets);
    const message = `POST ${this.target} answered ${response.status}${excerpt ? `: ${excerpt}` : ''}`;
    return {
      ok: false,
      status: response.status,
      message,
      error: new SinkError(message, !isRetryableStatus(response.status), `HTTP ${response.status}`),
    };
  }
}
