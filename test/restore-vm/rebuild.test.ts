/**
 * rebuildDisk against backups built by hand with the Catalog API, so that
 * every case of the representation is there: regions in disk coordinates,
 * files split across runs with holes, unwritten extents and slack past their
 * size, hard links, contentNotOnDisk, a raw volume, unread files, and broken
 * backups (overlaps, runs outside their volume). The expected disk is built
 * first; the stored representation is derived from it; the rebuilt disk must
 * equal it byte for byte (and `qemu-img compare` agrees for every format).
 */
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Catalog } from '../../catalog/catalog.js';
import type { RunRecord, VersionRecord } from '../../catalog/records.js';
import { initRepo, openRepo, type Repo } from '../../agent/repo.js';
import { planDisk, rebuildDisk } from '../../agent/restore-vm/rebuild.js';
import { openWriter } from '../../agent/restore-vm/writers/open.js';
import { DISK_FORMATS, type DiskWriter, formatFileNames } from '../../agent/restore-vm/writers/types.js';
import { encodeChunk } from '../../transport/codec.js';
import { packObjectName, PackWriter } from '../../transport/pack.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const DISK = 16 * MiB;
const VOL1 = { offset: 1 * MiB, length: 14 * MiB };
const VOL2 = { offset: 15 * MiB, length: 1 * MiB };
/** Stored chunks are cut at this odd size so that pieces straddle chunk ends. */
const CHUNK = 7777;

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

class Store {
  private pack = new PackWriter();
  constructor(private readonly repo: Repo) {}
  put(bytes: Buffer): string[] {
    const hashes: string[] = [];
    for (let at = 0; at < bytes.length; at += CHUNK) {
      const part = bytes.subarray(at, Math.min(bytes.length, at + CHUNK));
      const hash = sha(part);
      hashes.push(hash);
      if (!this.pack.has(hash) && !this.repo.catalog.hasChunk(hash)) this.pack.add(encodeChunk({ hash, bytes: part }));
    }
    return hashes;
  }
  async flush(): Promise<void> {
    if (this.pack.count === 0) return;
    const fin = this.pack.finish();
    const name = packObjectName(fin.id);
    await this.repo.target.put(name, fin.bytes);
    this.repo.catalog.addPack(name, fin.bytes.length, fin.entries);
    this.pack = new PackWriter();
  }
}

function record(over: Partial<VersionRecord> & { fsId: string; size: number }): VersionRecord {
  return {
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    nlink: 1,
    mtimeNs: 0n,
    atimeNs: 0n,
    ctimeNs: 0n,
    ...over,
  };
}

interface FileSpec {
  path: string;
  fsId: string;
  size: number;
  runs: RunRecord[];
  nlink?: number;
  meta?: Record<string, unknown>;
}

interface Scenario {
  regions?: { offset: number; length: number }[];
  files?: FileSpec[];
  raw?: { offset: number; length: number }[];
}

/** The expected disk: random bytes where something is stored, zeros elsewhere. */
function expectedDisk(s: Scenario, seed: Buffer): Buffer {
  const disk = Buffer.alloc(DISK);
  const fill = (off: number, len: number) => {
    for (let at = 0; at < len; at += seed.length) seed.copy(disk, off + at, 0, Math.min(seed.length, len - at));
    // not the same bytes everywhere: a misplaced piece must show
    for (let at = 0; at < len; at += 512) disk.writeUInt32LE((off + at) >>> 0, off + at);
  };
  for (const r of s.regions ?? []) fill(r.offset, r.length);
  for (const f of s.files ?? []) {
    if (f.meta?.contentNotOnDisk || f.meta?.readError) continue;
    for (const r of f.runs) {
      if (r.volumeOffset === null || r.unwritten || r.fileOffset >= f.size) continue;
      fill(VOL1.offset + r.volumeOffset, Math.min(r.length, f.size - r.fileOffset));
    }
  }
  for (const r of s.raw ?? []) fill(VOL2.offset + r.offset, r.length);
  return disk;
}

/** A file's content as the guest reads it: its runs' bytes, zeros in holes and unwritten extents. */
function fileContent(f: FileSpec, disk: Buffer): Buffer {
  const c = Buffer.alloc(f.size);
  for (const r of f.runs) {
    if (r.volumeOffset === null || r.unwritten || r.fileOffset >= f.size) continue;
    const len = Math.min(r.length, f.size - r.fileOffset);
    disk.copy(c, r.fileOffset, VOL1.offset + r.volumeOffset, VOL1.offset + r.volumeOffset + len);
  }
  return c;
}

