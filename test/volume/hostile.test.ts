/**
 * Hand-made hostile disks: EBR loops and endless chains, links and logicals
 * outside their extended partition, GPT headers with absurd entry counts and
 * sizes, broken CRCs on both copies, garbage that ends in 55 AA, overlaps.
 * Each must give typed errors or warnings, never a hang or a wrong volume.
 *
 * GPT cases start from a real GPT (dfir_ntfs gpt-512-3p.raw, 1 MiB, made by a
 * tool other than ours) and re-seal edited headers with zlib's CRC-32.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { catchTyped } from '../helpers/fuzz.js';
import { MemoryDevice } from '../../parsers/blockdevice.js';
import { readVolumeMap } from '../../parsers/volume/index.js';
import { MAX_EBR_CHAIN } from '../../parsers/volume/mbr.js';
import type { VolumeMap } from '../../parsers/volume/types.js';
import { fixture } from '../helpers/fixtures.js';
import { expectVolumesWithin } from './oracles.js';

interface Entry {
  status?: number;
  type: number;
  first: number;
  sectors: number;
}

/** Writes an MBR/EBR record (entries + 55 AA) into `disk` at sector `lba`. */
function putRecord(disk: Buffer, lba: number, entries: Entry[], diskSignature = 0): void {
  const at = lba * 512;
  disk.writeUInt32LE(diskSignature, at + 440);
  entries.forEach((e, i) => {
    const o = at + 446 + i * 16;
    disk[o] = e.status ?? 0;
    disk[o + 4] = e.type;
    disk.writeUInt32LE(e.first, o + 8);
    disk.writeUInt32LE(e.sectors, o + 12);
  });
  disk[at + 510] = 0x55;
  disk[at + 511] = 0xaa;
}

function map(disk: Buffer): VolumeMap {
  const m = readVolumeMap(new MemoryDevice(disk, 'hostile'));
  expectVolumesWithin(m, disk.length);
  return m;
}

