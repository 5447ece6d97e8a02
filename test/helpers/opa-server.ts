import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, constants, copyFileSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { tempDir } from './sluice.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The real OPA binary: $OPA_BIN, else `opa` on PATH, else ../shared/bin/opa beside the repo. A copy without
 * its execute bit (CI copies shared/ read-only) is copied to a temp dir and made executable there.
 * Returns a reason instead when there is none.
 */
export function findOpa(): { bin: string } | { missing: string } {
  // an OPA_BIN that is set is what the caller wants: no fallback to another binary behind its back
  const candidates = process.env.OPA_BIN
    ? [process.env.OPA_BIN]
    : [
        ...(process.env.PATH ?? '')
          .split(path.delimiter)
          .filter(Boolean)
          .map((dir) => path.join(dir, 'opa')),
        path.resolve(REPO, '../shared/bin/opa'),
      ];
  for (const file of candidates) {
    if (!existsSync(file)) continue;
    if (executable(file)) return { bin: file };
    const dir = tempDir('sluice-opa-bin-');
    process.once('exit', () => rmSync(dir, { recursive: true, force: true })); // 40 MB: not left in /tmp
    const copy = path.join(dir, 'opa');
    copyFileSync(file, copy);
    chmodSync(copy, 0o755);
    return { bin: copy };
  }
  if (process.env.OPA_BIN) return { missing: `OPA_BIN=${process.env.OPA_BIN} does not exist` };
  return {
    missing: `no OPA binary: set OPA_BIN, put opa on PATH, or provide ${path.resolve(REPO, '../shared/bin/opa')}`,
  };
}

/** A loopback port nothing listens on right now (OPA's --addr cannot report a port it chose itself). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** `opa run --server` on 127.0.0.1 with a policy, sending its decision logs to `serviceUrl`. */
export class OpaProcess {
  url = '';
  output = '';
  private child: ChildProcess | undefined;
  private exitCode: number | null | undefined;
  private dir: string | undefined;

  constructor(
    readonly bin: string,
    readonly opts: { policy: string; serviceUrl: string; reporting?: Record<string, unknown> },
  ) {}

  async start(): Promise<this> {
    const dir = tempDir('sluice-opa-');
    this.dir = dir;
    writeFileSync(path.join(dir, 'policy.rego'), this.opts.policy);
    writeFileSync(
      path.join(dir, 'opa.yaml'),
      stringify({
        services: { sluice: { url: this.opts.serviceUrl } },
        decision_logs: {
          service: 'sluice',
          reporting: {
            min_delay_seconds: 1,
            max_delay_seconds: 2,
            upload_size_limit_bytes: 1048576,
            ...this.opts.reporting,
          },
        },
      }),
    );
    // the free port can be taken between the check and OPA's bind: then OPA exits and another port is tried
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      this.output = '';
      this.exitCode = undefined;
      const child = spawn(
        this.bin,
        [
          'run',
          '--server',
          '--addr',
          `127.0.0.1:${port}`,
          '--log-level',
          'error',
          '--config-file',
          'opa.yaml',
          'policy.rego',
        ],
        { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      this.child = child;
      // at error level OPA logs its failed uploads (not every request); the tail is kept for a failure's message
      const keep = (d: Buffer) => {
        this.output = (this.output + d.toString()).slice(-20_000);
      };
      child.stdout!.on('data', keep);
      child.stderr!.on('data', keep);
      child.on('exit', (code) => {
        this.exitCode = code;
      });
      this.url = `http://127.0.0.1:${port}`;
      for (let i = 0; i < 300 && this.exitCode === undefined; i++) {
        const up = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(2_000) }).then(
          (r) => r.ok,
          () => false,
        );
        if (up) return this;
        await sleep(50);
      }
      if (this.exitCode === undefined) break;
    }
    this.stop();
    throw new Error(`opa did not start:\n${this.output}`);
  }

  /** Kills OPA (its decision buffer is of no use once the test is over) and removes its files. */
  stop(): void {
    if (this.exitCode === undefined) this.child?.kill('SIGKILL');
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