/**
 * `contentOf` replaces a file's stored content (by path); `rawOverVolume` puts the raw volume
 * over the last 8 KiB of the files volume (a broken partition table).
 */
async function makeBackup(
  repo: Repo,
  s: Scenario,
  disk: Buffer,
  name: string,
  contentOf: Record<string, Buffer> = {},
  rawOverVolume = false,
): Promise<number> {
  const cat: Catalog = repo.catalog;
  const store = new Store(repo);
  const vmId = cat.upsertVm({ identity: `test:${name}`, name, kind: 'test' });
  const backupId = cat.beginBackup(vmId, process.pid, 'test');
  cat.startSeen();
  const diskId = cat.upsertDisk(vmId, 'scsi0:0', 0);
  cat.addBackupDisk(backupId, diskId, { imagePath: `/store/${name}/${name}-000001.vmdk`, format: 'vmdk', size: DISK });
  if (s.regions) {
    const volId = cat.upsertVolume(diskId, -1, 'd0');
    cat.addBackupVolume(backupId, volId, { offset: 0, length: DISK, fsType: 'regions', mode: 'raw' });
    const runs = s.regions.map((r) => ({ fileOffset: r.offset, volumeOffset: r.offset, length: r.length }));
    const bytes = Buffer.concat(s.regions.map((r) => disk.subarray(r.offset, r.offset + r.length)));
    cat.insertVersion(
      volId,
      '/regions.raw',
      backupId,
      record({ fsId: 'regions', size: DISK, runs, chunks: store.put(bytes), meta: { diskRegions: true } }),
    );
  }
  const v1 = cat.upsertVolume(diskId, 1, 'd0p1');
  cat.addBackupVolume(backupId, v1, { ...VOL1, fsType: 'ext4', mode: 'files' });
  cat.insertVersion(v1, '/', backupId, record({ fsId: '2', type: 'dir', size: 0 }));
  for (const f of s.files ?? []) {
    const rec = record({ fsId: f.fsId, size: f.size, runs: f.runs, nlink: f.nlink ?? 1, meta: f.meta });
    if (!f.meta?.readError) rec.chunks = store.put(contentOf[f.path] ?? fileContent(f, disk));
    cat.insertVersion(v1, f.path, backupId, rec);
  }
  if (s.raw || rawOverVolume) {
    const v2 = cat.upsertVolume(diskId, 2, 'd0p2');
    cat.addBackupVolume(backupId, v2, {
      ...(rawOverVolume ? { offset: VOL2.offset - 8192, length: VOL2.length } : VOL2),
      mode: 'raw',
    });
    const raw = s.raw ?? [{ offset: 0, length: 8192 }];
    const runs = raw.map((r) => ({ fileOffset: r.offset, volumeOffset: r.offset, length: r.length }));
    const bytes = Buffer.concat(
      raw.map((r) => disk.subarray(VOL2.offset + r.offset, VOL2.offset + r.offset + r.length)),
    );
    cat.insertVersion(
      v2,
      '/volume.raw',
      backupId,
      record({ fsId: 'volume', size: VOL2.length, runs, chunks: store.put(bytes), meta: { rawVolume: true } }),
    );
  }
  await store.flush();
  cat.completeBackup(backupId, {});
  return backupId;
}

