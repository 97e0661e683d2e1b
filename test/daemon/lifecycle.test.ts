/**
 * The daemon's life, run as an administrator runs it (`node bin/vdbak.js
 * daemon --config F`; needs `npm run build`), on a copy of the sample store's
 * win01, with a backup schedule every two seconds and a throttle slow enough
 * (0.3 MB/s) that a backup is still reading when the test acts on it:
 * - a second daemon on the same repository is refused;
 * - SIGTERM during a backup: exit 0 within 10 s, the job back in the queue,
 *   daemon.json gone; the restarted daemon resumes the job to done;
 * - SIGHUP with an edited config: the new schedule shows in status, the API
 *   moves to its new address, and the running job continues; a bad config on
 *   SIGHUP is logged and the old one kept.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimDaemonState, readDaemonState, runningDaemon } from '../../agent/daemon/state.js';
import type { JobRow } from '../../agent/daemon/types.js';
import { sampleStore, vdbak } from '../helpers/vdbak.js';
import {
  copyVms,
  type DaemonProc,
  exitWithin,
  freePort,
  jobJson,
  killDaemon,
  startDaemon,
  statusJson,
  waitFor,
  writeConfig,
} from './daemon-helpers.js';

/** SIGTERM to exit, as the issue asks. */
const STOP_LIMIT_MS = 10_000;
const TOKEN = 'lifecycle-test-token-0123456789';

/** The pid of a process that has ended. */
function deadPid(): number {
  const r = spawnSync('sh', ['-c', 'echo $$']);
  return Number(r.stdout.toString().trim());
}

