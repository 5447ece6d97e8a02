/**
 * Object keys for batched outputs, from a template of `{placeholder}`s.
 *
 * The default lays objects out the way Athena and Hive partition them:
 *   {partition}/dt={date}/hour={hour}/{batch}.{ext}
 * `{batch}` is required: it is the only part that makes a key unique, and it is derived from the output
 * and the buffer positions of the batch's first and last decision, so a retry rewrites the same key.
 */
export const DEFAULT_KEY_TEMPLATE = '{partition}/dt={date}/hour={hour}/{batch}.{ext}';

export const KEY_PLACEHOLDERS = {
  partition: 'the partition of /logs/{partition}; `default` for /logs',
  date: 'UTC date of the decisions, YYYY-MM-DD',
  year: 'UTC year, YYYY',
  month: 'UTC month, MM',
  day: 'UTC day of month, DD',
  hour: 'UTC hour, HH',
  output: 'the output name',
  batch: 'the batch name: <output>-<buffer id>-<first position>-<last position> (required)',
  first: 'buffer position of the first decision, zero-padded to 16 digits',
  last: 'buffer position of the last decision, zero-padded to 16 digits',
  ext: 'file extension for format and compression: ndjson, ndjson.gz, json, json.gz, parquet',
} as const;

export type KeyPlaceholder = keyof typeof KEY_PLACEHOLDERS;
export type KeyValues = Record<KeyPlaceholder, string>;

const PLACEHOLDER = /\{([^{}]*)\}/g;

/** Returns a problem description, or undefined when the template is usable. */
export function checkKeyTemplate(template: string): string | undefined {
  const names = [...template.matchAll(PLACEHOLDER)].map((m) => m[1]!);
  const unknown = names.filter((n) => !(n in KEY_PLACEHOLDERS));
  if (unknown.length > 0) {
    return `unknown placeholder ${unknown.map((n) => `{${n}}`).join(', ')}; known: ${Object.keys(KEY_PLACEHOLDERS)
      .map((n) => `{${n}}`)
      .join(' ')}`;
  }
  if (!names.includes('batch')) return 'the key template must contain {batch}, or batches would overwrite each other';
  if (template.startsWith('/')) return 'the key template must not start with "/"';
  return undefined;
}

export function renderKey(template: string, values: KeyValues): string {
  return template.replace(PLACEHOLDER, (_, name: string) => values[name as KeyPlaceholder]);
}

export function padPosition(position: number): string {
  return String(position).padStart(16, '0');
}

/** `hour` is the stream hour `YYYY-MM-DDTHH` (UTC) that every decision of a batch shares. */
export function keyValues(opts: {
  output: string;
  bufferId: string;
  partition: string;
  hour: string;
  first: number;
  last: number;
  ext: string;
}): KeyValues {
  const { hour } = opts;
  const first = padPosition(opts.first);
  const last = padPosition(opts.last);
  return {
    partition: opts.partition,
    date: hour.slice(0, 10),
    year: hour.slice(0, 4),
    month: hour.slice(5, 7),
    day: hour.slice(8, 10),
    hour: hour.slice(11, 13),
    output: opts.output,
    batch: `${opts.output}-${opts.bufferId}-${first}-${last}`,
    first,
    last,
    ext: opts.ext,
  };
}
