import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';

/**
 * This node's name among the nodes sharing a PostgreSQL store (its claims, its attempts): store.node_id, else
 * made once (the host name, which is the pod's name in a StatefulSet, and a random suffix) and kept in
 * `<data_dir>/node-id`, so a restarted node is the same node and takes its own claims back at once.
 */
export function resolveNodeId(configured: string | undefined, dataDir: string): string {
  if (configured) return configured;
  const file = path.join(dataDir, 'node-id');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const host =
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .slice(0, 100) || 'node';
  const made = `${host}-${randomBytes(3).toString('hex')}`;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(file, `${made}\n`, { mode: 0o600, flag: 'wx' });
  return made;
}
