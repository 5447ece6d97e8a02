/**
 * The load generator, in its own process: replays OPA's uploads against a decision log service.
 * Payloads are made before the clock starts (in two child processes), then sent over `connections` keep-alive
 * connections; a non-2xx answer is retried with OPA's backoff (100 ms base, x1.6, +-20 % jitter).
 * Talks to the bench runner over IPC: `prepare` -> `prepared`, `go` -> `done`.
 */
import http from 'node:http';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { chunkBody } from './payloads.js';

export interface PrepareMessage {
  type: 'prepare';
  run: string;
  chunks: number;
  perChunk: number;
  partitions: number;
}
export interface GoMessage {
  type: 'go';
  url: string;
  connections: number;
  durationMs: number;
  /** Decisions per second to offer (open loop); 0 = as fast as the service answers. */
  rate: number;
  /** Alternating on/off periods (burst scenario); 0 = steady. */
  burstOnMs: number;
  burstOffMs: number;
}
export interface LoadResult {
  sentChunks: number;
  ackedChunks: number;
  ackedDecisions: number;
  rejected: Record<string, number>;
  retries: number;
  startedAt: number;
  endedAt: number;
  latenciesMs: number[];
  /** Per chunk index: the time its upload was acknowledged (0 = never). */
  ackTimes: number[];
  /** Acknowledged decisions per 1 s slot from startedAt. */
  timeline: number[];
  /** p99 latency per 1 s slot. */
  latencyTimeline: number[];
}

if (process.env.SLUICE_BENCH_GENERATE) {
  // generation child: makes a range of chunk bodies and hands them back over IPC
  const { run, from, to, perChunk, now } = JSON.parse(process.env.SLUICE_BENCH_GENERATE) as {
    run: string;
    from: number;
    to: number;
    perChunk: number;
    now: number;
  };
  const bodies: Buffer[] = [];
  for (let i = from; i < to; i++) bodies.push(chunkBody(run, i, perChunk, new Date(now)));
  process.send!(bodies, () => process.exit(0));
} else if (process.send) {
  let bodies: Buffer[] = [];
  let partitions = 1;
  let perChunk = 0;
  process.on('message', (msg: PrepareMessage | GoMessage) => {
    if (msg.type === 'prepare') {
      void prepare(msg).then((made) => {
        bodies = made;
        partitions = msg.partitions;
        perChunk = msg.perChunk;
        process.send!({ type: 'prepared' });
      });
    } else if (msg.type === 'go') {
      void send(msg, bodies, partitions, perChunk).then((result) =>
        process.send!({ type: 'done', result }, () => process.exit(0)),
      );
    }
  });
}

async function prepare(msg: PrepareMessage): Promise<Buffer[]> {
  const workers = 2;
  const per = Math.ceil(msg.chunks / workers);
  const now = Date.now();
  // generated in two child processes (both cores), before the clock starts
  const parts = await Promise.all(
    Array.from(
      { length: workers },
      (_, w) =>
        new Promise<Buffer[]>((resolve, reject) => {
          const env = {
            ...process.env,
            SLUICE_BENCH_GENERATE: JSON.stringify({
              run: msg.run,
              from: w * per,
              to: Math.min(msg.chunks, (w + 1) * per),
              perChunk: msg.perChunk,
              now,
            }),
          };
          const child = fork(fileURLToPath(import.meta.url), [], {
            env,
            execArgv: ['--import', 'tsx'],
            serialization: 'advanced',
          });
          child.once('message', (bodies) =>
            resolve((bodies as Uint8Array[]).map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength))),
          );
          child.once('error', reject);
        }),
    ),
  );
  return parts.flat();
}

