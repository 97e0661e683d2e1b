/**
 * The route table and how a request finds its route. Paths are OpenAPI
 * templates ('/backups/{ref}/tree'); a `{name}` segment matches one non-empty
 * path segment, percent-decoded. The table is what the OpenAPI coverage test
 * walks.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { DaemonContext } from '../daemon/types.js';
import type { BodySpec, FieldValue } from './body.js';
import { badRequest, HttpError } from './http-error.js';
import type { QuerySpec, QueryValues } from './params.js';

export type Method = 'GET' | 'POST';

export interface Call {
  ctx: DaemonContext;
  req: IncomingMessage;
  res: ServerResponse;
  params: Readonly<Record<string, string>>;
  query: QueryValues;
  body: Record<string, FieldValue>;
  log: Logger;
}

/** A JSON answer, or `streamed` when the handler wrote the response itself (downloads). */
export type Reply = { status: number; body: unknown; headers?: Record<string, string> } | { streamed: true };

export interface Route {
  method: Method;
  path: string;
  /** False only for /health and /openapi.json. */
  auth: boolean;
  query?: QuerySpec;
  body?: BodySpec;
  handle(call: Call): Reply | Promise<Reply>;
}

/** Longer paths are refused before matching (every route has at most four segments). */
const MAX_SEGMENTS = 16;

export type Match = { route: Route; params: Record<string, string> };

function matchPath(template: string, segs: readonly string[]): Record<string, string> | undefined {
  const t = template.split('/').slice(1);
  if (t.length !== segs.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < t.length; i++) {
    const want = t[i]!;
    const got = segs[i]!;
    if (want.startsWith('{') && want.endsWith('}')) {
      if (got === '') return undefined;
      let v: string;
      try {
        v = decodeURIComponent(got);
      } catch {
        throw badRequest('BAD_PATH', `path segment '${got}' is not valid percent-encoding`);
      }
      params[want.slice(1, -1)] = v;
    } else if (want !== got) return undefined;
  }
  return params;
}

/** The route for a method and path: 404 when no route has the path, 405 (with Allow) when none has the method. */
export function findRoute(routes: readonly Route[], method: string, pathname: string): Match {
  const segs = pathname.split('/').slice(1);
  if (segs.length > MAX_SEGMENTS) throw new HttpError(404, 'NOT_FOUND', `no route ${pathname}`);
  const allowed: string[] = [];
  for (const route of routes) {
    const params = matchPath(route.path, segs);
    if (!params) continue;
    if (route.method === method) return { route, params };
    allowed.push(route.method);
  }
  if (allowed.length === 0) throw new HttpError(404, 'NOT_FOUND', `no route ${pathname} (see GET /openapi.json)`);
  throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${pathname} takes ${allowed.join(', ')}, not ${method}`, {
    Allow: allowed.join(', '),
  });
}
