import type Database from 'better-sqlite3';

/**
 * What a list asks for: at most `limit` rows, after the row `next` names or before the one `prev` names.
 * (The Store contract's PageQuery has this shape; this module knows nothing of the store.)
 */
export interface PageRequest {
  limit: number;
  next?: string;
  prev?: string;
}

/** One page of rows, with the cursors of the pages beside it (null where there is nothing more). */
export interface PageOf<T> {
  models: T[];
  next: string | null;
  prev: string | null;
}

/**
 * A cursor names the row a page ends (next) or starts (prev) at, by the sort key and seq: `s{seq}` for lists
 * in seq order, `k{key}.{seq}` for lists sorted by another column (ties broken by seq); opaque to clients.
 */
function encodeCursor(key: number | undefined, seq: number): string {
  return Buffer.from(key === undefined ? `s${seq}` : `k${key}.${seq}`).toString('base64url');
}

/** A cursor that this module did not give out (or gave out for another order): the client's mistake. */
export class CursorError extends Error {}

function decodeCursor(cursor: string, keyed: boolean): { key: number; seq: number } {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const match = keyed ? /^k(-?\d+)\.(\d+)$/.exec(text) : /^s(\d+)$/.exec(text);
  if (!match) throw new CursorError('the cursor is not one this API gave out (or not for this order)');
  return keyed ? { key: Number(match[1]), seq: Number(match[2]) } : { key: Number(match[1]), seq: Number(match[1]) };
}

export interface Filtered {
  /** SQL conditions over the table's columns, joined with AND. */
  where: string[];
  params: unknown[];
}

/**
 * Reads one page of `table` in `dir` order of `sortColumn` (then seq; seq alone by default): `next`
 * continues past the end of the previous page, `prev` goes back before its start. The cursors of the answer
 * are null where there is nothing more.
 */
export function readPage<Row extends { seq: number }, T>(
  db: Database.Database,
  table: string,
  filter: Filtered,
  query: PageRequest,
  dir: 'asc' | 'desc',
  map: (row: Row) => T,
  sortColumn?: string,
): PageOf<T> {
  const keyed = sortColumn !== undefined && sortColumn !== 'seq';
  // row values compare the sort key first, then seq: a total order, so no row is skipped or repeated at a page edge
  const position = keyed ? `(${sortColumn}, seq)` : 'seq';
  const placeholder = keyed ? '(?, ?)' : '?';
  const values = (c: { key: number; seq: number }) => (keyed ? [c.key, c.seq] : [c.seq]);
  const forward = dir === 'desc' ? '<' : '>';
  const backward = dir === 'desc' ? '>' : '<';
  const where = [...filter.where];
  const params = [...filter.params];
  let order = dir;
  let reversed = false;
  if (query.next) {
    where.push(`${position} ${forward} ${placeholder}`);
    params.push(...values(decodeCursor(query.next, keyed)));
  } else if (query.prev) {
    where.push(`${position} ${backward} ${placeholder}`);
    params.push(...values(decodeCursor(query.prev, keyed)));
    order = dir === 'desc' ? 'asc' : 'desc';
    reversed = true;
  }
  const clause = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
  const orderBy = keyed ? `${sortColumn} ${order}, seq ${order}` : `seq ${order}`;
  let rows = db
    .prepare(`SELECT * FROM ${table} ${clause} ORDER BY ${orderBy} LIMIT ?`)
    .all(...params, query.limit) as Row[];
  if (reversed) rows = rows.reverse();
  if (rows.length === 0) return { models: [], next: null, prev: null };
  const keyOf = (row: Row) => ({
    key: keyed ? Number((row as Record<string, unknown>)[sortColumn]) : row.seq,
    seq: row.seq,
  });
  const beyond = (op: string, row: Row) => {
    const conditions = [...filter.where, `${position} ${op} ${placeholder}`];
    return (
      db
        .prepare(`SELECT 1 FROM ${table} WHERE ${conditions.join(' AND ')} LIMIT 1`)
        .get(...filter.params, ...values(keyOf(row))) !== undefined
    );
  };
  const first = rows[0]!;
  const last = rows[rows.length - 1]!;
  const cursor = (row: Row) => encodeCursor(keyed ? keyOf(row).key : undefined, row.seq);
  return {
    models: rows.map(map),
    next: beyond(forward, last) ? cursor(last) : null,
    prev: beyond(backward, first) ? cursor(first) : null,
  };
}

/** How many rows of `table` the filter matches. */
export function countRows(db: Database.Database, table: string, filter: Filtered): number {
  const clause = filter.where.length > 0 ? `WHERE ${filter.where.join(' AND ')}` : '';
  return db
    .prepare(`SELECT count(*) FROM ${table} ${clause}`)
    .pluck()
    .get(...filter.params) as number;
}
