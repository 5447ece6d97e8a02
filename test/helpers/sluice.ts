import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/cli.js');
/**
 * How long a server may take to say it listens: a bound, not an expectation (it is up in well under a second on
 * an idle machine; with the suite's own processes, s3rver and builds competing for two cores, seconds).
 */
const START_BOUND_MS = 60_000;

export function tempDir(prefix = 'sluice-test-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/**
 * Runs the sluice CLI to completion and returns its exit code and output. A run longer than `timeoutMs`
 * (default 60 s) is killed and throws with what it printed: a hung command fails its test, not the suite.
 */
export async function runCli(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  let timer: NodeJS.Timeout | undefined;
  const code = await new Promise<number | null | 'timeout'>((resolve) => {
    child.on('exit', (c) => resolve(c));
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('timeout');
    }, timeoutMs);
  }).finally(() => clearTimeout(timer));
  if (code === 'timeout')
    throw new Error(
      `sluice ${args.join(' ')} did not exit within ${timeoutMs} ms (killed)\n--- stdout ---\n${stdout.slice(-2000)}\n--- stderr ---\n${stderr.slice(-2000)}`,
    );
  return { code, stdout, stderr };
}

/** The PostgreSQL of the suites' PostgreSQL runs (as test/helpers/postgres.ts, without loading its client). */
const TEST_POSTGRES_URL = process.env.SLUICE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** The secrets every node of a PostgreSQL store must be given: fixed, so a restarted server reads what it stored. */
export const TEST_POSTGRES_SECRETS = {
  encryption_key: 'sluice-test-encryption-key',
  jwt_secret: 'sluice-test-jwt-secret',
};

/** Whether this run gives its servers a PostgreSQL store (SLUICE_TEST_STORE=postgres, set by scripts/test-postgres.mjs). */
export const TEST_STORE_IS_POSTGRES = process.env.SLUICE_TEST_STORE === 'postgres';

/**
 * The schema of the PostgreSQL store of a data_dir: the same for the same directory, so a server restarted on
 * its data_dir finds its tenants and events again, as it would in its store.sqlite. SLUICE_TEST_SCHEMA_PREFIX
 * (default `t_`) names the run, whose schemas scripts/test-postgres.mjs drops at its end.
 */
export function testSchemaFor(dataDir: string): string {
  const prefix = process.env.SLUICE_TEST_SCHEMA_PREFIX ?? 't_';
  return prefix + createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 16);
}

/**
 * With SLUICE_TEST_STORE=postgres, a config that names no store gets a PostgreSQL one (in the schema of its
 * data_dir) and, where neither the config nor the environment sets them, the secrets that store requires.
 * A test that names its store, or one that starts without a config, keeps what it has.
 */
function withTestStore(config: Record<string, unknown>, cwd: string, env: NodeJS.ProcessEnv): Record<string, unknown> {
  if (!TEST_STORE_IS_POSTGRES || config.store !== undefined) return config;
  const dataDir = path.resolve(cwd, typeof config.data_dir === 'string' ? config.data_dir : './data');
  const api = { ...((config.api as Record<string, unknown> | undefined) ?? {}) };
  if (api.encryption_key === undefined && !env.SLUICE_ENCRYPTION_KEY)
    api.encryption_key = TEST_POSTGRES_SECRETS.encryption_key;
  if (api.jwt_secret === undefined && !env.SLUICE_JWT_SECRET) api.jwt_secret = TEST_POSTGRES_SECRETS.jwt_secret;
  return {
    ...config,
    api,
    store: { type: 'postgres', url: TEST_POSTGRES_URL, schema: testSchemaFor(dataDir) },
  };
}

/**
 * The real `sluice serve` in its own process. `config` is written as YAML (or omitted for the embedded
 * defaults, with `cwd` as the working directory); it listens on a free loopback port.
 */
export class SluiceProcess {
  url = '';
  output = '';
  exitCode: number | null | undefined;
  private child: ChildProcess | undefined;
  private exited: Promise<number | null> | undefined;

