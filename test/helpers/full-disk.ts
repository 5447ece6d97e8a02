/**
 * A real full disk, unprivileged: a small tmpfs mounted on a data_dir in a user and mount namespace of its own
 * (`unshare --user --map-root-user --mount`), held by a sleeping process so that it outlives the servers run
 * on it (a restart finds what the last one left, as on a real disk). Each server joins that namespace with
 * `nsenter` (which execs it, so the server's pid is its own). The test reaches the tmpfs through
 * /proc/<holder>/root and fills it with a file, then deletes the file.
 *
 * Where user namespaces or the mount are not permitted (some containers), `tmpfsDataDir` answers `{ skip }`
 * with the reason, for one clear skip line.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from './sluice.js';

export interface TmpfsDataDir {
  /** The data_dir, as the servers see it (inside their mount namespace). */
  dataDir: string;
  /** Give this to SluiceProcess: it runs the server in the tmpfs's namespace. */
  wrap: string[];
  /** Fills the tmpfs until a write fails with ENOSPC; returns the bytes written. */
  fill(): number;
  /** Deletes what fill() wrote. */
  free(): void;
  /** Free bytes on the tmpfs. */
  available(): number;
  /** The path, from this process, of a file in the data_dir. */
  inside(file: string): string;
}

/**
 * A data_dir on a tmpfs of `sizeMb` MB that lasts until the test ends (or `{ skip }` with why it cannot be
 * made here).
 */
export async function tmpfsDataDir(t: TestContext, sizeMb: number): Promise<TmpfsDataDir | { skip: string }> {
  const base = tempDir('sluice-tmpfs-');
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const dataDir = path.join(base, 'data');
  mkdirSync(dataDir);
  const nsenter = spawnSync('nsenter', ['--version'], { encoding: 'utf8' });
  if (nsenter.error || nsenter.status !== 0)
    return { skip: `nsenter is not available (${nsenter.error?.message ?? nsenter.stderr.trim()})` };

  const holder = spawn(
    'unshare',
    [
      '--user',
      '--map-root-user',
      '--mount',
      'sh',
      '-c',
      `mount -t tmpfs -o size=${sizeMb}m tmpfs "$0" && echo mounted && exec sleep 3600`,
      dataDir,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  let exited = false;
  holder.stdout.on('data', (d) => (output += d));
  holder.stderr.on('data', (d) => (output += d));
  holder.on('exit', () => {
    exited = true;
  });
  t.after(() => {
    if (!exited) holder.kill('SIGKILL');
  });
  for (let i = 0; i < 500 && !output.includes('mounted') && !exited; i++) await sleep(20);
  if (!output.includes('mounted')) {
    return {
      skip: `cannot mount a tmpfs in a user namespace here (${exited ? output.trim() || 'unshare failed' : 'unshare did not answer within 10 s'})`,
    };
  }
  const root = `/proc/${holder.pid}/root`;
  const inside = (file: string) => path.join(root, dataDir, file);
  // the data_dir seen from here must be that tmpfs (its size), not the directory under it
  const seen = existsSync(path.join(root, dataDir)) ? statfsSync(inside('.')) : undefined;
  if (!seen || seen.blocks * seen.bsize > sizeMb * 1024 * 1024 * 1.1)
    return { skip: `the tmpfs is not reachable through ${root} here` };
  const filler = inside('filler');
  return {
    dataDir,
    wrap: ['nsenter', '-t', String(holder.pid), '--user', '--mount', '--preserve-credentials'],
    fill: () => fillDisk(filler),
    free: () => rmSync(filler, { force: true }),
    available: () => {
      const s = statfsSync(inside('.'));
      return s.bavail * s.bsize;
    },
    inside,
  };
}

/** Writes `file` until the file system is full (ENOSPC); bounded. */
export function fillDisk(file: string): number {
  const fd = openSync(file, 'a');
  let written = 0;
  try {
    for (const size of [1 << 20, 64 << 10, 4 << 10, 512]) {
      const block = Buffer.alloc(size, 0x78);
      for (let i = 0; i < 1000; i++) {
        try {
          written += writeSync(fd, block);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return written;
}