const FULL: Scenario = {
  regions: [
    { offset: 0, length: 64 * KiB }, // partition table and boot code
    { offset: VOL1.offset, length: 128 * KiB }, // superblock, group descriptors
    { offset: VOL1.offset + 8 * MiB + 3000, length: 5000 }, // not block-aligned
  ],
  files: [
    {
      path: '/a.bin',
      fsId: '12',
      size: 100_000,
      nlink: 2,
      runs: [
        { fileOffset: 0, volumeOffset: 256 * KiB, length: 64 * KiB },
        // the last cluster runs past the size: its slack is not content
        { fileOffset: 64 * KiB, volumeOffset: 1 * MiB, length: 40 * KiB },
      ],
    },
    // a hard link to a.bin: the same runs, placed once, not an overlap
    {
      path: '/dir-b/a-link.bin',
      fsId: '12',
      size: 100_000,
      nlink: 2,
      runs: [
        { fileOffset: 0, volumeOffset: 256 * KiB, length: 64 * KiB },
        { fileOffset: 64 * KiB, volumeOffset: 1 * MiB, length: 40 * KiB },
      ],
    },
    {
      path: '/sparse.db',
      fsId: '13',
      size: 300 * KiB,
      runs: [
        { fileOffset: 0, volumeOffset: 2 * MiB, length: 64 * KiB },
        { fileOffset: 64 * KiB, volumeOffset: null, length: 64 * KiB },
        { fileOffset: 128 * KiB, volumeOffset: 3 * MiB, length: 64 * KiB, unwritten: true },
        { fileOffset: 192 * KiB, volumeOffset: 5 * MiB + 4096, length: 108 * KiB },
      ],
    },
    // compressed on disk: its clusters are in the regions, its content is not written there
    {
      path: '/compressed.txt',
      fsId: '14',
      size: 50_000,
      meta: { contentNotOnDisk: true },
      runs: [{ fileOffset: 0, volumeOffset: 0, length: 64 * KiB }],
    },
    // inline / resident: no runs, its bytes are in the metadata (regions)
    { path: '/small.txt', fsId: '15', size: 60, runs: [] },
    // more files than are placed at once
    ...Array.from({ length: 9 }, (_, i) => ({
      path: `/many/f${i}`,
      fsId: String(100 + i),
      size: 20_000 + i,
      runs: [{ fileOffset: 0, volumeOffset: 6 * MiB + i * 64 * KiB, length: 20 * KiB }],
    })),
  ],
  raw: [
    { offset: 0, length: 4096 },
    { offset: 64 * KiB, length: 12 * KiB },
  ],
};

