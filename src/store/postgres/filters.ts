import type { OneOrMore, TimeRange } from '../types.js';
import type { Params } from './database.js';

/** Conditions over a table's columns (joined with AND) and their values. */
export interface Filtered {
  where: string[];
  params: Params;
}

/** A filter of one value or several, as a list (undefined: no filter). */
export function list(value: OneOrMore | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'string' ? [value] : value;
}

/** `column = ANY(...)` for a filter of one value or several (column names are the store modules' own, never a client's). */
export function anyOf(f: Filtered, column: string, value: OneOrMore | undefined): void {
  const given = list(value);
  if (!given) return;
  // text with U+0000 is never stored (PostgreSQL refuses it): such a value matches nothing
  const values = given.filter((v) => !v.includes('\u0000'));
  if (values.length === 0) {
    f.where.push('false');
    return;
  }
  f.where.push(
    values.length === 1 ? `${column} = ${f.params.add(values[0])}` : `${column} = ANY(${f.params.add(values)})`,
  );
}

/** The bounds of `range` on `column`, each one that is set. */
export function within(f: Filtered, column: string, range: TimeRange | undefined): void {
  if (!range) return;
  for (const [op, sql] of [
    ['gte', '>='],
    ['gt', '>'],
    ['lte', '<='],
    ['lt', '<'],
  ] as const) {
    if (range[op] === undefined) continue;
    f.where.push(`${column} ${sql} ${f.params.add(range[op])}`);
  }
}
