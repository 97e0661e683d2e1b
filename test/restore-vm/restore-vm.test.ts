/**
 * Whole-VM restore end to end: the sample store's VMs (win01: NTFS on GPT,
 * monolithicSparse with a snapshot delta; lin01: ext4 on MBR,
 * streamOptimized) and the regions fixture's vm1 (NTFS with compressed,
 * sparse and named-stream files, and its .vmx/.vmsd/.vmxf/.nvram) are backed
 * up with the CLI, then restored in every format. Oracles: the source chain
 * converted by `qemu-img convert`, with the free space of its NTFS volumes
 * zeroed by `ntfswipe --unused` (ntfs-3g leaves old bytes in clusters it
 * freed; the ext fixtures never wrote theirs), so that `qemu-img compare` of
 * the whole disk is the "every allocated byte" test; `qemu-img check`,
 * `fls -r -p` per partition, `e2fsck -fn`, `ntfsfix -n`.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveBackup } from '../../agent/browse/refs.js';
import type { JobProgress } from '../../agent/daemon/types.js';
import { openRepo, type Repo } from '../../agent/repo.js';
import { dryRunRestoreVm, restoreVm } from '../../agent/restore-vm/restore-vm.js';
import { DISK_FORMATS, type DiskFormat } from '../../agent/restore-vm/writers/types.js';
import { Catalog } from '../../catalog/catalog.js';
import { fixture } from '../helpers/fixtures.js';
import { newRepo, sampleStore, vdbakOk } from '../helpers/vdbak.js';

const QEMU_FORMAT: Record<DiskFormat, string> = {
  raw: 'raw',
  'vmdk-flat': 'vmdk',
  'vmdk-sparse': 'vmdk',
  qcow2: 'qcow2',
};

function sh(cmd: string, args: string[]): { code: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

function ok(cmd: string, args: string[]): string {
  const r = sh(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.out}`);
  return r.out;
}

interface Partition {
  start: number;
  size: number;
}

function partitions(raw: string): Partition[] {
  const j = JSON.parse(ok('sfdisk', ['--json', raw])) as { partitiontable: { partitions: Partition[] } };
  return j.partitiontable.partitions.map((p) => ({ start: p.start, size: p.size }));
}

/** `fls -r -p` of a partition, sorted (the order of a directory's entries is the filesystem's). */
function fls(raw: string, p: Partition): string[] {
  return ok('fls', ['-r', '-p', '-o', String(p.start), raw])
    .split('\n')
    .filter((l) => l.trim() !== '')
    .sort();
}

/** Copies a partition out of a raw disk (e2fsck and ntfsfix take a volume). */
function extract(raw: string, p: Partition, out: string): string {
  ok('dd', [`if=${raw}`, `of=${out}`, 'bs=512', `skip=${p.start}`, `count=${p.size}`, 'status=none']);
  return out;
}

/** Zeroes the unused clusters of every NTFS partition of a raw disk (in place). */
function wipeNtfsFreeSpace(raw: string, scratch: string): void {
  let wiped = 0;
  for (const p of partitions(raw)) {
    if (!/NTFS/.test(sh('fsstat', ['-o', String(p.start), raw]).out)) continue;
    extract(raw, p, scratch);
    ok('ntfswipe', ['--unused', '--force', '--quiet', scratch]);
    ok('dd', [`if=${scratch}`, `of=${raw}`, 'bs=512', `seek=${p.start}`, 'conv=notrunc', 'status=none']);
    wiped++;
  }
  expect(wiped).toBe(1);
}

interface Vm {
  name: string;
  /** The leaf of the source disk's chain. */
  leaf: string;
  fs: 'ntfs' | 'ext4';
}

