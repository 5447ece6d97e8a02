/**
 * The Kubernetes manifest under deploy/ is what users apply: its config must be one Sluice starts with, and
 * it must name the secrets its pods read.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { runCli, tempDir } from './helpers/sluice.js';

const MANIFEST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../deploy/kubernetes/sluice.yaml');

test('deploy/kubernetes/sluice.yaml: its config passes sluice check with the secrets its pods get; a StatefulSet with a volume per replica', async (t) => {
  const docs = parseAllDocuments(readFileSync(MANIFEST, 'utf8')).map((d) => d.toJS());
  const configMap = docs.find((d) => d.kind === 'ConfigMap');
  const statefulSet = docs.find((d) => d.kind === 'StatefulSet');
  assert.ok(configMap && statefulSet, 'a ConfigMap and a StatefulSet');
  assert.equal(statefulSet.spec.replicas, 3);
  assert.equal(statefulSet.spec.volumeClaimTemplates[0].metadata.name, 'data');

  const container = statefulSet.spec.template.spec.containers[0];
  const env: Record<string, string> = {};
  for (const e of container.env) env[e.name] = `test-${e.valueFrom.secretKeyRef.key}`;
  env.SLUICE_STORE_URL = 'postgres://sluice@127.0.0.1:5432/sluice';
  const mounted = container.volumeMounts.find((m: { name: string }) => m.name === 'data').mountPath;
  const config = configMap.data['sluice.yaml'] as string;
  assert.match(config, new RegExp(`data_dir: ${mounted}\\n`), 'data_dir is the volume');

  const dir = tempDir('sluice-deploy-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'sluice.yaml');
  writeFileSync(file, config);
  const res = await runCli(['check', '--config', file], { env: { ...process.env, ...env } });
  assert.equal(res.code, 0, `${res.stdout}\n${res.stderr}`);
  // without the secrets, the ${VAR}s of the config are errors, not empty values
  const bare = Object.fromEntries(Object.entries(process.env).filter(([k]) => !(k in env)));
  const missing = await runCli(['check', '--config', file], { env: bare });
  assert.equal(missing.code, 1, missing.stdout + missing.stderr);
  assert.match(missing.stdout + missing.stderr, /SLUICE_STORE_URL/);
});
