/**
 * A real repository made with the CLI (init + backup of the demo's sample
 * store) and a DaemonContext over it, with the daemon's job queue (JobStore,
 * in the catalog) and a fixed status, served by createApiServer on an ephemeral loopback port.
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createApiServer, type ApiServer } from '../../agent/api/server.js';
import type { DaemonConfig } from '../../agent/config/types.js';
import type { DaemonContext, DaemonStatus } from '../../agent/daemon/types.js';
import { JobStore } from '../../catalog/jobs.js';
import { openRepo, type Repo } from '../../agent/repo.js';
import { newRepo, sampleStore, vdbakOk } from '../helpers/vdbak.js';

export const TOKEN = 'test-token-0123456789';

export interface ApiFixture {
  store: string;
  repoPath: string;
  repo: Repo;
  jobs: JobStore;
  ctx: DaemonContext;
  /** Downloads that went through ctx.foreground: started, and still running. */
  foregroundCalls: { n: number; active: number };
  roots: { base: string; root: string };
  server: ApiServer;
  url: string;
  config: DaemonConfig;
  close(): Promise<void>;
}

/** Backs up win01 and lin01 of the sample store into a new repository and serves the API over it. */
export async function apiFixture(prefix: string): Promise<ApiFixture> {
  const store = sampleStore();
  const repoPath = newRepo(prefix);
  vdbakOk(['backup', '--repo', repoPath, join(store, 'win01'), join(store, 'lin01')]);
  const base = mkdtempSync(join(tmpdir(), `vdbak-${prefix}-roots-`));
  const root = join(base, 'restores');
  mkdirSync(root);
  const config: DaemonConfig = Object.freeze({
    source: 'test',
    repo: repoPath,
    datastores: [{ name: 'sample', path: store }],
    schedules: [],
    retention: {},
    throttle: { enabled: false },
    api: { listen: '127.0.0.1:0', token: TOKEN },
    restoreRoots: [root],
    log: { level: 'fatal' },
    ship: { keep: 3, afterBackup: false },
  }) as DaemonConfig;
  const repo = openRepo(repoPath);
  const jobs = new JobStore(repo.catalog);
  const foregroundCalls = { n: 0, active: 0 };
  const status: DaemonStatus = {
    pid: process.pid,
    version: 'test',
    startedMs: Date.now(),
    configSource: 'test',
    throttle: [{ datastore: 'sample' }],
    schedules: [],
    running: [],
    queued: 0,
    lastResults: [],
  };
  const ctx: DaemonContext = {
    config: () => config,
    repo,
    jobs,
    status: () => ({ ...status, queued: jobs.queuedCount() }),
    foreground: async (fn) => {
      foregroundCalls.n++;
      foregroundCalls.active++;
      try {
        return await fn();
      } finally {
        foregroundCalls.active--;
      }
    },
    log: pino({ level: 'silent' }),
  };
  const server = createApiServer(ctx);
  const addr = await server.listen('127.0.0.1', 0);
  return {
    store,
    repoPath,
    repo,
    jobs,
    ctx,
    foregroundCalls,
    roots: { base, root },
    server,
    url: `http://127.0.0.1:${addr.port}`,
    config,
    close: async () => {
      await server.close();
      repo.close();
    },
  };
}

export interface Answer<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
  bytes: Buffer;
}

/** One request with the token (unless `token: null`), the answer parsed as JSON when it is JSON. */
export async function call<T = unknown>(
  f: { url: string },
  method: string,
  path: string,
  opts: { body?: string | object; token?: string | null; headers?: Record<string, string> } = {},
): Promise<Answer<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  const token = opts.token === undefined ? TOKEN : opts.token;
  if (token !== null) headers.Authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (opts.body !== undefined) {
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    headers['Content-Type'] ??= 'application/json';
  }
  const res = await fetch(`${f.url}${path}`, { method, headers, body });
  const bytes = Buffer.from(await res.arrayBuffer());
  const isJson = (res.headers.get('content-type') ?? '').startsWith('application/json');
  return {
    status: res.status,
    headers: res.headers,
    body: (isJson ? JSON.parse(bytes.toString()) : undefined) as T,
    bytes,
  };
}

/** GET with the token, expecting 200. */
export async function get<T = unknown>(f: { url: string }, path: string): Promise<T> {
  const a = await call<T>(f, 'GET', path);
  if (a.status !== 200) throw new Error(`GET ${path}: ${a.status} ${a.bytes.toString().slice(0, 500)}`);
  return a.body;
}

/** Every item of a paged list, following nextOffset. */
export async function getAll<T>(f: { url: string }, path: string, limit: number): Promise<T[]> {
  const out: T[] = [];
  let offset: number | undefined = 0;
  const sep = path.includes('?') ? '&' : '?';
  while (offset !== undefined) {
    const page: { items: T[]; nextOffset?: number } = await get(f, `${path}${sep}limit=${limit}&offset=${offset}`);
    out.push(...page.items);
    offset = page.nextOffset;
  }
  return out;
}