describe('rebuildDisk', () => {
  let root: string;
  let repo: Repo;
  let out: string;
  const seed = randomBytes(64 * KiB);

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'vdbak-rebuild-'));
    initRepo(join(root, 'repo'));
    repo = openRepo(join(root, 'repo'));
    out = mkdtempSync(join(root, 'out-'));
  });
  afterAll(() => {
    repo.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('puts regions, files at their runs and raw volumes back byte for byte, in every format', async () => {
    const disk = expectedDisk(FULL, seed);
    const id = await makeBackup(repo, FULL, disk, 'full');
    const backup = repo.catalog.backup(id)!;
    const plan = planDisk(repo.catalog, backup, 0);
    expect(plan).toMatchObject({ complete: true, incomplete: [], regions: true, files: 11, rawVolumes: 1 });
    const many = 9 * 20_000 + 36;
    expect(plan.bytes).toBe(64 * KiB + 128 * KiB + 5000 + 100_000 + 64 * KiB + 108 * KiB + many + 16 * KiB);
    const oracle = join(out, 'expected.raw');
    writeFileSync(oracle, disk);
    for (const format of DISK_FORMATS) {
      const path = join(out, formatFileNames(format, `full-${format}`)[0]!);
      const w = await openWriter(format, path, DISK, { overwrite: false });
      const report = await rebuildDisk(repo.catalog, repo.target, backup, 0, w);
      expect(report.complete).toBe(true);
      // every stored byte here is random (no zero block to skip): all written, counted once
      expect(report.written).toBe(report.bytes);
      if (format === 'raw') expect(readFileSync(path).equals(disk)).toBe(true);
      const qf = format === 'raw' ? 'raw' : format === 'qcow2' ? 'qcow2' : 'vmdk';
      const cmp = spawnSync('qemu-img', ['compare', '-f', qf, '-F', 'raw', path, oracle], { encoding: 'utf8' });
      expect(cmp.status, `${format}: ${cmp.stdout}${cmp.stderr}`).toBe(0);
    }
  });

  it('a backup without regions is rebuilt as far as it goes and reported incomplete', async () => {
    const s: Scenario = { files: FULL.files };
    const disk = expectedDisk(s, seed);
    const backup = repo.catalog.backup(await makeBackup(repo, s, disk, 'noregions'))!;
    const path = join(out, 'noregions.raw');
    const report = await rebuildDisk(
      repo.catalog,
      repo.target,
      backup,
      0,
      await openWriter('raw', path, DISK, { overwrite: false }),
    );
    expect(report.complete).toBe(false);
    expect(report.regions).toBe(false);
    expect(report.incomplete[0]).toMatch(/no disk regions/);
    expect(readFileSync(path).equals(disk)).toBe(true);
  });

  it('files not read at backup time make the disk incomplete and are named', async () => {
    const s: Scenario = {
      regions: FULL.regions,
      files: [
        ...FULL.files!,
        {
          path: '/locked.pst',
          fsId: '20',
          size: 4096,
          runs: [{ fileOffset: 0, volumeOffset: 7 * MiB, length: 4096 }],
          meta: { readError: { code: 'IO', message: 'gone' } },
        },
      ],
    };
    const backup = repo.catalog.backup(await makeBackup(repo, s, expectedDisk(s, seed), 'unread'))!;
    const plan = planDisk(repo.catalog, backup, 0);
    expect(plan.complete).toBe(false);
    expect(plan.incomplete.join('\n')).toMatch(/1 file\(s\) could not be read.*\/d0p1\/locked\.pst/);
  });

  it('bytes a file shares with the regions are checked equal, not written twice; different bytes are an error naming both', async () => {
    // the backup joins region runs across small gaps past its run cap: a file's cluster may be in both
    const file: FileSpec = {
      path: '/shared',
      fsId: '30',
      size: 8192,
      runs: [{ fileOffset: 0, volumeOffset: 127 * KiB, length: 8192 }], // half inside the 128 KiB region at VOL1
    };
    const s: Scenario = { regions: FULL.regions, files: [file] };
    const disk = expectedDisk(s, seed);
    const same = repo.catalog.backup(await makeBackup(repo, s, disk, 'shared'))!;
    const plan = planDisk(repo.catalog, same, 0);
    expect(plan).toMatchObject({ complete: true, sharedBytes: 1024 });
    const path = join(out, 'shared.qcow2');
    const report = await rebuildDisk(
      repo.catalog,
      repo.target,
      same,
      0,
      await openWriter('qcow2', path, DISK, { overwrite: false }),
    );
    expect(report.complete).toBe(true);
    writeFileSync(join(out, 'shared-expected.raw'), disk);
    const cmp = spawnSync('qemu-img', ['compare', '-F', 'raw', path, join(out, 'shared-expected.raw')], {
      encoding: 'utf8',
    });
    expect(cmp.status, cmp.stdout).toBe(0);

    // the same layout, but the file's stored content is not what the regions hold there
    const other = Buffer.from(disk);
    other.fill(0x5a, VOL1.offset + 127 * KiB, VOL1.offset + 127 * KiB + 8192);
    const differs = repo.catalog.backup(
      await makeBackup(repo, s, disk, 'differs', { '/shared': fileContent(file, other) }),
    )!;
    const w = await openWriter('raw', join(out, 'differs.raw'), DISK, { overwrite: false });
    const e = await rebuildDisk(repo.catalog, repo.target, differs, 0, w).catch((x: unknown) => x);
    await w.abort();
    expect(e).toMatchObject({ code: 'REBUILD_OVERLAP_DIFFERS', details: { offset: VOL1.offset + 127 * KiB } });
    expect((e as Error).message).toMatch(/\/d0p1\/shared and \/d0\/regions\.raw both hold disk bytes/);
  });

  it('a raw volume over a file is an error naming both, found before anything is written', async () => {
    const s: Scenario = {
      files: [
        {
          path: '/evil',
          fsId: '31',
          size: 8192,
          runs: [{ fileOffset: 0, volumeOffset: 14 * MiB - 8192, length: 8192 }],
        },
      ],
    };
    const id = await makeBackup(repo, s, expectedDisk(s, seed), 'rawoverlap', {}, true);
    const backup = repo.catalog.backup(id)!;
    const writes: number[] = [];
    const spy: DiskWriter = {
      format: 'raw',
      size: DISK,
      files: [],
      write: (o) => Promise.resolve(void writes.push(o)),
      read: (_o, n) => Promise.resolve(Buffer.alloc(n)),
      finish: () => Promise.resolve(),
      abort: () => Promise.resolve(),
    };
    const e = await rebuildDisk(repo.catalog, repo.target, backup, 0, spy).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'REBUILD_OVERLAP' });
    expect((e as Error).message).toMatch(
      /\/d0p1\/evil and \/d0p2\/volume\.raw both claim|\/d0p2\/volume\.raw and \/d0p1\/evil both claim/,
    );
    expect(writes).toEqual([]);
  });

  it('two files claiming one cluster are an error; so is a run outside its volume', async () => {
    const two: Scenario = {
      files: [
        { path: '/x', fsId: '40', size: 4096, runs: [{ fileOffset: 0, volumeOffset: 9 * MiB, length: 4096 }] },
        { path: '/y', fsId: '41', size: 4096, runs: [{ fileOffset: 0, volumeOffset: 9 * MiB + 2048, length: 4096 }] },
      ],
    };
    const b2 = repo.catalog.backup(await makeBackup(repo, two, Buffer.alloc(DISK), 'twofiles'))!;
    expect(() => planDisk(repo.catalog, b2, 0)).toThrow(/\/d0p1\/x and \/d0p1\/y both claim/);
    const outside: Scenario = {
      files: [
        { path: '/far', fsId: '50', size: 4096, runs: [{ fileOffset: 0, volumeOffset: 14 * MiB - 100, length: 4096 }] },
      ],
    };
    const b3 = repo.catalog.backup(await makeBackup(repo, outside, Buffer.alloc(DISK), 'outside'))!;
    expect(() => planDisk(repo.catalog, b3, 0)).toThrow(expect.objectContaining({ code: 'REBUILD_RUN_OUTSIDE' }));
  });

  it("reads only the chunks that hold a file's allocated bytes, not its holes", async () => {
    const s: Scenario = {
      regions: FULL.regions,
      files: [
        {
          path: '/big-sparse.vhd',
          fsId: '60',
          size: 4 * MiB,
          runs: [
            { fileOffset: 0, volumeOffset: 10 * MiB, length: 64 * KiB },
            { fileOffset: 64 * KiB, volumeOffset: null, length: 4 * MiB - 64 * KiB },
          ],
        },
      ],
    };
    const disk = expectedDisk(s, seed);
    const backup = repo.catalog.backup(await makeBackup(repo, s, disk, 'sparsefile'))!;
    let reads = 0;
    const counting = Object.create(repo.target) as typeof repo.target;
    counting.getRange = (name, offset, length) => {
      reads++;
      return repo.target.getRange(name, offset, length);
    };
    const path = join(out, 'sparsefile.raw');
    await rebuildDisk(repo.catalog, counting, backup, 0, await openWriter('raw', path, DISK, { overwrite: false }));
    expect(readFileSync(path).equals(disk)).toBe(true);
    const regionChunks = Math.ceil((64 * KiB + 128 * KiB + 5000) / CHUNK);
    // the file's 4 MiB are ~540 chunks; its 64 KiB of data are 9
    expect(reads).toBeLessThanOrEqual(regionChunks + Math.ceil((64 * KiB) / CHUNK) + 1);
  });

  it('regions whose stored bytes do not match their runs are an error, not a silent short disk', async () => {
    const s: Scenario = { regions: FULL.regions };
    const backup = repo.catalog.backup(await makeBackup(repo, s, expectedDisk(s, seed), 'shortregions'))!;
    // the same runs, one chunk fewer
    const vol = repo.catalog.backupVolumes(backup.id).find((v) => v.name === 'd0')!;
    const v = repo.catalog.lookup(backup.id, vol.volumeId, '/regions.raw')!;
    const cat = repo.catalog;
    cat.db.prepare('UPDATE versions SET chunks = substr(chunks, 1, length(chunks) - 32) WHERE id = ?').run(v.id);
    const w = await openWriter('raw', join(out, 'short.raw'), DISK, { overwrite: false });
    await expect(rebuildDisk(cat, repo.target, backup, 0, w)).rejects.toMatchObject({ code: 'REBUILD_SHORT_STREAM' });
    await w.abort();
  });

  it('stops with a CancelledError when the signal aborts', async () => {
    const backup = repo.catalog.backups().find((b) => b.vmName === 'full')!;
    const ac = new AbortController();
    ac.abort(new Error('job cancelled'));
    const w = await openWriter('raw', join(out, 'cancel.raw'), DISK, { overwrite: false });
    await expect(rebuildDisk(repo.catalog, repo.target, backup, 0, w, ac.signal)).rejects.toMatchObject({
      kind: 'CancelledError',
    });
    await w.abort();
  });
});
