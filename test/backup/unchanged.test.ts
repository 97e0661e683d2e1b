/**
 * The unchanged-VM shortcut (agent/backup/source-stamp.ts): a backup of a VM
 * none of whose files changed since its latest backup keeps that backup's
 * volumes without reading them — and only then. A file changed even by one
 * byte, with its modification time put back by `touch -r` (its change time
 * moves), is read again; files changed moments before a backup give no stamp;
 * a backup with a transient warning is never kept; `rescan` always reads.
 *
 * The VM is a copy of test/fixtures/regions-vm.sh's VMware folder: GPT, an
 * empty EFI partition kept raw (a warning every reading repeats), NTFS with
 * resident files (their bytes live in the MFT, hence in the disk's regions),
 * and .vmx/.vmsd/.vmxf/.nvram configuration files.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  cpSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { backupVm, type BackupOptions, type BackupResult } from '../../agent/backup/job.js';
import { createPool } from '../../agent/backup/pool.js';
import { STAMP_SETTLE_ENV, STAMP_SETTLE_MS, settleMs } from '../../agent/backup/source-stamp.js';
import { openRepo } from '../../agent/repo.js';
import { resolveSources } from '../../agent/source/resolve.js';
import { Catalog } from '../../catalog/catalog.js';
import { fixture } from '../helpers/fixtures.js';
import { newRepo, vdbak, vdbakOk } from '../helpers/vdbak.js';

/** A resident NTFS file's content, found once in the image: flipping a byte of it changes the disk's regions. */
const RESIDENT = Buffer.from('note 17\n');
const FLIPPED = Buffer.from('Note 17\n');

const pool = createPool(1);
let dir: string;
let repo: string;
let vmDir: string;
let vmdk: string;
let first: BackupResult;
let second: BackupResult;
let third: BackupResult;

/** A copy of the fixture VM in a folder of its own. */
function copyVm(name: string): string {
  const to = join(dir, name, 'vm1');
  cpSync(join(fixture('regions-vm.sh'), 'store', 'vm1'), to, { recursive: true });
  return to;
}

/** One backup of the VM in `folder`, in process; settled: the fixture was just copied, so no settle time. */
async function backup(folder: string, opts: Partial<BackupOptions> = {}): Promise<BackupResult> {
  const [source] = resolveSources([folder]);
  const r = openRepo(repo);
  try {
    return await backupVm(r, source!, { pool, stampSettleMs: 0, ...opts });
  } finally {
    r.catalog.close();
  }
}

function withCatalog<T>(fn: (cat: Catalog) => T): T {
  const cat = Catalog.open(join(repo, 'catalog.db'), { readonly: true });
  try {
    return fn(cat);
  } finally {
    cat.close();
  }
}

/** Every version a backup holds, volume by volume: name, path and version id. */
function contents(backupId: number): string[] {
  return withCatalog((cat) =>
    cat
      .backupVolumes(backupId)
      .flatMap((v) => [...cat.walk(backupId, v.volumeId)].map((e) => `${v.name}:${e.path}#${e.id}`)),
  );
}

/** The bytes of a disk's regions as a backup holds them. */
function regionBytes(backupId: number): Buffer {
  return vdbakOk(['cat', '--repo', repo, String(backupId), '/d0/regions.raw']).bytes;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vdbak-unchanged-'));
  repo = newRepo('unchanged');
  vmDir = copyVm('a');
  vmdk = join(vmDir, 'vm1.vmdk');
  first = await backup(vmDir);
  second = await backup(vmDir);
  third = await backup(vmDir);
});

afterAll(async () => {
  await pool.close();
  rmSync(dir, { recursive: true, force: true });
  rmSync(join(repo, '..'), { recursive: true, force: true });
});

