import http from 'node:http';
import type { Socket } from 'node:net';
import { randomBytes } from 'node:crypto';

/**
 * Which faults the proxy injects, as shares of requests (0..1), checked in this order for each request:
 * `slowDown` answers 503 with an S3 SlowDown error, `reset` destroys the connection after reading part of
 * the request body, `stall` waits `stallMs` before forwarding. The rest is forwarded untouched.
 */
export interface Faults {
  slowDown?: number;
  reset?: number;
  stall?: number;
  /** How long a stall lasts: a fixed time, or a random time in [min, max]. */
  stallMs?: number | [min: number, max: number];
}

export interface ProxyCounts {
  /** Requests that reached the proxy while it was up. */
  requests: number;
  /** Requests whose upstream answer was passed back to the client. */
  forwarded: number;
  slowDown: number;
  resets: number;
  stalls: number;
  /** Connections accepted and closed at once while gone in `close` mode. */
  dropped: number;
  /** Periods the proxy was gone. */
  goneCount: number;
}

const SLOW_DOWN_XML = (requestId: string, resource: string) =>
  '<?xml version="1.0" encoding="UTF-8"?>\n' +
  `<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><Resource>${resource}</Resource><RequestId>${requestId}</RequestId></Error>`;

/**
 * A fault-injecting HTTP proxy on 127.0.0.1 in front of a real S3-speaking server (s3rver): point an
 * output's `endpoint` at `proxy.endpoint`. Requests are forwarded unchanged (the Host header too, so SigV4
 * signatures still verify), except for the faults selected with `set()` and the periods of `gone()`.
 */
export class FaultProxy {
  port = 0;
  readonly counts: ProxyCounts = {
    requests: 0,
    forwarded: 0,
    slowDown: 0,
    resets: 0,
    stalls: 0,
    dropped: 0,
    goneCount: 0,
  };
  private faults: Faults = {};
  private goneMode: 'refuse' | 'close' | undefined;
  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  private listening = false;

  constructor(
    readonly targetPort: number,
    private readonly random: () => number = Math.random,
  ) {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (socket: Socket) => {
      if (this.goneMode === 'close') {
        this.counts.dropped++;
        socket.destroy();
        return;
      }
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    // A client that vanishes mid-request must not take the proxy down.
    this.server.on('clientError', (_err, socket) => socket.destroy());
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Total faults injected so far (connections dropped while gone included). */
  get faultsInjected(): number {
    const c = this.counts;
    return c.slowDown + c.resets + c.stalls + c.dropped;
  }

  async start(): Promise<this> {
    await this.listen();
    return this;
  }

  /** Selects the faults from now on; `set({})` forwards everything. */
  set(faults: Faults): void {
    this.faults = { ...faults };
  }

  /**
   * The store is gone: `refuse` stops listening (connections are refused), `close` accepts connections and
   * closes them at once. Open connections are destroyed either way. With `ms`, comes back by itself after it.
   */
  async gone(mode: 'refuse' | 'close' = 'refuse', ms?: number): Promise<void> {
    if (this.goneMode) await this.back();
    this.goneMode = mode;
    this.counts.goneCount++;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (mode === 'refuse') await this.unlisten();
    if (ms !== undefined) this.later(ms, () => void this.back());
  }

  /** Ends a `gone()` period: listening again on the same port. */
  async back(): Promise<void> {
    const mode = this.goneMode;
    this.goneMode = undefined;
    if (mode === 'refuse') await this.listen();
  }

  get isGone(): boolean {
    return this.goneMode !== undefined;
  }

  async stop(): Promise<void> {
    this.goneMode = undefined;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const s of this.sockets) s.destroy();
    await this.unlisten();
    this.agent.destroy();
  }

  private listen(): Promise<void> {
    if (this.listening) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.port, '127.0.0.1', () => {
        this.server.off('error', onError);
        this.listening = true;
        const address = this.server.address();
        if (address && typeof address === 'object') this.port = address.port;
        resolve();
      });
    });
  }

  private unlisten(): Promise<void> {
    if (!this.listening) return Promise.resolve();
    this.listening = false;
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.goneMode) {
      req.socket.destroy();
      return;
    }
    this.counts.requests++;
    const { slowDown = 0, reset = 0, stall = 0 } = this.faults;
    const r = this.random();
    if (r < slowDown) {
      this.counts.slowDown++;
      // The body is read first, as S3 does, so the client sees the answer and not a broken pipe.
      req.resume();
      req.on('end', () => {
        const requestId = randomBytes(8).toString('hex').toUpperCase();
        const body = SLOW_DOWN_XML(requestId, (req.url ?? '/').split('?')[0]!);
        res.writeHead(503, {
          'content-type': 'application/xml',
          'content-length': Buffer.byteLength(body),
          'x-amz-request-id': requestId,
        });
        res.end(body);
      });
      return;
    }
    if (r < slowDown + reset) {
      this.counts.resets++;
      this.resetMidUpload(req);
      return;
    }
    if (r < slowDown + reset + stall) {
      this.counts.stalls++;
      const spec = this.faults.stallMs ?? 2_000;
      const ms = Array.isArray(spec) ? spec[0] + this.random() * (spec[1] - spec[0]) : spec;
      req.pause();
      this.later(ms, () => {
        if (req.socket.destroyed || this.goneMode) {
          req.socket.destroy();
          return;
        }
        this.forward(req, res);
      });
      return;
    }
    this.forward(req, res);
  }

  /** Reads part of the body (about half of Content-Length, at least one chunk), then resets the connection. */
  private resetMidUpload(req: http.IncomingMessage): void {
    const length = Number(req.headers['content-length'] ?? 0);
    const threshold = Math.max(1, Math.floor(length * (0.25 + this.random() * 0.5)));
    let received = 0;
    const destroy = () => req.socket.destroy();
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received >= threshold) destroy();
    });
    // A body that arrives whole in one chunk (or an empty one) still gets no answer.
    req.on('end', destroy);
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): void {
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
        this.counts.forwarded++;
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
        upRes.on('error', () => res.destroy());
      },
    );
    upstream.on('error', () => res.destroy());
    // A client that goes away mid-upload must not leave a truncated PUT at the store.
    req.on('close', () => {
      if (!req.complete) upstream.destroy();
    });
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
    req.resume();
  }
}
