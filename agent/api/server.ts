/**
 * The daemon's HTTP API (node:http, no framework): JSON in and out, a bearer
 * token on every route but /health and /openapi.json, loopback unless the
 * config says otherwise. Handlers only read the catalog and submit jobs; the
 * one thing that reads packs here is a download, which runs as foreground work.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { DaemonContext } from '../daemon/types.js';
import { checkBearer } from './auth.js';
import { readJson } from './body.js';
import { errorBody, HttpError, toHttpError, badRequest } from './http-error.js';
import { parseQuery } from './params.js';
import { findRoute, type Route } from './router.js';
import { ROUTES } from './routes.js';

/** A client has this long to send its headers and body (downloads are not limited: that is the response). */
const REQUEST_TIMEOUT_MS = 30_000;
const HEADERS_TIMEOUT_MS = 10_000;
/** The longest request target taken (paths and patterns fit well within). */
const MAX_URL_CHARS = 16 * 1024;

export interface ApiServerOptions {
  /** Replaces the route table (tests). */
  routes?: readonly Route[];
}

export interface ApiServer {
  listen(host: string, port: number): Promise<AddressInfo>;
  close(): Promise<void>;
  /** Where it listens, once listening. */
  readonly address: AddressInfo | undefined;
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    ...headers,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(text);
}

async function handle(ctx: DaemonContext, routes: readonly Route[], req: IncomingMessage, res: ServerResponse) {
  const started = Date.now();
  const log = ctx.log.child({ api: { method: req.method, url: req.url?.slice(0, 512) } });
  try {
    const target = req.url ?? '/';
    if (target.length > MAX_URL_CHARS) throw new HttpError(414, 'URI_TOO_LONG', 'the request target is too long');
    let url: URL;
    try {
      url = new URL(target, 'http://localhost');
    } catch {
      throw badRequest('BAD_URL', 'the request target is not a URL');
    }
    const { route, params } = findRoute(routes, req.method ?? '', url.pathname);
    if (route.auth) checkBearer(req, ctx.config().api.token);
    const query = parseQuery(url.searchParams, route.query ?? {});
    const body = route.body ? await readJson(req, route.body) : {};
    const reply = await route.handle({ ctx, req, res, params, query, body, log });
    if ('streamed' in reply) {
      if (!res.writableEnded && !res.destroyed) res.end();
    } else sendJson(res, reply.status, reply.body, reply.headers);
    log.debug({ status: res.statusCode, ms: Date.now() - started }, 'api request');
  } catch (e) {
    const h = toHttpError(e);
    if (h.status >= 500) log.error({ err: e }, 'api request failed');
    else log.debug({ status: h.status, code: h.code }, 'api request refused');
    if (res.headersSent) {
      // the body is already flowing: cutting the connection is the only honest signal left
      res.destroy();
      return;
    }
    // a refused body may still be arriving: answer, then close rather than read it
    const close: Record<string, string> = h.status === 413 || !req.complete ? { Connection: 'close' } : {};
    sendJson(res, h.status, errorBody(h), { ...h.headers, ...close });
  }
}

export function createApiServer(ctx: DaemonContext, opts: ApiServerOptions = {}): ApiServer {
  const routes = opts.routes ?? ROUTES;
  const server: Server = createServer({ requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: HEADERS_TIMEOUT_MS });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    void handle(ctx, routes, req, res);
  });
  server.on('clientError', (_e, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  let address: AddressInfo | undefined;
  return {
    get address() {
      return address;
    },
    listen(host: string, port: number): Promise<AddressInfo> {
      return new Promise((resolve, reject) => {
        const onError = (e: Error) => reject(e);
        server.once('error', onError);
        server.listen(port, host, () => {
          server.off('error', onError);
          address = server.address() as AddressInfo;
          resolve(address);
        });
      });
    },
    close(): Promise<void> {
      return new Promise((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        // idle keep-alive sockets and running downloads would hold close() open
        server.closeAllConnections();
      });
    },
  };
}
