import http from 'node:http';
import type { Socket } from 'node:net';

/** The request line and headers of one request that went through the proxy. */
export interface ProxiedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

/**
 * An HTTP proxy on 127.0.0.1 in front of a real server (s3rver) that records what each request carried and
 * forwards it unchanged (the Host header too, so SigV4 signatures still verify): for what the store itself does
 * not keep, such as the storage class or the session token a PUT was sent with. With `putDelayMs`, each PUT
 * is held that long before it is forwarded, and the most PUTs in flight at once is counted (`maxPutsInFlight`):
 * how many uploads the clients had open at the same time.
 */
export class RecordingProxy {
  readonly requests: ProxiedRequest[] = [];
  port = 0;
  putsInFlight = 0;
  maxPutsInFlight = 0;
  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  private readonly agent = new http.Agent({ keepAlive: true });

  constructor(
    readonly targetPort: number,
    readonly putDelayMs = 0,
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
    this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    if (req.method !== 'PUT') {
      this.send(req, res);
      return;
    }
    this.putsInFlight++;
    this.maxPutsInFlight = Math.max(this.maxPutsInFlight, this.putsInFlight);
    res.on('close', () => this.putsInFlight--);
    if (this.putDelayMs > 0) setTimeout(() => this.send(req, res), this.putDelayMs);
    else this.send(req, res);
  }

  private send(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (res.destroyed) return;
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
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
        upRes.on('error', () => res.destroy());
      },
    );
    upstream.on('error', () => res.destroy());
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  }
}
