import { CursorError } from '../types.js';
import type { Page, PageQuery } from '../types.js';
import type { Sql } from './database.js';
import type { Filtered } from './filters.js';

/**
 * Pages of a table, as the SQLite store's (src/sqlite/paging.ts): a cursor names the row a page ends (next)
 * or starts (prev) at by its sort key and seq, `s{seq}` or `k{key}.{seq}`, base64url; opaque to clients. The
 * same format, so a cursor means the same on either store.
 */
function encodeCursor(key: number | undefined, seq: number): string {
  return Buffer.from(key === undefined ? `s${seq}` : `k${key}.${seq}`).toString('base64url');
}

function decodeCursor(cursor: string, keyed: boolean): { key: number; seq: number } {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const match = keyed ? /^k(-?\d+)\.(\d+)$/.exec(text) : /^s(\d+)$/.exec(text);
  if (!match) throw new CursorError('the cursor is not one this API gave out (or not for this order)');
  return keyed ? { key: Number(match[1]), seq: Number(match[2]) } : { key: Number(match[1]), seq: Number(match[1]) };
}

/**
 * Reads one page of `table` (a table or a parenthesized, aliased select) in `dir` order of `sortColumn`
 * (then seq; seq alone by default): `next` continues past the end of the previous page, `prev` goes back
 * before its start. The cursors of the answer are null where there is nothing more.
 */
export async function readPage<Row extends { seq: number }, T>(
  sql: Sql,
  table: string,
  filter: Filtered,
  query: PageQuery,
  dir: 'asc' | 'desc',
  map: (row: Row) => T,
  sortColumn?: string,
): Promise<Page<T>> {
  const keyed = sortColumn !== undefined && sortColumn !== 'seq';
  // row values compare the sort key first, then seq: a total order, so no row is skipped or repeated at a page edge
  const position = keyed ? `(${sortColumn}, seq)` : 'seq';
  const placeholder = (p: Filtered['params'], c: { key: number; seq: number }) =>
    keyed ? `(${p.add(c.key)}, ${p.add(c.seq)})` : p.add(c.seq);
  const forward = dir === 'desc' ? '<' : '>';
  const backward = dir === 'desc' ? '>' : '<';
  const params = filter.params.copy();
  const where = [...filter.where];
  let order = dir;
  let reversed = false;
  if (query.next) {
    where.push(`${position} ${forward} ${placeholder(params, decodeCursor(query.next, keyed))}`);
  } else if (query.prev) {
    where.push(`${position} ${backward} ${placeholder(params, decodeCursor(query.prev, keyed))}`);
    order = dir === 'desc' ? 'asc' : 'desc';
    reversed = true;
  }
  const clause = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
  const orderBy = keyed ? `${sortColumn} ${order}, seq ${order}` : `seq ${order}`;
  const limit = params.add(query.limit);
  let { rows } = await sql.query<Row>(
    `SELECT * FROM ${table} ${clause} ORDER BY ${orderBy} LIMIT ${limit}`,
    params.values,
  );
  if (reversed) rows = rows.reverse();
  if (rows.length === 0) return { models: [], next: null, prev: null };
  const keyOf = (row: Row) => ({
    key: keyed ? Number((row as Record<string, unknown>)[sortColumn]) : row.seq,
    seq: row.seq,
  });
  const beyond = async (op: string, row: Row) => {
    const p = filter.params.copy();
    const conditions = [...filter.where, `${position} ${op} ${placeholder(p, keyOf(row))}`];
    const found = await sql.query(`SELECT 1 FROM ${table} WHERE ${conditions.join(' AND ')} LIMIT 1`, p.values);
    return found.rows.length > 0;
  };
  const first = rows[0]!;
  const last = rows[rows.length - 1]!;
  const cursor = (row: Row) => encodeCursor(keyed ? keyOf(row).key : undefined, row.seq);
  const [hasNext, hasPrev] = await Promise.all([beyond(forward, last), beyond(backward, first)]);
  return {
    models: rows.map(map),
    next: hasNext ? cursor(last) : null,
    prev: hasPrev ? cursor(first) : null,
  };
}

/** How many rows of `table` the filter matches. */
export async function countRows(sql: Sql, table: string, filter: Filtered): Promise<number> {
  const clause = filter.where.length > 0 ? `WHERE ${filter.where.join(' AND ')}` : '';
  const { rows } = await sql.query<{ n: number }>(`SELECT count(*) AS n FROM ${table} ${clause}`, filter.params.values);
  return rows[0]?.n ?? 0;
}
