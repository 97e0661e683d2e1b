/**
 * The public MBR/GPT images of the shared corpus (../shared/corpus/mbr_gpt,
 * described in its SOURCES.md): what SOURCES.md and the upstream tests say
 * each holds, and, where the tools can read the image, the same listing as
 * `sfdisk --json` and `mmls`.
 *
 * Several images are the first 32 KiB (or less) of a real disk: their
 * partitions are reported as declared in `partitions`, and left out of (or
 * clipped in) `volumes`, with warnings.
 *
 * fox-it/dissect.volume's tests give GPT sizes as (last LBA − first LBA) ×
 * sector size, one sector short of the UEFI definition (the last LBA is
 * inclusive); mmls and sfdisk count it in, and so do we: each expected size
 * below is dissect's value + one sector. gpt_hybrid.bin proves the point: its
 * hybrid MBR mirrors GPT entries 1 and 3 as 1025 and 990 sectors.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../parsers/blockdevice.js';
import { isVdbakError } from '../../parsers/errors.js';
import { readVolumeMap } from '../../parsers/volume/index.js';
import type { VolumeMap } from '../../parsers/volume/types.js';
import { CORPUS, fixture, run } from '../helpers/fixtures.js';
import {
  expectMatchesMmls,
  expectMatchesSfdisk,
  expectVolumesWithin,
  mapOf,
  mmls,
  type SfdiskTable,
} from './oracles.js';

const unpacked = fixture('volume-corpus.sh');
const DISSECT = join(CORPUS, 'mbr_gpt', 'dissect');
const DFIR = join(CORPUS, 'mbr_gpt', 'dfir_ntfs');
const DFVFS = join(CORPUS, 'mbr_gpt', 'dfvfs');

function sfdisk(path: string): SfdiskTable {
  return (JSON.parse(run('sfdisk', ['--json', path])) as { partitiontable: SfdiskTable }).partitiontable;
}

function read(path: string): VolumeMap {
  const map = mapOf(path);
  expectVolumesWithin(map, statSync(path).size);
  return map;
}

describe('dfir_ntfs images', () => {
  it('gpt-512-0p: a GPT with no partitions', () => {
    const path = join(unpacked, 'gpt-512-0p.raw');
    const map = read(path);
    expectMatchesSfdisk(map, sfdisk(path));
    expect(map.partitions).toEqual([]);
    expect(map.diskId).toBe('1156c30a-f330-47f5-bec9-c85b0f186736');
  });

  it('gpt-512-3p: two Linux filesystems and an EFI System partition (34-64, 65-128, 129-2014)', () => {
    const path = join(unpacked, 'gpt-512-3p.raw');
    const map = read(path);
    expect(map.partitions.map((p) => [p.offset / 512, p.length / 512, p.typeName, p.name])).toEqual([
      [34, 31, 'Linux filesystem', 'Linux filesystem'],
      [65, 64, 'Linux filesystem', 'Linux filesystem'],
      [129, 1886, 'EFI System', 'EFI System'],
    ]);
    expectMatchesSfdisk(map, sfdisk(path));
    expectMatchesMmls(map, mmls(path));
    expect(map.warnings).toEqual([]);
  });

  it('mbr-4096-p1e1: a 4Kn MBR disk, detected from where its EBR lies', () => {
    const path = join(unpacked, 'mbr-4096-p1e1.bin');
    const map = read(path);
    expect(map.sectorSize).toBe(4096);
    expect(map.partitions.map((p) => [p.index, p.offset / 4096, p.length / 4096, p.type, !!p.bootable])).toEqual([
      [1, 3, 2, '0x8e', true],
      [2, 8, 4, '0x05', false],
      [5, 9, 2, '0x83', false],
    ]);
    expectMatchesMmls(map, mmls(path, 4096));
    expect(map.warnings).toEqual([]);
  });

  it('mbr-512-p1e2: an extended partition (1-1024) with two logicals, and a primary at 1025', () => {
    const path = join(unpacked, 'mbr-512-p1e2.bin');
    const map = read(path);
    expect(map.partitions.map((p) => [p.index, p.offset / 512, p.length / 512, p.type])).toEqual([
      [1, 1, 1024, '0x05'],
      [2, 1025, 1023, '0x83'],
      [5, 2, 511, '0x83'],
      [6, 514, 511, '0x83'],
    ]);
    expectMatchesSfdisk(map, sfdisk(path));
    expectMatchesMmls(map, mmls(path));
    expect(map.warnings).toEqual([]);
  });

  it('mbr-512-p4: four primaries (3× 0x83, 0x8e) in a 1 KiB cut of the disk', () => {
    const path = join(DFIR, 'mbr-512-p4.bin');
    const map = read(path);
    expect(map.partitions.map((p) => [p.index, p.offset / 512, p.length / 512, p.type])).toEqual([
      [1, 1, 2, '0x83'],
      [2, 3, 2, '0x83'],
      [3, 5, 2, '0x83'],
      [4, 7, 2041, '0x8e'],
    ]);
    expectMatchesSfdisk(map, sfdisk(path));
    // partition 1 is cut at the end of the file, the others start past it
    expect(map.volumes).toEqual([{ ...map.partitions[0], length: 512, declaredLength: 1024 }]);
    expect(map.warnings).toEqual([
      'partition 1 [512, 1536) runs past the end of the device: clipped to 512 bytes',
      'partition 2 [1536, 2560) starts past the end of the device (1024 bytes): not readable',
      'partition 3 [2560, 3584) starts past the end of the device (1024 bytes): not readable',
      'partition 4 [3584, 1048576) starts past the end of the device (1024 bytes): not readable',
    ]);
  });

  it('mbr-win-512 (Windows): 3 FAT16 primaries and a chain of 4 logical FAT16 partitions', () => {
    const path = join(unpacked, 'mbr-win-512.raw');
    const map = read(path);
    expect(map.partitions.map((p) => [p.index, p.offset / 512, p.length / 512, p.typeName])).toEqual([
      [1, 128, 16384, 'FAT16'],
      [2, 16512, 16384, 'FAT16'],
      [3, 32896, 16384, 'FAT16'],
      [4, 49280, 471040, 'Extended'],
      [5, 49408, 16384, 'FAT16'],
      [6, 65920, 16384, 'FAT16'],
      [7, 82432, 16384, 'FAT16'],
      [8, 98944, 417792, 'FAT16'],
    ]);
    expectMatchesSfdisk(map, sfdisk(path));
    expectMatchesMmls(map, mmls(path));
    expect(map.warnings).toEqual([]);
  });
});

describe('dfvfs images', () => {
  it('mbr.raw: primary Linux 1-129, extended at 130 with a logical at 131-259', () => {
    const path = join(unpacked, 'mbr.raw');
    const map = read(path);
    expect(map.partitions.map((p) => [p.index, p.offset / 512, p.length / 512, p.type])).toEqual([
      [1, 1, 129, '0x83'],
      [2, 130, 8062, '0x05'],
      [5, 131, 129, '0x83'],
    ]);
    expectMatchesSfdisk(map, sfdisk(path));
    expectMatchesMmls(map, mmls(path));
    expect(map.warnings).toEqual([]);
  });

  it('tsk_volume_system.raw: primary 1-350, extended 351-2879 with a logical 352-2879', () => {
    const path = join(DFVFS, 'tsk_volume_system.raw');
    const map = read(path);
    expect(map.partitions.map((p) => [p.index, p.offset / 512, p.length / 512, p.type])).toEqual([
      [1, 1, 350, '0x83'],
      [2, 351, 2529, '0x05'],
      [5, 352, 2528, '0x83'],
    ]);
    expectMatchesSfdisk(map, sfdisk(path));
    expectMatchesMmls(map, mmls(path));
    expect(map.warnings).toEqual([]);
  });
});

describe('dissect.volume images (first 32 KiB of real disks)', () => {
  it('gpt.bin (Windows): EFI System + Basic data, and a hybrid 0x07 MBR entry', () => {
    const map = read(join(DISSECT, 'gpt.bin'));
    expect(map.scheme).toBe('gpt');
    expect(map.partitions.map((p) => [p.index, p.offset, p.length, p.typeName, p.name, p.uuid])).toEqual([
      [1, 0x5000, 0xc7ffe00 + 512, 'EFI System', 'EFI System Partition', '27d920bc-e414-45e0-9503-2606de7a1056'],
      [2, 0xc900000, 0x7465ffe00 + 512, 'Microsoft basic data', '', 'a14cecf3-b364-4d6d-a540-e245e6df9d11'],
    ]);
    // the EFI System partition starts inside the 32 KiB cut: clipped; Basic data starts past it
    expect(map.volumes).toEqual([{ ...map.partitions[0], length: 32768 - 20480, declaredLength: 0xc800000 }]);
    expect(map.warnings[0]).toMatch(/^hybrid MBR: .*#2 type 0x7 sectors \[411648, \+61026304\); the GPT wins/);
    expect(map.warnings.slice(1)).toEqual([
      'the backup GPT header (LBA 61439999) lies past the end of the device (a truncated image?)',
      `partition 1 [20480, ${20480 + 0xc800000}) runs past the end of the device: clipped to 12288 bytes`,
      `partition 2 [${0xc900000}, ${0xc900000 + 0x746600000}) starts past the end of the device (32768 bytes): not readable`,
    ]);
  });

  it('gpt_4k.bin: a 4Kn GPT (header at byte 4096), three Linux filesystems', () => {
    const path = join(DISSECT, 'gpt_4k.bin');
    const map = read(path);
    expect(map.sectorSize).toBe(4096);
    expect(map.partitions.map((p) => [p.index, p.offset, p.length, p.typeName, p.name, p.uuid])).toEqual([
      [1, 0x100000, 0x100000 + 4096, 'Linux filesystem', 'Linux filesystem', '21b90a6e-0918-4e72-aa1a-85f8ba8ef8cc'],
      [2, 0x300000, 0x100000 + 4096, 'Linux filesystem', 'Linux filesystem', 'c6f4ad42-4652-448d-89d7-7cfa7710abe7'],
      [3, 0x500000, 0xb5a000 + 4096, 'Linux filesystem', 'Linux filesystem', 'b7230707-dcaa-4483-823b-06f9b718ee55'],
    ]);
    // forced to 512-byte sectors there is no GPT, and a purely protective MBR has nothing else to offer
    let err: unknown;
    try {
      mapOf(path, { sectorSize: 512 });
    } catch (e) {
      err = e;
    }
    expect(isVdbakError(err) && [err.layer, err.code]).toEqual(['gpt', 'GPT_NO_VALID_COPY']);
  });

  it('gpt_esxi.bin (ESXi 7 installer): BOOT, BOOTBANK1, BOOTBANK2, OSDATA, datastore1', () => {
    const path = join(DISSECT, 'gpt_esxi.bin');
    const map = read(path);
    expect(map.partitions.map((p) => [p.index, p.offset, p.length, p.name, p.typeName, p.uuid])).toEqual([
      [1, 0x8000, 0x63ffe00 + 512, 'BOOT', 'EFI System', '0f7a6017-09ed-474c-b4b2-b377059d593a'],
      [5, 0x6600000, 0xffeffe00 + 512, 'BOOTBANK1', 'Microsoft basic data', 'cc02273b-7b9b-4075-9e93-b1755f07dca5'],
      [6, 0x106600000, 0xffeffe00 + 512, 'BOOTBANK2', 'Microsoft basic data', 'ec9f58a6-4b6c-45f8-a703-f212e8c28a0a'],
      [7, 0x206600000, 0x1df99ffe00 + 512, 'OSDATA', 'VMware OSData', 'fc7f0906-62a5-47b2-8f40-98d9427fefe0'],
      [8, 0x2000100000, 0x37fefbc00 + 512, 'datastore1', 'VMware VMFS', '327aa3da-0d50-4e97-b28f-014d92724aab'],
    ]);
    expectMatchesMmls(map, mmls(path));
    expect(mmls(path).map((r) => r.description)).toEqual(map.partitions.map((p) => p.name));
  });

  it('gpt_hybrid.bin: the GPT wins over the two 0x83 entries of its hybrid MBR', () => {
    const map = read(join(DISSECT, 'gpt_hybrid.bin'));
    expect(map.scheme).toBe('gpt');
    expect(map.partitions.map((p) => [p.index, p.offset, p.length, p.name, p.uuid])).toEqual([
      [1, 0x100000, 0x80000 + 512, 'Linux filesystem', '44eea528-8489-4bbc-a480-56bd208cd233'],
      [2, 0x4400, 0xfba00 + 512, 'Linux filesystem', '8f4bcd34-d9d4-4060-a683-6f75c90b795b'],
      [3, 0x180200, 0x7ba00 + 512, 'Linux filesystem', 'b6aa0017-3abb-4c2b-b00c-5189e66d9896'],
    ]);
    // dissect's view of the hybrid MBR: 0x100000/0x80200 and 0x180200/0x7BC00, the same extents as GPT 1 and 3
    expect(map.warnings[0]).toBe(
      'hybrid MBR: besides its 0xEE entry it lists #1 type 0x83 sectors [2048, +1025), #2 type 0x83 sectors [3073, +990); the GPT wins and those entries are not used',
    );
    expect([map.partitions[0]?.length, map.partitions[2]?.length]).toEqual([0x80200, 0x7bc00]);
  });

  it('gpt_no_name_xff.bin: a VMFS partition whose name is padded with 0xFF reads as an empty name', () => {
    const map = read(join(DISSECT, 'gpt_no_name_xff.bin'));
    expect(map.partitions.map((p) => [p.index, p.offset / 512, p.length / 512, p.typeName, p.name])).toEqual([
      [1, 2048, 41940992 - 2048 + 1, 'VMware VMFS', ''],
    ]);
    // The name was hex-edited to 0xFF after the array CRC was computed (the stored CRC is that of
    // the array with a zero name), and the backup lies past this 35-sector cut: the entries are
    // read anyway, and the warning says so.
    expect(map.warnings[0]).toMatch(/no GPT copy is intact .*GPT_ENTRIES_CRC.*the entries at LBA 2 are used although/);
  });

  it('mbr.bin (Windows 7): two NTFS partitions declared past its single sector', () => {
    const path = join(DISSECT, 'mbr.bin');
    const map = read(path);
    expect(map.diskId).toBe('0xbaff7d5c');
    expect(map.partitions.map((p) => [p.index, p.offset, p.length, p.type, p.typeName, !!p.bootable])).toEqual([
      [1, 0x100000, 0x1f400000, '0x07', 'HPFS/NTFS/exFAT', true],
      [2, 0x1f500000, 0xee0a00000, '0x07', 'HPFS/NTFS/exFAT', false],
    ]);
    expectMatchesSfdisk(map, sfdisk(path));
    expect(map.volumes).toEqual([]);
    expect(map.warnings).toHaveLength(2);
  });

  it('a GPT sector-0 + 896 zero bytes is not a usable GPT (dissect test_gpt_invalid)', () => {
    const head = readFileSync(join(DISSECT, 'gpt.bin')).subarray(0, 512);
    const dev = new MemoryDevice(Buffer.concat([head, Buffer.alloc(896)]), 'gpt-invalid');
    // the hybrid 0x07 entry is all that is left: reported, with the reason
    const map = readVolumeMap(dev);
    expect(map.scheme).toBe('mbr');
    expect(map.partitions.map((p) => [p.index, p.type])).toEqual([[2, '0x07']]);
    expect(map.warnings.some((w) => w.includes('no usable GPT') && w.includes('GPT_NO_VALID_COPY'))).toBe(true);
  });
});
