/**
 * DuckDB's `CREATE VIEW` over an output's objects (an s3 output's bucket through httpfs, or a file output's
 * directory): read_parquet or read_json over the glob of its keys with hive_partitioning, so `name=value`
 * levels (dt, hour) are columns DuckDB prunes files by; levels without a name ({partition} of the hive
 * layout) are cut out of each object's path. For S3, a secret scoped to the bucket, with the output's
 * region and endpoint: the AWS credential chain, or placeholders where the output has keys of its own.
 */

import { commentLines, partitionColumns, type PartitionColumn, type TableLayout } from './table-layout.js';
import type { ObjectLocation } from '../sinks/types.js';

/**
 * NDJSON members as read_json reads them: nothing that a member of another type could fail (a `timestamp`
 * that is not a date-time is a null TIMESTAMPTZ, not a failed query); JSON values as DuckDB's JSON type.
 */
const NDJSON_COLUMNS: Array<[string, string]> = [
  ['decision_id', 'VARCHAR'],
  ['path', 'VARCHAR'],
  ['timestamp', 'VARCHAR'],
  ['labels', 'JSON'],
  ['requested_by', 'VARCHAR'],
  ['req_id', 'VARCHAR'],
  ['revision', 'VARCHAR'],
  ['bundles', 'JSON'],
  ['input', 'JSON'],
  ['result', 'JSON'],
  ['metrics', 'JSON'],
  ['nd_builtin_cache', 'JSON'],
  ['erased', 'JSON'],
  ['masked', 'JSON'],
];
const NDJSON_CASTS: Record<string, string> = { timestamp: 'TIMESTAMPTZ', req_id: 'BIGINT' };

export interface DuckDbOptions {
  view: string;
  location: ObjectLocation;
  /** The output has access keys of its own: the secret gets placeholders for them, not the credential chain. */
  ownKeys: boolean;
  comment: string;
}

export function duckdbView(layout: TableLayout, opts: DuckDbOptions): string {
  const { root } = opts.location;
  const columns = partitionColumns(layout);
  const hive = columns.filter((c) => c.hive);
  const cut = columns.filter((c) => !c.hive);
  const glob = `${root}${layout.pieces.map((p) => ('literal' in p ? p.literal : globOf(p.column))).join('')}${layout.deeper ? '**/' : ''}${layout.fileGlob}`;
  const args = [`'${literal(glob)}'`];
  if (layout.format !== 'parquet') {
    args.push(`format = '${layout.format === 'json_array' ? 'array' : 'newline_delimited'}'`);
    args.push(`columns = {${NDJSON_COLUMNS.map(([n, t]) => `'${n}': '${t}'`).join(', ')}}`);
  }
  args.push('hive_partitioning = true');
  if (hive.length > 0) args.push(`hive_types = {${hive.map((c) => `'${c.name}': ${duckType(c)}`).join(', ')}}`);
  if (cut.length > 0) args.push('filename = true');
  const regex = `^${escapeRegex(root)}${layout.pieces
    .map((p) => ('literal' in p ? escapeRegex(p.literal) : p.column.hive ? '[^/]+' : `(${levelsRegex(p.column)})`))
    .join('')}`;
  const cutColumns = cut.map(
    (c, i) => `${castCut(`regexp_extract(filename, '${literal(regex)}', ${i + 1})`, c)} AS ${quote(c.name)}`,
  );
  let select: string;
  if (layout.format === 'parquet') {
    select = cut.length > 0 ? `* EXCLUDE (filename), ${cutColumns.join(', ')}` : '*';
  } else {
    const members = NDJSON_COLUMNS.map(([n]) =>
      NDJSON_CASTS[n] ? `try_cast(${quote(n)} AS ${NDJSON_CASTS[n]}) AS ${quote(n)}` : quote(n),
    );
    select = [...members, ...hive.map((c) => quote(c.name)), ...cutColumns].join(', ');
  }
  const reader = layout.format === 'parquet' ? 'read_parquet' : 'read_json';
  const lines = [...commentLines(opts.comment, layout.notes), ...s3Lines(opts)];
  lines.push(`CREATE OR REPLACE VIEW ${quote(opts.view)} AS`);
  lines.push(`SELECT ${select}`);
  lines.push(`FROM ${reader}(${args.join(', ')});`);
  return `${lines.join('\n')}\n`;
}

function s3Lines({ location, ownKeys, view }: DuckDbOptions): string[] {
  const s3 = location.s3;
  if (!s3) return [];
  const settings = ['TYPE s3'];
  if (ownKeys) settings.push("KEY_ID '<access_key_id>'", "SECRET '<secret_access_key>'");
  else settings.push('PROVIDER credential_chain');
  settings.push(`REGION '${literal(s3.region)}'`);
  if (s3.endpoint !== undefined) {
    const url = new URL(s3.endpoint);
    settings.push(`ENDPOINT '${literal(url.host)}'`);
    settings.push(`USE_SSL ${url.protocol === 'https:'}`);
  }
  if (s3.forcePathStyle || s3.endpoint !== undefined) settings.push("URL_STYLE 'path'");
  settings.push(`SCOPE '${literal(location.root)}'`);
  return [
    'INSTALL httpfs;',
    'LOAD httpfs;',
    ...(ownKeys
      ? ["-- put the output's keys in place of the placeholders"]
      : ['-- credentials: the AWS credential chain (environment, profile, instance role), as Sluice finds them']),
    `CREATE OR REPLACE SECRET ${quote(`sluice_${view}`)} (${settings.join(', ')});`,
  ];
}

function globOf(c: PartitionColumn): string {
  return Array.from({ length: c.levels }, () => '*').join('/');
}

function levelsRegex(c: PartitionColumn): string {
  return Array.from({ length: c.levels }, () => '[^/]+').join('/');
}

/** A value cut out of the path, as the column's type. */
function castCut(expr: string, c: PartitionColumn): string {
  const type = duckType(c);
  return type === 'VARCHAR' ? expr : `try_cast(${expr} AS ${type})`;
}

function duckType(c: PartitionColumn): string {
  const p = c.projection;
  if (p.type === 'integer') return 'INTEGER';
  if (p.type === 'date' && p.sqlType === 'date') return 'DATE';
  return 'VARCHAR';
}

function quote(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function literal(s: string): string {
  return s.replace(/'/g, "''");
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
