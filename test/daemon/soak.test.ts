/**
 * Soak: the built daemon (`npm run build` first) backs up both VMs of a copy
 * of the sample store every few seconds while the test changes lin01's files
 * between backups (debugfs on its ext4, as the demo does: the disk image is
 * rewritten and renamed into place, as a VM's storage would change it), asks
 * for restores through the API (into a restore root, and a download), and
 * stops and restarts the daemon in the middle, while catalog shipping and
 * checks run on their own schedules. At the end `check --read-data`
 * passes and every restored file equals what was in the guest at that
 * backup's time (SHA-256; the contents are the test's own, and the sample
 * store's source trees for win01).
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../agent/api/client.js';
import type { BackupResult } from '../../agent/backup/job.js';
import type { JobRow } from '../../agent/daemon/types.js';
import { compareTrees, sampleStore, snapshotTree, vdbak } from '../helpers/vdbak.js';
import {
  copyVms,
  type DaemonProc,
  exitWithin,
  freePort,
  killDaemon,
  startDaemon,
  statusJson,
  waitFor,
  writeConfig,
} from './daemon-helpers.js';

const TOKEN = 'soak-test-token-0123456789abcdef';
const ROUNDS = 5;
/** The round after whose change the daemon is stopped and started again. */
const RESTART_AFTER = 3;
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** Rewrites files inside lin01's ext4 with debugfs (rm + write), then renames the new image into place. */
function changeLin01(vmdk: string, work: string, files: Record<string, Buffer>): void {
  mkdirSync(work, { recursive: true });
  const cmds: string[] = [];
  for (const [guestPath, data] of Object.entries(files)) {
    const local = join(work, guestPath.replace(/\//g, '_'));
    writeFileSync(local, data);
    cmds.push(`debugfs -w -R "rm ${guestPath}" part.img >/dev/null 2>&1 || true`);
    cmds.push(`debugfs -w -R "write ${local} ${guestPath}" part.img >/dev/null 2>&1`);
  }
  const script = `set -e; cd "${work}"; qemu-img convert -O raw "${vmdk}" lin.raw
    start=$(sfdisk --json lin.raw | jq '.partitiontable.partitions[0].start')
    size=$(sfdisk --json lin.raw | jq '.partitiontable.partitions[0].size')
    dd if=lin.raw of=part.img bs=512 skip=$start count=$size status=none
    ${cmds.join('\n    ')}
    e2fsck -fn part.img >/dev/null
    dd if=part.img of=lin.raw bs=512 seek=$start conv=notrunc status=none
    qemu-img convert -f raw -O vmdk -o subformat=streamOptimized lin.raw "${vmdk}.new"
    mv "${vmdk}.new" "${vmdk}"; rm -f lin.raw part.img`;
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`changing lin01 failed: ${r.stderr}`);
}

describe('daemon soak', () => {
  let dir: string;
  let cfgPath: string;
  let repo: string;
  let store: string;
  let linVmdk: string;
  let port: number;
  const daemons: DaemonProc[] = [];

  beforeAll(async () => {
    store = sampleStore();
    dir = mkdtempSync(join(tmpdir(), 'vdbak-soak-'));
    const ds = join(dir, 'ds1');
    copyVms(store, ds, ['win01', 'lin01']);
    linVmdk = join(ds, 'lin01', 'lin01.vmdk');
    repo = join(dir, 'repo');
    mkdirSync(join(dir, 'restore'));
    cfgPath = join(dir, 'vdbak.yaml');
    port = await freePort();
    writeConfig(cfgPath, {
      repo,
      datastores: [{ name: 'ds1', path: ds }],
      schedules: [
        { name: 'backups', kind: 'backup', cron: '*/3 * * * * *' },
        { name: 'ship', kind: 'ship', cron: '*/20 * * * * *' },
        { name: 'check', kind: 'check', cron: '*/15 * * * * *' },
      ],
      throttle: { enabled: false },
      api: { listen: `127.0.0.1:${port}`, token: TOKEN },
      restoreRoots: [join(dir, 'restore')],
      log: { level: 'info' },
      threads: 2,
    });
  });

  afterAll(async () => {
    for (const d of daemons) await killDaemon(d);
  });

  it('scheduled backups, changes, restores and a restart: check passes and every restore is exact', async () => {
    const api = new ApiClient(`http://127.0.0.1:${port}/`, TOKEN);
    let daemon = startDaemon(cfgPath, join(dir, 'daemon-1.log'));
    daemons.push(daemon);
    await waitFor('the daemon', () => statusJson(cfgPath).running, 60_000);

    /** The first lin01 backup job queued after `sinceMs` that completed; its backup id. */
    const linBackupAfter = (sinceMs: number) =>
      waitFor(
        `a lin01 backup queued after ${new Date(sinceMs).toISOString()}`,
        async () => {
          const { items } = await api.jobs({ kind: 'backup', limit: 200 });
          const j = items
            .filter((x) => x.createdMs > sinceMs && String((x.params as { vm: string }).vm).includes('lin01'))
            .sort((a, b) => a.id - b.id)
            .find((x) => x.state === 'done' || x.state === 'failed');
          if (j && j.state !== 'done') throw new Error(`job ${j.id} failed: ${JSON.stringify(j.error)}`);
          return j ? (j.result as BackupResult).backupId : undefined;
        },
        60_000,
        300,
      );

    // what /home/bob holds at each lin01 backup: relative path → sha256
    const bob: Record<string, string> = {
      'notes.txt': sha(readFileSync(join(store, 'sources', 'lin01', 'home', 'bob', 'notes.txt'))),
    };
    const expected = new Map<number, Record<string, string>>();
    expected.set(await linBackupAfter(0), { ...bob });

    const restoreJobs: { job: JobRow; backup: number; to: string }[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const notes = Buffer.from(`round ${round}: remember the milk\n${'x'.repeat(round * 1000)}\n`);
      const blob = randomBytes(150_000 + round * 7_000);
      changeLin01(linVmdk, join(dir, 'work'), {
        '/home/bob/notes.txt': notes,
        [`/home/bob/round${round}.bin`]: blob,
      });
      const since = Date.now();
      bob['notes.txt'] = sha(notes);
      bob[`round${round}.bin`] = sha(blob);
      if (round === RESTART_AFTER) {
        // a restore requested while backups keep coming (restores go first), then a stop and a start
        const first = [...expected.keys()][0]!;
        const to = join(dir, 'restore', `lin-${first}-early`);
        restoreJobs.push({
          job: await api.submitRestore({ backup: String(first), path: '/d0p1/home/bob', to }),
          backup: first,
          to,
        });
        daemon.child.kill('SIGTERM');
        expect(await exitWithin(daemon, 10_000)).toEqual({ code: 0, signal: null });
        daemon = startDaemon(cfgPath, join(dir, `daemon-${round}.log`));
        daemons.push(daemon);
        await waitFor('the restarted daemon', () => statusJson(cfgPath).running, 60_000);
      }
      expected.set(await linBackupAfter(since), { ...bob });
    }

    // ---- restores through the API: every lin01 backup into the restore root ------------------
    for (const backup of expected.keys()) {
      const to = join(dir, 'restore', `lin-${backup}`);
      restoreJobs.push({
        job: await api.submitRestore({ backup: String(backup), path: '/d0p1/home/bob', to }),
        backup,
        to,
      });
    }
    const winBackups = vdbak(['backups', 'win01', '--repo', repo, '--json']).json<{ id: number }[]>();
    expect(winBackups.length).toBeGreaterThan(1);
    const winTo = join(dir, 'restore', 'win01');
    const winJob = await api.submitRestore({ backup: 'win01', path: '/d0p2/Users/ana', to: winTo });
    for (const r of [...restoreJobs.map((x) => x.job), winJob]) {
      const end = await waitFor(
        `restore job ${r.id}`,
        async () => {
          const j = await api.job(r.id);
          return j.state === 'queued' || j.state === 'running' ? undefined : j;
        },
        60_000,
        300,
      );
      expect(end.state, JSON.stringify(end)).toBe('done');
    }

    // ---- a download: a file's bytes straight from the API -------------------------------------
    const lastLin = Math.max(...expected.keys());
    const res = await fetch(
      `http://127.0.0.1:${port}/backups/${lastLin}/download?path=${encodeURIComponent('/d0p1/home/bob/notes.txt')}`,
      { headers: { Authorization: `Bearer ${TOKEN}` } },
    );
    expect(res.status).toBe(200);
    expect(sha(Buffer.from(await res.arrayBuffer()))).toBe(expected.get(lastLin)!['notes.txt']);

    daemon.child.kill('SIGTERM');
    expect(await exitWithin(daemon, 10_000)).toEqual({ code: 0, signal: null });

    // ---- every restored file equals the guest's at that backup ---------------------------------
    for (const r of restoreJobs) {
      const got: Record<string, string> = {};
      // a folder restores under its own name
      for (const [path, e] of snapshotTree(join(r.to, 'bob'))) if (e.type === 'file') got[path] = e.sha256!;
      expect(got, `lin01 backup ${r.backup} restored into ${r.to}`).toEqual(expected.get(r.backup));
    }
    const winDiffs = compareTrees(
      snapshotTree(join(store, 'sources', 'win01', 'Users', 'ana')),
      snapshotTree(join(winTo, 'ana')),
      {
        extra: (p) => p.includes('Zone.Identifier'),
      },
    );
    expect(winDiffs).toEqual([]);
    // each round's lin01 backup is its own: the versions differ
    expect(new Set([...expected.values()].map((v) => v['notes.txt'])).size).toBe(ROUNDS + 1);

    // ---- no job failed (backups, restores, and whatever ship/check runs the schedules made) ------
    const all = vdbak(['jobs', '--repo', repo, '--limit', '1000', '--json']).json<JobRow[]>();
    expect(all.filter((j) => j.state === 'failed').map((j) => `${j.id} ${j.kind}: ${j.error?.message}`)).toEqual([]);

    // ---- the repository is sound ---------------------------------------------------------------
    const check = vdbak(['check', '--read-data', '--repo', repo]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
  });
});