describe('restore-vm', () => {
  const store = sampleStore();
  const vmFix = fixture('regions-vm.sh');
  const vms: Vm[] = [
    { name: 'win01', leaf: join(store, 'win01', 'win01-000001.vmdk'), fs: 'ntfs' },
    { name: 'lin01', leaf: join(store, 'lin01', 'lin01.vmdk'), fs: 'ext4' },
    { name: 'vm1', leaf: join(vmFix, 'store', 'vm1', 'vm1.vmdk'), fs: 'ntfs' },
  ];
  const work = mkdtempSync(join(tmpdir(), 'vdbak-restore-vm-'));
  let repoPath: string;
  let repo: Repo;
  const sourceRaw = new Map<string, string>();

  beforeAll(() => {
    repoPath = newRepo('restore-vm');
    vdbakOk(['backup', '--repo', repoPath, join(store, 'win01'), join(store, 'lin01'), join(vmFix, 'store', 'vm1')]);
    repo = openRepo(repoPath, { readonly: true });
    for (const vm of vms) {
      const raw = join(work, `${vm.name}-source.raw`);
      ok('qemu-img', ['convert', '-O', 'raw', vm.leaf, raw]);
      if (vm.fs === 'ntfs') wipeNtfsFreeSpace(raw, join(work, `${vm.name}-wipe.img`));
      sourceRaw.set(vm.name, raw);
    }
  });
  afterAll(() => {
    repo?.close();
    // several disk images per VM and format: hundreds of MiB
    rmSync(work, { recursive: true, force: true });
    if (repoPath) rmSync(dirname(repoPath), { recursive: true, force: true });
  });

  for (const vm of vms) {
    for (const format of DISK_FORMATS) {
      it(`${vm.name} as ${format}: every byte of the source disk, a valid image`, async () => {
        const backup = resolveBackup(repo.catalog, vm.name);
        const to = join(work, `${vm.name}-${format}`);
        const r = await restoreVm(repo.catalog, repo.target, backup, { to, format });
        expect(r.disks).toHaveLength(1);
        const d = r.disks[0]!;
        expect(d.incomplete).toEqual([]);
        expect(r.status).toBe('success');
        expect(d.regions).toBe(true);
        const path = d.outputs[0]!;
        const qf = QEMU_FORMAT[format];
        const cmp = sh('qemu-img', ['compare', '-f', qf, '-F', 'raw', path, sourceRaw.get(vm.name)!]);
        expect(cmp.code, cmp.out).toBe(0);
        if (format === 'qcow2' || format === 'vmdk-sparse') {
          const chk = sh('qemu-img', ['check', '-f', qf, path]);
          expect(chk.code, chk.out).toBe(0);
        }
        // sparse: the rebuilt image holds about what was stored, not the virtual size
        const info = JSON.parse(ok('qemu-img', ['info', '--output=json', '-f', qf, path])) as {
          'virtual-size': number;
          'actual-size': number;
        };
        expect(info['virtual-size']).toBe(d.size);
        expect(info['actual-size']).toBeLessThan(d.bytes + 8 * 1024 * 1024);
      });
    }

    it(`${vm.name}: its filesystems list like the source's (fls -r -p) and pass ${vm.fs === 'ext4' ? 'e2fsck -fn' : 'ntfsfix -n'}`, () => {
      const rebuilt = join(
        work,
        `${vm.name}-raw`,
        readdirSync(join(work, `${vm.name}-raw`)).find((f) => f.endsWith('.raw'))!,
      );
      const src = sourceRaw.get(vm.name)!;
      const parts = partitions(src);
      expect(partitions(rebuilt)).toEqual(parts);
      let checked = 0;
      for (const [i, p] of parts.entries()) {
        const srcList = sh('fls', ['-r', '-p', '-o', String(p.start), src]);
        if (srcList.code !== 0) continue; // the empty EFI partition holds no filesystem
        expect(fls(rebuilt, p)).toEqual(fls(src, p));
        const vol = extract(rebuilt, p, join(work, `${vm.name}-p${i}.img`));
        const check = vm.fs === 'ext4' ? sh('e2fsck', ['-fn', vol]) : sh('ntfsfix', ['-n', vol]);
        expect(check.code, check.out).toBe(0);
        checked++;
      }
      expect(checked).toBe(1);
    });
  }

  it('restores the configuration files beside the disks and patches them for the new name', async () => {
    const backup = resolveBackup(repo.catalog, 'vm1');
    const to = join(work, 'vm1-renamed');
    const r = await restoreVm(repo.catalog, repo.target, backup, {
      to,
      name: 'vm1-copy',
      format: 'vmdk-sparse',
      datastoreMap: [{ from: 'ds1', to: 'ds2' }],
    });
    expect(r.status).toBe('success');
    expect(r.config.map((c) => c.name).sort()).toEqual(['vm1.nvram', 'vm1.vmsd', 'vm1.vmx', 'vm1.vmxf']);
    expect(r.diskFiles).toEqual([{ old: 'vm1.vmdk', new: 'vm1-copy.vmdk' }]);
    expect(r.patch?.changes).toBeGreaterThan(0);
    const files = readdirSync(to).sort();
    expect(files).toContain('vm1-copy.vmdk');
    expect(files.some((f) => f.endsWith('.log'))).toBe(false);
    const vmx = files.find((f) => f.endsWith('.vmx'))!;
    const text = readFileSync(join(to, vmx), 'utf8');
    expect(text).toMatch(/^displayName = "vm1-copy"$/m);
    expect(text).toMatch(/^scsi0:0\.fileName = "vm1-copy\.vmdk"$/m);
    expect(text).not.toMatch(/generatedAddress = "00:0c:29:12:34:56"/);
    // the datastore map moved the VM's datastore paths; its identity is new
    expect(text).toMatch(/^workingDir = "\/vmfs\/volumes\/ds2\/vm1"$/m);
    expect(text).toMatch(/^uuid\.bios = "56 4d /m);
    expect(text).not.toMatch(/^uuid\.bios = "56 4d 12 34 56 78 9a bc-de f0 12 34 56 78 9a bc"$/m);
    // the patched descriptor still opens
    expect(sh('qemu-img', ['check', join(to, 'vm1-copy.vmdk')]).code).toBe(0);
  });

  it('--dry-run shows disks, files and the patch plan and writes nothing', async () => {
    const backup = resolveBackup(repo.catalog, 'vm1');
    const to = join(work, 'vm1-dry');
    const r = await dryRunRestoreVm(repo.catalog, repo.target, backup, { to, name: 'vm1-dry', format: 'qcow2' });
    expect(r.status).toBe('dry-run');
    expect(r.disks[0]).toMatchObject({ name: 'vm1-dry.qcow2', complete: true });
    expect(r.patch?.text).toMatch(/displayName/);
    expect(existsSync(to)).toBe(false);
  });

  it('refuses to overwrite without --overwrite (nothing written), replaces with it', async () => {
    const backup = resolveBackup(repo.catalog, 'lin01');
    const to = join(work, 'lin01-twice');
    await restoreVm(repo.catalog, repo.target, backup, { to, format: 'qcow2' });
    const before = readFileSync(join(to, 'lin01.qcow2'));
    const e = await restoreVm(repo.catalog, repo.target, backup, { to, format: 'qcow2' }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'RESTORE_VM_EXISTS', image: join(to, 'lin01.qcow2') });
    expect(readFileSync(join(to, 'lin01.qcow2')).equals(before)).toBe(true);
    const again = await restoreVm(repo.catalog, repo.target, backup, { to, format: 'qcow2', overwrite: true });
    expect(again.status).toBe('success');
    expect(sh('qemu-img', ['compare', join(to, 'lin01.qcow2'), sourceRaw.get('lin01')!]).code).toBe(0);
  });

  it('reports progress up to every stored byte; a cancelled restore removes what it wrote', async () => {
    const backup = resolveBackup(repo.catalog, 'win01');
    const seen: JobProgress[] = [];
    const r = await restoreVm(repo.catalog, repo.target, backup, {
      to: join(work, 'win01-progress'),
      format: 'raw',
      onProgress: (p) => seen.push(p),
    });
    expect(seen[0]?.phase).toBe('configuration files');
    expect(seen.at(-1)).toMatchObject({ phase: 'done', bytesDone: r.disks[0]!.bytes, bytesTotal: r.disks[0]!.bytes });
    const ac = new AbortController();
    const to = join(work, 'win01-cancelled');
    const e = await restoreVm(repo.catalog, repo.target, backup, {
      to,
      format: 'qcow2',
      signal: ac.signal,
      // cancelled as soon as it starts: the disk file is already created when the rebuild sees it
      onProgress: () => ac.abort(new Error('operator cancelled')),
    }).catch((x: unknown) => x);
    expect(e).toMatchObject({ kind: 'CancelledError', code: 'RESTORE_CANCELLED' });
    // nothing left: not the disk file, not the folder the restore made
    expect(existsSync(to)).toBe(false);
  });

  it('a name that would leave the folder is refused', async () => {
    const backup = resolveBackup(repo.catalog, 'lin01');
    for (const name of ['../escape', 'a/b', '..']) {
      await expect(
        restoreVm(repo.catalog, repo.target, backup, { to: join(work, 'never'), name }),
      ).rejects.toMatchObject({ code: 'RESTORE_VM_BAD_NAME' });
    }
    expect(existsSync(join(work, 'never'))).toBe(false);
    expect(existsSync(join(work, 'escape.vmdk'))).toBe(false);
  });

  it('a backup without disk regions (made before they existed) is restored but reported incomplete', async () => {
    // an older backup: the same catalog without the regions pseudo-volumes
    const old = join(work, 'old-repo');
    cpSync(repoPath, old, { recursive: true });
    const cat = Catalog.open(join(old, 'catalog.db'));
    cat.db.exec(
      `DELETE FROM backup_volumes WHERE volume_id IN (SELECT id FROM volumes WHERE part_index = -1);
       DELETE FROM versions WHERE volume_id IN (SELECT id FROM volumes WHERE part_index = -1);`,
    );
    cat.close();
    const oldRepo = openRepo(old, { readonly: true });
    try {
      const backup = resolveBackup(oldRepo.catalog, 'lin01');
      const r = await restoreVm(oldRepo.catalog, oldRepo.target, backup, {
        to: join(work, 'lin01-old'),
        format: 'raw',
      });
      expect(r.status).toBe('incomplete');
      expect(r.disks[0]!.complete).toBe(false);
      expect(r.disks[0]!.incomplete[0]).toMatch(/no disk regions/);
      // what the backup has is there: the files' bytes at their places, not the ext4 metadata
      expect(sh('qemu-img', ['compare', join(work, 'lin01-old', 'lin01.raw'), sourceRaw.get('lin01')!]).code).not.toBe(
        0,
      );
    } finally {
      oldRepo.close();
    }
  });
});
