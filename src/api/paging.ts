import { z } from 'zod';
import { CursorError, type Page, type PageQuery } from '../store/types.js';
import { HttpError } from '../http/http-error.js';

/** `limit`, `next`, `prev` of a list route; Outpost's bounds are 1..1000 (default 100), tenants 1..100 (default 20). */
export function pageParams(bounds: { default: number; max: number } = { default: 100, max: 1000 }) {
  return {
    limit: z.coerce
      .number({ error: 'failed type validation' })
      .int('failed type validation')
      .min(1, 'failed min validation')
      .max(bounds.max, `failed max validation (at most ${bounds.max})`)
      .default(bounds.default),
    next: z.string().min(1).optional(),
    prev: z.string().min(1).optional(),
  };
}

export const pageQuery = pageParams();

/** The `pagination` of a list answer, as Outpost's SeekPagination. */
export const paginationSchema = z.object({
  order_by: z.string(),
  dir: z.enum(['asc', 'desc']),
  limit: z.number().int(),
  next: z.string().nullable(),
  prev: z.string().nullable(),
});

/**
 * Reads a page, answering 400 for a cursor this API did not give out, or for `next` and `prev` together.
 * `orderBy` and the query's `dir` are said back in `pagination`.
 */
export async function paged<T, V>(
  read: (query: PageQuery) => Promise<Page<T>>,
  query: PageQuery,
  view: (model: T) => V | Promise<V>,
  orderBy: string,
) {
  if (query.next && query.prev)
    throw new HttpError(400, "cannot specify both 'next' and 'prev' cursors", { reason: 'bad_cursor' });
  const dir = query.dir ?? 'desc';
  let page: Page<T>;
  try {
    page = await read({ limit: query.limit, next: query.next, prev: query.prev, dir });
  } catch (err) {
    if (err instanceof CursorError) throw new HttpError(400, err.message, { reason: 'bad_cursor' });
    throw err;
  }
  // the views' reads (an event's deliveries, ...) side by side: over a network store each is a round trip
  const models = await Promise.all(page.models.map(view));
  return {
    models,
    pagination: { order_by: orderBy, dir, limit: query.limit, next: page.next, prev: page.prev },
  };
}
