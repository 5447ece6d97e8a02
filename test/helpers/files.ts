import { readdirSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import path from 'node:path';

/**
 * Every object a file output wrote under `dir` (gunzipped where gzip), skipping the `*.tmp` files it is
 * still writing (they are renamed into place when complete).
 */
export function objectsUnder(dir: string): Array<{ file: string; text: string }> {
  const out: Array<{ file: string; text: string }> = [];
  const walk = (d: string, depth: number): void => {
    if (depth > 20) return;
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.name.endsWith('.tmp')) continue;
      const file = path.join(d, e.name);
      if (e.isDirectory()) walk(file, depth + 1);
      else {
        const bytes = readFileSync(file);
        out.push({ file, text: (e.name.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8') });
      }
    }
  };
  walk(dir, 0);
  return out;
}

/** The NDJSON lines (decisions) of every object under `dir`. */
export function linesUnder(dir: string): string[] {
  return objectsUnder(dir).flatMap((o) => o.text.split('\n').filter((l) => l !== ''));
}

/**
 * The keys (paths relative to `root`, with `/`) of the complete objects a file output wrote under it: its
 * `*.tmp` files are objects still being written, renamed into place when complete, so a listing may see one
 * that is gone a moment later.
 */
export function objectKeysUnder(root: string): string[] {
  const keys: string[] = [];
  const walk = (dir: string, prefix: string, depth: number): void => {
    if (depth > 20) return;
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.name.endsWith('.tmp')) continue;
      if (e.isDirectory()) walk(path.join(dir, e.name), `${prefix}${e.name}/`, depth + 1);
      else if (e.isFile()) keys.push(`${prefix}${e.name}`);
    }
  };
  walk(root, '', 0);
  return keys.sort();
}
