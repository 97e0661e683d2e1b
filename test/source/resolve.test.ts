/**
 * resolveSources on real files: images made by qemu-img (snapshot chains,
 * split and flat VMDKs, qcow2 backing chains), .vmx/.vmsd texts shaped like
 * VMware's, and the demo's sample volume store. Which loose images are
 * leaves is checked against qemu-img's own view of parents and extents.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isImageName } from '../../agent/source/images.js';
import { resolveSources, type VmSource } from '../../agent/source/resolve.js';
import { NotFoundError, UnsupportedError } from '../../parsers/errors.js';
import { fixture, ROOT, run } from '../helpers/fixtures.js';
import { catchTyped, expectTypedOrOk, mutate, newTally } from '../helpers/fuzz.js';

let tmp: string;

function qemuImg(...args: string[]): void {
  run('qemu-img', ['create', '-q', ...args]);
}

function vmxText(lines: Record<string, string>): string {
  return `.encoding = "UTF-8"\nconfig.version = "8"\nvirtualHW.version = "19"\n${Object.entries(lines)
    .map(([k, v]) => `${k} = "${v}"`)
    .join('\n')}\n`;
}

const WIN_UUID = '56 4d 2f 3a 1c 9e 8b 7a-12 34 56 78 9a bc de f0';

/** A Windows VM folder: boot disk with a snapshot, an NVMe data disk, a CD-ROM, a removed disk, a .vmsd. */
function makeWindowsVm(dir: string, extra: Record<string, string> = {}): string {
  mkdirSync(dir, { recursive: true });
  qemuImg('-f', 'vmdk', join(dir, 'win01.vmdk'), '4M');
  qemuImg('-f', 'vmdk', '-b', 'win01.vmdk', '-F', 'vmdk', join(dir, 'win01-000001.vmdk'));
  qemuImg('-f', 'vmdk', '-o', 'subformat=monolithicFlat', join(dir, 'win01_1.vmdk'), '2M');
  const vmx = join(dir, 'win01.vmx');
  writeFileSync(
    vmx,
    vmxText({
      displayName: 'win01',
      guestOS: 'windows2019srv-64',
      'uuid.bios': WIN_UUID,
      'vc.uuid': '52 7e 4c 11 22 33 44 55-66 77 88 99 aa bb cc dd',
      'scsi0.present': 'TRUE',
      'scsi0.virtualDev': 'lsisas1068',
      'scsi0:0.present': 'TRUE',
      'scsi0:0.fileName': 'win01-000001.vmdk',
      'scsi0:1.present': 'FALSE',
      'scsi0:1.fileName': 'gone.vmdk',
      'sata0.present': 'TRUE',
      'sata0:1.present': 'TRUE',
      'sata0:1.deviceType': 'cdrom-image',
      'sata0:1.fileName': '/isos/missing.iso',
      'nvme0.present': 'TRUE',
      'nvme0:0.present': 'TRUE',
      'nvme0:0.fileName': 'win01_1.vmdk',
      'nvme0:0.mode': 'independent-persistent',
      ...extra,
    }),
  );
  writeFileSync(
    join(dir, 'win01.vmsd'),
    [
      '.encoding = "UTF-8"',
      'snapshot.lastUID = "1"',
      'snapshot.current = "1"',
      'snapshot0.uid = "1"',
      'snapshot0.filename = "win01-Snapshot1.vmsn"',
      'snapshot0.displayName = "before |22patch|22"',
      'snapshot0.createTimeHigh = "398204"',
      'snapshot0.createTimeLow = "-1245446528"',
      'snapshot0.numDisks = "1"',
      'snapshot0.disk0.fileName = "win01.vmdk"',
      'snapshot0.disk0.node = "scsi0:0"',
      'snapshot.numSnapshots = "1"',
      '',
    ].join('\n'),
  );
  return vmx;
}

/**
 * qemu-img's view of which files in `dir` are some image's parent or extent:
 * every image that is not one of them, and that qemu-img opens on its own
 * (a split VMDK's -s001 extent it does not), is a leaf.
 */
