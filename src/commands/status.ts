import Table from 'cli-table3';

interface Ready {
  status: string;
  buffer: { writable: boolean; bytes: number; max_bytes: number; chunks: number; oldest_age_seconds: number };
  outputs: Array<{
    name: string;
    type: string;
    target: string;
    state: string;
    last_error: { message: string; code?: string; at: string } | null;
    delivered: { events: number; objects: number; bytes: number };
    dropped?: number;
    retries: number;
    pending_batches: number;
  }>;
  events?: { writable: boolean; pending_deliveries: number | null };
  /** Whether the store answered /ready's trivial query (absent before Sluice reported it). */
  store?: { status: string; error: string | null };
}

/** Exit codes of `sluice status`: a script can tell a healthy service from a degraded one and from none. */
export const STATUS_EXIT = { ok: 0, degraded: 1, unreachable: 2 } as const;

/**
 * The first path segments of Sluice's own routes. A URL whose path reaches one of them points inside a Sluice
 * (`.../ready`, `.../ui`, `.../api/v1/tenants`): what comes before it is where Sluice is mounted (`/` or a
 * reverse proxy's prefix), and its /ready is there.
 */
const ROUTE_SEGMENTS = new Set(['ready', 'health', 'healthz', 'metrics', 'logs', 'api', 'ui', 'openapi.json']);

/**
 * Where `sluice status` reads /ready for a URL given as Sluice's base URL or any URL under it (a scheme-less
 * `host:port` is taken as http). Throws, with a one-line message, on what is not an http(s) URL.
 */
export function readyUrlOf(input: string): { base: string; ready: string } {
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(input) ? input : `http://${input}`);
  } catch {
    throw new Error(`--url takes Sluice's URL, e.g. http://127.0.0.1:8181, not "${input}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Error(`--url takes an http or https URL, not "${input}"`);
  const segments = url.pathname.split('/');
  const route = segments.findIndex((s, i) => i > 0 && ROUTE_SEGMENTS.has(s));
  const prefix = (route === -1 ? segments : segments.slice(0, route)).join('/').replace(/\/+$/, '');
  url.pathname = prefix;
  url.search = '';
  url.hash = '';
  const base = url.toString().replace(/\/+$/, '');
  return { base, ready: `${base}/ready` };
}

/** `sluice status`: the buffer, the store and each output's state from /ready, as a table (or the JSON itself). */
export async function status(url: string, opts: { json: boolean; token?: string }): Promise<number> {
  let where: { base: string; ready: string };
  try {
    where = readyUrlOf(url);
  } catch (err) {
    console.error((err as Error).message);
    return STATUS_EXIT.unreachable;
  }
  let ready: Ready;
  try {
    const headers: Record<string, string> = opts.token ? { authorization: `Bearer ${opts.token}` } : {};
    const res = await fetch(where.ready, { headers, signal: AbortSignal.timeout(10_000) });
    if (res.status === 401) {
      console.error(
        `sluice at ${where.base} wants observability.token for /ready: pass --token (or SLUICE_OBSERVABILITY_TOKEN)`,
      );
      return STATUS_EXIT.unreachable;
    }
    const body = await res.json().catch(() => undefined);
    // 503 is a Sluice that cannot take writes or is stopping: its body still says why. Anything else that is
    // not /ready's shape is not Sluice (a wrong port, another service): said as such, never a TypeError.
    if (!isReady(body)) {
      console.error(
        `${where.ready} answered HTTP ${res.status}, not Sluice's /ready: give the URL Sluice listens on (e.g. http://127.0.0.1:8181)`,
      );
      return STATUS_EXIT.unreachable;
    }
    ready = body;
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const reason =
      (err as Error).name === 'TimeoutError'
        ? 'no answer within 10 s'
        : (cause?.code ?? cause?.message ?? (err as Error).message);
    console.error(`cannot reach sluice at ${where.base}: ${reason}`);
    return STATUS_EXIT.unreachable;
  }
  url = where.base;
  if (opts.json) {
    console.log(JSON.stringify(ready, null, 2));
  } else {
    const b = ready.buffer;
    console.log(`sluice at ${url}: ${ready.status}`);
    console.log(
      `buffer: ${b.writable ? 'writable' : 'NOT writable'}, ${mib(b.bytes)} of ${mib(b.max_bytes)} (${Math.round((100 * b.bytes) / b.max_bytes)} %), ${b.chunks} chunks, oldest ${b.oldest_age_seconds.toFixed(1)} s`,
    );
    if (ready.store)
      console.log(`store: ${ready.store.status}${ready.store.error === null ? '' : ` (${ready.store.error})`}`);
    if (ready.events) console.log(`event deliveries pending: ${ready.events.pending_deliveries ?? 'unknown'}`);
    const table = new Table({
      head: [
        'output',
        'type',
        'target',
        'state',
        'delivered',
        'objects',
        'dropped',
        'retries',
        'pending',
        'last error',
      ],
      // colours only on a terminal: piped output stays plain text
      style: process.stdout.isTTY ? undefined : { head: [], border: [] },
    });
    for (const o of ready.outputs) {
      table.push([
        o.name,
        o.type,
        o.target,
        o.state,
        o.delivered.events,
        o.delivered.objects,
        o.dropped ?? 0,
        o.retries,
        o.pending_batches,
        // the code first: it is what tells what to fix (NoSuchBucket, AccessDenied, ECONNREFUSED ...)
        o.last_error ? `${o.last_error.code ? `${o.last_error.code}: ` : ''}${o.last_error.message}`.slice(0, 100) : '',
      ]);
    }
    console.log(table.toString());
  }
  return ready.status === 'ok' ? STATUS_EXIT.ok : STATUS_EXIT.degraded;
}

function isReady(body: unknown): body is Ready {
  const b = body as Partial<Ready> | undefined;
  return (
    typeof b === 'object' &&
    b !== null &&
    typeof b.status === 'string' &&
    typeof b.buffer === 'object' &&
    b.buffer !== null &&
    typeof b.buffer.bytes === 'number' &&
    Array.isArray(b.outputs)
  );
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
