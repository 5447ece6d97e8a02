import { z } from 'zod';
import { CursorError } from '../store/sqlite-pages.js';
import type { Page, PageQuery } from '../store/types.js';
import { HttpError } from '../sources/http-error.js';

/** `limit`, `next`, `prev` of every list route. */
export const pageQuery = {
  limit: z.coerce.number({ error: 'failed type validation' }).int('failed type validation').min(1, 'failed min validation').max(1000, 'failed max validation').default(100),
  next: z.string().min(1).optional(),
  prev: z.string().min(1).optional(),
};

/** Reads a page, answering 400 for a cursor this API did not give out. */
export function paged<T, V>(read: (query: PageQuery) => Page<T>, query: PageQuery, view: (model: T) => V) {
  let page: Page<T>;
  try {
    page = read({ limit: query.limit, next: query.next, prev: query.prev });
  } catch (err) {
    if (err instanceof CursorError) throw new HttpError(400, err.message, { reason: 'bad_cursor' });
    throw err;
  }
  return { models: page.models.map(view), pagination: { limit: query.limit, next: page.next, prev: page.prev } };
}
