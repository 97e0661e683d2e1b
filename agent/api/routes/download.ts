/**
 * Downloads: a file (or one named stream) as itself, or a folder as a tar
 * stream. They run through ctx.foreground, so running backups pause their
 * reads while a download streams. Everything is resolved before the first
 * byte, so a bad path is a clean 4xx; a failure after that cuts the
 * connection (a truncated body the client can see), never a half-valid 200.
 */
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ServerResponse } from 'node:http';
import { resolveContent } from '../../browse/content.js';
import { resolveBackup, resolvePath } from '../../browse/refs.js';
import { treeRows } from '../../browse/tree.js';
import { ChunkStore, versionContent } from '../../restore/chunks.js';
import { restorePath } from '../../restore/engine.js';
import { TarSink } from '../../restore/tar-sink.js';
import type { Logger } from 'pino';
import type { DaemonContext } from '../../daemon/types.js';
import { openRepo, type Repo } from '../../repo.js';
import type { QueryValues } from '../params.js';
import type { Reply, Route } from '../router.js';
import { str } from './common.js';

/** Characters kept as they are in the plain filename="..." of Content-Disposition. */
const PLAIN_NAME_CHAR = /[A-Za-z0-9._ -]/;
const MAX_NAME_CHARS = 200;

/** `attachment` with an ASCII fallback name and the exact name in RFC 5987 form (guest names are anything). */
export function contentDisposition(name: string): string {
  const cut = [...name].slice(0, MAX_NAME_CHARS).join('');
  let plain = [...cut].map((c) => (PLAIN_NAME_CHAR.test(c) ? c : '_')).join('');
  if (/^[._ ]*$/.test(plain)) plain = `download${plain}`;
  const exact = encodeURIComponent(cut).replace(/['()*!]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${plain}"; filename*=UTF-8''${exact}`;
}

function lastName(path: string): string {
  return path.split('/').filter(Boolean).at(-1) ?? '';
}

/** Resolves when the response can take more, or when it closed. */
async function drained(res: ServerResponse): Promise<void> {
  if (res.destroyed) return;
  const ac = new AbortController();
  await Promise.race([once(res, 'drain', { signal: ac.signal }), once(res, 'close', { signal: ac.signal })]).finally(
    () => ac.abort(),
  );
}

export const downloadRoutes: Route[] = [
  {
    method: 'GET',
    path: '/backups/{ref}/download',
    auth: true,
    query: {
      path: {
        type: 'string',
        required: true,
        description: '/<volume>/<path>; a file may name a named stream as path:stream.',
      },
      format: {
        type: 'string',
        enum: ['file', 'tar'],
        description:
          'file: the bytes of one file; tar: the path and everything below it. Default: file for a file, tar otherwise.',
      },
    },
    handle: async ({ ctx, params, query, res, log }) => {
      // its own read-only connection: a tar download iterates the catalog across awaits (a slow client
      // can hold it for minutes), and better-sqlite3 refuses every write on a connection while a query
      // iterates, which on the shared one would be the running backup's and the job queue's
      const repo = openRepo(ctx.repo.root, { readonly: true, target: ctx.repo.target });
      try {
        return await download(ctx, repo, params.ref!, query, res, log);
      } finally {
        repo.close();
      }
    },
  },
];

async function download(
  ctx: DaemonContext,
  repo: Repo,
  ref: string,
  query: QueryValues,
  res: ServerResponse,
  log: Logger,
): Promise<Reply> {
  const cat = repo.catalog;
  const b = resolveBackup(cat, ref);
  const path = str(query, 'path')!;
  let format = str(query, 'format');
  if (format === undefined) {
    // a tar for the root, a volume or a folder; anything else (a file, path:stream, a miss) is a file download
    const where = resolvePath(cat, b, path);
    const v = where.volume && where.inner !== '/' ? cat.lookup(b.id, where.volume.volumeId, where.inner) : undefined;
    format = !where.volume || where.inner === '/' || v?.type === 'dir' ? 'tar' : 'file';
  }
  if (format === 'file') {
    const { version, stream, size } = resolveContent(cat, b, path);
    const name = stream === undefined ? version.name : `${version.name}_${stream}`;
    const store = new ChunkStore(cat, repo.target);
    await ctx.foreground(async () => {
      res.writeHead(200, {
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(size),
        'Content-Disposition': contentDisposition(name),
      });
      // the status goes out now, not with the first bytes (which may wait for the target)
      res.flushHeaders();
      for await (const chunk of versionContent(store, version, stream)) {
        if (res.destroyed) return;
        if (!res.write(chunk)) await drained(res);
      }
      res.end();
    });
    return { streamed: true };
  }
  // resolving checks the path before the 200 goes out; the rows themselves are not read here
  treeRows(cat, b, path, false);
  const base = lastName(path);
  await ctx.foreground(async () => {
    res.writeHead(200, {
      'Content-Type': 'application/x-tar',
      'Content-Disposition': contentDisposition(`${b.vmName}-${b.id}${base ? `-${base}` : ''}.tar`),
    });
    res.flushHeaders();
    // through a PassThrough piped to the response: a client that goes away destroys the pipe with an
    // error the sink sees (a bare response only closes, and the sink would wait for 'drain' forever,
    // holding the foreground and so every backup's reads)
    const out = new PassThrough();
    const sent = pipeline(out, res);
    sent.catch(() => undefined);
    const report = await restorePath(cat, repo.target, b, path, new TarSink(out, { end: true }));
    await sent;
    const failed = report.notes.filter((n) => n.kind === 'failed');
    if (failed.length) log.warn({ backup: b.id, path, failed: failed.length }, 'tar download: some entries failed');
  });
  return { streamed: true };
}
