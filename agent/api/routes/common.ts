/** Pieces several routes share: paging parameters and JSON replies. */
import { checkPage, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, type PageRequest } from '../../browse/page.js';
import type { ParamSpec, QueryValues } from '../params.js';
import type { Reply } from '../router.js';

export const PAGE_PARAMS: Readonly<Record<'offset' | 'limit', ParamSpec>> = {
  offset: { type: 'integer', min: 0, description: "Rows to skip (the previous page's nextOffset)." },
  limit: {
    type: 'integer',
    min: 1,
    max: MAX_PAGE_LIMIT,
    description: `Rows per page (default ${DEFAULT_PAGE_LIMIT}, at most ${MAX_PAGE_LIMIT}).`,
  },
};

export function pageOf(q: QueryValues): PageRequest {
  return checkPage({ offset: q.offset as number | undefined, limit: q.limit as number | undefined });
}

export const ok = (body: unknown): Reply => ({ status: 200, body });

export const str = (q: QueryValues, key: string): string | undefined => q[key] as string | undefined;
