/**
 * Enterprise OPA's `eopa_dl` decision log plugin configuration, accepted as it is.
 *
 * An Enterprise OPA config file (with `plugins.eopa_dl`), or the `eopa_dl` block alone, is translated into
 * Sluice's own configuration before validation: `buffer` (max_bytes, flush_at_*; a `disk` path becomes
 * data_dir), `output` (one or a list) of types s3, console, http and service, per-output `batching` and
 * `drop_decision` / `mask_decision` when they are written as Sluice rules. Objects get Enterprise OPA's keys
 * (presets `eopa` and `eopa-per-decision`). What Sluice cannot do is a start-up error that says so.
 *
 * Sluice's own top-level settings (listen, data_dir, ingest, api, log, rules, shutdown_timeout) may stand
 * beside the OPA ones; the rest of an OPA config (services, labels, bundles, ...) is not Sluice's business.
 */
import type { ConfigProblem } from './problems.js';

const SLUICE_TOP_LEVEL = ['listen', 'data_dir', 'buffer', 'ingest', 'api', 'log', 'rules', 'shutdown_timeout'];
const SUPPORTED_OUTPUTS = ['s3', 'console', 'http', 'service'];
const KNOWN_UNSUPPORTED = ['kafka', 'splunk', 'gcs', 'experimental'];

export interface EopaTranslation {
  /** A Sluice configuration document (not yet validated). */
  document: Record<string, unknown>;
  /** Sluice paths (`outputs.0`) to the eopa paths they came from, and renamed fields, to name fields in errors. */
  paths: Array<{ sluice: string; eopa: string; renamed: Record<string, string> }>;
  /** What a user of Enterprise OPA should know at start-up. */
  notes: string[];
}

type Doc = Record<string, unknown>;

const isObject = (v: unknown): v is Doc => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The eopa_dl block of a document and where it is, or undefined when the document is Sluice's own. */
export function findEopaBlock(document: unknown): { block: Doc; at: string } | undefined {
  if (!isObject(document)) return undefined;
  const plugins = document.plugins;
  if (isObject(plugins) && isObject(plugins.eopa_dl)) return { block: plugins.eopa_dl, at: 'plugins.eopa_dl' };
  const decisionLogs = document.decision_logs;
  if (isObject(decisionLogs) && decisionLogs.plugin === 'eopa_dl') return { block: {}, at: 'plugins.eopa_dl' };
  // the block alone: it has `output`, Sluice has `outputs`
  if ('output' in document && !('outputs' in document)) return { block: document, at: '' };
  return undefined;
}

export function translateEopa(
  document: Doc,
  found: { block: Doc; at: string },
  problems: ConfigProblem[],
): EopaTranslation {
  const { block, at } = found;
  const where = (path: string) => (at ? `${at}.${path}` : path);
  const notes: string[] = [];
  const sluice: Doc = {};
  // Sluice's own settings may stand beside the OPA ones (also beside a lone eopa_dl block)
  for (const key of SLUICE_TOP_LEVEL) if (key in document && key !== 'buffer') sluice[key] = document[key];

  const buffer = isObject(block.buffer) ? block.buffer : {};
  const bufferType = typeof buffer.type === 'string' ? buffer.type : 'memory';
  if (!['memory', 'disk', 'unbuffered'].includes(bufferType)) {
    problems.push({
      path: where('buffer.type'),
      message: `"${bufferType}" is not a buffer type (memory, disk, unbuffered)`,
    });
  }
  notes.push(
    `eopa_dl buffer "${bufferType}": Sluice's buffer is always durable on disk; every decision is fsync'd before OPA gets its 200`,
  );
  if (bufferType === 'disk' && typeof buffer.path === 'string' && sluice.data_dir === undefined)
    sluice.data_dir = buffer.path;
  if (buffer.max_bytes !== undefined) sluice.buffer = { max_bytes: buffer.max_bytes };
  const flush = {
    at_count: positive(buffer.flush_at_count),
    at_bytes: positive(buffer.flush_at_bytes),
    at_period: positive(buffer.flush_at_period),
  };

  const raw = block.output;
  const list = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
  if (list.length === 0)
    problems.push({ path: where('output'), message: 'an output is required (type s3, console, http or service)' });
  const outputs: Doc[] = [];
  const paths: EopaTranslation['paths'] = [];
  list.forEach((item, i) => {
    const path = where(Array.isArray(raw) ? `output.${i}` : 'output');
    if (!isObject(item)) {
      problems.push({ path, message: 'an output is a mapping with a type' });
      return;
    }
    const type = item.type;
    if (typeof type !== 'string' || !SUPPORTED_OUTPUTS.includes(type)) {
      const what =
        typeof type === 'string'
          ? `"${type}"${KNOWN_UNSUPPORTED.includes(type) ? ' (an Enterprise OPA output type Sluice does not have)' : ''}`
          : 'a missing type';
      problems.push({
        path: `${path}.type`,
        message: `${what} is not supported; supported output types: ${SUPPORTED_OUTPUTS.join(', ')}`,
      });
      return;
    }
    const name = `${type}${list.length > 1 ? `-${i}` : ''}`;
    const renamed: Record<string, string> = {};
    const output = translateOutput(item, type, name, flush, path, document, problems, renamed);
    if (output) {
      paths.push({ sluice: `outputs.${outputs.length}`, eopa: path, renamed });
      outputs.push(output);
    }
  });
  sluice.outputs = outputs;
  return { document: sluice, paths, notes };
}

