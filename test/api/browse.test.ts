/**
 * The API's read routes on a real repository (the sample store backed up by
 * the CLI), each checked against the CLI's own output: /tree vs `vdbak ls
 * --json`, /search vs `vdbak find --json`, /versions vs `vdbak versions
 * --json`, downloads vs `vdbak cat` and `vdbak restore --tar -`.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiServer } from '../../agent/api/server.js';
import { run } from '../helpers/fixtures.js';
import { vdbakOk } from '../helpers/vdbak.js';
import { apiFixture, call, get, getAll, TOKEN, type ApiFixture } from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let f: ApiFixture;
const cli = (args: string[]) => vdbakOk([...args.slice(0, 1), '--repo', f.repoPath, ...args.slice(1)]);

beforeAll(async () => {
  f = await apiFixture('api-browse');
});
afterAll(async () => {
  await f?.close();
});

describe('VMs and backups', () => {
  it('GET /vms lists both VMs, present, with their last backup', async () => {
    const page = await get<{
      items: { name: string; present: boolean; backups: number; lastBackup: { id: number } }[];
    }>(f, '/vms');
    const backups = cli(['backups', '--json']).json<{ id: number; vmName: string }[]>();
    expect(page.items.map((v) => v.name).sort()).toEqual(['lin01', 'win01']);
    for (const v of page.items) {
      expect(v.present).toBe(true);
      expect(v.backups).toBe(1);
      expect(v.lastBackup.id).toBe(backups.find((b) => b.vmName === v.name)!.id);
    }
    expect((await get<{ items: unknown[] }>(f, '/vms?present=false')).items).toEqual([]);
  });

  it('a vanished VM is listed as such, stays browsable, and cannot be backed up', async () => {
    const cat = f.repo.catalog;
    const lin = cat.findVms('lin01')[0]!;
    cat.db.prepare('UPDATE vms SET vanished_ms = ? WHERE id = ?').run(1_700_000_000_000, lin.id);
    try {
      const gone = await get<{ items: { name: string; present: boolean; vanishedMs: number }[] }>(
        f,
        '/vms?present=false',
      );
      expect(gone.items).toEqual([
        expect.objectContaining({ name: 'lin01', present: false, vanishedMs: 1_700_000_000_000 }),
      ]);
      expect((await get<{ items: { name: string }[] }>(f, '/vms?present=true')).items.map((v) => v.name)).toEqual([
        'win01',
      ]);
      expect((await get<{ items: unknown[] }>(f, '/backups/lin01/tree?path=/d0p1')).items.length).toBeGreaterThan(0);
      const b = await call<{ error: { code: string } }>(f, 'POST', '/backups', { body: { vm: 'lin01' } });
      expect([b.status, b.body.error.code]).toEqual([409, 'VM_VANISHED']);
    } finally {
      cat.db.prepare('UPDATE vms SET vanished_ms = NULL WHERE id = ?').run(lin.id);
    }
  });

  it('GET /vms/{vm}/disks describes the disks and volumes as the backup recorded them', async () => {
    const d = await get<{ disks: { format: string; volumes: { name: string; fsType: string; label: string }[] }[] }>(
      f,
      '/vms/win01/disks',
    );
    expect(d.disks).toHaveLength(1);
    expect(d.disks[0]!.volumes.map((v) => [v.name, v.fsType, v.label])).toContainEqual(['d0p2', 'ntfs', 'WINDOWS']);
    const lin = await get<{ disks: { volumes: { fsType: string; label: string }[] }[] }>(f, '/vms/lin01/disks');
    expect(lin.disks[0]!.volumes.find((v) => v.fsType === 'ext')).toMatchObject({ label: 'linroot' });
  });

  it('GET /backups is `vdbak backups --json`, and pages', async () => {
    const want = cli(['backups', '--json']).json();
    expect((await get<{ items: unknown[] }>(f, '/backups')).items).toEqual(want);
    expect(await getAll(f, '/backups', 1)).toEqual(want);
    const lin = await get<{ items: { vmName: string }[] }>(f, '/backups?vm=lin01');
    expect(lin.items.map((b) => b.vmName)).toEqual(['lin01']);
  });

  it('GET /backups/{ref} resolves ids, VM names and VM~N', async () => {
    const [first] = cli(['backups', '--json']).json<{ id: number; vmName: string }[]>();
    const byId = await get<{ id: number; volumes: unknown[]; disks: unknown[] }>(f, `/backups/${first!.id}`);
    expect(byId.id).toBe(first!.id);
    expect(byId.volumes.length).toBeGreaterThan(0);
    expect((await get<{ id: number }>(f, `/backups/${first!.vmName}`)).id).toBe(first!.id);
    expect((await get<{ id: number }>(f, `/backups/${first!.vmName}~0`)).id).toBe(first!.id);
    const older = await call<{ error: { code: string } }>(f, 'GET', `/backups/${first!.vmName}~1`);
    expect(older.status).toBe(404);
    expect(older.body.error.code).toBe('BACKUP_NOT_FOUND');
  });
});

describe('browsing a backup', () => {
  const cases: [string, string, boolean][] = [
    ['win01', '/', false],
    ['win01', '/d0p2', false],
    ['win01', '/WINDOWS/Users/ana/Documents', false],
    ['win01', '/d0p2/Users', true],
    ['win01', '/d0p2/Users/ana/Documents/report.docx', false],
    ['lin01', '/d0p1', true],
  ];
  for (const [vm, path, recursive] of cases) {
    it(`GET /backups/${vm}/tree?path=${path}${recursive ? '&recursive' : ''} is vdbak ls --json`, async () => {
      const want = cli(['ls', vm, path, '--json', ...(recursive ? ['-R'] : [])]).json<unknown[]>();
      expect(want.length).toBeGreaterThan(0);
      const q = `/backups/${vm}/tree?path=${encodeURIComponent(path)}${recursive ? '&recursive=true' : ''}`;
      const page = await get<{ items: unknown[]; nextOffset?: number }>(f, q);
      expect(page.items).toEqual(want.slice(0, 100));
      // paging in small steps gives the same rows, in order, once each
      expect(await getAll(f, q, 3)).toEqual(want);
    });
  }

  it('a path that is not in the backup is a 404 with its code', async () => {
    const a = await call<{ error: { code: string; message: string } }>(
      f,
      'GET',
      '/backups/win01/tree?path=/d0p2/no/such',
    );
    expect(a.status).toBe(404);
    expect(a.body.error.code).toBe('PATH_NOT_FOUND');
    expect(a.body.error.message).toContain('/d0p2/no/such');
    const v = await call<{ error: { code: string } }>(f, 'GET', '/backups/win01/tree?path=/d9p9');
    expect([v.status, v.body.error.code]).toEqual([404, 'VOLUME_NOT_FOUND']);
    const dots = await call<{ error: { code: string } }>(f, 'GET', '/backups/win01/tree?path=/d0p2/../etc');
    expect([dots.status, dots.body.error.code]).toEqual([400, 'PATH_DOTDOT']);
  });
});

describe('search and versions', () => {
  const patterns: [string, string[]][] = [
    ['*.txt', []],
    ['/report/', []],
    ['**/Documents/*', ['--vm', 'win01']],
    ['*', ['--vm', 'lin01']],
  ];
  for (const [pattern, extra] of patterns) {
    it(`GET /search?pattern=${pattern} is vdbak find --json ${extra.join(' ')}`, async () => {
      const want = cli(['find', pattern, '--json', ...extra]).json<unknown[]>();
      expect(want.length).toBeGreaterThan(0);
      const vm = extra[1] ? `&vm=${extra[1]}` : '';
      expect(await getAll(f, `/search?pattern=${encodeURIComponent(pattern)}${vm}`, 2)).toEqual(want);
    });
  }

  it('since filters like the CLI, and a bad pattern or date is a 400', async () => {
    const want = cli(['find', '*', '--since', '2000-01-01', '--json']).json<unknown[]>();
    expect(await getAll(f, '/search?pattern=*&since=2000-01-01', 1000)).toEqual(want);
    expect((await get<{ items: unknown[] }>(f, '/search?pattern=*&since=2999-01-01')).items).toEqual([]);
    const bad = await call<{ error: { code: string } }>(f, 'GET', `/search?pattern=${encodeURIComponent('/(/')}`);
    expect([bad.status, bad.body.error.code]).toEqual([400, 'BAD_PATTERN']);
    const date = await call<{ error: { code: string } }>(f, 'GET', '/search?pattern=*&since=yesterday');
    expect([date.status, date.body.error.code]).toEqual([400, 'BAD_SINCE']);
    const vm = await call<{ error: { code: string } }>(f, 'GET', '/search?pattern=*&vm=nope');
    expect([vm.status, vm.body.error.code]).toEqual([404, 'VM_NOT_FOUND']);
  });

  it('GET /versions is vdbak versions --json (by volume name and by label)', async () => {
    const want = cli(['versions', 'lin01', '/d0p1/home/bob/notes.txt', '--json']).json<{ backups: number[] }[]>();
    expect(want).toHaveLength(1);
    expect((await get<{ items: unknown[] }>(f, '/versions?vm=lin01&path=/d0p1/home/bob/notes.txt')).items).toEqual(
      want,
    );
    const byLabel = await get<{ items: unknown[] }>(f, '/versions?vm=lin01&path=/linroot/home/bob/notes.txt');
    expect(byLabel.items).toEqual(want);
    expect((await get<{ items: unknown[] }>(f, '/versions?vm=lin01&path=/d0p1/nope')).items).toEqual([]);
  });
});

describe('downloads', () => {
  it('a file is the bytes of vdbak cat and of the source, with a safe Content-Disposition', async () => {
    const before = f.foregroundCalls.n;
    const path = '/d0p2/Users/ana/Documents/résumé.txt';
    const a = await call(f, 'GET', `/backups/win01/download?path=${encodeURIComponent(path)}`);
    expect(a.status).toBe(200);
    expect(a.headers.get('content-type')).toBe('application/octet-stream');
    const source = readFileSync(join(f.store, 'sources', 'win01', 'Users', 'ana', 'Documents', 'résumé.txt'));
    expect(sha(a.bytes)).toBe(sha(source));
    expect(sha(a.bytes)).toBe(sha(cli(['cat', 'win01', path]).bytes));
    expect(a.headers.get('content-length')).toBe(String(source.length));
    const cd = a.headers.get('content-disposition')!;
    expect(cd).toBe(`attachment; filename="r_sum_.txt"; filename*=UTF-8''${encodeURIComponent('résumé.txt')}`);
    expect(f.foregroundCalls.n).toBe(before + 1);
  });

  it('a big file and a named stream come out whole', async () => {
    const photo = '/d0p2/Users/ana/Documents/photo.jpg';
    const a = await call(f, 'GET', `/backups/win01/download?format=file&path=${encodeURIComponent(photo)}`);
    expect(a.status).toBe(200);
    expect(sha(a.bytes)).toBe(
      sha(readFileSync(join(f.store, 'sources', 'win01', 'Users', 'ana', 'Documents', 'photo.jpg'))),
    );
    const zone = '/d0p2/Users/ana/Documents/report.docx:Zone.Identifier';
    const s = await call(f, 'GET', `/backups/win01/download?path=${encodeURIComponent(zone)}`);
    expect(s.status).toBe(200);
    expect(s.bytes.toString()).toBe('downloaded from the internet\n');
    expect(s.bytes.equals(cli(['cat', 'win01', zone]).bytes)).toBe(true);
  });

  it('a folder is the tar of vdbak restore --tar -', async () => {
    const before = f.foregroundCalls.n;
    const path = '/d0p1/home';
    const a = await call(f, 'GET', `/backups/lin01/download?path=${path}`);
    expect(a.status).toBe(200);
    expect(a.headers.get('content-type')).toBe('application/x-tar');
    expect(a.headers.get('content-disposition')).toMatch(/^attachment; filename="lin01-\d+-home\.tar"/);
    const want = cli(['restore', 'lin01', path, '--tar', '-']).bytes;
    expect(sha(a.bytes)).toBe(sha(want));
    // and real tar reads it
    const tarFile = join(f.roots.base, 'home.tar');
    (await import('node:fs')).writeFileSync(tarFile, a.bytes);
    expect(run('tar', ['-tf', tarFile]).split('\n').filter(Boolean).sort()).toEqual([
      'home/',
      'home/bob/',
      'home/bob/notes.txt',
    ]);
    expect(f.foregroundCalls.n).toBe(before + 1);
  });

  it('format=file on a folder is a 400, a missing path a 404, before any byte', async () => {
    const dir = await call<{ error: { code: string } }>(
      f,
      'GET',
      '/backups/lin01/download?format=file&path=/d0p1/home',
    );
    expect([dir.status, dir.body.error.code]).toEqual([400, 'NOT_A_FILE']);
    const none = await call<{ error: { code: string } }>(f, 'GET', '/backups/lin01/download?path=/d0p1/nope');
    expect([none.status, none.body.error.code]).toEqual([404, 'PATH_NOT_FOUND']);
    const noPath = await call<{ error: { code: string } }>(f, 'GET', '/backups/lin01/download');
    expect([noPath.status, noPath.body.error.code]).toEqual([400, 'BAD_PARAM']);
  });

  it('a client that goes away mid-download ends the foreground work and the server keeps serving', async () => {
    const photo = encodeURIComponent('/d0p2/Users/ana/Documents/photo.jpg');
    const before = f.foregroundCalls.n;
    await new Promise<void>((resolve, reject) => {
      const req = httpGet(
        `${f.url}/backups/win01/download?path=${photo}`,
        { headers: { Authorization: `Bearer ${TOKEN}` } },
        (res) => {
          expect(res.statusCode).toBe(200);
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        },
      );
      req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
    });
    expect(f.foregroundCalls.n).toBe(before + 1);
    await expect.poll(() => f.foregroundCalls.active, { timeout: 10_000 }).toBe(0);
    expect((await get<{ ok: boolean }>(f, '/health')).ok).toBe(true);
  });

  it("a stalled tar download does not hold the daemon's catalog connection (jobs can still be written)", async () => {
    const before = f.foregroundCalls.n;
    let req: ReturnType<typeof httpGet> | undefined;
    await new Promise<void>((resolve, reject) => {
      req = httpGet(
        `${f.url}/backups/win01/download?path=/`,
        { headers: { Authorization: `Bearer ${TOKEN}` } },
        (res) => {
          expect(res.statusCode).toBe(200);
          res.once('data', () => {
            // the tar is ~90 MB: the server is now blocked inside its catalog walk, waiting for us
            res.pause();
            resolve();
          });
        },
      );
      req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
    });
    try {
      expect(f.foregroundCalls.active).toBe(1);
      const job = await call<{ id: number }>(f, 'POST', '/backups', { body: { vm: 'win01' } });
      expect(job.status).toBe(202);
      expect(f.jobs.cancel(job.body.id)?.state).toBe('cancelled');
      // let the server fill the socket and wait for 'drain' (the state a vanished client leaves it in)
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      req!.destroy();
    }
    expect(f.foregroundCalls.n).toBe(before + 1);
    await expect.poll(() => f.foregroundCalls.active, { timeout: 10_000 }).toBe(0);
  });

  for (const [what, path] of [
    ['tar', '/d0p1/home'],
    ['file', '/d0p1/var/log/syslog'],
  ]) {
    it(`a client that goes away while a ${what} download waits for the target ends the download`, async () => {
      // a target whose reads wait until released: the response starts, its file data cannot yet
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const inner = f.repo.target;
      const target = Object.create(inner) as typeof inner;
      target.get = async (name) => (await gate, inner.get(name));
      target.getRange = async (name, offset, length) => (await gate, inner.getRange(name, offset, length));
      const counts = { n: 0, active: 0 };
      const server = createApiServer({
        ...f.ctx,
        repo: { ...f.repo, target },
        foreground: async (fn) => {
          counts.n++;
          counts.active++;
          try {
            return await fn();
          } finally {
            counts.active--;
          }
        },
      });
      const addr = await server.listen('127.0.0.1', 0);
      try {
        await new Promise<void>((resolve, reject) => {
          const req = httpGet(
            `http://127.0.0.1:${addr.port}/backups/lin01/download?path=${path}`,
            { headers: { Authorization: `Bearer ${TOKEN}` } },
            (res) => {
              expect(res.statusCode).toBe(200);
              // the headers are out; the data waits for the target
              req.destroy();
              resolve();
            },
          );
          req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
        });
        // let the server see the connection close while it waits for the target, then let the reads go
        await new Promise((r) => setTimeout(r, 200));
        release();
        expect(counts.n).toBe(1);
        await expect.poll(() => counts.active, { timeout: 10_000 }).toBe(0);
      } finally {
        release();
        await server.close();
      }
    }, 60_000);
  }
});
