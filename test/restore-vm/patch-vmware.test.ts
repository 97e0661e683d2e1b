/**
 * The patcher on a restored VMware VM folder (issue 7 §3): every patched
 * field read back with our own readers (agent/source/vmx.ts, vmsd.ts, the
 * VMDK descriptor parser), every other line byte-identical, and the
 * renamed snapshot chain opened by qemu-img (it follows the renamed
 * parentFileNameHint and reads the data; it does not compare CIDs: block/vmdk.c
 * compiles that check out unless CHECK_CID is defined) and by our disk reader,
 * which refuses a parentCID that is not its parent's CID, as VMware does.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  applyPatch,
  formatPlan,
  patchFolder,
  planJson,
  planPatch,
  type DiskRename,
  type PatchPlan,
} from '../../agent/restore-vm/patch/index.js';
import { normaliseUuid, parseVmx } from '../../agent/source/vmx.js';
import { parseVmsd } from '../../agent/source/vmsd.js';
import { parseDictionary } from '../../agent/source/dictionary.js';
import { openDisk } from '../../parsers/disk/open.js';
import { parseDescriptor, type Descriptor } from '../../parsers/disk/vmdk/descriptor.js';
import { errorsFor, LimitError, ChainError, isVdbakError, CorruptError } from '../../parsers/errors.js';
import { fixture, ROOT, run } from '../helpers/fixtures.js';
import { DISK_FILES, makeVmFolder, snapshotFolder, untouchedLines, VMSD, VMX } from './patch-fixture.js';

const CHAIN_RENAMES: Record<string, string> = {
  'win01.vmdk': 'new01.vmdk',
  'win01-000001.vmdk': 'new01-000001.vmdk',
  'win01-000002.vmdk': 'new01-000002.vmdk',
  'data.vmdk': 'new01_1.vmdk',
  'data-flat.vmdk': 'new01_1-flat.vmdk',
};
const DS_MAP = [{ from: 'ds1', to: 'ds2' }];

function diskFiles(renames: Record<string, string>, files: readonly string[] = DISK_FILES): DiskRename[] {
  return files.map((f) => ({ old: f, new: renames[f] ?? f }));
}

/** The descriptor of a .vmdk: the file itself, or the text embedded at sector 1 of a sparse one. */
function descriptorOf(path: string): Descriptor {
  const b = readFileSync(path);
  const err = errorsFor({ image: path, layer: 'vmdk' });
  if (b.subarray(0, 4).toString('latin1') === 'KDMV') {
    const at = Number(b.readBigUInt64LE(28)) * 512;
    const len = Number(b.readBigUInt64LE(36)) * 512;
    return parseDescriptor(b.subarray(at, at + len), err, at);
  }
  return parseDescriptor(b, err);
}

function descriptorText(path: string): string {
  const b = readFileSync(path);
  if (b.subarray(0, 4).toString('latin1') !== 'KDMV') return b.toString('latin1');
  const at = Number(b.readBigUInt64LE(28)) * 512;
  const len = Number(b.readBigUInt64LE(36)) * 512;
  return b
    .subarray(at, at + len)
    .toString('latin1')
    .replace(/\0+$/, '');
}

function changedKeys(plan: PatchPlan, file: string): Set<string> {
  const f = plan.files.find((p) => p.path.endsWith(`/${file}`));
  return new Set((f?.changes ?? []).map((c) => c.field.toLowerCase()));
}

function typed(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a typed error');
}