function qemuLeaves(dir: string): string[] {
  const files = readdirSync(dir)
    .filter(isImageName)
    .map((n) => join(dir, n));
  const named = new Set<string>();
  for (const f of files) {
    const r = spawnSync('qemu-img', ['info', '--output=json', f], { encoding: 'utf8' });
    if (r.status !== 0) {
      named.add(realpathSync(f));
      continue;
    }
    const info = JSON.parse(r.stdout) as {
      'full-backing-filename'?: string;
      'format-specific'?: { type: string; data: { extents?: { filename: string }[] } };
    };
    if (info['full-backing-filename']) named.add(realpathSync(resolve(dir, info['full-backing-filename'])));
    for (const e of info['format-specific']?.data.extents ?? []) {
      const p = realpathSync(resolve(dir, e.filename));
      if (p !== realpathSync(f)) named.add(p);
    }
  }
  return files.filter((f) => !named.has(realpathSync(f))).sort();
}

beforeAll(() => {
  tmp = realpathSync(mkdtempSync(join(tmpdir(), 'vdbak-source-')));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('a VM folder with a .vmx', () => {
  let vmx: string;
  let dir: string;
  beforeAll(() => {
    dir = join(tmp, 'vms', 'win01');
    vmx = makeWindowsVm(dir);
  });

  it('gives one VM whose disks are the current leaves, in slot order, with format and mode', () => {
    const [vm, ...rest] = resolveSources([dir]);
    expect(rest).toEqual([]);
    expect(vm).toMatchObject({
      name: 'win01',
      identity: 'vmware:564d2f3a-1c9e-8b7a-1234-56789abcdef0',
      kind: 'vmware',
      configPath: vmx,
      folder: dir,
      guestOS: 'windows2019srv-64',
    });
    expect(vm?.disks).toEqual([
      { slot: 'scsi0:0', path: join(dir, 'win01-000001.vmdk'), format: 'vmdk' },
      { slot: 'nvme0:0', path: join(dir, 'win01_1.vmdk'), format: 'vmdk', mode: 'independent-persistent' },
    ]);
    // the leaf is what qemu-img sees as the top of the chain
    const chain = JSON.parse(
      run('qemu-img', ['info', '--output=json', '--backing-chain', vm?.disks[0]?.path ?? '']),
    ) as { filename: string }[];
    expect(chain.map((c) => basename(c.filename))).toEqual(['win01-000001.vmdk', 'win01.vmdk']);
  });

  it('reads the .vmsd next to it for the record', () => {
    const snaps = resolveSources([vmx])[0]?.snapshots;
    expect(snaps?.current).toBe('1');
    expect(snaps?.snapshots).toEqual([
      {
        index: 0,
        uid: '1',
        displayName: 'before "patch"',
        filename: 'win01-Snapshot1.vmsn',
        createTime: new Date((398204 * 2 ** 32 + (-1245446528 >>> 0)) / 1000).toISOString(),
        disks: [{ fileName: 'win01.vmdk', node: 'scsi0:0' }],
      },
    ]);
  });

  it('merges the folder, its .vmx and its own disk named again into one VM', () => {
    const vms = resolveSources([dir, vmx, join(dir, 'win01-000001.vmdk'), `${dir}/`]);
    expect(vms).toHaveLength(1);
    expect(vms[0]?.warnings.join('\n')).toContain('backed up once, as scsi0:0');
  });

  it('falls back to identity by vc.uuid, then by path, when uuid.bios is missing', () => {
    const d = join(tmp, 'vc-only');
    const v = makeWindowsVm(d, { 'uuid.bios': '' });
    expect(resolveSources([v])[0]?.identity).toBe('vc:527e4c11-2233-4455-6677-8899aabbccdd');
    const d2 = join(tmp, 'no-uuid');
    const v2 = makeWindowsVm(d2, { 'uuid.bios': '', 'vc.uuid': '' });
    const vm = resolveSources([v2])[0];
    expect(vm?.identity).toBe(`vmx:${v2}`);
    expect(vm?.warnings.join('\n')).toContain('neither uuid.bios nor vc.uuid');
  });

  it('warns about a loose leaf image in the folder that no .vmx uses', () => {
    const d = join(tmp, 'with-stray');
    makeWindowsVm(d);
    qemuImg('-f', 'qcow2', join(d, 'stray.qcow2'), '1M');
    const vm = resolveSources([d])[0];
    expect(vm?.warnings.join('\n')).toContain('stray.qcow2 is attached to no .vmx');
    expect(vm?.warnings.join('\n')).not.toContain('win01.vmdk is attached');
  });
});

describe('disk file names in a .vmx', () => {
  it('a missing disk is a NotFoundError naming the .vmx and the slot', () => {
    const d = join(tmp, 'missing-disk');
    const vmx = makeWindowsVm(d, { 'scsi0:1.present': 'TRUE', 'scsi0:1.fileName': 'gone.vmdk' });
    const e = catchTyped(() => resolveSources([vmx]));
    expect(e).toBeInstanceOf(NotFoundError);
    expect(e.code).toBe('VMX_DISK_MISSING');
    expect(e.image).toBe(vmx);
    expect(e.details.slot).toBe('scsi0:1');
    expect(e.message).toContain('scsi0:1');
    expect(e.message).toContain('gone.vmdk');
  });

  it('an ESXi datastore path that is not here is found next to the .vmx, with a warning', () => {
    const d = join(tmp, 'esxi-copy');
    const vmx = makeWindowsVm(d, {
      'nvme0:0.fileName': '/vmfs/volumes/5f1e-datastore2/win01/win01_1.vmdk',
      'sata0:0.present': 'TRUE',
      'sata0:0.fileName': 'C:\\Users\\ana\\Virtual Machines\\win01\\data.vmdk',
    });
    qemuImg('-f', 'vmdk', join(d, 'data.vmdk'), '1M');
    const vm = resolveSources([vmx])[0];
    expect(vm?.disks.map((x) => [x.slot, x.path])).toEqual([
      ['scsi0:0', join(d, 'win01-000001.vmdk')],
      ['sata0:0', join(d, 'data.vmdk')],
      ['nvme0:0', join(d, 'win01_1.vmdk')],
    ]);
    expect(vm?.warnings.filter((w) => w.includes('not here'))).toHaveLength(2);
  });

  it('absolute and parent-relative names are followed', () => {
    const shared = join(tmp, 'shared-disks');
    mkdirSync(shared, { recursive: true });
    qemuImg('-f', 'vmdk', join(shared, 'data.vmdk'), '1M');
    const d = join(tmp, 'rel');
    const vmx = makeWindowsVm(d, {
      'scsi0:2.present': 'TRUE',
      'scsi0:2.fileName': '../shared-disks/data.vmdk',
      'scsi0:3.present': 'TRUE',
      'scsi0:3.fileName': join(shared, 'data.vmdk'),
    });
    const vm = resolveSources([vmx])[0];
    expect(vm?.disks.map((x) => [x.slot, x.path])).toEqual([
      ['scsi0:0', join(d, 'win01-000001.vmdk')],
      ['scsi0:2', join(shared, 'data.vmdk')],
      ['scsi0:3', join(shared, 'data.vmdk')],
      ['nvme0:0', join(d, 'win01_1.vmdk')],
    ]);
    expect(vm?.warnings.join('\n')).toContain('scsi0:3 and scsi0:2 name the same file');
  });
});

describe('a folder of loose images', () => {
  let dir: string;
  beforeAll(() => {
    dir = join(tmp, 'loose');
    mkdirSync(dir);
    qemuImg('-f', 'qcow2', join(dir, 'base.qcow2'), '2M');
    qemuImg('-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'mid.qcow2'));
    qemuImg('-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', join(dir, 'top.qcow2'));
    qemuImg('-f', 'raw', join(dir, 'disk.raw'), '1M');
    qemuImg('-f', 'qcow2', join(dir, 'cloud.img'), '1M');
    qemuImg('-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', join(dir, 'split.vmdk'), '1M');
    qemuImg('-f', 'vmdk', '-o', 'subformat=monolithicFlat', join(dir, 'flat.vmdk'), '1M');
    qemuImg('-f', 'vmdk', '-o', 'subformat=streamOptimized', join(dir, 'a.vmdk'), '1M');
    qemuImg('-f', 'vmdk', '-b', 'a.vmdk', '-F', 'vmdk', join(dir, 'a-000001.vmdk'));
    qemuImg('-f', 'vmdk', '-b', 'a-000001.vmdk', '-F', 'vmdk', join(dir, 'a-000002.vmdk'));
    // an absolute backing name still counts as a parent in this folder
    qemuImg('-f', 'qcow2', join(dir, 'gold.qcow2'), '1M');
    qemuImg('-f', 'qcow2', '-b', join(dir, 'gold.qcow2'), '-F', 'qcow2', join(dir, 'clone.qcow2'));
    writeFileSync(join(dir, 'notes.txt'), 'not an image\n');
  });

  it('gives one VM per leaf, the leaves qemu-img sees', () => {
    const vms = resolveSources([dir]);
    const leaves = vms.map((v) => v.disks[0]?.path ?? '').sort();
    expect(leaves).toEqual(qemuLeaves(dir));
    expect(leaves.map((p) => basename(p))).toEqual([
      'a-000002.vmdk',
      'clone.qcow2',
      'cloud.img',
      'disk.raw',
      'flat.vmdk',
      'split.vmdk',
      'top.qcow2',
    ]);
  });

  it('names each by its file (without the snapshot suffix) and forces the format its name promises', () => {
    const vms = resolveSources([dir]);
    const by = new Map(vms.map((v) => [basename(v.disks[0]?.path ?? ''), v] as const));
    expect(by.get('a-000002.vmdk')?.name).toBe('a');
    expect(by.get('a-000002.vmdk')?.identity).toBe(`image:${join(dir, 'a.vmdk')}`);
    expect(by.get('top.qcow2')).toMatchObject({
      name: 'top',
      kind: 'image',
      folder: dir,
      identity: `image:${join(dir, 'top.qcow2')}`,
      disks: [{ slot: 'disk0', path: join(dir, 'top.qcow2'), format: 'qcow2' }],
    });
    expect(by.get('disk.raw')?.disks[0]?.format).toBe('raw');
    expect(by.get('cloud.img')?.disks[0]?.format).toBeUndefined();
    expect(by.get('flat.vmdk')?.disks[0]?.format).toBe('vmdk');
    expect(new Set(vms.map((v) => v.name)).size).toBe(vms.length);
  });

  it('a folder with one leaf is named after the folder; an orphan extent is reported, not backed up', () => {
    const d = join(tmp, 'db01');
    mkdirSync(d);
    qemuImg('-f', 'vmdk', join(d, 'disk.vmdk'), '1M');
    qemuImg('-f', 'raw', join(d, 'lost-flat.vmdk'), '1M');
    writeFileSync(join(d, 'disk-ctk.vmdk'), Buffer.alloc(512));
    const vms = resolveSources([d]);
    expect(vms.map((v) => [v.name, basename(v.disks[0]?.path ?? '')])).toEqual([['db01', 'disk.vmdk']]);
    const w = vms[0]?.warnings.join('\n') ?? '';
    expect(w).toContain('lost-flat.vmdk looks like an extent');
    expect(w).toContain('disk-ctk.vmdk looks like an extent');
  });

  it('a named image is one VM, even a parent in a chain (the user asked for it)', () => {
    const vms = resolveSources([join(dir, 'mid.qcow2')]);
    expect(vms.map((v) => [v.name, v.disks[0]?.path])).toEqual([['mid', join(dir, 'mid.qcow2')]]);
    const viaLink = join(tmp, 'link-to-top.qcow2');
    symlinkSync(join(dir, 'top.qcow2'), viaLink);
    // the same image through a symlink is the same VM
    expect(resolveSources([join(dir, 'top.qcow2'), viaLink])).toHaveLength(1);
  });
});

describe('names and identities in one run', () => {
  it('two copies of a VM (same displayName and uuid.bios) get distinct names and identities', () => {
    const a = makeWindowsVm(join(tmp, 'copies', 'a'));
    const b = makeWindowsVm(join(tmp, 'copies', 'b'));
    const vms = resolveSources([a, b]);
    expect(vms.map((v) => v.name)).toEqual(['win01', 'win01-2']);
    expect(vms.map((v) => v.identity)).toEqual([
      `vmware:564d2f3a-1c9e-8b7a-1234-56789abcdef0@${a}`,
      `vmware:564d2f3a-1c9e-8b7a-1234-56789abcdef0@${b}`,
    ]);
    expect(vms[1]?.warnings.join('\n')).toContain('"win01-2"');
  });

  it('a display name with control characters or "~" is made safe', () => {
    const v = makeWindowsVm(join(tmp, 'tilde'), { displayName: 'web~1|0A' });
    const vm = resolveSources([v])[0];
    expect(vm?.name).toBe('web-1');
    expect(vm?.warnings.join('\n')).toContain('is used as "web-1"');
  });
});

describe('arguments that name nothing usable', () => {
  it('a template (.vmtx) is a VM; hidden AppleDouble files are not', () => {
    const d = join(tmp, 'template');
    const vmx = makeWindowsVm(d);
    const vmtx = join(d, 'win01.vmtx');
    writeFileSync(vmtx, readFileSync(vmx));
    rmSync(vmx);
    writeFileSync(join(d, '._win01.vmtx'), Buffer.alloc(4096, 0));
    writeFileSync(join(d, '._win01.vmdk'), Buffer.alloc(4096, 0));
    const vms = resolveSources([d]);
    expect(vms.map((v) => [v.configPath, v.disks.length])).toEqual([[vmtx, 2]]);
    expect(vms[0]?.warnings).toEqual([]);
  });

  it('a missing path, an ISO, an empty folder', () => {
    expect(catchTyped(() => resolveSources([join(tmp, 'nope')])).code).toBe('SOURCE_NOT_FOUND');
    const iso = join(tmp, 'x.iso');
    writeFileSync(iso, 'CD001');
    const e = catchTyped(() => resolveSources([iso]));
    expect(e).toBeInstanceOf(UnsupportedError);
    expect(e.code).toBe('SOURCE_KIND');
    const empty = join(tmp, 'empty');
    mkdirSync(empty);
    expect(catchTyped(() => resolveSources([empty])).code).toBe('SOURCE_NO_VM');
  });

  it('a folder whose images are all parents of each other (a loop) has no leaf', () => {
    const d = join(tmp, 'loop');
    mkdirSync(d);
    qemuImg('-f', 'qcow2', join(d, 'x.qcow2'), '1M');
    qemuImg('-f', 'qcow2', '-b', 'x.qcow2', '-F', 'qcow2', join(d, 'y.qcow2'));
    // rewrite x's header to name y: x → y → x
    run('qemu-img', ['rebase', '-u', '-b', 'y.qcow2', '-F', 'qcow2', join(d, 'x.qcow2')]);
    expect(catchTyped(() => resolveSources([d])).code).toBe('SOURCE_NO_LEAF');
  });

  it('a .vmx too large to be one is refused before it is read', () => {
    const d = join(tmp, 'huge');
    mkdirSync(d);
    writeFileSync(join(d, 'huge.vmx'), Buffer.alloc(5 * 1024 * 1024, 0x23));
    expect(catchTyped(() => resolveSources([d])).code).toBe('VMX_TOO_LARGE');
  });
});

describe('mutated .vmx files on disk', () => {
  it('resolveSources returns VMs whose disks exist, or throws a typed error', () => {
    const d = join(tmp, 'fuzz');
    const vmx = makeWindowsVm(d);
    const base = readFileSync(vmx);
    const tally = newTally();
    for (const { index, bytes } of mutate(base, 400, 5)) {
      writeFileSync(vmx, bytes);
      expectTypedOrOk(tally, index, () => {
        for (const vm of resolveSources([d])) {
          for (const disk of vm.disks) expect(existsSync(disk.path)).toBe(true);
        }
      });
    }
    expect(tally.ok).toBeGreaterThan(0);
    expect(tally.typed).toBeGreaterThan(0);
  });
});

describe('the demo sample store', () => {
  let store: string;
  beforeAll(() => {
    const script = readFileSync(join(ROOT, 'scripts', 'make-sample-store.sh'));
    store = fixture('sample-store.sh', [createHash('sha256').update(script).digest('hex').slice(0, 16)]);
  });

  const summary = (vms: VmSource[]) => vms.map((v) => [v.name, v.kind, v.disks.map((d) => basename(d.path))]);

  it('a VM folder without .vmx: its leaf is the snapshot delta', () => {
    const vms = resolveSources([join(store, 'win01')]);
    expect(summary(vms)).toEqual([['win01', 'image', ['win01-000001.vmdk']]]);
    expect(vms[0]?.identity).toBe(`image:${join(realpathSync(store), 'win01', 'win01.vmdk')}`);
    expect(vms[0]?.warnings).toEqual([]);
  });

  it('the store folder is a datastore: one VM per VM folder, the source trees ignored', () => {
    expect(summary(resolveSources([store]))).toEqual([
      ['lin01', 'image', ['lin01.vmdk']],
      ['win01', 'image', ['win01-000001.vmdk']],
    ]);
  });

  it('the delta named on its own and its folder are one VM', () => {
    const vms = resolveSources([join(store, 'win01', 'win01-000001.vmdk'), join(store, 'win01')]);
    expect(summary(vms)).toEqual([['win01', 'image', ['win01-000001.vmdk']]]);
  });
});
