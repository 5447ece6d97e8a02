import type { Filtered } from '../../sqlite/paging.js';
import type { OneOrMore, TimeRange } from '../types.js';

/** A filter of one value or several, as a list (undefined: no filter). */
export function list(value: OneOrMore | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'string' ? [value] : value;
}

/** `?, ?, ...`: one placeholder per value. */
export function marks(values: unknown[]): string {
  return values.map(() => '?').join(', ');
}

/** `column IN (...)` for a filter of one value or several (column names are the store modules' own, never a client's). */
export function anyOf(f: Filtered, column: string, value: OneOrMore | undefined): void {
  const values = list(value);
  if (!values) return;
  f.where.push(values.length === 1 ? `${column} = ?` : `${column} IN (${marks(values)})`);
  f.params.push(...values);
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
    f.where.push(`${column} ${sql} ?`);
    f.params.push(range[op]);
  }
}
