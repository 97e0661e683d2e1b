/**
 * Issue 7 §1: a backup keeps every allocated byte of a disk that no stored
 * file content covers (the disk's regions, /dN/regions.raw), and the VM's
 * configuration files (/config). End to end through the CLI, with oracles we
 * did not write: qemu-img map (what the image allocates), qemu-img convert
 * (the disk's bytes), sfdisk (partitions), dumpe2fs and icat's $Bitmap (free
 * space), istat (a compressed file's clusters).
 *
 * Coverage: regions ∪ stored file runs ∪ raw volumes, within the allocated
 * bytes, equals the allocated bytes minus the filesystems' free space; the
 * regions lie inside the allocated bytes and never overlap a stored file run.
 */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { STAMP_SETTLE_ENV } from '../../agent/backup/source-stamp.js';
import { Catalog } from '../../catalog/catalog.js';
import type { VersionRow } from '../../catalog/records.js';
import { fixture, run, runBytes } from '../helpers/fixtures.js';
import { type BackupJson, newRepo, sampleStore, vdbak, vdbakOk } from '../helpers/vdbak.js';

// fixtures may have been built moments ago: their files count as settled (source-stamp.ts), so the
// unchanged backups below keep what they read instead of reading again
process.env[STAMP_SETTLE_ENV] = '0';

type R = [number, number]; // [start, end)

