import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

/**
 * A secret from the config (which reads it from the environment too), else generated once and kept in
 * `<data_dir>/secrets/<name>` (mode 0600), so that `sluice serve` works on its embedded defaults and
 * restarts keep reading what they stored. `generated` tells the caller to say so at start-up.
 */
export function resolveSecret(
  name: string,
  configured: string | undefined,
  dataDir: string,
): { value: string; generated: boolean } {
  if (configured) return { value: configured, generated: false };
  const dir = path.join(dataDir, 'secrets');
  const file = path.join(dir, name);
  if (existsSync(file)) return { value: readFileSync(file, 'utf8').trim(), generated: true };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const value = randomBytes(32).toString('base64url');
  writeFileSync(file, value, { mode: 0o600, flag: 'wx' });
  return { value, generated: true };
}