function translateOutput(
  item: Doc,
  type: string,
  name: string,
  flush: { at_count?: unknown; at_bytes?: unknown; at_period?: unknown },
  path: string,
  document: Doc,
  problems: ConfigProblem[],
  renamed: Record<string, string>,
): Doc | undefined {
  const out: Doc = { name, type };
  const used = new Set(['type', 'batching', 'drop_decision', 'mask_decision']);
  const take = (from: string, to: string = from) => {
    used.add(from);
    if (from !== to) renamed[to] = from;
    if (item[from] !== undefined) out[to] = envShorthand(item[from]);
  };

  switch (type) {
    case 's3':
      take('bucket');
      take('region');
      take('endpoint');
      take('force_path', 'force_path_style');
      take('access_key_id');
      take('access_secret', 'secret_access_key');
      break;
    case 'http':
      take('url');
      take('headers');
      take('timeout');
      used.add('retry'); // delivery retries without end, with backoff: nothing to translate
      break;
    case 'service': {
      take('url');
      take('resource');
      take('headers');
      take('timeout');
      take('token');
      used.add('service');
      if (typeof item.service === 'string') {
        const service = findService(document, item.service);
        if (!service) {
          problems.push({ path: `${path}.service`, message: `no service named "${item.service}" in services` });
        } else {
          out.url ??= service.url;
          const credentials =
            isObject(service.credentials) && isObject(service.credentials.bearer)
              ? service.credentials.bearer
              : undefined;
          if (credentials && typeof credentials.token === 'string') out.token ??= envShorthand(credentials.token);
        }
      }
      break;
    }
    default:
      break;
  }
  for (const key of Object.keys(item)) {
    if (!used.has(key))
      problems.push({ path: `${path}.${key}`, message: `is not supported by Sluice's ${type} output` });
  }

  const batching = isObject(item.batching) ? item.batching : undefined;
  const atCount = batching?.at_count ?? flush.at_count;
  const atBytes = batching?.at_bytes ?? flush.at_bytes;
  const atPeriod = batching?.at_period ?? flush.at_period;
  const format = batching?.format ?? 'lines';
  if (!['lines', 'array', 'none'].includes(String(format))) {
    problems.push({
      path: `${path}.batching.format`,
      message: `"${String(format)}" is not a format (lines, array, none)`,
    });
  }
  // Enterprise OPA wrote one object per decision unless batching was configured (or format none)
  const perDecision = type === 's3' && (batching === undefined || format === 'none');
  const batch: Doc = {};
  if (positive(atCount) !== undefined) batch.max_events = atCount;
  if (positive(atBytes) !== undefined) batch.max_bytes = atBytes;
  if (positive(atPeriod) !== undefined) batch.max_age = atPeriod;
  if (Object.keys(batch).length > 0) out.batch = batch;
  if (type !== 'service') {
    out.format = format === 'array' ? 'json_array' : 'ndjson';
    out.compression = batching?.compress === true ? 'gzip' : 'none';
  }
  if (type === 's3') out.key = perDecision ? 'eopa-per-decision' : 'eopa';

  const rules: Doc = {};
  for (const [field, kind] of [
    ['drop_decision', 'drop'],
    ['mask_decision', 'mask'],
  ] as const) {
    const value = item[field];
    if (value === undefined) continue;
    if (typeof value === 'string') {
      problems.push({
        path: `${path}.${field}`,
        message: `"${value}" names a Rego rule: Sluice does not evaluate Rego; write it as Sluice ${kind} rules here (a list, see the README's "Drop and mask"), or keep it in OPA's own decision_logs.${kind === 'drop' ? 'drop_decision' : 'mask_decision'}`,
      });
    } else {
      rules[kind] = value;
    }
  }
  if (Object.keys(rules).length > 0) out.rules = rules;
  return out;
}

/** OPA's `services` as a map (name -> service) or a list of services with a `name`. */
function findService(document: Doc, name: string): Doc | undefined {
  const services = document.services;
  if (isObject(services) && isObject(services[name])) return services[name];
  if (Array.isArray(services)) return services.find((s): s is Doc => isObject(s) && s.name === name);
  return undefined;
}

/** Enterprise OPA's docs write `$AWS_ACCESS_KEY_ID`: a whole value `$NAME` means `${NAME}`. */
function envShorthand(value: unknown): unknown {
  return typeof value === 'string' && /^\$[A-Za-z_][A-Za-z0-9_]*$/.test(value) ? `\${${value.slice(1)}}` : value;
}

/** eopa writes 0 for "not set". */
function positive(value: unknown): unknown {
  if (value === undefined || value === null || value === 0 || value === '0' || value === '0s') return undefined;
  return value;
}