describe('MBR and EBR chains', () => {
  it('an EBR chain that loops back is cut where it loops', () => {
    const disk = Buffer.alloc(4096 * 512);
    putRecord(disk, 0, [{ type: 0x05, first: 100, sectors: 3000 }]);
    putRecord(disk, 100, [
      { type: 0x83, first: 10, sectors: 50 },
      { type: 0x05, first: 200, sectors: 100 },
    ]);
    putRecord(disk, 300, [
      { type: 0x83, first: 10, sectors: 50 },
      { type: 0x05, first: 0, sectors: 100 }, // back to the first EBR
    ]);
    const m = map(disk);
    expect(m.partitions.map((p) => [p.index, p.offset / 512, p.length / 512])).toEqual([
      [1, 100, 3000],
      [5, 110, 50],
      [6, 310, 50],
    ]);
    expect(m.warnings).toEqual([
      'the EBR chain of extended partition 1 [sectors 100, 3100) loops back to sector 100; stopped there',
    ]);
  });

  it(`an EBR chain of thousands of links stops after ${MAX_EBR_CHAIN}`, () => {
    const links = 5000;
    const disk = Buffer.alloc((links * 2 + 4) * 512);
    putRecord(disk, 0, [{ type: 0x0f, first: 2, sectors: links * 2 + 2 }]);
    for (let i = 0; i < links; i++) {
      putRecord(disk, 2 + 2 * i, [
        { type: 0x83, first: 1, sectors: 1 },
        { type: 0x05, first: 2 * (i + 1), sectors: 2 },
      ]);
    }
    const started = Date.now();
    const m = map(disk);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(m.partitions.filter((p) => p.logical)).toHaveLength(MAX_EBR_CHAIN);
    expect(m.partitions.at(-1)?.index).toBe(4 + MAX_EBR_CHAIN);
    expect(m.warnings).toEqual([
      `the EBR chain of extended partition 1 [sectors 2, 10004) is longer than ${MAX_EBR_CHAIN} links; stopped there`,
    ]);
  });

  it('EBR links and logicals outside the extended partition or the disk are reported', () => {
    const disk = Buffer.alloc(2048 * 512);
    putRecord(disk, 0, [
      { type: 0x83, first: 1, sectors: 99 },
      { type: 0x85, first: 100, sectors: 400 },
      { type: 0x05, first: 1000, sectors: 5000 }, // a second extended partition, its EBR past the end
    ]);
    putRecord(disk, 100, [
      { type: 0x83, first: 1, sectors: 600 }, // runs out of its extended partition
      { type: 0x05, first: 450, sectors: 10 }, // link past the extended partition
    ]);
    putRecord(disk, 1000, [
      { type: 0x83, first: 1, sectors: 100 },
      { type: 0x05, first: 100000, sectors: 10 },
    ]);
    const m = map(disk);
    expect(m.partitions.map((p) => [p.index, p.offset / 512, p.length / 512, !!p.logical])).toEqual([
      [1, 1, 99, false],
      [2, 100, 400, false],
      [3, 1000, 5000, false],
      [5, 101, 600, true],
      [6, 1001, 100, true],
    ]);
    expect(m.warnings).toEqual([
      'the MBR lists 2 extended partitions (one is usual); each chain is followed',
      'logical partition 5 [sectors 101, 701) lies outside its extended partition 2 [sectors 100, 500)',
      'the EBR at sector 100 links to sector 550, outside its extended partition 2 [sectors 100, 500); chain stopped',
      'the EBR at sector 1000 links to sector 101000, outside its extended partition 3 [sectors 1000, 6000); chain stopped',
    ]);
  });

  it('an extended partition whose EBR lies past the end of the device', () => {
    const disk = Buffer.alloc(64 * 512);
    putRecord(disk, 0, [{ type: 0x05, first: 2048, sectors: 4096 }], 0xdeadbeef);
    const m = map(disk);
    expect(m.diskId).toBe('0xdeadbeef');
    expect(m.volumes).toEqual([]);
    expect(m.warnings).toEqual([
      'the EBR at sector 2048 lies past the end of the device; logical partitions from there on are not listed',
    ]);
  });

  it('overlapping primaries are listed and warned about', () => {
    const disk = Buffer.alloc(1024 * 512);
    putRecord(disk, 0, [
      { type: 0x83, first: 10, sectors: 500, status: 0x80 },
      { type: 0x07, first: 400, sectors: 100 },
    ]);
    const m = map(disk);
    expect(m.volumes.map((v) => [v.index, v.offset / 512, v.length / 512, v.bootable])).toEqual([
      [1, 10, 500, true],
      [2, 400, 100, false],
    ]);
    expect(m.warnings).toEqual(['partitions 1 and 2 overlap']);
  });

  it('55 AA over garbage entries is not a table: one whole-disk volume', () => {
    const disk = Buffer.alloc(64 * 512);
    for (let i = 0; i < 510; i++) disk[i] = (i * 131 + 7) & 0xff;
    disk[510] = 0x55;
    disk[511] = 0xaa;
    const m = map(disk);
    expect(m.scheme).toBe('none');
    expect(m.volumes).toEqual([
      { index: 1, offset: 0, length: disk.length, scheme: 'none', type: 'none', typeName: 'whole disk', name: '' },
    ]);
    expect(m.warnings).toHaveLength(1);
    expect(m.warnings[0]).toMatch(/^sector 0 ends in 55 AA but is not a partition table: entry 1 has status byte/);
  });

  it('a FAT boot sector is a filesystem, not a table, even with plausible entries', () => {
    const disk = Buffer.alloc(64 * 512);
    putRecord(disk, 0, [{ type: 0x83, first: 1, sectors: 10 }]);
    disk.set([0xeb, 0x3c, 0x90], 0); // jump
    disk.write('mkfs.fat', 3, 'latin1');
    disk.writeUInt16LE(512, 11); // bytes per sector
    disk[13] = 4; // sectors per cluster
    disk.writeUInt16LE(4, 14); // reserved sectors
    disk[16] = 2; // FATs
    disk[21] = 0xf8; // media
    const m = map(disk);
    expect(m.scheme).toBe('none');
    expect(m.warnings).toEqual([]);
  });

  it('an MBR with no partitions, and devices too small for any table', () => {
    const empty = Buffer.alloc(64 * 512);
    putRecord(empty, 0, [], 0x1234);
    expect(map(empty)).toMatchObject({ scheme: 'mbr', diskId: '0x00001234', volumes: [], partitions: [] });
    for (const size of [0, 1, 511]) {
      const m = map(Buffer.alloc(size));
      expect(m.scheme).toBe('none');
      expect(m.volumes).toEqual([
        { index: 1, offset: 0, length: size, scheme: 'none', type: 'none', typeName: 'whole disk', name: '' },
      ]);
    }
  });
});

