import type { OutputConfig } from '../config/schema.js';
import { athenaTable } from '../query/athena-table.js';
import { duckdbView } from '../query/duckdb-view.js';
import { tableLayout, type Piece } from '../query/table-layout.js';
import { locationOf, outputObjects } from '../sinks/registry.js';

/** Exit codes of `sluice table`. */
export const TABLE_EXIT = { printed: 0, unusable: 2 } as const;

export interface TableOptions {
  engine: 'athena' | 'duckdb';
  /** Athena's values of the `partition` column; `injected` for none (each query names its partition). */
  partitions?: string[] | 'injected';
  /** First date of Athena's date columns, YYYY-MM-DD (default: a year ago, relative to each query). */
  since?: string;
}

/** The table (view) name of an output: Athena takes lower case letters, digits and `_`. */
export function tableName(output: Pick<OutputConfig, 'name'>): string {
  return output.name.toLowerCase().replace(/-/g, '_');
}

/** Why an output has no table: said as one line, exit 2. */
export class NoTableError extends Error {}

/**
 * `sluice table`: prints the statement that makes an output's objects a table (Athena) or a view (DuckDB).
 * Returns the exit code; what is wrong is one line on stderr.
 */
export async function table(output: OutputConfig, opts: TableOptions): Promise<number> {
  try {
    process.stdout.write(await tableStatement(output, opts));
    return TABLE_EXIT.printed;
  } catch (err) {
    if (!(err instanceof NoTableError)) throw err;
    console.error(err.message);
    return TABLE_EXIT.unusable;
  }
}

/** The statement `sluice table` prints; NoTableError for an output that has none. */
export async function tableStatement(output: OutputConfig, opts: TableOptions): Promise<string> {
  const location = locationOf(output);
  if (!location)
    throw new NoTableError(
      `output ${output.name} is of type ${output.type}: it stores no objects a query engine can read (only s3 and file outputs have tables)`,
    );
  if (opts.engine === 'athena' && !location.s3)
    throw new NoTableError(`output ${output.name} is a file output: Athena reads S3 only; use --engine duckdb`);
  const layout = tableLayout(output);
  if (opts.engine === 'athena' && layout.format === 'json_array')
    throw new NoTableError(
      `output ${output.name} writes JSON arrays (format: json_array), which Athena's JsonSerDe cannot read (it reads JSON one object per line): use format ndjson, or --engine duckdb`,
    );
  const comment = `Sluice output ${output.name}: ${layout.format} objects under ${location.root}, key ${output.key}`;
  const name = tableName(output);
  try {
    if (opts.engine === 'duckdb')
      return duckdbView(layout, {
        view: name,
        location,
        ownKeys: Boolean((output as { access_key_id?: string }).access_key_id),
        comment,
      });
    const notes = [...layout.notes];
    const partitions = await partitionValues(output, layout.pieces, opts.partitions, notes);
    return athenaTable(
      { ...layout, notes },
      { table: name, root: location.root, partitions, since: opts.since, comment },
    );
  } catch (err) {
    throw new NoTableError(`cannot write the table of output ${output.name}: ${(err as Error).message}`);
  }
}

/**
 * The values Athena enumerates for the `partition` column: those given, or the partitions the output has
 * written so far (one listing of the level they are at), or injected when they cannot be listed.
 */
async function partitionValues(
  output: OutputConfig,
  pieces: Piece[],
  given: string[] | 'injected' | undefined,
  notes: string[],
): Promise<string[] | undefined> {
  const at = pieces.findIndex((p) => 'column' in p && p.column.projection.type === 'partition');
  if (at === -1) return undefined;
  if (given === 'injected') return undefined;
  if (given !== undefined) return given;
  const before = pieces.slice(0, at);
  if (!before.every((p) => 'literal' in p)) {
    notes.push('partition is injected: every query names its partition (WHERE "partition" = \'...\')');
    return undefined;
  }
  const prefix = before.map((p) => ('literal' in p ? p.literal : '')).join('');
  const objects = outputObjects(output);
  try {
    const listed = await objects.children(prefix).catch((err: Error) => {
      throw new Error(
        `cannot list the partitions it wrote (${err.message}): name them with --partitions a,b or --partitions injected`,
      );
    });
    // only names Sluice gives partitions (POST /logs/{partition}): another prefix in the bucket is not one
    const found = listed
      .map((p) => p.slice(prefix.length, -1))
      .filter((p) => /^[A-Za-z0-9._-]{1,128}$/.test(p) && p !== '.' && p !== '..');
    const values = found.length > 0 ? found : ['default'];
    notes.push(
      `partition values: ${found.length > 0 ? 'the partitions the output has written so far' : 'none written yet, so default'}; a new one needs --partitions (or ALTER TABLE ... SET TBLPROPERTIES ('projection.partition.values' = '...'))`,
    );
    return values;
  } finally {
    objects.close();
  }
}