describe('a VM none of whose files changed', () => {
  test('the first backup reads it and stamps what it read; the EFI partition is a warning every reading repeats', () => {
    expect(first.unchangedSince).toBeUndefined();
    expect(first.sourceStamp).toMatch(/^[0-9a-f]{64}$/);
    expect(first.bytesRead).toBeGreaterThan(0);
    expect(first.transientWarnings).toBe(0);
    expect(first.readWarnings).toEqual([
      expect.stringMatching(/no filesystem vdbak reads; kept as its allocated bytes/),
    ]);
  });

  test('the next backup keeps it: nothing read, no row, the same versions, volumes, regions and warnings', () => {
    expect(second.unchangedSince).toBe(first.backupId);
    expect(second.sourceStamp).toBe(first.sourceStamp);
    expect(second.bytesRead).toBe(0);
    expect(second.newChunks).toBe(0);
    expect(second.bytesSent).toBe(0);
    expect(second.changed).toBe(0);
    expect(second.unchanged).toBe(first.unchanged + first.changed);
    for (const k of ['files', 'entries', 'bytesScanned', 'totalBytes'] as const) expect(second[k]).toBe(first[k]);
    expect(second.volumes).toEqual(first.volumes);
    expect(second.regions).toEqual(first.regions);
    expect(second.configFiles).toEqual(first.configFiles);
    expect(second.warningList).toEqual(first.readWarnings);
    expect(contents(second.backupId)).toEqual(contents(first.backupId));
    expect(contents(second.backupId).length).toBeGreaterThan(60);
    withCatalog((cat) => {
      const added = cat.db
        .prepare('SELECT count(*) AS n FROM versions WHERE first_backup = ?')
        .get(second.backupId) as {
        n: bigint;
      };
      expect(Number(added.n)).toBe(0);
      const strip = <T extends { backupId?: number }>(rows: T[]) => rows.map(({ backupId: _, ...r }) => r);
      expect(strip(cat.backupVolumes(second.backupId))).toEqual(strip(cat.backupVolumes(first.backupId)));
      expect(cat.backupDisks(second.backupId)).toEqual(cat.backupDisks(first.backupId));
      expect(cat.backup(second.backupId)?.state).toBe('complete');
    });
  });

  test('a third keeps it too, and names the backup that last read the files', () => {
    expect(third.unchangedSince).toBe(first.backupId);
    expect(contents(third.backupId)).toEqual(contents(first.backupId));
    // what the kept backups hold is what was read: the VM's configuration, byte for byte
    const vmx = vdbakOk(['cat', '--repo', repo, String(third.backupId), '/config/vm1.vmx']).bytes;
    expect(vmx.equals(readFileSync(join(vmDir, 'vm1.vmx')))).toBe(true);
  });

  test('rescan reads every disk all the same (and finds nothing changed)', async () => {
    const paths: string[] = [];
    const r = await backup(vmDir, {
      rescan: true,
      onProgress: (s) => {
        if (s.currentPath) paths.push(s.currentPath);
      },
    });
    expect(r.unchangedSince).toBeUndefined();
    // the filesystems were walked (a kept backup visits no entry)
    expect(paths.length).toBeGreaterThan(0);
    expect(r.changed).toBe(0);
    expect(r.unchanged).toBe(first.unchanged + first.changed);
  });
});

describe('crash safety and the latest-backup rule', () => {
  test('killed just before completing, a kept backup is not visible; the next run keeps the same backup', () => {
    const env = {
      VDBAK_STAMP_SETTLE_MS: '0',
      VDBAK_TEST_KILL_BACKUP_AT: 'before-complete',
      VDBAK_SHIP_AFTER_BACKUP: '0',
    };
    const before = withCatalog((cat) => cat.latestCompleteBackup(cat.backup(first.backupId)!.vmId)!);
    const killed = vdbak(['backup', '--repo', repo, '--json', vmDir], { env });
    expect(killed.code).not.toBe(0);
    const latest = withCatalog((cat) => cat.backups({ states: ['complete', 'running', 'failed'] }).at(-1)!);
    expect(latest.state).toBe('running');
    const after = vdbakOk(['backup', '--repo', repo, '--json', vmDir], {
      env: { VDBAK_STAMP_SETTLE_MS: '0', VDBAK_SHIP_AFTER_BACKUP: '0' },
    }).jsonLines<BackupResult>()[0]!;
    // kept: the same backup the killed run was keeping, named by the last one that read the files
    expect(after.unchangedSince).toBe((before.stats?.unchangedSince as number | undefined) ?? before.id);
    expect(contents(after.backupId)).toEqual(contents(before.id));
    withCatalog((cat) => expect(cat.backup(latest.id)?.state).toBe('failed'));
  });

  test('the backup that last read the files forgotten, a kept backup names the one it keeps', async () => {
    const kept = await backup(vmDir);
    const readBy = kept.unchangedSince!;
    expect(readBy).toBeLessThan(kept.backupId);
    const cat = Catalog.open(join(repo, 'catalog.db'));
    try {
      cat.forgetBackups([readBy]);
    } finally {
      cat.close();
    }
    const next = await backup(vmDir);
    expect(next.unchangedSince).toBe(kept.backupId);
    expect(contents(next.backupId)).toEqual(contents(kept.backupId));
  });

  test('completeKept copies only onto the latest complete backup of the VM', () => {
    const cat = Catalog.open(join(repo, 'catalog.db'));
    try {
      const vmId = cat.backup(first.backupId)!.vmId;
      const latest = cat.latestCompleteBackup(vmId)!;
      expect(latest.id).toBeGreaterThan(first.backupId);
      const b = cat.beginBackup(vmId, process.pid, 'h');
      // the first backup is no longer the latest: nothing is written, the backup stays running
      expect(cat.completeKept(b, first.backupId, {})).toBe(false);
      expect(cat.backup(b)?.state).toBe('running');
      expect(cat.backupVolumes(b)).toEqual([]);
      expect(cat.completeKept(b, latest.id, { kept: true })).toBe(true);
      expect(cat.backup(b)?.state).toBe('complete');
      expect(cat.backupVolumes(b).length).toBe(cat.backupVolumes(latest.id).length);
    } finally {
      cat.close();
    }
  });
});

