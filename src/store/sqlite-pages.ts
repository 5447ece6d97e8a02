import type Database from 'better-sqlite3';
import type { Page, PageQuery } from './types.js';

/** A cursor names the seq of the row a page ends (next) or starts (prev) at; opaque to clients. */
export function encodeCursor(seq: number): string {
  return Buffer.from(`s${seq}`).toString('base64url');
}

export class CursorError extends Error {}

function decodeCursor(cursor: string): number {
  const match = /^s(\d+)$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match) throw new CursorError('the cursor is not one this API gave out');
  return Number(match[1]);
}

export interface Filtered {
  /** SQL conditions over the table's columns, joined with AND. */
  where: string[];
  params: unknown[];
}

/**
 * Reads one page of `table` in `dir` order of seq: `next` continues past the end of the previous page,
 * `prev` goes back before its start. The cursors of the answer are null where there is nothing more.
 */
export function readPage<Row extends { seq: number }, T>(
  db: Database.Database, table: string, filter: Filtered, query: PageQuery, dir: 'asc' | 'desc', map: (row: Row) => T,
): Page<T> {
  const forward = dir === 'desc' ? '<' : '>';
  const backward = dir === 'desc' ? '>' : '<';
  const where = [...filter.where];
  const params = [...filter.params];
  let order = dir;
  let reversed = false;
  if (query.next) {
    where.push(`seq ${forward} ?`);
    params.push(decodeCursor(query.next));
  } else if (query.prev) {
    where.push(`seq ${backward} ?`);
    params.push(decodeCursor(query.prev));
    order = dir === 'desc' ? 'asc' : 'desc';
    reversed = true;
  }
  const clause = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
  let rows = db.prepare(`SELECT * FROM ${table} ${clause} ORDER BY seq ${order} LIMIT ?`).all(...params, query.limit) as Row[];
  if (reversed) rows = rows.reverse();
  if (rows.length === 0) return { models: [], next: null, prev: null };
  const beyond = (op: string, seq: number) => {
    const conditions = [...filter.where, `seq ${op} ?`];
    return db.prepare(`SELECT 1 FROM ${table} WHERE ${conditions.join(' AND ')} LIMIT 1`).get(...filter.params, seq) !== undefined;
  };
  const first = rows[0]!.seq;
  const last = rows[rows.length - 1]!.seq;
  return {
    models: rows.map(map),
    next: beyond(forward, last) ? encodeCursor(last) : null,
    prev: beyond(backward, first) ? encodeCursor(first) : null,
  };
}
