/**
 * What a query engine needs to know of an output's object keys, for `sluice table`: the partition columns
 * its key layout puts in the path (each with the values Athena's partition projection enumerates), the
 * path pattern they make, and the objects' file names. Athena's and DuckDB's statements (athena-table.ts,
 * duckdb-view.ts) are written from it.
 *
 *   hive, `{partition}/dt={date}/hour={hour}/...`   partition (string), dt (date), hour (integer 00-23)
 *   a template                                      each directory level that is one placeholder, alone or
 *                                                   as `name={placeholder}`: {partition}, {date}, {hour},
 *                                                   {month} (01-12), {day} (01-31), {year}; a run
 *                                                   {year}/{month}/{day}[/{hour}] is one column, dt
 *   hourly-per-decision, `YYYY/MM/DD/HH/...`        dt, the string `yyyy/MM/dd/HH`
 *   eopa, eopa-per-decision, outpost                none: their keys hold unix seconds or full times,
 *                                                   which no projection can enumerate
 *
 * A template's levels after the first that cannot be projected (one holding {batch}, {first}, {last}, or
 * text around a placeholder) are read as they are, every object below the columns found before it.
 */

import { DEFAULT_KEY_TEMPLATE } from '../delivery/object-keys.js';
import { extension, type Encoding } from '../delivery/encode.js';
import type { OutputConfig } from '../config/schema.js';

export type Projection =
  /** The partition of `/logs/{partition}`: the values found, or injected (each query names one). */
  | { type: 'partition' }
  /** Dates in a path format (Java's `yyyy`, `MM`, `dd`, `HH`), one a `unit`. */
  | { type: 'date'; format: string; unit: 'YEARS' | 'DAYS' | 'HOURS'; sqlType: 'date' | 'string' }
  | { type: 'integer'; min: number; max: number; digits: number };

export interface PartitionColumn {
  name: string;
  projection: Projection;
  /** A `name=value` level (DuckDB's hive_partitioning reads it); otherwise the value is cut out of the path. */
  hive: boolean;
  /** How many path levels its value spans (a `yyyy/MM/dd/HH` run: 4). */
  levels: number;
}

/** The directory part of a key: text, and the values of partition columns. */
export type Piece = { literal: string } | { column: PartitionColumn };

export interface TableLayout {
  /** The levels below the output's root, each ending in `/` (or none). */
  pieces: Piece[];
  /** Objects may be further down than `pieces` (levels that could not be projected). */
  deeper: boolean;
  /** The file names of the objects, as a glob (`*.parquet`). */
  fileGlob: string;
  /** Why levels of the key are not partition columns, for the statement's comments. */
  notes: string[];
  /** The objects' format as a query engine reads it. */
  format: 'parquet' | 'ndjson' | 'json_array';
}

/** Names of the decision schema's columns, which a partition column must not take. */
export const DECISION_COLUMN_NAMES = [
  'decision_id',
  'path',
  'timestamp',
  'labels',
  'requested_by',
  'req_id',
  'revision',
  'bundles',
  'input',
  'result',
  'metrics',
  'nd_builtin_cache',
  'erased',
  'masked',
  'extra',
];

const DEFAULT_NAMES: Record<string, string> = {
  partition: 'partition',
  date: 'dt',
  year: 'year',
  month: 'month',
  day: 'day',
  hour: 'hour',
};

function projectionOf(placeholder: string): Projection | undefined {
  switch (placeholder) {
    case 'partition':
      return { type: 'partition' };
    case 'date':
      return { type: 'date', format: 'yyyy-MM-dd', unit: 'DAYS', sqlType: 'date' };
    case 'year':
      return { type: 'date', format: 'yyyy', unit: 'YEARS', sqlType: 'string' };
    case 'month':
      return { type: 'integer', min: 1, max: 12, digits: 2 };
    case 'day':
      return { type: 'integer', min: 1, max: 31, digits: 2 };
    case 'hour':
      return { type: 'integer', min: 0, max: 23, digits: 2 };
    default:
      return undefined;
  }
}

/** The objects' format, `parquet` included (the output's `format`). */
export function formatOf(output: Pick<OutputConfig, 'format'>): TableLayout['format'] {
  const format = output.format as string;
  return format === 'parquet' ? 'parquet' : format === 'json_array' ? 'json_array' : 'ndjson';
}

/** The extension of the output's objects under a template's `{ext}`. */
function extOf(output: Pick<OutputConfig, 'format' | 'compression'>): string {
  return formatOf(output) === 'parquet' ? 'parquet' : extension(output as Encoding);
}