describe('a changed file is read again', () => {
  test('one byte of the image changed, its modification time put back with touch -r: read again, the change kept', async () => {
    const ref = join(dir, 'times-ref');
    writeFileSync(ref, '');
    execFileSync('touch', ['-r', vmdk, ref]);
    const before = statSync(vmdk, { bigint: true });
    const bytes = readFileSync(vmdk);
    const at = bytes.indexOf(RESIDENT);
    expect(at).toBeGreaterThan(0);
    expect(bytes.indexOf(RESIDENT, at + 1)).toBe(-1);
    expect(regionBytes(first.backupId).includes(RESIDENT)).toBe(true);
    // one byte, in place (same inode, same size)
    const fd = openSync(vmdk, 'r+');
    try {
      writeSync(fd, FLIPPED, 0, 1, at);
    } finally {
      closeSync(fd);
    }
    execFileSync('touch', ['-r', ref, vmdk]);
    const after = statSync(vmdk, { bigint: true });
    expect(after.ino).toBe(before.ino);
    expect(after.size).toBe(before.size);
    expect(after.mtimeNs).toBe(before.mtimeNs);
    expect(after.ctimeNs).not.toBe(before.ctimeNs);

    const r = await backup(vmDir);
    expect(r.unchangedSince).toBeUndefined();
    expect(r.sourceStamp).not.toBe(first.sourceStamp);
    expect(r.regionBytesRead).toBeGreaterThan(0);
    const regions = regionBytes(r.backupId);
    expect(regions.includes(FLIPPED)).toBe(true);
    expect(regions.includes(RESIDENT)).toBe(false);
    // and the backup after it keeps this one
    const next = await backup(vmDir);
    expect(next.unchangedSince).toBe(r.backupId);
  });
});

describe('the change time alone', () => {
  test('a chmod of the image is read again once; its regions, the same bytes, take the new stamp and are kept after', async () => {
    chmodSync(vmdk, 0o640);
    const r = await backup(vmDir);
    expect(r.unchangedSince).toBeUndefined();
    expect(r.regionBytesRead).toBeGreaterThan(0);
    // read without the shortcut: the disk's own stamp now matches its regions
    const again = await backup(vmDir, { rescan: true });
    expect(again.unchangedSince).toBeUndefined();
    expect(again.regionBytesRead).toBe(0);
    expect(again.regions).toEqual(r.regions);
  });
});

describe('files changed moments before a backup', () => {
  test('give no stamp: the next backup reads the VM again, its regions too', async () => {
    // copied just now: every file changed well within the settle time
    const fresh = copyVm('b');
    const settle = { stampSettleMs: 10 * 60_000 };
    const a = await backup(fresh, settle);
    expect(a.sourceStamp).toBeUndefined();
    const b = await backup(fresh, settle);
    expect(b.unchangedSince).toBeUndefined();
    expect(b.sourceStamp).toBeUndefined();
    // the disk has no stamp either: its regions are read again
    expect(b.regionBytesRead).toBeGreaterThan(0);
  });

  test('the settle time: the option, else the environment, else the default; nonsense gives the default', () => {
    expect(settleMs(undefined, {})).toBe(STAMP_SETTLE_MS);
    expect(settleMs(undefined, { [STAMP_SETTLE_ENV]: '0' })).toBe(0);
    expect(settleMs(5, { [STAMP_SETTLE_ENV]: '0' })).toBe(5);
    for (const bad of ['', 'soon', '-1', 'NaN']) {
      expect(settleMs(undefined, { [STAMP_SETTLE_ENV]: bad })).toBe(STAMP_SETTLE_MS);
    }
    expect(settleMs(1e12, {})).toBe(86_400_000);
  });
});

describe('the CLI', () => {
  test('says why a backup read nothing, and --rescan reads the VM anyway', () => {
    const folder = copyVm('cli');
    const r = newRepo('unchanged-cli');
    const env = { VDBAK_STAMP_SETTLE_MS: '0', VDBAK_SHIP_AFTER_BACKUP: '0' };
    const first = vdbakOk(['backup', '--repo', r, '--json', folder], { env }).jsonLines<BackupResult>()[0]!;
    expect(first.unchangedSince).toBeUndefined();
    const kept = vdbakOk(['backup', '--repo', r, folder], { env });
    expect(kept.stdout).toContain(`unchanged since backup ${first.backupId}: no file of the VM changed`);
    const rescanned = vdbakOk(['backup', '--repo', r, '--json', '--rescan', folder], {
      env,
    }).jsonLines<BackupResult>()[0]!;
    expect(rescanned.unchangedSince).toBeUndefined();
    expect(rescanned.regionBytesRead).toBe(0); // read again, and found its regions as they were
    expect(rescanned.unchanged).toBe(first.entries);
    const plain = vdbakOk(['backup', '--repo', r, folder], { env }).stdout;
    expect(plain).toContain('unchanged since backup');
  });
});