describe('a restored VM whose snapshot chain comes back renamed, under a new name, on another datastore', () => {
  const dir = makeVmFolder(CHAIN_RENAMES);
  const before = snapshotFolder(dir);
  const opts = {
    name: 'new01',
    datastoreMap: DS_MAP,
    diskFiles: diskFiles(CHAIN_RENAMES),
    targetFolder: '/vmfs/volumes/ds2/new01',
  };
  const plan = planPatch(dir, opts);
  const oldDescriptors = Object.fromEntries(
    ['new01.vmdk', 'new01-000001.vmdk', 'new01-000002.vmdk', 'new01_1.vmdk', 'sata.vmdk', 'nvme.vmdk', 'ide.vmdk'].map(
      (f) => [f, { parsed: descriptorOf(join(dir, f)), text: descriptorText(join(dir, f)) }],
    ),
  );

  it('plans without writing, and the plan names each change', () => {
    expect(snapshotFolder(dir)).toEqual(before);
    // a removed (not present) disk is only mapped, without a warning
    expect(plan.warnings).toEqual([]);
    const text = formatPlan(plan);
    for (const field of [
      'displayName',
      'uuid.bios',
      'scsi0:0.fileName',
      'SCSI0:1.FILENAME',
      'ethernet0.generatedAddress',
      'parentCID',
      'parentFileNameHint',
      'ddb.uuid',
      'snapshot0.disk0.fileName',
      'extent 0',
    ]) {
      expect(text).toContain(field);
    }
    const json = JSON.parse(JSON.stringify(planJson(plan))) as ReturnType<typeof planJson>;
    expect(json.files.find((f) => f.file === 'win01.vmx')?.renameTo).toBe('new01.vmx');
    expect(json.renames.map((r) => r.to).sort()).toEqual([
      'new01-Snapshot1.vmsn',
      'new01-Snapshot2.vmsn',
      'new01.nvram',
      'new01.vmxf',
    ]);
    expect(json.files.find((f) => f.file === 'new01.vmdk')?.inPlace).toEqual({ offset: 512, length: 20 * 512 });
  });

  it('applies: the files named after the VM follow the new name', async () => {
    await applyPatch(plan);
    const names = readdirSync(dir).sort();
    expect(names).toEqual(
      [
        'new01.vmx',
        'new01.vmsd',
        'new01.nvram',
        'new01.vmxf',
        'new01-Snapshot1.vmsn',
        'new01-Snapshot2.vmsn',
        ...DISK_FILES.map((f) => CHAIN_RENAMES[f] ?? f),
      ].sort(),
    );
  });

  it('.vmx: name, identities, disks, datastore paths, MACs, derived and state files', () => {
    const text = readFileSync(join(dir, 'new01.vmx'), 'utf8');
    const vmx = parseVmx(text, 'new01.vmx');
    const e = (k: string) => vmx.entries.get(k)?.value;
    expect(vmx.displayName).toBe('new01');
    expect(vmx.uuidBios).toBeDefined();
    expect(vmx.uuidBios).not.toBe(normaliseUuid('56 4d 12 34 56 78 9a bc-de f0 12 34 56 78 9a bc'));
    expect(vmx.uuidLocation).toBe(vmx.uuidBios);
    expect(e('uuid.bios')).toMatch(/^56 4d( [0-9a-f]{2}){6}-[0-9a-f]{2}( [0-9a-f]{2}){7}$/);
    expect(e('vc.uuid')).toMatch(/^52( [0-9a-f]{2}){7}-[0-9a-f]{2}( [0-9a-f]{2}){7}$/);
    expect(vmx.vcUuid).not.toBe(normaliseUuid('52 9e 11 22 33 44 55 66-77 88 99 aa bb cc dd ee'));
    expect(Object.fromEntries(vmx.disks.map((d) => [d.slot, d.fileName]))).toEqual({
      'scsi0:0': 'new01-000002.vmdk',
      'scsi0:1': 'new01_1.vmdk',
      'sata0:0': 'sata.vmdk',
      'nvme0:0': 'nvme.vmdk',
      'ide0:0': 'ide.vmdk',
    });
    expect(e('sata0:1.filename')).toBe('[ds2] iso/win.iso');
    expect(e('scsi0:2.filename')).toBe('/vmfs/volumes/ds2/win01/removed.vmdk');
    expect(e('workingdir')).toBe('/vmfs/volumes/ds2/win01');
    expect(e('ethernet0.generatedaddress')).toBeUndefined();
    expect(e('ethernet0.generatedaddressoffset')).toBeUndefined();
    expect(e('ethernet0.addresstype')).toBe('generated');
    expect(e('ethernet1.address')).toBe('00:50:56:01:02:03');
    expect(e('sched.swap.derivedname')).toBeUndefined();
    expect(e('checkpoint.vmstate')).toBe('');
    expect(e('nvram')).toBe('new01.nvram');
    expect(e('extendedconfigfile')).toBe('new01.vmxf');
    expect(e('annotation')).toBe('line one\nline two with a "quote"');
    expect(vmx.warnings).toEqual([]);
    // every line the plan does not name is byte-identical, in the same order
    const keys = changedKeys(plan, 'win01.vmx');
    expect(untouchedLines(text, keys)).toEqual(untouchedLines(VMX, keys));
    expect(text).toContain('SCSI0:1.FILENAME   =   "new01_1.vmdk"   # odd case and spacing\n');
  });

  it('.vmsd: both snapshots kept, their disks and state files renamed, ids unchanged', () => {
    const text = readFileSync(join(dir, 'new01.vmsd'), 'utf8');
    const vmsd = parseVmsd(text, 'new01.vmsd');
    expect(vmsd.current).toBe('2');
    expect(vmsd.snapshots.map((s) => [s.uid, s.parent, s.filename, s.disks])).toEqual([
      ['1', undefined, 'new01-Snapshot1.vmsn', [{ fileName: 'new01.vmdk', node: 'scsi0:0' }]],
      ['2', '1', 'new01-Snapshot2.vmsn', [{ fileName: 'new01-000001.vmdk', node: 'scsi0:0' }]],
    ]);
    const keys = changedKeys(plan, 'win01.vmsd');
    expect(untouchedLines(text, keys)).toEqual(untouchedLines(VMSD, keys));
    expect(keys).toEqual(
      new Set(['snapshot0.filename', 'snapshot0.disk0.filename', 'snapshot1.filename', 'snapshot1.disk0.filename']),
    );
  });

  it('.vmdk: fresh CIDs, parentCID = the parent’s new CID, hints, extents, ddb.uuid and longContentID', () => {
    const d = (f: string) => descriptorOf(join(dir, f));
    const base = d('new01.vmdk');
    const mid = d('new01-000001.vmdk');
    const leaf = d('new01-000002.vmdk');
    for (const [f, old] of Object.entries(oldDescriptors)) expect(d(f).cid, f).not.toBe(old.parsed.cid);
    expect(new Set(Object.keys(oldDescriptors).map((f) => d(f).cid)).size).toBe(Object.keys(oldDescriptors).length);
    expect(mid.parentCid).toBe(base.cid);
    expect(leaf.parentCid).toBe(mid.cid);
    expect(mid.parentFileNameHint).toBe('new01.vmdk');
    expect(leaf.parentFileNameHint).toBe('new01-000001.vmdk');
    expect(base.extents.map((e) => e.fileName)).toEqual(['new01.vmdk']);
    expect(leaf.extents.map((e) => e.fileName)).toEqual(['new01-000002.vmdk']);
    expect(d('new01_1.vmdk').extents.map((e) => e.fileName)).toEqual(['new01_1-flat.vmdk']);
    expect(d('sata.vmdk').extents.map((e) => e.fileName)).toEqual(['sata-s001.vmdk']);
    expect(base.ddb['uuid']).toMatch(/^([0-9A-F]{2} ){15}[0-9A-F]{2}$/);
    expect(base.ddb['uuid']).not.toBe(oldDescriptors['new01.vmdk']?.parsed.ddb['uuid']);
    expect(d('new01_1.vmdk').ddb['uuid']).toMatch(/^([0-9a-f]{2} ){15}[0-9a-f]{2}$/);
    expect(base.ddb['longContentID']).toMatch(/^[0-9a-f]{32}$/);
    expect(base.ddb['longContentID']).not.toBe('0123456789abcdef0123456789abcdef');
    // the rest of each descriptor is as it was
    const keys = new Set(['cid', 'parentcid', 'parentfilenamehint', 'ddb.uuid', 'ddb.longcontentid']);
    for (const [f, old] of Object.entries(oldDescriptors)) {
      const strip = (t: string) => untouchedLines(t, keys).filter((l) => !/^(RW|RDONLY|NOACCESS) /.test(l));
      expect(strip(descriptorText(join(dir, f))), f).toEqual(strip(old.text));
    }
  });

  it('the renamed chain opens in qemu-img and in our reader (which checks CIDs), with its data', () => {
    const info = JSON.parse(
      run('qemu-img', ['info', '--backing-chain', '--output=json', join(dir, 'new01-000002.vmdk')]),
    ) as {
      filename: string;
    }[];
    expect(info.map((i) => i.filename.split('/').pop())).toEqual([
      'new01-000002.vmdk',
      'new01-000001.vmdk',
      'new01.vmdk',
    ]);
    for (const [offset, pattern] of [
      [0, '0x11'],
      [1, '0x22'],
      [2, '0x33'],
    ] as const) {
      const r = spawnSync(
        'qemu-io',
        ['-r', '-f', 'vmdk', '-c', `read -P ${pattern} ${offset}M 1M`, join(dir, 'new01-000002.vmdk')],
        {
          encoding: 'utf8',
        },
      );
      expect(r.status).toBe(0);
      expect(r.stdout + r.stderr).not.toMatch(/fail/i);
    }
    for (const f of ['new01_1.vmdk', 'sata.vmdk', 'nvme.vmdk', 'ide.vmdk']) run('qemu-img', ['info', join(dir, f)]);
    const disk = openDisk(join(dir, 'new01-000002.vmdk'));
    try {
      expect(disk.read(2 * 1024 * 1024, 4)).toEqual(Buffer.from([0x33, 0x33, 0x33, 0x33]));
      expect(disk.read(0, 4)).toEqual(Buffer.from([0x11, 0x11, 0x11, 0x11]));
    } finally {
      disk.close();
    }
  });

  it('a second patch of the result plans again from what the first wrote', async () => {
    const { plan: again } = await patchFolder(dir, {
      ...opts,
      diskFiles: diskFiles(
        {},
        DISK_FILES.map((f) => CHAIN_RENAMES[f] ?? f),
      ),
    });
    expect(again.renames).toEqual([]);
    expect(again.files.every((f) => f.renameTo === undefined)).toBe(true);
    run('qemu-img', ['info', '--backing-chain', join(dir, 'new01-000002.vmdk')]);
  });
});

