import http from 'node:http';
import type { Socket } from 'node:net';

/** One request as a receiver got it. */
export interface ReceivedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** When the body had arrived (Date.now()). */
  at: number;
  /** When the client closed the connection before it got an answer (a timeout on its side), else undefined. */
  cutAt?: number;
}

/** What to answer: a status (and body, headers), or `hang`: never answer, until the client gives up. */
export type Answer = { status: number; body?: string; headers?: Record<string, string> } | 'hang';

/**
 * A real HTTP server on 127.0.0.1 standing in for a receiver (an http output's SIEM, a decision log service):
 * it records every request with its body and answers as `answer` says, at the moment it is asked, so a test
 * changes the answers while a client retries.
 */
export class Receiver {
  readonly requests: ReceivedRequest[] = [];
  answer: (request: ReceivedRequest, index: number) => Answer = () => ({ status: 200, body: '{}' });
  port = 0;
  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();

  constructor() {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  get url(): string {
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

  /** Stops listening and cuts every connection (hung requests included). */
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const request: ReceivedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(parts),
        at: Date.now(),
      };
      const index = this.requests.push(request) - 1;
      res.on('close', () => {
        if (!res.writableFinished) request.cutAt = Date.now();
      });
      const answer = this.answer(request, index);
      if (answer === 'hang') return;
      const body = answer.body ?? '';
      res.writeHead(answer.status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        ...answer.headers,
      });
      res.end(body);
    });
  }
}
