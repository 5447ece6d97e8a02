import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import type { OutputObjects } from '../types.js';

/** A file output's objects read back: the files under its directory, keyed by their paths below it. */
export class FileObjects implements OutputObjects {
  constructor(private readonly root: string) {}

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    const walk = (dir: string, rel: string) => {
      let entries;
      try {
        entries = readdirSync(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const key = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          if (prefix.startsWith(`${key}/`) || key.startsWith(prefix) || `${key}/`.startsWith(prefix))
            walk(path.join(dir, e.name), key);
        } else if (key.startsWith(prefix) && !e.name.startsWith('.') && !e.name.endsWith('.tmp')) {
          // `<key>.<random>.tmp` is an object the file output is still writing (it is renamed once complete):
          // reading it would fail on a partial file or, once renamed, yield its decisions twice
          keys.push(key);
        }
      }
    };
    walk(this.root, '');
    return keys.sort();
  }

  async children(prefix: string): Promise<string[]> {
    try {
      return readdirSync(path.join(this.root, prefix), { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => `${prefix}${e.name}/`)
        .sort();
    } catch {
      return [];
    }
  }

  async read(key: string): Promise<Buffer> {
    return readFileSync(path.join(this.root, key));
  }

  async size(key: string): Promise<number> {
    return statSync(path.join(this.root, key)).size;
  }

  async readRange(key: string, start: number, end: number): Promise<Buffer> {
    const fd = openSync(path.join(this.root, key), 'r');
    try {
      const out = Buffer.alloc(Math.max(0, end - start));
      let done = 0;
      while (done < out.length) {
        const n = readSync(fd, out, done, out.length - done, start + done);
        if (n === 0) break;
        done += n;
      }
      return out.subarray(0, done);
    } finally {
      closeSync(fd);
    }
  }

  close(): void {}
}
