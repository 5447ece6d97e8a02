/**
 * `${VAR}` and `${VAR:-default}` in configuration strings, resolved against the environment.
 * Interpolation runs on the parsed YAML's string values (not the raw text), so a value can never break
 * the YAML structure and an unset variable is reported with the path of the field that uses it.
 * `$$` stands for a literal `$`.
 */
import type { ConfigProblem } from './problems.js';

const PATTERN = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export function interpolate(
  value: unknown,
  env: NodeJS.ProcessEnv,
  problems: ConfigProblem[],
  path: string[] = [],
): unknown {
  if (typeof value === 'string') {
    return value.replace(PATTERN, (whole, name: string | undefined, fallback: string | undefined) => {
      if (whole === '$$') return '$';
      const found = Object.hasOwn(env, name!) ? env[name!] : undefined;
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      problems.push({
        path: path.join('.') || '(root)',
        message: `environment variable ${name} is not set (write \${${name}:-} to allow it to be empty)`,
      });
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((item, i) => interpolate(item, env, problems, [...path, String(i)]));
  if (value !== null && typeof value === 'object') {
    // fromEntries defines each key as its own property: a `__proto__` key stays a field (and is reported as unknown)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env, problems, [...path, k])]));
  }
  return value;
}
