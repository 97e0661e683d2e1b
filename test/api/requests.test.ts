/**
 * What the API refuses, and how: 401 without or with a wrong token, 400 for
 * bad JSON, unknown fields and parameters, 404/405 for routes, 413 for big
 * bodies, 403 for a restore folder outside the restore roots (by '..', by an
 * absolute path elsewhere, through a symlink), and never a stack trace.
 * Also the job routes: submit, list, get, cancel.
 */
import { mkdirSync, realpathSync, symlinkSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiServer } from '../../agent/api/server.js';
import type { JobRow, RestoreJobParams } from '../../agent/daemon/types.js';
import { apiFixture, call, TOKEN, type ApiFixture } from './helpers.js';

interface ErrorAnswer {
  error: { code: string; message: string };
}

let f: ApiFixture;

beforeAll(async () => {
  f = await apiFixture('api-req');
});
afterAll(async () => {
  await f?.close();
});

/** A raw request, for what fetch will not send (a lying Content-Length, a body streamed in pieces). */
function raw(
  method: string,
  path: string,
  headers: Record<string, string>,
  pieces: Buffer[],
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const url = new URL(f.url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path, headers: { Authorization: `Bearer ${TOKEN}`, ...headers } },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString(), headers: res.headers }),
        );
      },
    );
    // the server may answer and close before the whole body is written
    req.on('error', (e: NodeJS.ErrnoException) =>
      e.code === 'EPIPE' || e.code === 'ECONNRESET' ? undefined : reject(e),
    );
    for (const p of pieces) req.write(p);
    req.end();
  });
}