describe('a restore that flattened the chain into the base disk’s name', () => {
  it('drops the snapshots whose disks did not come back and keeps the .vmsd consistent', async () => {
    const dir = makeVmFolder();
    // the rebuild wrote the current state as one disk without a parent, named like the old base
    for (const f of ['win01-000001.vmdk', 'win01-000002.vmdk']) spawnSync('rm', [join(dir, f)]);
    spawnSync('cp', [join(dir, 'ide.vmdk'), join(dir, 'win01.vmdk')]);
    const files = DISK_FILES.filter((f) => f !== 'win01.vmdk' && f !== 'win01-000001.vmdk');
    const rename = { 'win01-000002.vmdk': 'win01.vmdk' };
    const { plan } = await patchFolder(dir, { datastoreMap: DS_MAP, diskFiles: diskFiles(rename, files) });
    expect(plan.warnings.join('\n')).toContain('snapshot0 is dropped');
    const text = readFileSync(join(dir, 'win01.vmsd'), 'utf8');
    const vmsd = parseVmsd(text, 'win01.vmsd');
    expect(vmsd.snapshots).toEqual([]);
    expect(vmsd.current).toBeUndefined();
    expect(text).toBe('.encoding = "UTF-8"\nsnapshot.lastUID = "2"\nsnapshot.numSnapshots = "0"\n');
    expect(parseVmx(readFileSync(join(dir, 'win01.vmx'), 'utf8'), 'x').disks[0]?.fileName).toBe('win01.vmdk');
    // no name given: no file renamed
    expect(existsSync(join(dir, 'win01-Snapshot1.vmsn'))).toBe(true);
  });

  it('a dropped snapshot in the middle: its child becomes a root, the rest renumbered 0…n-1', async () => {
    const vmsd = `.encoding = "UTF-8"
snapshot.lastUID = "3"
snapshot.current = "3"
snapshot.numSnapshots = "3"
snapshot0.uid = "1"
snapshot0.disk0.fileName = "gone.vmdk"
snapshot0.disk0.node = "scsi0:0"
snapshot1.uid = "2"
snapshot1.parent = "1"
snapshot1.displayName = "two"
snapshot1.disk0.fileName = "ide.vmdk"
snapshot2.uid = "3"
snapshot2.parent = "2"
snapshot2.disk0.fileName = "nvme.vmdk"
`;
    const dir = makeVmFolder({}, { 'win01.vmsd': vmsd });
    await patchFolder(dir, { datastoreMap: [], diskFiles: diskFiles({}) });
    const out = parseVmsd(readFileSync(join(dir, 'win01.vmsd'), 'utf8'), 'win01.vmsd');
    expect(out.current).toBe('3');
    expect(out.snapshots.map((s) => [s.index, s.uid, s.parent, s.displayName, s.disks[0]?.fileName])).toEqual([
      [0, '2', undefined, 'two', 'ide.vmdk'],
      [1, '3', '2', undefined, 'nvme.vmdk'],
    ]);
    const dict = parseDictionary(
      readFileSync(join(dir, 'win01.vmsd'), 'utf8'),
      errorsFor({ image: 'x', layer: 'file' }),
    );
    expect(dict.entries.get('snapshot.numsnapshots')?.value).toBe('2');
    expect(out.warnings).toEqual([]);
  });
});