describe('daemon lifecycle', () => {
  let dir: string;
  let cfgPath: string;
  let repo: string;
  let base: Record<string, unknown>;
  const daemons: DaemonProc[] = [];

  beforeAll(async () => {
    const store = sampleStore();
    dir = mkdtempSync(join(tmpdir(), 'vdbak-lifecycle-'));
    const ds = join(dir, 'ds1');
    copyVms(store, ds, ['win01']);
    repo = join(dir, 'repo');
    mkdirSync(join(dir, 'restore'));
    cfgPath = join(dir, 'vdbak.yaml');
    base = {
      repo,
      datastores: [{ name: 'ds1', path: ds }],
      schedules: [{ name: 'often', kind: 'backup', cron: '*/2 * * * * *' }],
      throttle: { enabled: true, maxMBps: 0.3, minMBps: 0.1, startMBps: 0.3 },
      api: { listen: `127.0.0.1:${await freePort()}`, token: TOKEN },
      restoreRoots: [join(dir, 'restore')],
      log: { level: 'debug' },
      ship: { afterBackup: false },
      threads: 1,
    };
    writeConfig(cfgPath, base);
  });

  afterAll(async () => {
    for (const d of daemons) await killDaemon(d);
  });

  const runningBackup = (min = 0): JobRow | undefined => {
    const s = statusJson(cfgPath);
    return s.status?.running.find((j) => j.kind === 'backup' && (j.progress?.bytesDone ?? 0) > min);
  };

  it('refuses a second daemon, stops on SIGTERM mid-backup, resumes the job after a restart, reloads on SIGHUP', async () => {
    // ---- first start: the schedule's backup is reading -----------------------------------------
    const a = startDaemon(cfgPath, join(dir, 'daemon-a.log'));
    daemons.push(a);
    const st = await waitFor('the daemon to answer status', () => statusJson(cfgPath).running, 60_000);
    expect(st).toBe(true);
    expect(existsSync(join(repo, 'daemon.json'))).toBe(true);
    const job = await waitFor('a scheduled backup that is reading', () => runningBackup(), 60_000);
    expect(job.origin).toBe('schedule:often');

    // ---- a second daemon on the same repository is refused --------------------------------------
    const second = vdbak(['daemon', '--config', cfgPath]);
    expect(second.code, second.stderr).not.toBe(0);
    expect(second.stderr).toMatch(/already runs on .*pid \d+/);
    expect(statusJson(cfgPath).running).toBe(true);

    // ---- SIGTERM while it reads: exit 0 within 10 s, the job back in the queue -----------------
    expect(jobJson(repo, job.id).state).toBe('running');
    a.child.kill('SIGTERM');
    const end = await exitWithin(a, STOP_LIMIT_MS);
    expect(end, `the daemon did not exit within ${STOP_LIMIT_MS} ms of SIGTERM`).toBeDefined();
    expect(end).toEqual({ code: 0, signal: null });
    expect(a.logs().some((l) => l.msg === 'daemon stopped')).toBe(true);
    expect(existsSync(join(repo, 'daemon.json'))).toBe(false);
    const parked = jobJson(repo, job.id);
    expect(parked.state).toBe('queued');
    const down = statusJson(cfgPath);
    expect(down.running).toBe(false);
    expect(down.jobs?.some((j) => j.id === job.id && j.state === 'queued')).toBe(true);

    // ---- restart over a state file a crashed daemon left: it is taken over; the job runs again ---
    writeFileSync(
      join(repo, 'daemon.json'),
      JSON.stringify({ pid: deadPid(), host: hostname(), startedMs: 1, configSource: cfgPath, version: '0' }),
    );
    const b = startDaemon(cfgPath, join(dir, 'daemon-b.log'));
    daemons.push(b);
    await waitFor(
      'the interrupted job to run again',
      () => {
        const j = jobJson(repo, job.id);
        return j.attempts >= 2 && j.state !== 'queued' ? j : undefined;
      },
      60_000,
    );

    // ---- SIGHUP with a new schedule while the job runs: it shows, the job goes on ---------------
    const oldListen = (base.api as { listen: string }).listen;
    const newPort = await freePort();
    const edited = {
      ...base,
      api: { listen: `127.0.0.1:${newPort}`, token: TOKEN },
      schedules: [
        ...(base.schedules as object[]),
        { name: 'monthly-check', kind: 'check', cron: '0 8 1 * *', readData: true },
      ],
    };
    writeConfig(cfgPath, edited);
    b.child.kill('SIGHUP');
    const names = await waitFor(
      'the new schedule in status',
      () => {
        const s = statusJson(cfgPath).status?.schedules.map((x) => x.name);
        return s?.includes('monthly-check') ? s : undefined;
      },
      30_000,
    );
    expect(names).toEqual(['often', 'monthly-check']);
    const during = jobJson(repo, job.id);
    expect(['running', 'done'], `job ${job.id} after the reload: ${JSON.stringify(during)}`).toContain(during.state);
    expect(during.attempts).toBe(2);
    expect(b.logs().some((l) => l.msg === 'config reloaded')).toBe(true);
    // the API moved with the config (status found it through daemon.json); the old address is closed
    expect(JSON.parse(readFileSync(join(repo, 'daemon.json'), 'utf8')).api).toEqual({
      host: '127.0.0.1',
      port: newPort,
    });
    await expect(fetch(`http://${oldListen}/health`)).rejects.toThrow();

    // ---- a bad config on SIGHUP: logged, the old one stays -------------------------------------
    writeConfig(cfgPath, { ...edited, schedules: [{ name: 'broken', kind: 'backup', cron: '61 * * * *' }] });
    b.child.kill('SIGHUP');
    const refused = await waitFor(
      'the refused reload in the log',
      () => b.logs().find((l) => /config reload refused/.test(l.msg)),
      30_000,
    );
    expect(JSON.stringify(refused)).toMatch(/schedules\[0\]\.cron/);
    // (status --config reads the file too: put the good one back, without a SIGHUP, before asking)
    writeConfig(cfgPath, edited);
    expect(statusJson(cfgPath).status?.schedules.map((x) => x.name)).toEqual(['often', 'monthly-check']);

    // ---- the resumed job finishes; its backup is complete --------------------------------------
    const done = await waitFor(
      'the resumed job to end',
      () => {
        const j = jobJson(repo, job.id);
        return j.state === 'running' || j.state === 'queued' ? undefined : j;
      },
      120_000,
      500,
    );
    expect(done.state, JSON.stringify(done)).toBe('done');
    // ---- the job lines carry the job's id ------------------------------------------------------
    const lines = [...a.logs(), ...b.logs()].filter((l) => l.job === job.id);
    expect(lines.filter((l) => l.msg === 'job started')).toHaveLength(2);

    // ---- jobs, job and cancel through the daemon, then straight on the catalog ------------------
    const viaApi = vdbak(['jobs', '--config', cfgPath, '--state', 'done', '--json']).json<JobRow[]>();
    expect(viaApi.map((j) => j.id)).toContain(job.id);
    expect(viaApi.every((j) => j.state === 'done')).toBe(true);
    const ended = vdbak(['cancel', String(job.id), '--config', cfgPath]);
    expect(ended.code).toBe(1);
    expect(ended.stderr).toMatch(new RegExp(`job ${job.id} is already done \\[JOB_FINISHED\\]`));
    const missing = vdbak(['job', '999999', '--config', cfgPath]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/JOB_NOT_FOUND/);
    expect(vdbak(['jobs', '--config', cfgPath, '--state', 'bogus']).code).toBe(2);

    b.child.kill('SIGTERM');
    expect(await exitWithin(b, STOP_LIMIT_MS)).toEqual({ code: 0, signal: null });
    const fromCatalog = vdbak(['jobs', '--repo', repo, '--kind', 'backup', '--json']).json<JobRow[]>();
    expect(fromCatalog.find((j) => j.id === job.id)?.state).toBe('done');
    expect(vdbak(['job', String(job.id), '--repo', repo]).stdout).toMatch(/attempt 2/);
    const offline = vdbak(['cancel', String(job.id), '--repo', repo]);
    expect([offline.code, offline.stderr]).toEqual([1, expect.stringMatching(/is already done \[JOB_FINISHED\]/)]);
    const backups = vdbak(['backups', '--repo', repo, '--json']).json<{ id: number; state: string }[]>();
    expect(backups.length).toBeGreaterThan(0);
    const check = vdbak(['check', '--repo', repo]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
  });

  it('status of a daemon whose process lives but does not answer: says so, with the catalog’s jobs', async () => {
    const other = join(dir, 'hung-repo');
    expect(vdbak(['init', '--repo', other]).code).toBe(0);
    writeFileSync(join(other, 'api-token'), `${TOKEN}\n`, { mode: 0o600 });
    const port = await freePort();
    // this test's own pid: alive, and no API behind the port
    writeFileSync(
      join(other, 'daemon.json'),
      JSON.stringify({
        pid: process.pid,
        host: hostname(),
        startedMs: Date.now(),
        configSource: 'embedded defaults',
        version: '0',
        api: { host: '127.0.0.1', port },
      }),
    );
    const r = vdbak(['status', '--repo', other]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`not answering: .*127\\.0\\.0\\.1:${port}`));
    expect(r.stdout).toMatch(/\(no jobs\)/);
  });

  it('a bad config file at start: exit 2 with the problem named', () => {
    const bad = join(dir, 'bad.yaml');
    writeConfig(bad, {
      ...base,
      repo: join(dir, 'other-repo'),
      schedules: [{ name: 'x', kind: 'nope', cron: '* * * * *' }],
    });
    const r = vdbak(['daemon', '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/schedules\[0\]\.kind/);
  });
});

describe('daemon.json, the claim on a repository', () => {
  const fresh = () => mkdtempSync(join(tmpdir(), 'vdbak-state-'));
  const init = { startedMs: 1, configSource: '/etc/vdbak.yaml', version: 't' };

  it('is created, refused to a second claimer while its process lives, updated and released', () => {
    const root = fresh();
    const h = claimDaemonState(root, init);
    expect(readDaemonState(root)).toEqual({ ...init, pid: process.pid, host: hostname() });
    expect(runningDaemon(root)?.pid).toBe(process.pid);
    expect(() => claimDaemonState(root, init)).toThrow(expect.objectContaining({ code: 'DAEMON_RUNNING' }));
    h.update({ api: { host: '127.0.0.1', port: 8470 } });
    expect(readDaemonState(root)?.api).toEqual({ host: '127.0.0.1', port: 8470 });
    h.release();
    expect(existsSync(join(root, 'daemon.json'))).toBe(false);
    expect(runningDaemon(root)).toBeUndefined();
  });

  it('a dead process’s file is taken over; a fresh unreadable one is not (a daemon is writing it); an old one is', () => {
    const root = fresh();
    const path = join(root, 'daemon.json');
    writeFileSync(path, JSON.stringify({ ...init, pid: deadPid(), host: hostname() }));
    expect(runningDaemon(root)).toBeUndefined();
    claimDaemonState(root, init).release();
    writeFileSync(path, '');
    expect(() => claimDaemonState(root, init)).toThrow(/is being written/);
    const old = new Date(Date.now() - 60_000);
    utimesSync(path, old, old);
    const h = claimDaemonState(root, init);
    expect(readDaemonState(root)?.pid).toBe(process.pid);
    // release leaves a file that is no longer ours alone
    writeFileSync(path, JSON.stringify({ ...init, pid: process.pid + 1, host: 'elsewhere' }));
    h.release();
    expect(existsSync(path)).toBe(true);
  });
});
