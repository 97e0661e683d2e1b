/**
 * Pages over a lazy sequence: skips `offset`, takes `limit`, and looks one item
 * further only to say whether there is a next page (so a page costs offset +
 * limit + 1 rows, never the whole sequence).
 */
import { BadQueryError } from './errors.js';

/** The most rows one page may return (a request cannot ask for millions). */
export const MAX_PAGE_LIMIT = 1000;
export const DEFAULT_PAGE_LIMIT = 100;

export interface PageRequest {
  offset: number;
  limit: number;
}

export interface Page<T> {
  items: T[];
  offset: number;
  limit: number;
  /** The offset of the next page; absent on the last page. */
  nextOffset?: number;
}

export function checkPage(p: Partial<PageRequest>): PageRequest {
  const offset = p.offset ?? 0;
  const limit = p.limit ?? DEFAULT_PAGE_LIMIT;
  if (!Number.isSafeInteger(offset) || offset < 0) throw new BadQueryError('BAD_OFFSET', `offset ${offset} is not ≥ 0`);
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PAGE_LIMIT) {
    throw new BadQueryError('BAD_LIMIT', `limit ${limit} is not in 1..${MAX_PAGE_LIMIT}`);
  }
  return { offset, limit };
}

export function takePage<T, U>(source: Iterable<T>, req: PageRequest, map: (t: T) => U): Page<U> {
  const items: U[] = [];
  let seen = 0;
  let more = false;
  for (const t of source) {
    if (seen++ < req.offset) continue;
    if (items.length === req.limit) {
      more = true;
      break;
    }
    items.push(map(t));
  }
  return { items, offset: req.offset, limit: req.limit, ...(more ? { nextOffset: req.offset + req.limit } : {}) };
}