describe('--keep-identity', () => {
  it('keeps UUIDs, generated MACs and ddb.uuid; content ids are still fresh', async () => {
    const dir = makeVmFolder();
    const oldCid = descriptorOf(join(dir, 'win01.vmdk')).cid;
    await patchFolder(dir, { keepIdentity: true, datastoreMap: [], diskFiles: diskFiles({}) });
    const vmx = parseVmx(readFileSync(join(dir, 'win01.vmx'), 'utf8'), 'win01.vmx');
    expect(vmx.entries.get('uuid.bios')?.value).toBe('56 4d 12 34 56 78 9a bc-de f0 12 34 56 78 9a bc');
    expect(vmx.entries.get('vc.uuid')?.value).toBe('52 9e 11 22 33 44 55 66-77 88 99 aa bb cc dd ee');
    expect(vmx.entries.get('ethernet0.generatedaddress')?.value).toBe('00:0c:29:12:34:56');
    const base = descriptorOf(join(dir, 'win01.vmdk'));
    expect(base.ddb['uuid']).toBe('60 00 C2 9a 3b 4c 5d 6e-7f 80 91 a2 b3 c4 d5 e6');
    expect(base.cid).not.toBe(oldCid);
    run('qemu-img', ['info', '--backing-chain', join(dir, 'win01-000002.vmdk')]);
  });
});