describe('GPT headers and entry arrays', () => {
  const dir = fixture('volume-corpus.sh');
  const base = readFileSync(join(dir, 'gpt-512-3p.raw'));
  const LAST = base.length / 512 - 1;

  /** Edits the header at `lba` and re-seals its CRC, so only the edit is wrong. */
  function editHeader(disk: Buffer, lba: number, edit: (h: Buffer) => void, reseal = true): void {
    const h = disk.subarray(lba * 512, lba * 512 + 512);
    edit(h);
    if (reseal) {
      h.writeUInt32LE(0, 16);
      h.writeUInt32LE(crc32(h.subarray(0, h.readUInt32LE(12))), 16);
    }
  }

  const cases: [string, (h: Buffer) => void, string, boolean?][] = [
    ['entry count 0xFFFFFFFF', (h) => h.writeUInt32LE(0xffffffff, 80), 'GPT_ENTRY_COUNT'],
    ['entry size 130 (not 128 × 2^n)', (h) => h.writeUInt32LE(130, 84), 'GPT_ENTRY_SIZE'],
    ['entry size 0', (h) => h.writeUInt32LE(0, 84), 'GPT_ENTRY_SIZE'],
    ['entry size 2^31', (h) => h.writeUInt32LE(0x80000000, 84), 'GPT_ENTRY_SIZE'],
    ['header size 0xFFFFFFFF', (h) => h.writeUInt32LE(0xffffffff, 12), 'GPT_HEADER_SIZE'],
    ['header CRC mismatch', (h) => h.writeUInt32LE(h.readUInt32LE(40) + 1, 40), 'GPT_HEADER_CRC', false],
    ['my_lba wrong', (h) => h.writeBigUInt64LE(7n, 24), 'GPT_MY_LBA'],
    ['entry array LBA 2^63', (h) => h.writeBigUInt64LE(1n << 63n, 72), 'GPT_LBA_RANGE'],
    ['entry array over the header', (h) => h.writeBigUInt64LE(h.readBigUInt64LE(24), 72), 'GPT_ENTRIES_LBA'],
    ['first usable after last usable', (h) => h.writeBigUInt64LE(3000n, 40), 'GPT_USABLE_RANGE'],
  ];

  it.each(cases)('primary with %s: the backup is used, with a warning naming the defect', (_, edit, code, reseal) => {
    const disk = Buffer.from(base);
    editHeader(disk, 1, edit, reseal ?? true);
    const m = map(disk);
    expect(m.scheme).toBe('gpt');
    expect(m.partitions.map((p) => [p.offset / 512, p.length / 512])).toEqual([
      [34, 31],
      [65, 64],
      [129, 1886],
    ]);
    expect(m.warnings).toHaveLength(1);
    expect(m.warnings[0]).toContain(`[${code}]`);
    expect(m.warnings[0]).toContain(`using the backup GPT at LBA ${LAST}`);
  });

  it.each(cases)('both copies with %s: a typed error', (_, edit, code, reseal) => {
    const disk = Buffer.from(base);
    editHeader(disk, 1, edit, reseal ?? true);
    editHeader(disk, LAST, edit, reseal ?? true);
    const e = catchTyped(() => readVolumeMap(new MemoryDevice(disk, 'both-bad')));
    expect([e.kind, e.layer, e.code, e.details.codes]).toEqual([
      'CorruptError',
      'gpt',
      'GPT_NO_VALID_COPY',
      [code, code],
    ]);
    expect(e.image).toBe('both-bad');
  });

  it('entries with an impossible range are skipped, entries outside the usable area are kept; both warned', () => {
    const disk = Buffer.from(base);
    const entry = (i: number) => disk.subarray(1024 + i * 128, 1024 + (i + 1) * 128);
    entry(0).writeBigUInt64LE(100n, 32); // first 100 > last 64
    entry(1).writeBigUInt64LE(5000n, 40); // last past last usable (2014) and past the disk
    for (const lba of [1, LAST]) {
      const arrayLba = Number(disk.readBigUInt64LE(lba * 512 + 72));
      disk.copy(disk, arrayLba * 512, 1024, 1024 + 128 * 128);
      editHeader(disk, lba, (h) =>
        h.writeUInt32LE(crc32(disk.subarray(arrayLba * 512, arrayLba * 512 + 128 * 128)), 88),
      );
    }
    const m = map(disk);
    expect(m.partitions.map((p) => [p.index, p.offset / 512, p.length / 512])).toEqual([
      [2, 65, 5000 - 65 + 1],
      [3, 129, 1886],
    ]);
    expect(m.warnings).toEqual([
      'GPT entry 1 has an impossible LBA range [100, 64]; skipped',
      'GPT entry 2 [LBA 65, 5000] lies outside the usable area [34, 2014]',
      `partition 2 [33280, ${5001 * 512}) runs past the end of the device: clipped to ${base.length - 33280} bytes`,
      'partitions 2 and 3 overlap',
    ]);
  });

  it('a GPT whose protective MBR was wiped is still found, with a warning', () => {
    const disk = Buffer.from(base);
    disk.fill(0, 0, 512);
    const m = map(disk);
    expect(m.scheme).toBe('gpt');
    expect(m.partitions).toHaveLength(3);
    expect(m.warnings).toEqual(['sector 0 holds no protective MBR, but a valid GPT was found and is used']);
  });

  it('a stale GPT behind an MBR without 0xEE: the MBR is used', () => {
    const disk = Buffer.from(base);
    disk.fill(0, 446, 510);
    putRecord(disk, 0, [{ type: 0x83, first: 2048, sectors: 100 }]);
    const m = map(disk);
    expect(m.scheme).toBe('mbr');
    expect(m.partitions.map((p) => [p.index, p.type])).toEqual([[1, '0x83']]);
    expect(m.warnings[0]).toBe(
      'a GPT header exists at LBA 1 but the MBR has no 0xEE entry: the MBR is used (stale GPT?)',
    );
  });
});
