import { readFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import cliProgress from 'cli-progress';
import { arrayElementTexts } from '../json/array-scan.js';
import { isRetryableStatus } from '../sinks/types.js';

export interface SendOptions {
  url: string;
  partition?: string;
  token?: string;
  /** OPA's reporting.upload_size_limit_bytes: the compressed size of one request. */
  chunkBytes: number;
  concurrency: number;
  retries: number;
  progress: boolean;
}

/** Exit codes of `sluice send`. */
export const SEND_EXIT = { ok: 0, rejected: 1, unusable: 2 } as const;

/**
 * `sluice send FILE|-`: replays decisions (NDJSON or a JSON array, plain or gzip) to Sluice or any OPA decision
 * log service, as OPA would send them: gzip JSON arrays of at most `chunkBytes` compressed, retried on
 * 429/5xx/network errors with OPA's backoff. Decisions are sent as they are in the file (their text).
 */
export async function send(file: string, opts: SendOptions): Promise<number> {
  let decisions: string[];
  try {
    decisions = readDecisions(file === '-' ? readFileSync(0) : readFileSync(file));
  } catch (err) {
    console.error(`cannot read ${file === '-' ? 'standard input' : file}: ${(err as Error).message}`);
    return SEND_EXIT.unusable;
  }
  const chunks = chunk(decisions, opts.chunkBytes);
  const target = `${opts.url.replace(/\/+$/, '')}/logs${opts.partition ? `/${encodeURIComponent(opts.partition)}` : ''}`;
  const started = performance.now();
  const totals = { sent: 0, accepted: 0, duplicates: 0, requests: 0, retries: 0, failed: 0 };
  const bar = opts.progress
    ? new cliProgress.SingleBar(
        { format: 'sending [{bar}] {value}/{total} decisions | {eta_formatted} left', hideCursor: true },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  bar?.start(decisions.length, 0);
  let lastLine = 0;
  let next = 0;
  let failure: string | undefined;
  await Promise.all(
    Array.from({ length: Math.max(1, opts.concurrency) }, async () => {
      while (next < chunks.length && failure === undefined) {
        const c = chunks[next++]!;
        const outcome = await post(target, c.body, opts, totals);
        if (!outcome.ok) {
          failure = outcome.message;
          totals.failed += c.count;
          return;
        }
        totals.sent += c.count;
        totals.accepted += outcome.accepted;
        // a whole request already there (a re-run) is reported as such, not as accepted
        totals.duplicates += outcome.duplicateRequest ? c.count : outcome.duplicates;
        bar?.update(totals.sent);
        if (!bar && performance.now() - lastLine > 1000) {
          lastLine = performance.now();
          console.log(`sent ${totals.sent}/${decisions.length} decisions`);
        }
      }
    }),
  );
  bar?.stop();
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `${failure ? 'stopped' : 'done'}: ${totals.sent} of ${decisions.length} decisions sent to ${target} in ${totals.requests} requests` +
      ` (${totals.accepted} accepted, ${totals.duplicates} already there, ${totals.retries} retries) in ${seconds.toFixed(1)} s` +
      ` (${Math.round(totals.sent / Math.max(seconds, 0.001))}/s)`,
  );
  if (failure) {
    console.error(failure);
    return SEND_EXIT.rejected;
  }
  return SEND_EXIT.ok;
}

/** NDJSON or a JSON array, gzip or plain: each decision's text. */
export function readDecisions(raw: Buffer): string[] {
  const bytes = raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw;
  const text = bytes.toString('utf8');
  const trimmed = text.trimStart();
  if (trimmed.startsWith('[')) {
    const array = JSON.parse(trimmed) as unknown;
    if (!Array.isArray(array)) throw new Error('not a JSON array');
    return arrayElementTexts(Buffer.from(trimmed));
  }
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  lines.forEach((line, i) => {
    try {
      JSON.parse(line);
    } catch (err) {
      throw new Error(`line ${i + 1} is not JSON: ${(err as Error).message}`);
    }
  });
  return lines;
}

/**
 * Gzip JSON arrays of at most `limit` compressed bytes, as OPA cuts them: grow a chunk while it fits, and
 * halve one that does not (a single decision over the limit goes alone).
 */
export function chunk(decisions: string[], limit: number): Array<{ body: Buffer; count: number }> {
  const out: Array<{ body: Buffer; count: number }> = [];
  const encode = (items: string[]) => gzipSync(`[${items.join(',')}]`);
  const place = (items: string[]) => {
    const body = encode(items);
    if (body.length <= limit || items.length === 1) {
      out.push({ body, count: items.length });
      return;
    }
    const half = Math.ceil(items.length / 2);
    place(items.slice(0, half));
    place(items.slice(half));
  };
  // decisions compress about 10:1: start from that many uncompressed bytes per chunk
  let group: string[] = [];
  let bytes = 0;
  for (const d of decisions) {
    if (group.length > 0 && bytes + d.length > limit * 10) {
      place(group);
      group = [];
      bytes = 0;
    }
    group.push(d);
    bytes += d.length + 1;
  }
  if (group.length > 0) place(group);
  return out;
}

/** One request, retried as OPA retries (100 ms x 1.6^n, jitter) on 408, 429, 5xx and network errors. */
async function post(
  target: string,
  body: Buffer,
  opts: SendOptions,
  totals: { requests: number; retries: number },
): Promise<
  { ok: true; accepted: number; duplicates: number; duplicateRequest: boolean } | { ok: false; message: string }
> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'content-encoding': 'gzip',
    'user-agent': 'sluice send',
  };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let lastProblem = '';
  for (let attempt = 0; attempt <= opts.retries; attempt++) {
    if (attempt > 0) {
      totals.retries++;
      await sleep(Math.min(60_000, 100 * 1.6 ** (attempt - 1)) * (0.8 + Math.random() * 0.4));
    }
    totals.requests++;
    try {
      const res = await fetch(target, {
        method: 'POST',
        headers,
        body: body as unknown as BodyInit,
        signal: AbortSignal.timeout(60_000),
      });
      const text = await res.text();
      if (res.ok) {
        const answer = safeJson(text) as
          | { accepted?: number; duplicates?: number; duplicate_request?: boolean }
          | undefined;
        const accepted = typeof answer?.accepted === 'number' ? answer.accepted : 0;
        return {
          ok: true,
          accepted,
          duplicates: answer?.duplicates ?? 0,
          duplicateRequest: answer?.duplicate_request === true,
        };
      }
      lastProblem = `${target} answered ${res.status}: ${text.slice(0, 300)}`;
      if (!isRetryableStatus(res.status)) return { ok: false, message: lastProblem };
    } catch (err) {
      lastProblem = `${target}: ${(err as Error).message}`;
    }
  }
  return { ok: false, message: `gave up after ${opts.retries} retries: ${lastProblem}` };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
