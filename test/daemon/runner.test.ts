/**
 * The job runner on a real repository (made with the CLI) and the sample
 * volume store: backups and restores as jobs, a restore holding a running
 * backup's reads, cancel, stop and resume in a new runner, restore folders
 * outside the configured roots refused, and the job id on every log line.
 *
 * Slow backups are made slow by a throttle loop that is never started: its
 * bucket stays at a small fixed rate, with small pieces so that a cancel is
 * seen quickly. Nothing here asserts a duration.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, symlinkSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { JobStore } from '../../catalog/jobs.js';
import { PlanStore } from '../../catalog/plans.js';
import type { PlanReport } from '../../agent/plans/run.js';
import type { RestoreVmResult } from '../../agent/restore-vm/restore-vm.js';
import type { BackupResult } from '../../agent/backup/job.js';
import type { DaemonConfig } from '../../agent/config/types.js';
import { createLogger } from '../../agent/daemon/logger.js';
import { type JobEvent, Runner } from '../../agent/daemon/runner.js';
import type { JobRow, JobState } from '../../agent/daemon/types.js';
import { lockRepo, openRepo, type Repo } from '../../agent/repo.js';
import { sourcesInFolder, type VmSource } from '../../agent/source/resolve.js';
import { ThrottleLoop } from '../../agent/throttle/loop.js';
import { compareTrees, newRepo, sampleStore, snapshotTree, vdbak, vdbakOk } from '../helpers/vdbak.js';

const KiB = 1024;
/** Long enough for a first backup of the sample store on a busy shared machine. */
const JOB_TIMEOUT_MS = 120_000;

let store: string;
let root: string;
let repo: Repo;
let jobs: JobStore;
let sources: VmSource[];
let restoreRoot: string;
/** A second datastore: the fresh copies of win01 live there. */
let copies: string;
let outside: string;
let linBackup: number;
let linVolume: string;
const lines: Record<string, unknown>[] = [];
let log: Logger;

/**
 * A copy of win01 in a folder of its own: a VM never backed up, so its backup
 * reads every file (an unchanged VM's backup reads nothing, and would finish
 * before a test could hold or cancel its reads).
 */
function freshWin01(): VmSource {
  const parent = mkdtempSync(join(copies, 'vm-'));
  cpSync(join(store, 'win01'), join(parent, 'win01'), { recursive: true });
  const [s] = sourcesInFolder(parent);
  if (!s) throw new Error(`no VM found in ${parent}`);
  sources.push(s);
  return s;
}

function vm(name: string): VmSource {
  const s = sources.find((v) => v.name === name);
  if (!s) throw new Error(`no VM ${name} in the sample store (${sources.map((v) => v.name).join(', ')})`);
  return s;
}

function config(over: Partial<DaemonConfig> = {}): DaemonConfig {
  const c: DaemonConfig = {
    source: 'test',
    repo: root,
    datastores: [
      { name: 'store', path: store },
      { name: 'copies', path: copies },
    ],
    schedules: [],
    retention: { keepLast: 3 },
    throttle: { enabled: false },
    api: { listen: '127.0.0.1:0', token: 'test-token' },
    restoreRoots: [restoreRoot],
    log: { level: 'debug' },
    ship: { keep: 3, afterBackup: false },
    threads: 2,
    ...over,
  };
  return Object.freeze(c);
}

/** A loop that is never started: its bucket keeps a small fixed rate (a slow backup). */
function slowLoop(rate = 256 * KiB): ThrottleLoop {
  return new ThrottleLoop({
    sensor: { sample: () => ({ atMs: 0, devices: 0 }) },
    limits: { maxBytesPerSec: rate, minBytesPerSec: rate / 4, startBytesPerSec: rate },
    bucket: { minCapacity: 4 * KiB },
  });
}

interface Harness {
  runner: Runner;
  events: JobEvent[];
  setThrottle(loop: ThrottleLoop | undefined): void;
}

function harness(onJobEvent?: (e: JobEvent) => void, cfg = config()): Harness {
  let throttle: ThrottleLoop | undefined;
  const events: JobEvent[] = [];
  const runner = new Runner({
    repo,
    config: () => cfg,
    jobs,
    log,
    locate: (identity) => sources.find((s) => s.identity === identity),
    throttleFor: () => throttle,
    pollMs: 100,
    onJobEvent: (e) => {
      events.push(e);
      onJobEvent?.(e);
    },
  });
  return { runner, events, setThrottle: (l) => (throttle = l) };
}

