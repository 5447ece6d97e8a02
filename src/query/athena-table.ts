/**
 * Athena's (Glue's) `CREATE EXTERNAL TABLE` for an s3 output: the decision columns for its format, and
 * partition projection over the partition columns of its key layout (table-layout.ts) with the
 * `storage.location.template` of its keys, so that Athena computes the partitions of a query instead of
 * reading them from the catalog: no MSCK REPAIR TABLE, no crawler, a new hour is queryable as it lands.
 */

import { commentLines, partitionColumns, type PartitionColumn, type TableLayout } from './table-layout.js';

/** Parquet columns as Athena reads them: JSON text as string (for json_extract), timestamps as timestamp. */
const PARQUET_COLUMNS: Array<[string, string]> = [
  ['decision_id', 'string'],
  ['path', 'string'],
  ['timestamp', 'timestamp'],
  ['labels', 'map<string,string>'],
  ['requested_by', 'string'],
  ['req_id', 'bigint'],
  ['revision', 'string'],
  ['bundles', 'string'],
  ['input', 'string'],
  ['result', 'string'],
  ['metrics', 'string'],
  ['nd_builtin_cache', 'string'],
  ['erased', 'array<string>'],
  ['masked', 'array<string>'],
  ['extra', 'string'],
];

/**
 * NDJSON members through the OpenX JsonSerDe: an object or array declared string is read as its JSON text;
 * `timestamp` and `req_id` as strings too, so that a decision whose value does not parse as the type fails
 * no query (from_iso8601_timestamp("timestamp") gives the time).
 */
const NDJSON_COLUMNS: Array<[string, string]> = [
  ['decision_id', 'string'],
  ['path', 'string'],
  ['timestamp', 'string'],
  ['labels', 'map<string,string>'],
  ['requested_by', 'string'],
  ['req_id', 'string'],
  ['revision', 'string'],
  ['bundles', 'string'],
  ['input', 'string'],
  ['result', 'string'],
  ['metrics', 'string'],
  ['nd_builtin_cache', 'string'],
  ['erased', 'array<string>'],
  ['masked', 'array<string>'],
];

export interface AthenaOptions {
  table: string;
  /** `s3://bucket/` */
  root: string;
  /** The values of the `partition` column, or undefined for `injected` (every query then names one). */
  partitions?: string[];
  /** First date of date columns: `yyyy-MM-dd`, or Athena's relative form (`NOW-1YEARS`, the default). */
  since?: string;
  comment: string;
}

export function athenaTable(layout: TableLayout, opts: AthenaOptions): string {
  if (layout.format === 'json_array')
    throw new Error(
      'Athena reads JSON one object per line (the JsonSerDe); this output writes JSON arrays (format: json_array): use format ndjson, or --engine duckdb, whose read_json reads arrays',
    );
  const columns = layout.format === 'parquet' ? PARQUET_COLUMNS : NDJSON_COLUMNS;
  const partitions = partitionColumns(layout);
  const lines = [
    ...commentLines(opts.comment, layout.notes),
    `CREATE EXTERNAL TABLE IF NOT EXISTS ${opts.table} (`,
    columns.map(([name, type]) => `  ${quote(name)} ${type}`).join(',\n'),
    ')',
  ];
  if (partitions.length > 0)
    lines.push(`PARTITIONED BY (${partitions.map((c) => `${quote(c.name)} ${sqlType(c)}`).join(', ')})`);
  if (layout.format === 'parquet') lines.push('STORED AS PARQUET');
  // gzip objects (`.gz`) are read as gzip by their extension
  else lines.push("ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'");
  lines.push(`LOCATION '${literal(opts.root)}'`);
  if (partitions.length > 0) {
    const props: Array<[string, string]> = [['projection.enabled', 'true']];
    for (const c of partitions) props.push(...projectionProperties(c, opts));
    const template = layout.pieces.map((p) => ('literal' in p ? p.literal : `\${${p.column.name}}`)).join('');
    props.push(['storage.location.template', `${opts.root}${template}`]);
    lines.push(`TBLPROPERTIES (\n${props.map(([k, v]) => `  '${k}' = '${literal(v)}'`).join(',\n')}\n)`);
  }
  return `${lines.join('\n')};\n`;
}

function projectionProperties(c: PartitionColumn, opts: AthenaOptions): Array<[string, string]> {
  const p = `projection.${c.name}`;
  const { projection } = c;
  switch (projection.type) {
    case 'partition':
      return opts.partitions === undefined
        ? [[`${p}.type`, 'injected']]
        : [
            [`${p}.type`, 'enum'],
            [`${p}.values`, opts.partitions.join(',')],
          ];
    case 'integer':
      return [
        [`${p}.type`, 'integer'],
        [`${p}.range`, `${projection.min},${projection.max}`],
        [`${p}.digits`, String(projection.digits)],
      ];
    case 'date':
      return [
        [`${p}.type`, 'date'],
        [`${p}.format`, projection.format],
        [`${p}.range`, `${sinceIn(projection.format, opts.since)},NOW`],
        [`${p}.interval`, '1'],
        [`${p}.interval.unit`, projection.unit],
      ];
  }
}

/** The first value of a date column: a `yyyy-MM-dd` date written in the column's format, or NOW-relative as is. */
function sinceIn(format: string, since = 'NOW-1YEARS'): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(since);
  if (!m) return since;
  return format.replace('yyyy', m[1]!).replace('MM', m[2]!).replace('dd', m[3]!).replace('HH', '00');
}

function sqlType(c: PartitionColumn): string {
  switch (c.projection.type) {
    case 'integer':
      return 'int';
    case 'date':
      return c.projection.sqlType;
    default:
      return 'string';
  }
}

/** Hive DDL names in backquotes: `timestamp` and `partition` are reserved words there. */
function quote(name: string): string {
  return `\`${name}\``;
}

function literal(s: string): string {
  return s.replace(/'/g, "''");
}
