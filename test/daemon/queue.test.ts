/**
 * The persistent job queue (catalog/jobs.ts) on a real repository's catalog:
 * ordering, atomic claims from two connections, cancel, resuming jobs a dead
 * daemon left running, trimming, parameter validation, and job changes that
 * survive a backup batch rolled back on the same connection.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Catalog } from '../../catalog/catalog.js';
import { JobStore, MAX_PARAMS_CHARS, MAX_START_ATTEMPTS } from '../../catalog/jobs.js';
import { CATALOG_FILE, initRepo, openRepo, processAlive, type Repo } from '../../agent/repo.js';
import type { JobKind, JobParams } from '../../agent/daemon/types.js';

const dirs: string[] = [];
const repos: Repo[] = [];
const cats: Catalog[] = [];

function makeRepo(): Repo {
  const d = mkdtempSync(join(tmpdir(), 'vdbak-queue-'));
  dirs.push(d);
  initRepo(join(d, 'repo'));
  const repo = openRepo(join(d, 'repo'));
  repos.push(repo);
  return repo;
}

afterEach(() => {
  for (const c of cats.splice(0)) c.close();
  for (const r of repos.splice(0)) r.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A pid that is certainly dead: a child that has exited and been reaped. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

const ALL: JobKind[] = ['restore', 'restore-vm', 'plan', 'backup', 'ship', 'forget', 'prune', 'check'];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('JobStore', () => {
  it('claims restores first, then backups, then maintenance, each by id', () => {
    const jobs = new JobStore(makeRepo().catalog);
    const check = jobs.submit('check', {}, 'cli');
    const b1 = jobs.submit('backup', { vm: 'vmware:1' }, 'schedule:nightly');
    const ship = jobs.submit('ship', {}, 'api');
    const r1 = jobs.submit('restore', { backup: '1', path: '/d0p1/etc', to: '/tmp/x' }, 'api');
    const b2 = jobs.submit('backup', { vm: 'vmware:2' }, 'schedule:nightly');
    const r2 = jobs.submit('restore', { backup: '2', path: '/', to: '/tmp/y' }, 'api');
    expect(b1).toMatchObject({ state: 'queued', priority: 1, attempts: 0, origin: 'schedule:nightly' });
    const order: number[] = [];
    for (let j = jobs.claim(ALL); j; j = jobs.claim(ALL)) order.push(j.id);
    expect(order).toEqual([r1.id, r2.id, b1.id, b2.id, check.id, ship.id]);
    // only the kinds asked for
    const p = jobs.submit('prune', {}, 'cli');
    jobs.submit('backup', { vm: 'x' }, 'cli');
    expect(jobs.claim(['prune', 'check'])?.id).toBe(p.id);
    expect(jobs.claim(['prune', 'check'])).toBeUndefined();
  });

  it('marks a claimed job running with its start, pid and attempt; list is newest first and filters', () => {
    const jobs = new JobStore(makeRepo().catalog);
    const a = jobs.submit('backup', { vm: 'a' }, 'cli', 1000);
    const b = jobs.submit('check', { readData: true }, 'cli', 2000);
    const got = jobs.claim(['backup'], 5000)!;
    expect(got).toMatchObject({ id: a.id, state: 'running', attempts: 1, startedMs: 5000 });
    expect(jobs.list().map((j) => j.id)).toEqual([b.id, a.id]);
    expect(jobs.list({ state: 'running' }).map((j) => j.id)).toEqual([a.id]);
    expect(jobs.list({ state: ['queued', 'done'], kind: 'check' }).map((j) => j.id)).toEqual([b.id]);
    expect(jobs.list({ limit: 1 })).toHaveLength(1);
    expect(jobs.get(b.id)?.params).toEqual({ readData: true });
    expect(jobs.get(12345)).toBeUndefined();
    jobs.setProgress(a.id, { phase: 'reading', bytesDone: 10, updatedMs: 6000 });
    expect(jobs.get(a.id)?.progress).toEqual({ phase: 'reading', bytesDone: 10, updatedMs: 6000 });
    expect(jobs.finish(a.id, { backupId: 7 }, 7000)).toBe(true);
    expect(jobs.get(a.id)).toMatchObject({ state: 'done', finishedMs: 7000, result: { backupId: 7 } });
    // a finished job cannot finish again (a stop that gave up on it queued it, say)
    expect(jobs.fail(a.id, { code: 'X', message: 'late' })).toBe(false);
    expect(jobs.lastResults().map((j) => j.id)).toEqual([a.id]);
  });

  it('never hands the same job to two connections', () => {
    const repo = makeRepo();
    const other = Catalog.open(join(repo.root, CATALOG_FILE));
    cats.push(other);
    const j1 = new JobStore(repo.catalog);
    const j2 = new JobStore(other);
    const ids = new Set<number>();
    for (let i = 0; i < 20; i++) j1.submit('backup', { vm: `vm${i}` }, 'cli');
    const claimed: number[] = [];
    for (let i = 0; i < 25; i++) {
      const j = (i % 2 ? j1 : j2).claim(['backup']);
      if (j) claimed.push(j.id);
    }
    for (const id of claimed) ids.add(id);
    expect(claimed).toHaveLength(20);
    expect(ids.size).toBe(20);
    expect(j1.list({ state: 'running', limit: 100 })).toHaveLength(20);
  });

  it('cancels a queued job at once and flags a running one', () => {
    const jobs = new JobStore(makeRepo().catalog);
    const q = jobs.submit('backup', { vm: 'a' }, 'cli');
    const r = jobs.submit('backup', { vm: 'b' }, 'cli');
    expect(jobs.claim(['backup'])?.id).toBe(q.id);
    // q is running now, r queued
    const rc = jobs.cancel(r.id)!;
    expect(rc).toMatchObject({ state: 'cancelled', cancelRequested: true });
    expect(rc.error?.code).toBe('JOB_CANCELLED');
    expect(jobs.claim(['backup'])).toBeUndefined();
    const qc = jobs.cancel(q.id)!;
    expect(qc).toMatchObject({ state: 'running', cancelRequested: true });
    expect(jobs.cancelRequested(q.id)).toBe(true);
    expect(jobs.markCancelled(q.id, 'stopped between files')).toBe(true);
    expect(jobs.get(q.id)).toMatchObject({ state: 'cancelled', error: { code: 'JOB_CANCELLED' } });
    expect(jobs.cancel(999)).toBeUndefined();
    // cancelling a finished job changes nothing
    expect(jobs.cancel(q.id)?.state).toBe('cancelled');
  });

  it('queues again what a dead daemon left running, and fails a job interrupted too often', () => {
    const repo = makeRepo();
    const jobs = new JobStore(repo.catalog);
    const a = jobs.submit('backup', { vm: 'a' }, 'schedule:nightly');
    const b = jobs.submit('backup', { vm: 'b' }, 'api');
    const c = jobs.submit('restore', { backup: '1', path: '/', to: '/r' }, 'api');
    for (let i = 0; i < 3; i++) jobs.claim(['backup', 'restore']);
    const dead = deadPid();
    const setPid = (id: number, pid: number, attempts?: number) =>
      repo.catalog.db
        .prepare('UPDATE jobs SET pid = ?, attempts = coalesce(?, attempts) WHERE id = ?')
        .run(pid, attempts ?? null, id);
    setPid(a.id, dead);
    setPid(b.id, dead, MAX_START_ATTEMPTS);
    // c keeps our own (live) pid
    const r = jobs.requeueInterrupted(processAlive);
    expect(r).toEqual({ requeued: [a.id], failed: [b.id] });
    expect(jobs.get(a.id)).toMatchObject({ state: 'queued', origin: 'schedule:nightly', attempts: 1 });
    expect(jobs.get(b.id)).toMatchObject({ state: 'failed', error: { code: 'JOB_INTERRUPTED' } });
    expect(jobs.get(c.id)?.state).toBe('running');
    // the requeued job runs again, its attempt counted
    expect(jobs.claim(['backup'])).toMatchObject({ id: a.id, attempts: 2 });
  });

  it('keeps only the newest finished jobs', () => {
    const jobs = new JobStore(makeRepo().catalog, { keepFinished: 5 });
    const ids: number[] = [];
    for (let i = 0; i < 9; i++) ids.push(jobs.submit('check', {}, 'cli').id);
    const waiting = jobs.submit('backup', { vm: 'x' }, 'cli');
    for (let i = 0; i < 9; i++) {
      const j = jobs.claim(['check'])!;
      if (i % 2) jobs.finish(j.id, {});
      else jobs.fail(j.id, { code: 'E', message: 'e' });
    }
    const left = jobs.list({ limit: 100 }).map((j) => j.id);
    expect(left).toEqual([waiting.id, ...ids.slice(4).reverse()]);
  });

  it('validates parameters per kind with typed errors', () => {
    const jobs = new JobStore(makeRepo().catalog);
    const submit = (kind: string, params: unknown) => () => jobs.submit(kind as JobKind, params as JobParams, 'api');
    expect(codeOf(submit('restore', { backup: '1', path: '/' }))).toBe('JOB_BAD_PARAMS');
    expect(codeOf(submit('restore', { backup: '1', path: '/', to: '' }))).toBe('JOB_BAD_PARAMS');
    expect(codeOf(submit('restore', { backup: '1', path: '/', to: '/r', overwrite: 'yes' }))).toBe('JOB_BAD_PARAMS');
    expect(codeOf(submit('restore', { backup: '1', path: '/', to: '/r', extra: 1 }))).toBe('JOB_BAD_PARAMS');
    expect(codeOf(submit('backup', {}))).toBe('JOB_BAD_PARAMS');
    expect(codeOf(submit('backup', { vm: 'a\0b' }))).toBe('JOB_BAD_PARAMS');
    expect(codeOf(submit('backup', { vm: 'x'.repeat(MAX_PARAMS_CHARS) }))).toBe('JOB_BAD_PARAMS');
    expect(codeOf(submit('backup', ['vm']))).toBe('JOB_BAD_PARAMS');
    expect(codeOf(submit('format-disk', {}))).toBe('JOB_UNKNOWN_KIND');
    expect(codeOf(submit('restore-vm', { backup: '1', to: '/r', format: 'vhdx' }))).toBe('JOB_BAD_PARAMS');
    expect(codeOf(submit('restore-vm', { backup: '1', to: '/r', datastoreMap: [{ from: '/a' }] }))).toBe(
      'JOB_BAD_PARAMS',
    );
    expect(codeOf(() => jobs.submit('check', {}, ''))).toBe('JOB_BAD_ORIGIN');
    expect(jobs.list()).toHaveLength(0);
    expect(
      jobs.submit(
        'restore-vm',
        { backup: 'win01', to: '/r', format: 'qcow2', datastoreMap: [{ from: '/a', to: '/b' }] },
        'api',
      ).state,
    ).toBe('queued');
    expect(jobs.submit('forget', { prune: true }, 'cli').params).toEqual({ prune: true });
    expect(jobs.submit('prune', undefined as unknown as JobParams, 'cli').params).toEqual({});
  });

  it('keeps job changes made while a backup batch is open, even when the batch rolls back', () => {
    const repo = makeRepo();
    const jobs = new JobStore(repo.catalog);
    const db = repo.catalog.db;
    const a = jobs.submit('backup', { vm: 'a' }, 'cli');
    db.exec('BEGIN');
    db.prepare(`INSERT INTO meta(key, value) VALUES ('probe', 'batch')`).run();
    const b = jobs.submit('restore', { backup: '1', path: '/', to: '/r' }, 'api');
    expect(jobs.claim(['restore'])?.id).toBe(b.id);
    jobs.cancel(a.id);
    // the batch is open again for its owner, and its own rows go with its rollback
    expect(db.inTransaction).toBe(true);
    db.prepare(`INSERT INTO meta(key, value) VALUES ('probe2', 'batch')`).run();
    db.exec('ROLLBACK');
    expect(repo.catalog.getMeta('probe2')).toBeUndefined();
    expect(jobs.get(b.id)?.state).toBe('running');
    expect(jobs.get(a.id)?.state).toBe('cancelled');
  });
});
