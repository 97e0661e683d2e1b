/**
 * ApiClient round trips against the real server: what `vdbak status`, `jobs`
 * and `cancel` use. A refused request becomes a typed error with the server's
 * code; a daemon that is not there is API_UNREACHABLE.
 */
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../agent/api/client.js';
import { IoError, NotFoundError, UnsupportedError } from '../../parsers/errors.js';
import { apiFixture, TOKEN, type ApiFixture } from './helpers.js';

let f: ApiFixture;
let client: ApiClient;

beforeAll(async () => {
  f = await apiFixture('api-client');
  client = new ApiClient(f.url, TOKEN);
});
afterAll(async () => {
  await f?.close();
});

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string; details?: { status?: number } }> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

describe('ApiClient', () => {
  it('health and status', async () => {
    expect((await client.health()).ok).toBe(true);
    const s = await client.status();
    expect(s.pid).toBe(process.pid);
    expect(s.throttle).toEqual([{ datastore: 'sample' }]);
  });

  it('submits a backup, a restore and a whole-VM restore, lists, gets and cancels jobs', async () => {
    const b = await client.submitBackup('win01');
    expect(b).toMatchObject({ kind: 'backup', state: 'queued', origin: 'api' });
    const to = join(f.roots.root, 'from-client');
    const r = await client.submitRestore({ backup: 'lin01', path: '/d0p1/etc', to });
    expect(r.kind).toBe('restore');
    expect(r.params).toMatchObject({ path: '/d0p1/etc', overwrite: false });
    const vm = await client.submitVmRestore({ backup: 'win01', to: join(f.roots.root, 'vm'), keepIdentity: true });
    expect(vm).toMatchObject({ kind: 'restore-vm', params: { keepIdentity: true } });
    expect(await client.cancel(vm.id)).toMatchObject({ state: 'cancelled' });
    expect((await client.jobs({ kind: 'restore' })).items.map((j) => j.id)).toEqual([r.id]);
    expect((await client.jobs({ kind: 'backup' })).items.map((j) => j.id)).toEqual([b.id]);
    expect((await client.jobs({ state: ['queued', 'running'], limit: 1 })).items.map((j) => j.id)).toEqual([r.id]);
    expect((await client.jobs({ limit: 2 })).items.map((j) => j.id)).toEqual([vm.id, r.id]);
    expect(await client.job(b.id)).toEqual(b);
    const c = await client.cancel(b.id);
    expect(c.state).toBe('cancelled');
    expect((await client.jobs({ state: 'cancelled' })).items.map((j) => j.id)).toEqual([vm.id, b.id]);
  });

  it('turns refusals into typed errors with the server code', async () => {
    const nf = await rejection(client.job(9999));
    expect(nf).toBeInstanceOf(NotFoundError);
    expect(nf.code).toBe('JOB_NOT_FOUND');
    expect(nf.details?.status).toBe(404);
    const vm = await rejection(client.submitBackup('nosuchvm'));
    expect(vm).toBeInstanceOf(NotFoundError);
    expect(vm.code).toBe('VM_NOT_FOUND');
    const out = await rejection(client.submitRestore({ backup: 'lin01', path: '/', to: '/etc' }));
    expect(out).toBeInstanceOf(IoError);
    expect(out.code).toBe('RESTORE_TO_OUTSIDE_ROOTS');
    const bad = await rejection(client.submitRestore({ backup: 'lin01', path: '/', to: 'rel' }));
    expect(bad).toBeInstanceOf(UnsupportedError);
    expect(bad.code).toBe('RESTORE_TO_NOT_ABSOLUTE');
    const auth = await rejection(new ApiClient(f.url, 'wrong').status());
    expect(auth).toBeInstanceOf(IoError);
    expect(auth.code).toBe('UNAUTHORIZED');
    expect(auth.message).toContain('token');
  });

  it('says the daemon does not answer when nothing listens', async () => {
    // a port that was free a moment ago
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const e = await rejection(new ApiClient(`http://127.0.0.1:${port}`, TOKEN).status());
    expect(e).toBeInstanceOf(IoError);
    expect(e.code).toBe('API_UNREACHABLE');
    expect(e.message).toContain('ECONNREFUSED');
  });
});
