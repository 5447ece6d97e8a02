import http from 'node:http';
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';

/** One PUT that reached the store through the recorder: its object key and the MD5 of the object's bytes. */
export interface RecordedPut {
  key: string;
  /** The Content-MD5 it was sent with (which the store checks against what it received), else the body's MD5. */
  md5: string;
  /** The store's answer (it kept the object when 200), whether or not the client got it. */
  status: number;
}

/**
 * An HTTP proxy on 127.0.0.1 in front of s3rver (path-style requests) that records the MD5 of every PUT's
 * object per key, and can hold the answers of PUTs: with `holdAnswers`, each PUT is forwarded and stored, but
 * its answer never goes back, so the client (a Sluice about to be killed) does not learn its upload landed,
 * and uploads it again after its restart.
 */
export class UploadRecorder {
  readonly puts: RecordedPut[] = [];
  holdAnswers = false;
  port = 0;
  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  private readonly agent = new http.Agent({ keepAlive: true });

  constructor(
    readonly targetPort: number,
    readonly bucket = 'logs',
  ) {
    this.server = http.createServer((req, res) => this.forward(req, res));
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** PUTs the store answered 200, per key. */
  storedPuts(): Map<string, RecordedPut[]> {
    const byKey = new Map<string, RecordedPut[]>();
    for (const p of this.puts) if (p.status === 200) byKey.set(p.key, [...(byKey.get(p.key) ?? []), p]);
    return byKey;
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.agent.destroy();
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const upstream = http.request(
        {
          host: '127.0.0.1',
          port: this.targetPort,
          method: req.method,
          path: req.url,
          headers: req.headers,
          agent: this.agent,
        },
        (upRes) => {
          const answer: Buffer[] = [];
          upRes.on('data', (c: Buffer) => answer.push(c));
          upRes.on('end', () => {
            const url = new URL(req.url ?? '/', 'http://x');
            const prefix = `/${this.bucket}/`;
            // PutObject (the SDK adds ?x-id=PutObject); a multipart part would carry uploadId, which Sluice never sends
            if (req.method === 'PUT' && url.pathname.startsWith(prefix) && !url.searchParams.has('uploadId')) {
              const key = decodeURIComponent(url.pathname.slice(prefix.length));
              const hold = this.holdAnswers;
              const md5 = req.headers['content-md5'] ?? createHash('md5').update(body).digest('base64');
              this.puts.push({ key, md5: String(md5), status: upRes.statusCode ?? 0 });
              // stored, and the client never hears of it (its socket is cut when the client dies or the proxy stops)
              if (hold) return;
            }
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            res.end(Buffer.concat(answer));
          });
        },
      );
      upstream.on('error', () => res.destroy());
      upstream.end(body);
    });
  }
}