describe('errors name the file and the field', () => {
  it('a descriptor that no longer fits its reserved sectors is refused before anything is written', () => {
    const dir = makeVmFolder();
    // fill ide.vmdk's 20 reserved sectors almost to the end, then make the patch lengthen it
    const path = join(dir, 'ide.vmdk');
    const b = readFileSync(path);
    const text = b
      .subarray(512, 512 + 20 * 512)
      .toString('latin1')
      .replace(/\0+$/, '');
    const filler = `ddb.comment = "${'x'.repeat(20 * 512 - text.length - 40)}"\n`;
    Buffer.from(text + filler, 'latin1').copy(b, 512);
    writeFileSync(path, b);
    const long = `${'a-long-new-name-'.repeat(8)}.vmdk`;
    spawnSync('mv', [path, join(dir, long)]);
    const before = snapshotFolder(dir);
    const e = typed(() => planPatch(dir, { datastoreMap: [], diskFiles: diskFiles({ 'ide.vmdk': long }) }));
    expect(e).toBeInstanceOf(LimitError);
    expect((e as LimitError).code).toBe('PATCH_DESCRIPTOR_TOO_LARGE');
    expect((e as LimitError).image).toBe(join(dir, long));
    expect((e as LimitError).details.field).toBe('descriptor');
    expect(snapshotFolder(dir)).toEqual(before);
  });

  it('a child whose parent is not in the folder: PATCH_FIELD on parentFileNameHint', () => {
    const dir = makeVmFolder();
    spawnSync('rm', [join(dir, 'win01-000001.vmdk')]);
    const e = typed(() =>
      planPatch(dir, {
        datastoreMap: [],
        diskFiles: diskFiles(
          {},
          DISK_FILES.filter((f) => f !== 'win01-000001.vmdk'),
        ),
      }),
    );
    expect(isVdbakError(e) && e.code).toBe('PATCH_FIELD');
    expect(e).toBeInstanceOf(CorruptError);
    expect((e as CorruptError).image).toBe(join(dir, 'win01-000002.vmdk'));
    expect((e as CorruptError).details.field).toBe('parentFileNameHint');
  });

  it('a rename onto a file that exists is refused', () => {
    const dir = makeVmFolder({}, { 'new01.nvram': 'someone else’s' });
    const e = typed(() => planPatch(dir, { name: 'new01', datastoreMap: [], diskFiles: diskFiles({}) }));
    expect(isVdbakError(e) && e.code).toBe('PATCH_RENAME_EXISTS');
  });

  it('a symlinked disk is never written through (it may lead out of the folder)', async () => {
    const dir = makeVmFolder();
    const outside = join(mkdtempSync(join(tmpdir(), 'vdbak-patch-outside-')), 'victim.vmdk');
    copyFileSync(join(dir, 'ide.vmdk'), outside);
    const before = readFileSync(outside);
    symlinkSync(outside, join(dir, 'link.vmdk'));
    const { plan } = await patchFolder(dir, { datastoreMap: [], diskFiles: diskFiles({}) });
    expect(plan.files.map((f) => f.path)).not.toContain(join(dir, 'link.vmdk'));
    expect(readFileSync(outside).equals(before)).toBe(true);
  });

  it('a name that cannot name files is refused', () => {
    const dir = makeVmFolder();
    const e = typed(() => planPatch(dir, { name: '..', datastoreMap: [], diskFiles: diskFiles({}) }));
    expect(isVdbakError(e) && e.code).toBe('PATCH_FIELD');
  });

  it('the CID oracle can fail: a child left with its parent’s old CID is refused by our reader', () => {
    const dir = makeVmFolder();
    const plan = planPatch(dir, { datastoreMap: [], diskFiles: diskFiles({}) });
    const base = plan.files.find((f) => f.path.endsWith('/win01.vmdk'));
    expect(base?.inPlace).toBeDefined();
    openDisk(join(dir, 'win01-000001.vmdk')).close();
    writeFileSync(
      join(dir, 'win01.vmdk'),
      Buffer.concat([
        readFileSync(join(dir, 'win01.vmdk')).subarray(0, 512),
        base!.inPlace!.bytes,
        readFileSync(join(dir, 'win01.vmdk')).subarray(512 + base!.inPlace!.bytes.length),
      ]),
    );
    expect(() => openDisk(join(dir, 'win01-000001.vmdk')).close()).toThrow(ChainError);
  });
});