  /**
   * `wrap`: a command that runs the server, given it as its last arguments (e.g. `unshare ... sh -c '... exec "$@"'`);
   * it must exec it, so that `pid` is the server's own.
   */
  constructor(
    readonly opts: {
      config?: Record<string, unknown>;
      cwd?: string;
      env?: NodeJS.ProcessEnv;
      args?: string[];
      wrap?: string[];
    } = {},
  ) {}

  /** The server process's pid, once started. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<this> {
    const cwd = this.opts.cwd ?? tempDir();
    const args = [CLI, 'serve', ...(this.opts.args ?? [])];
    if (this.opts.config) {
      const file = path.join(cwd, 'sluice.yaml');
      const config = withTestStore(this.opts.config, cwd, { ...process.env, ...this.opts.env });
      writeFileSync(file, stringify({ listen: '127.0.0.1:0', log: { level: 'info' }, ...config }));
      args.push('--config', file);
    }
    this.output = '';
    this.exitCode = undefined;
    const [command, ...commandArgs] = [...(this.opts.wrap ?? []), process.execPath, ...args];
    const child = spawn(command!, commandArgs, {
      cwd,
      env: { ...process.env, ...this.opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout!.on('data', (d) => (this.output += d));
    child.stderr!.on('data', (d) => (this.output += d));
    this.exited = new Promise((resolve) =>
      child.on('exit', (code) => {
        this.exitCode = code;
        resolve(code);
      }),
    );
    const deadline = Date.now() + START_BOUND_MS;
    while (Date.now() < deadline) {
      const match = /sluice listening on (http:\/\/[^"\s]+)/.exec(this.output);
      if (match) {
        this.url = match[1]!;
        return this;
      }
      if (this.exitCode !== undefined) throw new Error(`sluice exited with ${this.exitCode}:\n${this.output}`);
      await sleep(20);
    }
    throw new Error(`sluice did not start within ${START_BOUND_MS / 1000} s:\n${this.output}`);
  }

  /** Sends a signal and waits for the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<number | null> {
    if (!this.child || this.exitCode !== undefined) return this.exitCode ?? null;
    this.child.kill(signal);
    // The fallback timer is cancelled once the process exits, so it does not hold the test process open.
    const ac = new AbortController();
    const timer = sleep(timeoutMs, undefined, { signal: ac.signal }).then(
      () => {
        this.child?.kill('SIGKILL');
        return null;
      },
      () => null,
    );
    try {
      return await Promise.race([this.exited!, timer]);
    } finally {
      ac.abort();
    }
  }

  kill9(): Promise<number | null> {
    return this.stop('SIGKILL');
  }

  /** The process's JSON log lines so far (pino levels: 40 warn, 50 error, 60 fatal). */
  logLines(): LogLine[] {
    const lines: LogLine[] = [];
    for (const line of this.output.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        lines.push(JSON.parse(line) as LogLine);
      } catch {
        // a line cut by the end of the output so far
      }
    }
    return lines;
  }

  /** GET /ready; bounded (10 s by default), so a server that stopped answering fails the test at once. */
  async ready(timeoutMs = 10_000): Promise<ReadyStatus> {
    const res = await fetch(`${this.url}/ready`, { signal: AbortSignal.timeout(timeoutMs) });
    return (await res.json()) as ReadyStatus;
  }

  /** Polls until `check` holds, or throws after `timeoutMs` with the process output. */
  async until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; Date.now() < deadline && i < 10_000; i++) {
      if (await check()) return;
      await sleep(50);
    }
    throw new Error(`timed out waiting for ${what}\n--- sluice output ---\n${this.output.slice(-4000)}`);
  }
}

export type LogLine = Record<string, unknown> & { level?: number; msg?: string };

export interface ReadyStatus {
  status: string;
  buffer: { writable: boolean; bytes: number; max_bytes: number; chunks: number };
  outputs: Array<{
    name: string;
    state: string;
    last_error: { message: string; code?: string } | null;
    delivered: { events: number; objects: number };
    retries: number;
    pending_batches: number;
  }>;
}
