import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { configSchema, type Config, type OutputConfig } from './schema.js';
import { interpolate } from './interpolate.js';
import { findEopaBlock, translateEopa } from './eopa.js';
import { ConfigError, type ConfigProblem } from './problems.js';
import { isLoopbackHost } from '../http/host-check.js';

/** Validates a parsed configuration document (already YAML-decoded), applying the embedded defaults. */
export function buildConfig(document: unknown, source: string, env: NodeJS.ProcessEnv = process.env): Config {
  const problems: ConfigProblem[] = [];
  // An Enterprise OPA config (or its eopa_dl block) becomes Sluice's own first; errors then name its fields.
  const eopa = findEopaBlock(document);
  const translation = eopa ? translateEopa(document as Record<string, unknown>, eopa, problems) : undefined;
  const origin = (path: string) => {
    for (const { sluice, eopa: eopaPath, renamed } of translation?.paths ?? []) {
      if (path !== sluice && !path.startsWith(`${sluice}.`)) continue;
      const [field, ...rest] = path.slice(sluice.length + 1).split('.');
      if (!field) return eopaPath;
      return [eopaPath, (Object.hasOwn(renamed, field) ? renamed[field] : undefined) ?? field, ...rest].join('.');
    }
    return path;
  };
  const resolved = interpolate(translation?.document ?? document ?? {}, env, problems);
  const result = configSchema.safeParse(resolved);
  if (!result.success) {
    for (const issue of result.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        // one line per unknown field, at its own path, so a typo is found where it is
        for (const key of issue.keys)
          problems.push({ path: origin([...issue.path, key].join('.')), message: 'unknown field' });
      } else {
        problems.push({ path: origin(issue.path.join('.')) || '(root)', message: issue.message });
      }
    }
  }
  for (const p of problems) p.path = origin(p.path);
  if (problems.length > 0 || !result.success) throw new ConfigError(problems, source);
  const raw = result.data;
  const dataDir = path.resolve(raw.data_dir);
  const outputs: OutputConfig[] = raw.outputs ?? [defaultFileOutput(dataDir)];
  // the API's secrets may come from the environment when the config leaves them out
  const api = {
    ...raw.api,
    admin_key: raw.api.admin_key ?? (env.SLUICE_ADMIN_KEY || undefined),
    jwt_secret: raw.api.jwt_secret ?? (env.SLUICE_JWT_SECRET || undefined),
    encryption_key: raw.api.encryption_key ?? (env.SLUICE_ENCRYPTION_KEY || undefined),
  };
  // Without an admin key anyone who reaches the port manages tenants and destinations: fine for the quick start
  // on loopback, refused before anything listens elsewhere unless the operator says so.
  const listenHost = raw.listen.slice(0, raw.listen.lastIndexOf(':'));
  if (!api.admin_key && !api.open && !isLoopbackHost(listenHost)) {
    throw new ConfigError(
      [
        {
          path: 'api.admin_key',
          message:
            `is not set, and listen ${raw.listen} is not a loopback address: the API and the console would be open to anyone who reaches it. ` +
            'Set api.admin_key (or SLUICE_ADMIN_KEY), listen on 127.0.0.1, or set api.open: true to accept an open API',
        },
      ],
      source,
    );
  }
  return {
    ...raw,
    api,
    observability: {
      ...raw.observability,
      token: raw.observability.token ?? (env.SLUICE_OBSERVABILITY_TOKEN || undefined),
    },
    notes: translation?.notes ?? [],
    data_dir: dataDir,
    outputs,
  };
}

/**
 * With no outputs configured, objects go to `<data_dir>/objects` in the same layout S3 would get. Someone
 * trying Sluice out watches that folder: its objects close after 10 s, not the minute objects for a query
 * engine wait.
 */
function defaultFileOutput(dataDir: string): OutputConfig {
  const parsed = configSchema.parse({
    outputs: [{ name: 'local', type: 'file', path: path.join(dataDir, 'objects'), batch: { max_age: '10s' } }],
  });
  return parsed.outputs![0]!;
}

export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Config {
  if (file === undefined) return buildConfig({}, 'embedded defaults', env);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ path: '(file)', message: `cannot read: ${(err as Error).message}` }], file);
  }
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (err) {
    throw new ConfigError([{ path: '(file)', message: `not valid YAML: ${(err as Error).message}` }], file);
  }
  if (document !== null && document !== undefined && (typeof document !== 'object' || Array.isArray(document))) {
    throw new ConfigError([{ path: '(root)', message: 'the configuration must be a mapping of fields' }], file);
  }
  return buildConfig(document, file, env);
}