/** Waits until the running backup's workers wait on its (held) bucket. */
async function waitersOn(runner: Runner, id: number): Promise<void> {
  await vi.waitFor(
    () => {
      const waiters = runner.bucketOf(id)?.waiters ?? 0;
      if (waiters === 0) throw new Error(`job ${id}'s reads are not waiting yet`);
    },
    { timeout: JOB_TIMEOUT_MS, interval: 50 },
  );
}

/** A symlink inside the restore root that points outside it. */
function escapeLink(): string {
  const l = join(restoreRoot, 'escape');
  if (!existsSync(l)) symlinkSync(outside, l);
  return l;
}

async function until(id: number, states: JobState[]): Promise<JobRow> {
  return vi.waitFor(
    () => {
      const j = jobs.get(id);
      if (!j || !states.includes(j.state))
        throw new Error(`job ${id} is ${j?.state}${j?.error ? `: ${j.error.code}: ${j.error.message}` : ''}`);
      return j;
    },
    { timeout: JOB_TIMEOUT_MS, interval: 50 },
  );
}

beforeAll(() => {
  store = sampleStore();
  sources = sourcesInFolder(store);
  root = newRepo('runner');
  const base = mkdtempSync(join(tmpdir(), 'vdbak-runner-'));
  restoreRoot = join(base, 'restores');
  copies = join(base, 'copies');
  mkdirSync(copies);
  outside = join(base, 'outside');
  mkdirSync(restoreRoot);
  mkdirSync(outside);
  // the first backup is made with the CLI: the runner's repository is a real one
  vdbakOk(['backup', '--repo', root, join(store, 'lin01')], { env: { VDBAK_SHIP_AFTER_BACKUP: '0' } });
  repo = openRepo(root);
  jobs = new JobStore(repo.catalog);
  const b = repo.catalog.backups({})[0]!;
  linBackup = b.id;
  linVolume = repo.catalog.backupVolumes(b.id).find((v) => v.fsType === 'ext')!.name;
  log = createLogger({
    level: 'debug',
    destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
  });
}, JOB_TIMEOUT_MS);

afterAll(() => {
  repo?.close();
});

