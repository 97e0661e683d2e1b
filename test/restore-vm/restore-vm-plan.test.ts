/**
 * How restore-vm names what it writes, on backups made by hand with the
 * Catalog API: several disks, snapshot leaves, two disks with one base name,
 * --name, the configuration pseudo-disk left out, and every disk of a VM
 * written.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initRepo, openRepo, type Repo } from '../../agent/repo.js';
import { planRestoreVm, restoreVm } from '../../agent/restore-vm/restore-vm.js';
import type { BackupRow } from '../../catalog/catalog.js';
import { vdbak } from '../helpers/vdbak.js';

const MiB = 1024 * 1024;

function backupWithDisks(repo: Repo, vm: string, images: string[]): BackupRow {
  const cat = repo.catalog;
  const vmId = cat.upsertVm({ identity: `test:${vm}`, name: vm, kind: 'test' });
  const id = cat.beginBackup(vmId, process.pid, 'test');
  cat.startSeen();
  images.forEach((imagePath, i) => {
    const diskId = cat.upsertDisk(vmId, `scsi0:${i}`, i);
    cat.addBackupDisk(id, diskId, { imagePath, format: 'vmdk', size: (i + 1) * MiB });
  });
  // the configuration pseudo-disk is not a disk to rebuild
  const configDisk = cat.upsertDisk(vmId, 'config', -1);
  cat.addBackupDisk(id, configDisk, { imagePath: `/ds/${vm}`, format: 'config', size: 0 });
  cat.completeBackup(id, {});
  return cat.backup(id)!;
}

describe('restore-vm names', () => {
  let repo: Repo;
  let work: string;

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'vdbak-restore-vm-plan-'));
    initRepo(join(work, 'repo'));
    repo = openRepo(join(work, 'repo'));
  });
  afterAll(() => {
    repo.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('names disks after their source disks, without the snapshot suffix; --name names them NEW, NEW_1 …', () => {
    const b = backupWithDisks(repo, 'app', [
      '/ds/app/app-000002.vmdk',
      '/ds/app/app_1-000001.vmdk',
      '/ds/app/logs.vmdk',
    ]);
    const plan = planRestoreVm(repo.catalog, b, { to: join(work, 'app') });
    expect(plan.disks.map((d) => d.name)).toEqual(['app.vmdk', 'app_1.vmdk', 'logs.vmdk']);
    expect(plan.diskFiles).toEqual([
      { old: 'app-000002.vmdk', new: 'app.vmdk' },
      { old: 'app_1-000001.vmdk', new: 'app_1.vmdk' },
      { old: 'logs.vmdk', new: 'logs.vmdk' },
    ]);
    const named = planRestoreVm(repo.catalog, b, { to: join(work, 'app'), name: 'app2', format: 'vmdk-flat' });
    expect(named.disks.map((d) => d.outputs.map((o) => o.slice(work.length + 1)))).toEqual([
      ['app/app2.vmdk', 'app/app2-flat.vmdk'],
      ['app/app2_1.vmdk', 'app/app2_1-flat.vmdk'],
      ['app/app2_2.vmdk', 'app/app2_2-flat.vmdk'],
    ]);
  });

  it('two disks with one base name get distinct files; hostile names become one safe component', () => {
    const b = backupWithDisks(repo, 'dup', ['/ds1/vm/disk.vmdk', '/ds2/vm/disk.vmdk', '/ds/vm/..\u0000.qcow2']);
    const plan = planRestoreVm(repo.catalog, b, { to: join(work, 'dup'), format: 'qcow2' });
    const names = plan.disks.map((d) => d.name);
    expect(names[0]).toBe('disk.qcow2');
    expect(names[1]).toBe('disk_2.qcow2');
    expect(new Set(names).size).toBe(3);
    for (const d of plan.disks) {
      expect(d.outputs[0]).toBe(join(work, 'dup', d.name));
      expect(d.name).not.toMatch(/[/\0]/);
    }
  });

  it('writes every disk of the VM, each of its own size; a backup with no regions is incomplete', async () => {
    const b = backupWithDisks(repo, 'two', ['/ds/two/two.vmdk', '/ds/two/two_1.vmdk']);
    const to = join(work, 'two');
    const r = await restoreVm(repo.catalog, repo.target, b, { to, format: 'raw' });
    expect(r.status).toBe('incomplete');
    expect(r.disks.map((d) => [d.name, d.size, d.complete])).toEqual([
      ['two.raw', MiB, false],
      ['two_1.raw', 2 * MiB, false],
    ]);
    expect(readdirSync(to).sort()).toEqual(['two.raw', 'two_1.raw']);
    expect(existsSync(join(to, 'config'))).toBe(false);
  });

  it("a guest's file name never writes control characters to the terminal", () => {
    const b = backupWithDisks(repo, 'esc', ['/ds/esc/esc.vmdk']);
    const cat = repo.catalog;
    // a file of the guest that could not be read at backup time is named in the report
    const vol = cat.upsertVolume(cat.upsertDisk(b.vmId, 'scsi0:0', 0), 1, 'd0p1');
    cat.addBackupVolume(b.id, vol, { offset: 0, length: MiB, fsType: 'ext4', mode: 'files' });
    cat.insertVersion(vol, '/evil\u001b]0;owned\u0007\u001b[2J.txt', b.id, {
      fsId: '12',
      type: 'file',
      size: 4096,
      mode: 0o644,
      uid: 0,
      gid: 0,
      nlink: 1,
      mtimeNs: 0n,
      atimeNs: 0n,
      ctimeNs: 0n,
      runs: [{ fileOffset: 0, volumeOffset: 4096, length: 4096 }],
      meta: { readError: { code: 'IO', message: 'gone' } },
    });
    const r = vdbak(['restore-vm', '--repo', join(work, 'repo'), String(b.id), '--to', join(work, 'esc'), '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/could not be read at backup time: \/d0p1\/evil\?\]0;owned\?\?\[2J\.txt/);
    expect(r.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/);
  });
});