describe('the sample store’s win01 (NTFS on GPT, monolithicSparse with a snapshot delta, made by qemu-img)', () => {
  it('restored as a renamed chain: same guest bytes before and after the patch, and the chain opens', async () => {
    const script = readFileSync(join(ROOT, 'scripts', 'make-sample-store.sh'));
    const store = fixture('sample-store.sh', [createHash('sha256').update(script).digest('hex').slice(0, 16)]);
    const dir = mkdtempSync(join(tmpdir(), 'vdbak-patch-sample-'));
    copyFileSync(join(store, 'win01', 'win01.vmdk'), join(dir, 'dr-win01.vmdk'));
    copyFileSync(join(store, 'win01', 'win01-000001.vmdk'), join(dir, 'dr-win01-000001.vmdk'));
    writeFileSync(
      join(dir, 'win01.vmx'),
      '.encoding = "UTF-8"\ndisplayName = "win01"\nscsi0.present = "TRUE"\nscsi0:0.present = "TRUE"\nscsi0:0.fileName = "win01-000001.vmdk"\n',
    );
    const rawSha = (f: string) => {
      const raw = join(dir, 'check.raw');
      run('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', join(dir, f), raw]);
      const sha = createHash('sha256').update(readFileSync(raw)).digest('hex');
      rmSync(raw);
      return sha;
    };
    // before the patch the renamed delta names its parent by the old name: give qemu the old name for the oracle
    copyFileSync(join(dir, 'dr-win01.vmdk'), join(dir, 'win01.vmdk'));
    const before = rawSha('dr-win01-000001.vmdk');
    rmSync(join(dir, 'win01.vmdk'));
    const { plan } = await patchFolder(dir, {
      name: 'dr-win01',
      datastoreMap: [],
      diskFiles: [
        { old: 'win01.vmdk', new: 'dr-win01.vmdk' },
        { old: 'win01-000001.vmdk', new: 'dr-win01-000001.vmdk' },
      ],
    });
    expect(plan.warnings).toEqual([]);
    expect(rawSha('dr-win01-000001.vmdk')).toBe(before);
    const leaf = descriptorOf(join(dir, 'dr-win01-000001.vmdk'));
    expect(leaf.parentFileNameHint).toBe('dr-win01.vmdk');
    expect(leaf.parentCid).toBe(descriptorOf(join(dir, 'dr-win01.vmdk')).cid);
    const vmx = parseVmx(readFileSync(join(dir, 'dr-win01.vmx'), 'utf8'), 'dr-win01.vmx');
    expect([vmx.displayName, vmx.disks[0]?.fileName]).toEqual(['dr-win01', 'dr-win01-000001.vmdk']);
    const disk = openDisk(join(dir, 'dr-win01-000001.vmdk'));
    try {
      expect(disk.read(512, 8).toString('latin1')).toBe('EFI PART');
    } finally {
      disk.close();
    }
  });
});