async function send(go: GoMessage, bodies: Buffer[], partitions: number, perChunk: number): Promise<LoadResult> {
  // open loop: as many sockets as chunks in flight; closed loop: `connections`
  const agent = new http.Agent({ keepAlive: true, maxSockets: go.rate > 0 ? Infinity : go.connections });
  const url = new URL(go.url);
  const result: LoadResult = {
    sentChunks: 0,
    ackedChunks: 0,
    ackedDecisions: 0,
    rejected: {},
    retries: 0,
    startedAt: Date.now(),
    endedAt: 0,
    latenciesMs: [],
    ackTimes: new Array(bodies.length).fill(0),
    timeline: [],
    latencyTimeline: [],
  };
  const slotLatencies: number[][] = [];
  const deadline = result.startedAt + go.durationMs;
  let next = 0;
  const interval = go.rate > 0 ? (1000 * perChunk) / go.rate : 0;

  const post = (index: number): Promise<number> =>
    new Promise((resolve) => {
      const partition = partitions > 1 ? `/p${index % partitions}` : '';
      const req = http.request(
        {
          host: url.hostname,
          port: url.port,
          path: `/logs${partition}`,
          method: 'POST',
          agent,
          headers: {
            'content-type': 'application/json',
            'content-encoding': 'gzip',
            'content-length': bodies[index]!.length,
            'user-agent': 'Open Policy Agent/1.4.2 (linux, amd64)',
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', () => resolve(0));
      req.end(bodies[index]);
    });

  const inBurstOff = (now: number) => {
    if (go.burstOnMs <= 0) return false;
    return (now - result.startedAt) % (go.burstOnMs + go.burstOffMs) >= go.burstOnMs;
  };

  /** Sends chunk `index` until it is acknowledged, retrying as OPA does. */
  const deliver = async (index: number): Promise<void> => {
    let backoff = 100;
    for (let attempt = 0; attempt < 1000; attempt++) {
      const t0 = performance.now();
      result.sentChunks++;
      const status = await post(index);
      const took = performance.now() - t0;
      const now = Date.now();
      const slot = Math.floor((now - result.startedAt) / 1000);
      if (status >= 200 && status < 300) {
        result.latenciesMs.push(took);
        (slotLatencies[slot] ??= []).push(took);
        result.ackedChunks++;
        result.ackedDecisions += perChunk;
        result.ackTimes[index] = now;
        result.timeline[slot] = (result.timeline[slot] ?? 0) + perChunk;
        return;
      }
      result.rejected[String(status)] = (result.rejected[String(status)] ?? 0) + 1;
      result.retries++;
      // OPA's retry: exponential from 100 ms, factor 1.6, +-20 % jitter, capped
      await new Promise((r) => setTimeout(r, backoff * (0.8 + Math.random() * 0.4)));
      backoff = Math.min(backoff * 1.6, 5000);
      if (Date.now() > deadline + 120_000) return;
    }
  };

  // closed loop: each connection sends its next chunk once the last one is acknowledged
  const connection = async () => {
    for (let guard = 0; guard < 10_000_000; guard++) {
      const now = Date.now();
      if (now >= deadline || next >= bodies.length) return;
      if (inBurstOff(now)) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      await deliver(next++);
    }
  };

  // open loop: chunk i goes at startedAt + i * interval whatever the answers to earlier ones, each on a
  // connection of its own when the others are busy (a fleet of OPAs, each sending its own chunk)
  const schedule = async () => {
    const inFlight = new Set<Promise<void>>();
    while (next < bodies.length) {
      const due = result.startedAt + next * interval;
      const now = Date.now();
      if (due >= deadline) break;
      if (due > now) await new Promise((r) => setTimeout(r, due - now));
      const sending = deliver(next++).finally(() => inFlight.delete(sending));
      inFlight.add(sending);
    }
    await Promise.all(inFlight);
  };

  await (interval > 0 ? schedule() : Promise.all(Array.from({ length: go.connections }, connection)));
  result.endedAt = Date.now();
  for (let i = 0; i < result.timeline.length; i++) result.timeline[i] ??= 0;
  result.latencyTimeline = slotLatencies.map((l) => (l ? percentile(l, 0.99) : 0));
  agent.destroy();
  return result;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}
