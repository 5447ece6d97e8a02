#!/usr/bin/env node
// Compiles src/ to dist/ with tsc, and records what it compiled (a digest of the inputs) in dist/.build-inputs.
//
// `--if-changed` (what `pretest` runs) skips tsc when dist/ was built from exactly the inputs there are now:
// `npm ci` has just built (its `prepare`), so CI compiles once, not twice; and a developer who edited a file
// still gets a fresh build before the tests. The digest is written only after tsc succeeds, so a build that
// failed (tsc emits even with type errors) is never taken for a good one.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const stamp = path.join(root, 'dist', '.build-inputs');

/** A digest of everything tsc's output depends on: the sources, the compiler options, the installed versions. */
function inputsDigest() {
  const hash = createHash('sha256');
  const files = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, e.name);
      if (e.isDirectory()) walk(file);
      else files.push(file);
    }
  };
  walk(path.join(root, 'src'));
  files.push(path.join(root, 'tsconfig.json'), path.join(root, 'package.json'), path.join(root, 'package-lock.json'));
  for (const file of files.sort()) {
    if (!existsSync(file)) continue;
    hash.update(path.relative(root, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  return hash.digest('hex');
}

const digest = inputsDigest();
if (process.argv.includes('--if-changed') && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === digest) {
  console.log('dist/ is up to date with src/ (built from these sources): tsc skipped');
  process.exit(0);
}
rmSync(stamp, { force: true });
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const run = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit' });
if (run.status !== 0) process.exit(run.status ?? 1);
writeFileSync(stamp, `${digest}\n`);
