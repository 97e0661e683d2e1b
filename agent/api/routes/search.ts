/** Searching files across backups, and the versions of one path. */
import { takePage } from '../../browse/page.js';
import { searchHitJson, searchVersions } from '../../browse/search.js';
import { pathVersionJson, pathVersions } from '../../browse/versions.js';
import type { Route } from '../router.js';
import { ok, PAGE_PARAMS, pageOf, str } from './common.js';

export const searchRoutes: Route[] = [
  {
    method: 'GET',
    path: '/search',
    auth: true,
    query: {
      ...PAGE_PARAMS,
      pattern: {
        type: 'string',
        required: true,
        description: 'A glob (*, ?, [..], ** across folders; matched on the name when it holds no /) or a /regex/.',
      },
      vm: { type: 'string', description: 'Only this VM (name, identity or id).' },
      since: {
        type: 'string',
        description: 'Only entries modified since a date (2026-11-20) or an age (12h, 3d, 2w).',
      },
    },
    handle: ({ ctx, query }) => {
      const hits = searchVersions(ctx.repo.catalog, {
        pattern: str(query, 'pattern')!,
        vm: str(query, 'vm'),
        since: str(query, 'since'),
      });
      return ok(takePage(hits, pageOf(query), searchHitJson));
    },
  },
  {
    method: 'GET',
    path: '/versions',
    auth: true,
    query: {
      ...PAGE_PARAMS,
      vm: { type: 'string', required: true, description: 'The VM (name, identity or id).' },
      path: { type: 'string', required: true, description: '/<volume or label>/<path in the volume>.' },
    },
    handle: ({ ctx, query }) => {
      const rows = pathVersions(ctx.repo.catalog, str(query, 'vm')!, str(query, 'path')!);
      return ok(takePage(rows, pageOf(query), pathVersionJson));
    },
  },
];