export function tableLayout(output: Pick<OutputConfig, 'name' | 'key' | 'format' | 'compression'>): TableLayout {
  const format = formatOf(output);
  const gz = (output.compression as string) === 'gzip' && format !== 'parquet' ? '.gz' : '';
  switch (output.key) {
    case 'hive':
      return templateLayout(DEFAULT_KEY_TEMPLATE, output, format);
    case 'hourly-per-decision':
      return {
        pieces: [
          {
            column: {
              name: 'dt',
              projection: { type: 'date', format: 'yyyy/MM/dd/HH', unit: 'HOURS', sqlType: 'string' },
              hive: false,
              levels: 4,
            },
          },
          { literal: '/' },
        ],
        deeper: false,
        fileGlob: '*.json',
        notes: [],
        format: 'ndjson',
      };
    case 'eopa':
      return {
        pieces: [],
        deeper: true,
        fileGlob: `*.${format === 'ndjson' ? 'jsonl' : 'json'}${gz}`,
        notes: [
          'the eopa layout has no partition columns: its levels hold unix seconds (first_ts, last_ts), which partition projection cannot enumerate; every query reads every object',
        ],
        format,
      };
    case 'eopa-per-decision':
    case 'outpost':
      return {
        pieces: [],
        deeper: output.key === 'eopa-per-decision',
        fileGlob: '*.json',
        notes: [
          `the ${output.key} layout has no partition columns: its keys hold unix seconds or full times, which partition projection cannot enumerate; every query reads every object`,
        ],
        // one decision per object, on one line
        format: 'ndjson',
      };
    default:
      return templateLayout(output.key, output, format);
  }
}

function templateLayout(
  template: string,
  output: Pick<OutputConfig, 'name' | 'format' | 'compression'>,
  format: TableLayout['format'],
): TableLayout {
  const levels = template.replaceAll('{output}', output.name).split('/');
  const file = levels.pop()!;
  const pieces: Piece[] = [];
  const notes: string[] = [];
  const used = new Set<string>(DECISION_COLUMN_NAMES);
  let deeper = false;
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (!level.includes('{')) {
      pieces.push({ literal: `${level}/` });
      continue;
    }
    // {year}/{month}/{day}[/{hour}]: one date column
    if (level === '{year}' && levels[i + 1] === '{month}' && levels[i + 2] === '{day}' && !used.has('dt')) {
      const withHour = levels[i + 3] === '{hour}';
      const column: PartitionColumn = {
        name: 'dt',
        projection: withHour
          ? { type: 'date', format: 'yyyy/MM/dd/HH', unit: 'HOURS', sqlType: 'string' }
          : { type: 'date', format: 'yyyy/MM/dd', unit: 'DAYS', sqlType: 'string' },
        hive: false,
        levels: withHour ? 4 : 3,
      };
      used.add('dt');
      pieces.push({ column }, { literal: '/' });
      i += column.levels - 1;
      continue;
    }
    const m = /^(?:([a-z_][a-z0-9_]*)=)?\{([a-z]+)\}$/.exec(level);
    const projection = m ? projectionOf(m[2]!) : undefined;
    const name = m ? (m[1] ?? DEFAULT_NAMES[m[2]!]!) : '';
    if (!m || !projection || used.has(name)) {
      notes.push(
        !m || !projection
          ? `the key's level "${level}" is not a partition column (only a level that is one of {partition} {date} {year} {month} {day} {hour}, alone or as name={...}, can be projected): the objects below ${pieces.length > 0 ? 'the columns before it' : 'the root'} are read whole`
          : `the key's level "${level}" would be a column named ${name}, which the table already has: it is not a partition column`,
      );
      deeper = true;
      break;
    }
    used.add(name);
    if (m[1] !== undefined) pieces.push({ literal: `${m[1]}=` });
    pieces.push({ column: { name, projection, hive: m[1] !== undefined, levels: 1 } }, { literal: '/' });
  }
  if (file.includes('{partition}'))
    notes.push('the partition is in the file name, not a level of its own: it is not a partition column');
  const fileGlob = file
    .replaceAll('{ext}', extOf(output))
    .replace(/\{[a-z]+\}/g, '*')
    .replace(/\*+/g, '*');
  return { pieces: mergeLiterals(pieces), deeper, fileGlob, notes, format };
}

function mergeLiterals(pieces: Piece[]): Piece[] {
  const out: Piece[] = [];
  for (const p of pieces) {
    const last = out[out.length - 1];
    if ('literal' in p && last && 'literal' in last) last.literal += p.literal;
    else out.push({ ...p });
  }
  return out;
}

/** The partition columns of a layout, in path order. */
export function partitionColumns(layout: TableLayout): PartitionColumn[] {
  return layout.pieces.flatMap((p) => ('column' in p ? [p.column] : []));
}

/** SQL comment lines: what the statement is for, and why levels of the key are not columns. */
export function commentLines(comment: string, notes: string[]): string[] {
  return [comment, ...notes].map((line) => `-- ${line.replace(/\n/g, ' ')}`);
}