describe('Runner', () => {
  it('runs a backup job to the end, every log line about it carrying its id', async () => {
    const h = harness();
    h.runner.start();
    const job = jobs.submit('backup', { vm: vm('lin01').identity }, 'cli');
    h.runner.wake();
    const done = await until(job.id, ['done', 'failed', 'cancelled']);
    await h.runner.stop(10_000);
    expect(done.error).toBeUndefined();
    expect(done.state).toBe('done');
    const result = done.result as BackupResult;
    expect(repo.catalog.backup(result.backupId)?.state).toBe('complete');
    expect(done.attempts).toBe(1);
    expect(done.progress?.phase).toBe('reading');
    // every line the job and its executor wrote names it
    const about = lines.filter((l) => l.job === job.id);
    expect(about.map((l) => l.msg)).toEqual(
      expect.arrayContaining(['job started', 'backup started', 'backup complete', 'job done']),
    );
    // and no line about it goes without its id
    expect(lines.filter((l) => l.backupId === result.backupId && l.job !== job.id)).toEqual([]);
    expect(about.every((l) => l.kind === 'backup')).toBe(true);
    expect(h.events.map((e) => [e.type, e.job.id])).toEqual([
      ['start', job.id],
      ['end', job.id],
    ]);
  });

  it('starts a restore at once while a backup runs, holding the backup reads until it ends', async () => {
    const loop = slowLoop();
    // the test holds the bucket too, so the backup is certainly still running when the restore comes
    const testHold = loop.bucket.hold();
    const seen: { holds: number; backupState?: JobState }[] = [];
    let backupId = 0;
    const h = harness((e) => {
      if (e.job.kind !== 'restore') return;
      seen.push({ holds: loop.bucket.stats().holds, backupState: jobs.get(backupId)?.state });
    });
    h.setThrottle(loop);
    h.runner.start();
    backupId = jobs.submit('backup', { vm: vm('win01').identity }, 'schedule:nightly').id;
    h.runner.wake();
    await until(backupId, ['running']);
    // the backup's workers are waiting on the bucket
    await vi.waitFor(() => expect(loop.bucket.stats().waiters).toBeGreaterThan(0), { timeout: JOB_TIMEOUT_MS });
    const to = join(restoreRoot, 'etc-while-backup');
    const restore = jobs.submit('restore', { backup: String(linBackup), path: `/${linVolume}/etc`, to }, 'api');
    h.runner.wake();
    const r = await until(restore.id, ['done', 'failed', 'cancelled']);
    expect(r.error).toBeUndefined();
    expect(r.state).toBe('done');
    // at its start the backup was running and held twice (the test, the restore); at its end, once
    expect(seen).toEqual([
      { holds: 2, backupState: 'running' },
      { holds: 1, backupState: 'running' },
    ]);
    const diffs = compareTrees(snapshotTree(join(store, 'sources', 'lin01', 'etc')), snapshotTree(join(to, 'etc')));
    expect(diffs).toEqual([]);
    // a download streamed by the API holds it the same way
    expect(await h.runner.foreground(() => Promise.resolve(loop.bucket.stats().holds))).toBe(2);
    expect(loop.bucket.stats().holds).toBe(1);
    testHold();
    loop.bucket.setRate(1024 * 1024 * 1024);
    const b = await until(backupId, ['done', 'failed', 'cancelled']);
    expect(b.error).toBeUndefined();
    expect(b.state).toBe('done');
    expect(loop.bucket.stats().holds).toBe(0);
    await h.runner.stop(10_000);
    loop.stop();
  });

  it('cancels a running backup: the job ends cancelled, its catalog backup failed, and the next backup and check pass', async () => {
    const h = harness();
    h.runner.start();
    // a download streamed by the API holds the backup's reads: it is certainly running when cancelled
    let openGate = () => {};
    const gate = h.runner.foreground(() => new Promise<void>((res) => (openGate = res)));
    const fresh = freshWin01();
    const job = jobs.submit('backup', { vm: fresh.identity }, 'api');
    h.runner.wake();
    await until(job.id, ['running']);
    await waitersOn(h.runner, job.id);
    expect(jobs.cancel(job.id)?.cancelRequested).toBe(true);
    const c = await until(job.id, ['done', 'failed', 'cancelled']);
    expect(c.state).toBe('cancelled');
    expect(c.error?.code).toBe('JOB_CANCELLED');
    const failed = repo.catalog.backups({ states: ['failed'] });
    expect(failed.length).toBeGreaterThan(0);
    expect(failed[failed.length - 1]!.error).toMatch(/cancel/i);
    openGate();
    await gate;
    const again = jobs.submit('backup', { vm: fresh.identity }, 'api');
    h.runner.wake();
    const d = await until(again.id, ['done', 'failed', 'cancelled']);
    expect(d.error).toBeUndefined();
    expect(d.state).toBe('done');
    // what the completed backup holds is exact, folders and all
    const to = join(restoreRoot, 'ana-after-cancel');
    const vol = repo.catalog.backupVolumes((d.result as BackupResult).backupId).find((v) => v.fsType === 'ntfs')!.name;
    const r = jobs.submit(
      'restore',
      { backup: String((d.result as BackupResult).backupId), path: `/${vol}/Users/ana`, to },
      'api',
    );
    const rr = await until(r.id, ['done', 'failed', 'cancelled']);
    expect(rr.error).toBeUndefined();
    const diffs = compareTrees(
      snapshotTree(join(store, 'sources', 'win01', 'Users', 'ana')),
      snapshotTree(join(to, 'ana')),
      {
        extra: (p) => p.includes(':'),
      },
    );
    expect(diffs).toEqual([]);
    await h.runner.stop(10_000);
    const check = vdbak(['check', '--repo', root]);
    expect(check.stderr + check.stdout).toContain('no errors were found');
    expect(check.code).toBe(0);
  });

  it('puts a backup interrupted by stop() back in the queue, and a new runner finishes it', async () => {
    const first = harness();
    first.runner.start();
    let openGate = () => {};
    const gate = first.runner.foreground(() => new Promise<void>((res) => (openGate = res)));
    const job = jobs.submit('backup', { vm: freshWin01().identity }, 'schedule:nightly');
    first.runner.wake();
    await until(job.id, ['running']);
    await waitersOn(first.runner, job.id);
    // a CLI writer meanwhile is told who holds the repository
    const cli = vdbak(['prune', '--repo', root]);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toContain(`the vdbak daemon's job ${job.id} (backup)`);
    await first.runner.stop(30_000);
    const stopped = jobs.get(job.id)!;
    expect(stopped).toMatchObject({ state: 'queued', attempts: 1, origin: 'schedule:nightly' });
    const lastFailed = repo.catalog.backups({ states: ['failed'] }).at(-1)!;
    expect(lastFailed.error).toMatch(/stopping/);
    openGate();
    await gate;
    const second = harness();
    second.runner.start();
    const d = await until(job.id, ['done', 'failed', 'cancelled']);
    await second.runner.stop(10_000);
    expect(d.error).toBeUndefined();
    expect(d).toMatchObject({ state: 'done', attempts: 2 });
    expect(repo.catalog.backup((d.result as BackupResult).backupId)?.state).toBe('complete');
  });

  it('refuses restores that would write outside the restore folders', async () => {
    const link = escapeLink();
    const h = harness();
    h.runner.start();
    const path = `/${linVolume}/etc`;
    const bad = [join(restoreRoot, '..', 'outside'), outside, join(link, 'etc'), link, 'relative/dir'];
    const ids = bad.map((to) => jobs.submit('restore', { backup: String(linBackup), path, to }, 'api').id);
    h.runner.wake();
    const codes: (string | undefined)[] = [];
    for (const id of ids) codes.push((await until(id, ['done', 'failed', 'cancelled'])).error?.code);
    await h.runner.stop(10_000);
    expect(codes).toEqual([
      'RESTORE_TO_OUTSIDE_ROOTS',
      'RESTORE_TO_OUTSIDE_ROOTS',
      'RESTORE_TO_OUTSIDE_ROOTS',
      'RESTORE_TO_OUTSIDE_ROOTS',
      'RESTORE_TO_NOT_ABSOLUTE',
    ]);
    expect(readdirSync(outside)).toEqual([]);
  });

  it('runs maintenance jobs: ship, check, forget with prune by the config retention, prune', async () => {
    const h = harness(undefined, config({ retention: { keepLast: 1 }, ship: { keep: 2, afterBackup: true } }));
    h.runner.start();
    const ids = [
      jobs.submit('ship', {}, 'schedule:ship'),
      jobs.submit('check', { readData: true }, 'schedule:check'),
      jobs.submit('backup', { vm: vm('lin01').identity }, 'schedule:nightly'),
      jobs.submit('forget', { prune: true }, 'schedule:forget'),
      jobs.submit('prune', {}, 'cli'),
    ].map((j) => j.id);
    const done: JobRow[] = [];
    for (const id of ids) done.push(await until(id, ['done', 'failed', 'cancelled']));
    await h.runner.stop(10_000);
    expect(done.map((j) => [j.kind, j.state, j.error?.code])).toEqual([
      ['ship', 'done', undefined],
      ['check', 'done', undefined],
      ['backup', 'done', undefined],
      ['forget', 'done', undefined],
      ['prune', 'done', undefined],
    ]);
    // one backup left per VM, the newest
    for (const v of repo.catalog.vms()) {
      expect(repo.catalog.backups({ vmId: v.id }).map((b) => b.id)).toHaveLength(1);
    }
    const copies = readdirSync(join(repo.settings.targetPath, 'catalog')).filter((n) => n.endsWith('.db.zst'));
    expect(copies).toHaveLength(2);
    const check = vdbak(['check', '--read-data', '--repo', root]);
    expect(check.stdout).toContain('no errors were found');
    // restores still come out right after the prune
    const to = join(restoreRoot, 'after-prune');
    const r = jobs.submit('restore', { backup: 'lin01', path: `/${linVolume}/etc`, to }, 'api');
    const h2 = harness();
    h2.runner.start();
    const rr = await until(r.id, ['done', 'failed', 'cancelled']);
    await h2.runner.stop(10_000);
    expect(rr.error).toBeUndefined();
    expect(compareTrees(snapshotTree(join(store, 'sources', 'lin01', 'etc')), snapshotTree(join(to, 'etc')))).toEqual(
      [],
    );
  });

  it('fails a writer job with a clear error when another process holds the repository', async () => {
    const release = lockRepo(root, 'a test holding the lock');
    try {
      const h = harness();
      h.runner.start();
      const j = jobs.submit('prune', {}, 'cli');
      const f = await until(j.id, ['done', 'failed', 'cancelled']);
      await h.runner.stop(10_000);
      expect(f.error?.code).toBe('REPO_LOCKED');
      expect(f.error?.message).toContain('a test holding the lock');
    } finally {
      release();
    }
  });

  it('runs whole-VM restores and recovery plans as restore jobs into the restore folders', async () => {
    new PlanStore(repo.catalog).setGroup('linux', { vms: ['lin01'], datastores: [], critical: [] });
    new PlanStore(repo.catalog).setPlan('dr', { steps: [{ group: 'linux', onFailure: 'stop' }] });
    const h = harness();
    h.runner.start();
    const vmTo = join(restoreRoot, 'vm-lin01');
    const planTo = join(restoreRoot, 'plan-dr');
    const rv = jobs.submit('restore-vm', { backup: 'lin01', to: vmTo, format: 'raw' }, 'api');
    const pl = jobs.submit('plan', { plan: 'dr', to: planTo, format: 'raw' }, 'api');
    const out = jobs.submit('restore-vm', { backup: 'lin01', to: join(escapeLink(), 'vm') }, 'api');
    const missing = jobs.submit('plan', { plan: 'no-such-plan', to: planTo }, 'api');
    const ends: JobRow[] = [];
    for (const j of [rv, pl, out, missing]) ends.push(await until(j.id, ['done', 'failed', 'cancelled']));
    await h.runner.stop(10_000);
    expect(ends.map((j) => [j.kind, j.state, j.error?.code])).toEqual([
      ['restore-vm', 'done', undefined],
      ['plan', 'done', undefined],
      ['restore-vm', 'failed', 'RESTORE_TO_OUTSIDE_ROOTS'],
      ['plan', 'failed', 'PLAN_NOT_FOUND'],
    ]);
    const disk = (ends[0]!.result as RestoreVmResult).disks[0]!;
    expect(disk.outputs.every((o) => o.startsWith(vmTo))).toBe(true);
    // (the rebuilt bytes are checked against qemu-img in test/restore-vm; here: written where asked)
    expect(readdirSync(vmTo).length).toBeGreaterThan(0);
    expect((ends[1]!.result as PlanReport).ok).toBe(true);
    expect(readdirSync(planTo)).toEqual(['lin01']);
    expect(readdirSync(outside)).toEqual([]);
  });

  it('stops a cancelled backup that reads through a slow datastore loop without reading at the slow rate', async () => {
    const loop = slowLoop(16 * KiB);
    const h = harness();
    h.setThrottle(loop);
    h.runner.start();
    const job = jobs.submit('backup', { vm: freshWin01().identity }, 'api');
    await until(job.id, ['running']);
    await vi.waitFor(() => expect(loop.bucket.stats().granted).toBeGreaterThan(0), { timeout: JOB_TIMEOUT_MS });
    jobs.cancel(job.id);
    const c = await until(job.id, ['done', 'failed', 'cancelled']);
    await h.runner.stop(10_000);
    expect(c.state).toBe('cancelled');
    // the loop's bucket was opened for the reads in flight: the next backup gets a new loop, or reads unthrottled
    expect(loop.bucket.stats().closed).toBe(true);
    const h2 = harness();
    h2.setThrottle(loop);
    h2.runner.start();
    const again = jobs.submit('backup', { vm: vm('lin01').identity }, 'api');
    const d = await until(again.id, ['done', 'failed', 'cancelled']);
    await h2.runner.stop(10_000);
    expect(d.state).toBe('done');
    expect(lines.some((l) => l.job === again.id && String(l.msg).includes('reads unthrottled'))).toBe(true);
  });

  it('cleans up a backup whose process died before it checks', async () => {
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    const orphan = repo.catalog.beginBackup(repo.catalog.vms()[0]!.id, Number(dead), hostname());
    const h = harness();
    h.runner.start();
    const j = jobs.submit('check', {}, 'schedule:check');
    const c = await until(j.id, ['done', 'failed', 'cancelled']);
    await h.runner.stop(10_000);
    expect(c.error).toBeUndefined();
    expect(c.state).toBe('done');
    expect(repo.catalog.backup(orphan)?.state).toBe('failed');
  });
});