/** Sorted, merged. */
function norm(rs: R[]): R[] {
  const s = rs.filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
  const out: R[] = [];
  for (const [a, b] of s) {
    const last = out[out.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** Bytes in `a` and in `b` (both normalised). */
function intersect(a: R[], b: R[]): R[] {
  const out: R[] = [];
  let j = 0;
  for (const [s, e] of a) {
    while (j < b.length && b[j]![1] <= s) j++;
    for (let k = j; k < b.length && b[k]![0] < e; k++) out.push([Math.max(s, b[k]![0]), Math.min(e, b[k]![1])]);
  }
  return norm(out);
}

function minus(a: R[], b: R[]): R[] {
  const out: R[] = [];
  for (const [s, e] of a) {
    let pos = s;
    for (const [bs, be] of b) {
      if (be <= pos || bs >= e) continue;
      if (bs > pos) out.push([pos, bs]);
      pos = Math.max(pos, be);
    }
    if (pos < e) out.push([pos, e]);
  }
  return norm(out);
}

const total = (rs: R[]): number => rs.reduce((n, [a, b]) => n + b - a, 0);

/** What the image (and its backing chain) allocates, per qemu-img map. */
function qemuAllocated(img: string): R[] {
  const map = JSON.parse(run('qemu-img', ['map', '--output=json', img])) as {
    start: number;
    length: number;
    data: boolean;
  }[];
  return norm(map.filter((m) => m.data).map((m) => [m.start, m.start + m.length]));
}

function partitions(raw: string): { start: number; size: number }[] {
  const t = JSON.parse(run('sfdisk', ['--json', raw])) as {
    partitiontable: { partitions: { start: number; size: number }[] };
  };
  return t.partitiontable.partitions.map((p) => ({ start: p.start * 512, size: p.size * 512 }));
}

/** NTFS free clusters (partition coordinates) from icat's $Bitmap. */
function ntfsFree(raw: string, part: { start: number; size: number }): R[] {
  const boot = Buffer.alloc(512);
  const fd = readFileSync(raw).subarray(part.start, part.start + 512);
  fd.copy(boot);
  const cs = boot.readUInt16LE(0x0b) * boot.readUInt8(0x0d);
  const clusters = Math.floor((Number(boot.readBigUInt64LE(0x28)) * boot.readUInt16LE(0x0b)) / cs);
  const bits = runBytes('icat', ['-o', String(part.start / 512), '-f', 'ntfs', raw, '6']);
  const out: R[] = [];
  for (let c = 0; c < clusters; c++) if (!((bits[c >> 3]! >> (c & 7)) & 1)) out.push([c * cs, (c + 1) * cs]);
  return norm(out);
}

/** ext free blocks (partition coordinates) per dumpe2fs, on a copy of the partition. */
function extFree(raw: string, part: { start: number; size: number }): R[] {
  const img = join(mkdtempSync(join(tmpdir(), 'vdbak-regions-ext-')), 'part.img');
  writeFileSync(img, readFileSync(raw).subarray(part.start, part.start + part.size));
  const out = run('dumpe2fs', [img]);
  const bs = Number(/^Block size:\s+(\d+)/m.exec(out)![1]);
  const free: R[] = [];
  for (const line of out.matchAll(/^\s+Free blocks: (.*)$/gm)) {
    for (const p of line[1]!.split(', ').filter((x) => x.trim() !== '')) {
      const [a, b] = p.split('-').map(Number) as [number, number | undefined];
      free.push([a * bs, ((b ?? a) + 1) * bs]);
    }
  }
  return norm(free);
}

/** Every version of a volume in a backup. */
function versions(cat: Catalog, backupId: number, volumeId: number): VersionRow[] {
  return [...cat.walk(backupId, volumeId)];
}

/** Runs (disk coordinates) whose bytes a version stores as its content at that place. */
function storedRuns(v: VersionRow, volumeOffset: number): R[] {
  if (v.type !== 'file' || v.meta?.readError || v.meta?.contentNotOnDisk) return [];
  return (v.runs ?? [])
    .filter((r) => r.volumeOffset !== null && !r.unwritten)
    .map((r): R => [volumeOffset + r.volumeOffset!, volumeOffset + r.volumeOffset! + r.length]);
}

interface DiskCheck {
  regions: R[];
  files: R[];
  raw: R[];
  allocated: R[];
  expected: R[];
  rawDisk: string;
  regionsVersion: VersionRow;
}

/**
 * The coverage facts of one disk of one backup. `free(rawDisk, part, fsType)`
 * gives a filesystem's free space in partition coordinates.
 */
function checkDisk(repo: string, backupId: number, diskIndex: number, image: string): DiskCheck {
  const rawDisk = join(mkdtempSync(join(tmpdir(), 'vdbak-regions-')), 'disk.raw');
  run('qemu-img', ['convert', '-O', 'raw', image, rawDisk]);
  const allocated = qemuAllocated(image);
  const parts = partitions(rawDisk);
  const cat = Catalog.open(join(repo, 'catalog.db'), { readonly: true });
  try {
    const vols = cat.backupVolumes(backupId).filter((v) => v.diskIndex === diskIndex);
    const regionsVol = vols.find((v) => v.partIndex === -1)!;
    expect(regionsVol).toMatchObject({ name: `d${diskIndex}`, mode: 'raw', fsType: 'regions', offset: 0 });
    const regionsVersion = cat.lookup(backupId, regionsVol.volumeId, '/regions.raw')!;
    expect(regionsVersion.meta).toMatchObject({ diskRegions: true });
    const regions = norm((regionsVersion.runs ?? []).map((r): R => [r.volumeOffset!, r.volumeOffset! + r.length]));
    expect(regionsVersion.meta!.allocatedBytes).toBe(total(regions));
    let files: R[] = [];
    let raw: R[] = [];
    let free: R[] = [];
    for (const v of vols.filter((x) => x.partIndex >= 0)) {
      const part = parts[v.partIndex - 1]!;
      expect(part.start).toBe(v.offset);
      if (v.mode === 'raw') {
        raw = raw.concat(
          versions(cat, backupId, v.volumeId).flatMap((x) =>
            (x.runs ?? []).map((r): R => [v.offset + r.volumeOffset!, v.offset + r.volumeOffset! + r.length]),
          ),
        );
        continue;
      }
      for (const x of versions(cat, backupId, v.volumeId)) files = files.concat(storedRuns(x, v.offset));
      const f = v.fsType === 'ntfs' ? ntfsFree(rawDisk, part) : extFree(rawDisk, part);
      free = free.concat(f.map(([a, b]): R => [a + part.start, b + part.start]));
    }
    files = norm(files);
    raw = norm(raw);
    return {
      regions,
      files,
      raw,
      allocated,
      expected: minus(allocated, norm(free)),
      rawDisk,
      regionsVersion,
    };
  } finally {
    cat.close();
  }
}

function expectCoverage(d: DiskCheck): void {
  // regions only hold allocated bytes, and none a stored file holds
  expect(minus(d.regions, d.allocated)).toEqual([]);
  expect(intersect(d.regions, d.files)).toEqual([]);
  expect(intersect(d.regions, d.raw)).toEqual([]);
  // together: exactly the allocated bytes the filesystems use
  expect(intersect(norm([...d.regions, ...d.files, ...d.raw]), d.allocated)).toEqual(d.expected);
}

/** `vdbak cat` of the regions: at every run, the disk's own bytes. */
function expectRegionBytes(repo: string, vm: string, diskIndex: number, d: DiskCheck): void {
  const r = vdbak(['cat', '--repo', repo, vm, `/d${diskIndex}/regions.raw`]);
  expect(r.stderr).toBe('');
  const out = r.bytes;
  const disk = readFileSync(d.rawDisk);
  expect(out.length).toBe(disk.length);
  for (const [a, b] of d.regions) {
    if (!out.subarray(a, b).equals(disk.subarray(a, b)))
      throw new Error(`regions differ from the disk in [${a}, ${b})`);
  }
}

describe('the sample store: win01 (NTFS on GPT, snapshot chain) and lin01 (ext4 on MBR)', () => {
  let store: string;
  let repo: string;
  const result = new Map<string, BackupJson>();
  beforeAll(() => {
    store = sampleStore();
    repo = newRepo('regions-sample');
    for (const vm of ['win01', 'lin01']) {
      const r = vdbakOk(['backup', '--repo', repo, '--json', join(store, vm)]).jsonLines<BackupJson>();
      result.set(vm, r[0]!);
    }
  });

  test.each([
    ['win01', 'win01-000001.vmdk'],
    ['lin01', 'lin01.vmdk'],
  ])('%s: regions and file runs cover exactly the allocated, used bytes', (vm, leaf) => {
    const r = result.get(vm)!;
    expect(r.regions).toHaveLength(1);
    const d = checkDisk(repo, r.backupId, 0, join(store, vm, leaf));
    expect(d.regions.length).toBeGreaterThan(0);
    expect(r.regions[0]).toEqual({ disk: 0, runs: d.regionsVersion.runs!.length, bytes: total(d.regions) });
    expectCoverage(d);
  });

  test.each([
    ['win01', 'win01-000001.vmdk'],
    ['lin01', 'lin01.vmdk'],
  ])('%s: cat of /d0/regions.raw gives the disk bytes at every run', (vm, leaf) => {
    const d = checkDisk(repo, result.get(vm)!.backupId, 0, join(store, vm, leaf));
    expectRegionBytes(repo, vm, 0, d);
  });
});

describe('a VMware VM folder (test/fixtures/regions-vm.sh)', () => {
  let fx: string;
  let repo: string;
  let first: BackupJson;
  let second: BackupJson;
  beforeAll(() => {
    fx = fixture('regions-vm.sh');
    repo = newRepo('regions-vm');
    first = vdbakOk(['backup', '--repo', repo, '--json', join(fx, 'store', 'vm1')]).jsonLines<BackupJson>()[0]!;
    second = vdbakOk(['backup', '--repo', repo, '--json', join(fx, 'store2', 'vm1')]).jsonLines<BackupJson>()[0]!;
  });

  test('coverage of the disk, with a raw EFI partition and compressed files', () => {
    expectCoverage(checkDisk(repo, first.backupId, 0, join(fx, 'store', 'vm1', 'vm1.vmdk')));
  });

  test('cat of /d0/regions.raw gives the disk bytes at every run', () => {
    const d = checkDisk(repo, first.backupId, 0, join(fx, 'store', 'vm1', 'vm1.vmdk'));
    expectRegionBytes(repo, String(first.backupId), 0, d);
  });

  test('a compressed file is flagged contentNotOnDisk and its clusters are inside the regions', () => {
    const start = Number(readFileSync(join(fx, 'ntfs.start'), 'utf8')) * 512;
    const d = checkDisk(repo, first.backupId, 0, join(fx, 'store', 'vm1', 'vm1.vmdk'));
    for (const path of ['/zip/numbers.txt', '/zip/mixed.txt']) {
      const v = vdbakOk(['ls', '--repo', repo, '--json', String(first.backupId), `/d0p2${path}`]).json<
        { meta?: unknown }[]
      >();
      expect(JSON.stringify(v)).toContain('contentNotOnDisk');
      const img = join(fx, 'ntfs.img');
      const inode = run('ifind', ['-f', 'ntfs', '-n', path, img]).trim();
      const stat = run('istat', ['-f', 'ntfs', img, inode]);
      const clusters = stat
        .slice(stat.indexOf('Type: $DATA'))
        .split('\n')
        .slice(1)
        .join(' ')
        .split(/\s+/)
        .filter((x) => /^\d+$/.test(x) && x !== '0')
        .map(Number);
      expect(clusters.length).toBeGreaterThan(0);
      const bytes = norm(clusters.map((c): R => [start + c * 4096, start + (c + 1) * 4096]));
      expect(minus(bytes, d.regions)).toEqual([]);
    }
  });

  test('configuration files are listed under /config and cat gives the source bytes; logs and disks are not kept', () => {
    expect(first.configFiles).toEqual(['vm1.nvram', 'vm1.vmsd', 'vm1.vmx', 'vm1.vmxf']);
    const sizes = first.configFiles.map((f) => readFileSync(join(fx, 'store', 'vm1', f)).length);
    expect(first.configBytesRead).toBe(sizes.reduce((a, b) => a + b, 0));
    const ls = vdbakOk(['ls', '--repo', repo, String(first.backupId), '/config']).stdout;
    for (const f of first.configFiles) {
      expect(ls).toContain(f);
      const got = vdbakOk(['cat', '--repo', repo, String(first.backupId), `/config/${f}`]).bytes;
      expect(got.equals(readFileSync(join(fx, 'store', 'vm1', f)))).toBe(true);
    }
    expect(ls).not.toMatch(/vmware|\.vmdk/);
  });

  test('after one 250000-byte file changed, the next backup sends little more than it', () => {
    const changed = 250_000;
    expect(second.backupId).toBe(first.backupId + 1);
    // the file (random: it does not compress) and the metadata chunks its change touched ($MFT, $LogFile)
    expect(second.bytesSent).toBeGreaterThanOrEqual(changed * 0.9);
    expect(second.bytesSent).toBeLessThan(changed + 512 * 1024);
    // config files unchanged: not read again
    expect(second.unchanged).toBeGreaterThanOrEqual(first.configFiles.length);
  });

  test('an unchanged disk and folder cost no new region or config rows', () => {
    const third = vdbakOk(['backup', '--repo', repo, '--json', join(fx, 'store2', 'vm1')]).jsonLines<BackupJson>()[0]!;
    expect(third.bytesSent).toBe(0);
    // the image files are as they were: the regions are kept without reading them, like the files
    expect(third.bytesRead).toBe(0);
    expect(third.regions).toEqual(second.regions);
    const cat = Catalog.open(join(repo, 'catalog.db'), { readonly: true });
    try {
      const rows = cat.db.prepare(`SELECT count(*) AS n FROM versions WHERE first_backup = ?`).get(third.backupId) as {
        n: number | bigint;
      };
      expect(Number(rows.n)).toBe(0);
    } finally {
      cat.close();
    }
  });

  test('the same disk under another path (a new file) has its regions read again, and sends nothing', () => {
    const copy = join(mkdtempSync(join(tmpdir(), 'vdbak-regions-copy-')), 'vm1');
    cpSync(join(fx, 'store2', 'vm1'), copy, { recursive: true });
    const r = vdbakOk(['backup', '--repo', repo, '--json', copy]).jsonLines<BackupJson>()[0]!;
    expect(r.regionBytesRead).toBe(r.regions[0]!.bytes);
    // the configuration files are new files too
    expect(r.bytesRead).toBe(r.regionBytesRead + r.configBytesRead);
    expect(r.bytesSent).toBe(0);
    expect(r.regions).toEqual(second.regions);
  });
});

describe('ext4 on MBR in qcow2 with inline files and unwritten extents (test/fixtures/regions-ext-disk.sh)', () => {
  let fx: string;
  let repo: string;
  let r: BackupJson;
  beforeAll(() => {
    fx = fixture('regions-ext-disk.sh');
    repo = newRepo('regions-ext');
    r = vdbakOk([
      'backup',
      '--repo',
      repo,
      '--json',
      '--name',
      'extdisk',
      join(fx, 'disk.qcow2'),
    ]).jsonLines<BackupJson>()[0]!;
  });

  test('coverage of the disk', () => {
    expectCoverage(checkDisk(repo, r.backupId, 0, join(fx, 'disk.qcow2')));
  });

  test('cat of /d0/regions.raw gives the disk bytes at every run', () => {
    expectRegionBytes(repo, 'extdisk', 0, checkDisk(repo, r.backupId, 0, join(fx, 'disk.qcow2')));
  });

  test("the unwritten extent's blocks (random bytes under zero content) are in the regions, not the file", () => {
    const d = checkDisk(repo, r.backupId, 0, join(fx, 'disk.qcow2'));
    const [first, last] = readFileSync(join(fx, 'prealloc.blocks'), 'utf8').trim().split('-').map(Number) as [
      number,
      number,
    ];
    const start = partitions(d.rawDisk)[0]!.start;
    const blocks: R = [start + first * 4096, start + (last + 1) * 4096];
    expect(minus([blocks], d.allocated)).toEqual([]); // random bytes: the image allocates them
    expect(minus([blocks], d.regions)).toEqual([]);
    expect(intersect([blocks], d.files)).toEqual([]);
    const v = vdbakOk(['ls', '--repo', repo, '--json', 'extdisk', '/d0p1/prealloc']).json<{ size: number }[]>();
    expect(v[0]!.size).toBe(64 * 4096);
    // its content reads as zeros after the first block
    const content = vdbakOk(['cat', '--repo', repo, 'extdisk', '/d0p1/prealloc']).bytes;
    expect(content.subarray(4096).equals(Buffer.alloc(63 * 4096))).toBe(true);
  });
});
