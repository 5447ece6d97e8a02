import Table from 'cli-table3';

interface Ready {
  status: string;
  buffer: { writable: boolean; bytes: number; max_bytes: number; chunks: number; oldest_age_seconds: number };
  outputs: Array<{
    name: string; type: string; target: string; state: string; last_error: { message: string; code?: string; at: string } | null;
    delivered: { events: number; objects: number; bytes: number }; dropped?: number; retries: number; pending_batches: number;
  }>;
  events?: { writable: boolean; pending_deliveries: number };
}

/** Exit codes of `sluice status`: a script can tell a healthy service from a degraded one and from none. */
export const STATUS_EXIT = { ok: 0, degraded: 1, unreachable: 2 } as const;

/** `sluice status`: the buffer and each output's state from /ready, as a table (or the JSON itself). */
export async function status(url: string, opts: { json: boolean; token?: string }): Promise<number> {
  let ready: Ready;
  try {
    const headers: Record<string, string> = opts.token ? { authorization: `Bearer ${opts.token}` } : {};
    const res = await fetch(`${url.replace(/\/+$/, '')}/ready`, { headers, signal: AbortSignal.timeout(10_000) });
    if (res.status === 401) {
      console.error(`sluice at ${url} wants observability.token for /ready: pass --token (or SLUICE_OBSERVABILITY_TOKEN)`);
      return STATUS_EXIT.unreachable;
    }
    ready = (await res.json()) as Ready;
  } catch (err) {
    console.error(`cannot reach sluice at ${url}: ${(err as Error).message}`);
    return STATUS_EXIT.unreachable;
  }
  if (opts.json) {
    console.log(JSON.stringify(ready, null, 2));
  } else {
    const b = ready.buffer;
    console.log(`sluice at ${url}: ${ready.status}`);
    console.log(`buffer: ${b.writable ? 'writable' : 'NOT writable'}, ${mib(b.bytes)} of ${mib(b.max_bytes)} (${Math.round((100 * b.bytes) / b.max_bytes)} %), ${b.chunks} chunks, oldest ${b.oldest_age_seconds.toFixed(1)} s`);
    if (ready.events) console.log(`event deliveries pending: ${ready.events.pending_deliveries}`);
    const table = new Table({
      head: ['output', 'type', 'target', 'state', 'delivered', 'objects', 'dropped', 'retries', 'pending', 'last error'],
      // colours only on a terminal: piped output stays plain text
      style: process.stdout.isTTY ? undefined : { head: [], border: [] },
    });
    for (const o of ready.outputs) {
      table.push([
        o.name, o.type, o.target, o.state, o.delivered.events, o.delivered.objects, o.dropped ?? 0, o.retries, o.pending_batches,
        // the code first: it is what tells what to fix (NoSuchBucket, AccessDenied, ECONNREFUSED ...)
        o.last_error ? `${o.last_error.code ? `${o.last_error.code}: ` : ''}${o.last_error.message}`.slice(0, 100) : '',
      ]);
    }
    console.log(table.toString());
  }
  return ready.status === 'ok' ? STATUS_EXIT.ok : STATUS_EXIT.degraded;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