describe('authentication', () => {
  it('every route but /health and /openapi.json needs the token', async () => {
    for (const path of ['/status', '/vms', '/backups', '/jobs', '/search?pattern=*', '/backups/win01/tree']) {
      const none = await call<ErrorAnswer>(f, 'GET', path, { token: null });
      expect(none.status, path).toBe(401);
      expect(none.body.error.code).toBe('UNAUTHORIZED');
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer realm="vdbak"/);
      const wrong = await call<ErrorAnswer>(f, 'GET', path, { token: `${TOKEN}x` });
      expect(wrong.status, path).toBe(401);
      expect(wrong.headers.get('www-authenticate')).toContain('error="invalid_token"');
      const prefix = await call(f, 'GET', path, { token: TOKEN.slice(0, -1) });
      expect(prefix.status, path).toBe(401);
    }
    const basic = await call<ErrorAnswer>(f, 'GET', '/status', {
      token: null,
      headers: { Authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` },
    });
    expect(basic.status).toBe(401);
    const post = await call(f, 'POST', '/backups', { token: null, body: { vm: 'lin01' } });
    expect(post.status).toBe(401);
    expect(f.jobs.list()).toHaveLength(0);
    expect((await call(f, 'GET', '/health', { token: null })).status).toBe(200);
    expect((await call(f, 'GET', '/openapi.json', { token: null })).status).toBe(200);
  });

  it('an empty configured token admits no one', async () => {
    const ctx = { ...f.ctx, config: () => ({ ...f.config, api: { listen: '', token: '' } }) };
    const server = createApiServer(ctx);
    const addr = await server.listen('127.0.0.1', 0);
    try {
      const a = await call({ url: `http://127.0.0.1:${addr.port}` }, 'GET', '/status', { token: '' });
      expect(a.status).toBe(401);
      const b = await call({ url: `http://127.0.0.1:${addr.port}` }, 'GET', '/status', {
        token: null,
        headers: { Authorization: 'Bearer ' },
      });
      expect(b.status).toBe(401);
    } finally {
      await server.close();
    }
  });
});

describe('routes and parameters', () => {
  it('unknown routes are 404, wrong methods 405 with Allow', async () => {
    const a = await call<ErrorAnswer>(f, 'GET', '/nope');
    expect([a.status, a.body.error.code]).toEqual([404, 'NOT_FOUND']);
    expect((await call(f, 'GET', '/backups/1/tree/extra')).status).toBe(404);
    const m = await call<ErrorAnswer>(f, 'DELETE', '/backups');
    expect([m.status, m.body.error.code]).toEqual([405, 'METHOD_NOT_ALLOWED']);
    expect(m.headers.get('allow')).toBe('GET, POST');
    expect((await call(f, 'POST', '/status', { body: {} })).status).toBe(405);
  });

  it('unknown, repeated or malformed parameters are 400 with the parameter named', async () => {
    const cases: [string, string][] = [
      ['/backups?vmm=win01', "unknown query parameter 'vmm'"],
      ['/backups?vm=a&vm=b', 'given 2 times'],
      ['/backups?limit=0', "'limit' must be in 1..1000"],
      ['/backups?limit=100000', "'limit' must be in 1..1000"],
      ['/backups?limit=ten', "'limit' takes an integer"],
      ['/backups?offset=-1', "'offset' must be in 0.."],
      ['/backups?state=sleeping', "'state' takes one of"],
      ['/backups/win01/tree?recursive=maybe', "'recursive' takes true or false"],
      ['/search', "'pattern' is required"],
      ['/versions?vm=win01', "'path' is required"],
      ['/jobs?state=queued,lost', "'state' takes"],
      ['/jobs/abc', 'positive integer'],
      ['/vms/%E0%A4%A/disks', 'percent-encoding'],
    ];
    for (const [path, message] of cases) {
      const a = await call<ErrorAnswer>(f, 'GET', path);
      expect(a.status, path).toBe(400);
      expect(a.body.error.message, path).toContain(message);
    }
  });

  it('404s name what is missing', async () => {
    const cases: [string, string][] = [
      ['/backups/999', 'BACKUP_NOT_FOUND'],
      ['/backups/nosuchvm', 'VM_NOT_FOUND'],
      ['/backups/win01~5/tree', 'BACKUP_NOT_FOUND'],
      ['/vms/nosuchvm/disks', 'VM_NOT_FOUND'],
      ['/backups?vm=nosuchvm', 'VM_NOT_FOUND'],
      ['/jobs/12345', 'JOB_NOT_FOUND'],
    ];
    for (const [path, code] of cases) {
      const a = await call<ErrorAnswer>(f, 'GET', path);
      expect([a.status, a.body.error.code], path).toEqual([404, code]);
    }
  });
});

describe('request bodies', () => {
  it('bad JSON, a non-object, unknown or mistyped fields are 400', async () => {
    const cases: [string, string][] = [
      ['{"vm": ', 'BAD_JSON'],
      ['', 'BAD_JSON'],
      ['[1,2]', 'BAD_BODY'],
      ['"lin01"', 'BAD_BODY'],
      ['{"vm": 12}', 'BAD_BODY'],
      ['{"vm": "lin01", "priority": 0}', 'BAD_BODY'],
      ['{}', 'BAD_BODY'],
      ['{"vm": ""}', 'BAD_BODY'],
    ];
    for (const [body, code] of cases) {
      const a = await call<ErrorAnswer>(f, 'POST', '/backups', { body });
      expect([a.status, a.body.error.code], body).toEqual([400, code]);
    }
    const type = await call<ErrorAnswer>(f, 'POST', '/backups', {
      body: '{"vm":"lin01"}',
      headers: { 'Content-Type': 'text/plain' },
    });
    expect([type.status, type.body.error.code]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    expect(f.jobs.list()).toHaveLength(0);
  });

  it('a body over 64 KiB is 413, whether declared or streamed', async () => {
    const big = Buffer.from(JSON.stringify({ vm: 'x'.repeat(70 * 1024) }));
    const declared = await raw(
      'POST',
      '/backups',
      { 'Content-Type': 'application/json', 'Content-Length': '999999999' },
      [],
    );
    expect(declared.status).toBe(413);
    expect(JSON.parse(declared.body).error.code).toBe('BODY_TOO_LARGE');
    const chunked = await raw(
      'POST',
      '/backups',
      { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' },
      [big.subarray(0, 30_000), big.subarray(30_000)],
    );
    expect(chunked.status).toBe(413);
    const viaFetch = await call<ErrorAnswer>(f, 'POST', '/restores', { body: big.toString() });
    expect([viaFetch.status, viaFetch.body.error.code]).toEqual([413, 'BODY_TOO_LARGE']);
    expect(f.jobs.list()).toHaveLength(0);
  });
});

describe('starting backups and restores', () => {
  it('POST /backups queues a backup of the VM by identity', async () => {
    const a = await call<JobRow>(f, 'POST', '/backups', { body: { vm: 'lin01' } });
    expect(a.status).toBe(202);
    const lin = f.repo.catalog.findVms('lin01')[0]!;
    expect(a.body).toMatchObject({ kind: 'backup', state: 'queued', origin: 'api', params: { vm: lin.identity } });
    expect(a.headers.get('location')).toBe(`/jobs/${a.body.id}`);
    const miss = await call<ErrorAnswer>(f, 'POST', '/backups', { body: { vm: 'nosuchvm' } });
    expect([miss.status, miss.body.error.code]).toEqual([404, 'VM_NOT_FOUND']);
  });

  it('POST /restores queues a restore into a restore root, with the backup id and the real folder', async () => {
    const to = join(f.roots.root, 'ana', 'today');
    const a = await call<JobRow>(f, 'POST', '/restores', {
      body: { backup: 'win01', path: '/WINDOWS/Users/ana', to, overwrite: true },
    });
    expect(a.status).toBe(202);
    const win = f.repo.catalog.backups({ vmId: f.repo.catalog.findVms('win01')[0]!.id }).at(-1)!;
    const params = a.body.params as RestoreJobParams;
    expect(params).toEqual({
      backup: String(win.id),
      path: '/WINDOWS/Users/ana',
      to: join(realpathSync(f.roots.root), 'ana', 'today'),
      overwrite: true,
    });
    expect(a.body.kind).toBe('restore');
    const root = await call<JobRow>(f, 'POST', '/restores', { body: { backup: 'lin01', path: '/', to: f.roots.root } });
    expect(root.status).toBe(202);
  });

  it('a restore folder outside the roots is refused: .., elsewhere, relative, through a symlink', async () => {
    const inside = join(f.roots.root, 'sub');
    mkdirSync(inside, { recursive: true });
    const elsewhere = join(f.roots.base, 'elsewhere');
    mkdirSync(elsewhere, { recursive: true });
    symlinkSync(elsewhere, join(inside, 'out'));
    symlinkSync(join(f.roots.base, 'nowhere'), join(inside, 'dangling'));
    const cases: [string, number, string][] = [
      [`${f.roots.root}/../elsewhere`, 403, 'RESTORE_TO_OUTSIDE_ROOTS'],
      [`${inside}/../../etc`, 403, 'RESTORE_TO_OUTSIDE_ROOTS'],
      ['relative/folder', 400, 'RESTORE_TO_NOT_ABSOLUTE'],
      [elsewhere, 403, 'RESTORE_TO_OUTSIDE_ROOTS'],
      ['/etc', 403, 'RESTORE_TO_OUTSIDE_ROOTS'],
      [`${f.roots.root}-sibling`, 403, 'RESTORE_TO_OUTSIDE_ROOTS'],
      [join(inside, 'out'), 403, 'RESTORE_TO_OUTSIDE_ROOTS'],
      [join(inside, 'out', 'deeper', 'still'), 403, 'RESTORE_TO_OUTSIDE_ROOTS'],
      [join(inside, 'dangling'), 400, 'RESTORE_TO_UNRESOLVABLE'],
      [join(inside, 'dangling', 'x'), 400, 'RESTORE_TO_UNRESOLVABLE'],
    ];
    for (const [to, status, code] of cases) {
      const a = await call<ErrorAnswer>(f, 'POST', '/restores', {
        body: { backup: 'lin01', path: '/d0p1/etc', to },
      });
      expect([a.status, a.body.error.code], to).toEqual([status, code]);
    }
    const before = f.jobs.list().length;
    const badPath = await call<ErrorAnswer>(f, 'POST', '/restores', {
      body: { backup: 'lin01', path: '/d0p1/nope', to: inside },
    });
    expect([badPath.status, badPath.body.error.code]).toEqual([404, 'PATH_NOT_FOUND']);
    const badBackup = await call<ErrorAnswer>(f, 'POST', '/restores', {
      body: { backup: '4242', path: '/', to: inside },
    });
    expect([badBackup.status, badBackup.body.error.code]).toEqual([404, 'BACKUP_NOT_FOUND']);
    const missing = await call<ErrorAnswer>(f, 'POST', '/restores', { body: { backup: 'lin01', path: '/' } });
    expect([missing.status, missing.body.error.message]).toEqual([400, "field 'to' is required"]);
    expect(f.jobs.list().length).toBe(before);
  });
});

describe('whole-VM restores', () => {
  it('POST /restores/vm queues a restore-vm job with the backup id and the real folder', async () => {
    const to = join(f.roots.root, 'vms');
    const a = await call<JobRow>(f, 'POST', '/restores/vm', {
      body: { backup: 'lin01', to, name: 'lin01-copy', format: 'qcow2', datastoreMap: [{ from: '/a', to: '/b' }] },
    });
    expect(a.status).toBe(202);
    const lin = f.repo.catalog.backups({ vmId: f.repo.catalog.findVms('lin01')[0]!.id }).at(-1)!;
    expect(a.body).toMatchObject({
      kind: 'restore-vm',
      params: {
        backup: String(lin.id),
        to: join(realpathSync(f.roots.root), 'vms'),
        name: 'lin01-copy',
        format: 'qcow2',
        datastoreMap: [{ from: '/a', to: '/b' }],
      },
    });
    const cases: [object, number, string][] = [
      [{ backup: 'lin01', to: '/etc' }, 403, 'RESTORE_TO_OUTSIDE_ROOTS'],
      [{ backup: 'lin01', to, format: 'vhd' }, 400, 'JOB_BAD_PARAMS'],
      [{ backup: 'lin01', to, datastoreMap: [{ from: '/a' }] }, 400, 'JOB_BAD_PARAMS'],
      [{ backup: 'lin01', to, datastoreMap: { from: '/a', to: '/b' } }, 400, 'BAD_BODY'],
      [{ backup: 'lin01', to, datastoreMap: Array(300).fill({ from: '/a', to: '/b' }) }, 400, 'BAD_BODY'],
      [{ backup: 'nosuchvm', to }, 404, 'VM_NOT_FOUND'],
    ];
    const before = f.jobs.list().length;
    for (const [body, status, code] of cases) {
      const e = await call<ErrorAnswer>(f, 'POST', '/restores/vm', { body });
      expect([e.status, e.body.error.code], JSON.stringify(body).slice(0, 100)).toEqual([status, code]);
    }
    expect(f.jobs.list().length).toBe(before);
  });
});

describe('jobs', () => {
  it('lists, filters, gets and cancels jobs', async () => {
    const job = (await call<JobRow>(f, 'POST', '/backups', { body: { vm: 'win01' } })).body;
    const list = await call<{ items: JobRow[] }>(f, 'GET', '/jobs');
    expect(list.status).toBe(200);
    expect(list.body.items[0]!.id).toBe(job.id);
    expect(list.body.items.map((j) => j.id)).toEqual(f.jobs.list().map((j) => j.id));
    const restores = await call<{ items: JobRow[] }>(f, 'GET', '/jobs?kind=restore&state=queued,running');
    expect(restores.body.items.every((j) => j.kind === 'restore')).toBe(true);
    expect(restores.body.items.length).toBeGreaterThan(0);
    expect((await call<{ items: JobRow[] }>(f, 'GET', '/jobs?limit=1')).body.items).toHaveLength(1);
    expect((await call<JobRow>(f, 'GET', `/jobs/${job.id}`)).body).toEqual(job);
    const cancel = await call<JobRow>(f, 'POST', `/jobs/${job.id}/cancel`);
    expect([cancel.status, cancel.body.state]).toEqual([200, 'cancelled']);
    const again = await call<ErrorAnswer>(f, 'POST', `/jobs/${job.id}/cancel`);
    expect([again.status, again.body.error.code]).toEqual([409, 'JOB_FINISHED']);
    const claimed = f.jobs.claim(['backup'])!;
    const running = await call<JobRow>(f, 'POST', `/jobs/${claimed.id}/cancel`, { body: {} });
    expect([running.status, running.body.state, running.body.cancelRequested]).toEqual([202, 'running', true]);
    expect((await call<ErrorAnswer>(f, 'POST', '/jobs/999/cancel')).status).toBe(404);
  });

  it('GET /status is the daemon status', async () => {
    const a = await call<{ pid: number; queued: number }>(f, 'GET', '/status');
    expect(a.status).toBe(200);
    expect(a.body.pid).toBe(process.pid);
    expect(a.body.queued).toBe(f.jobs.list({ state: 'queued' }).length);
  });
});

describe('failures', () => {
  it('an untyped failure is a 500 with no stack or detail; a typed one keeps its code', async () => {
    const logged: unknown[] = [];
    const log = pino({ level: 'error' }, { write: (s: string) => void logged.push(JSON.parse(s)) });
    const server = createApiServer(
      { ...f.ctx, log },
      {
        routes: [
          {
            method: 'GET',
            path: '/boom',
            auth: true,
            handle: () => {
              throw new Error('secret detail at /var/lib/vdbak');
            },
          },
          {
            method: 'GET',
            path: '/locked',
            auth: true,
            handle: async () => {
              const { lockRepo } = await import('../../agent/repo.js');
              const release = lockRepo(f.repoPath, 'test');
              try {
                lockRepo(f.repoPath, 'second');
              } finally {
                release();
              }
              return { status: 200, body: {} };
            },
          },
        ],
      },
    );
    const addr = await server.listen('127.0.0.1', 0);
    const at = { url: `http://127.0.0.1:${addr.port}` };
    try {
      const a = await call<ErrorAnswer>(at, 'GET', '/boom');
      expect(a.status).toBe(500);
      expect(a.body).toEqual({ error: { code: 'INTERNAL', message: 'internal error (see the daemon log)' } });
      expect(a.bytes.toString()).not.toMatch(/secret|at .*\.ts|\.js:\d+/);
      expect(JSON.stringify(logged)).toContain('secret detail');
      const l = await call<ErrorAnswer>(at, 'GET', '/locked');
      expect([l.status, l.body.error.code]).toEqual([409, 'REPO_LOCKED']);
      expect(l.body.error.message).not.toContain(' in /');
    } finally {
      await server.close();
    }
  });
});
