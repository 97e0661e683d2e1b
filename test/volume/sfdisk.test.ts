/**
 * Disks partitioned by sfdisk (dos with logicals, gpt with names; 512-byte
 * and 4Kn) read back and compared field by field with `sfdisk --json` and
 * `mmls`; damaged primary GPTs must come back from the backup unchanged;
 * bare filesystems must give one whole-disk volume.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../parsers/blockdevice.js';
import { readVolumeMap } from '../../parsers/volume/index.js';
import { GPT_TYPES, MBR_TYPES } from '../../parsers/volume/typenames.js';
import { fixture, run } from '../helpers/fixtures.js';
import {
  expectMatchesMmls,
  expectMatchesSfdisk,
  expectVolumesWithin,
  mapOf,
  parseMmls,
  readSfdiskJson,
} from './oracles.js';

describe('dos disks made by sfdisk', () => {
  const dir = fixture('volume-dos.sh');

  it.each([
    ['dos.raw', 'dos.json', 'dos.mmls'],
    ['dos4k.raw', 'dos4k.json', 'dos4k.mmls'],
  ])('%s matches sfdisk --json and mmls', (img, json, mm) => {
    const path = join(dir, img);
    const map = mapOf(path);
    const table = readSfdiskJson(join(dir, json));
    expectMatchesSfdisk(map, table);
    expectVolumesWithin(map, statSync(path).size);
    expect(map.volumes).toEqual(map.partitions.filter((p) => !p.extended));
    expect(map.partitions.filter((p) => p.logical)).toHaveLength(5);
    expectMatchesMmls(map, parseMmls(readFileSync(join(dir, mm), 'utf8')));
    expect(map.warnings).toEqual([]);
  });

  it('names the types as sfdisk does', () => {
    const map = mapOf(join(dir, 'dos.raw'));
    expect(map.partitions.map((p) => p.typeName)).toEqual([
      'Linux',
      'HPFS/NTFS/exFAT',
      'Extended',
      'Linux',
      'Linux swap / Solaris',
      'W95 FAT32 (LBA)',
      'Linux LVM',
      'Linux',
    ]);
  });

  it('a forced wrong sector size does not invent a 4Kn layout', () => {
    const map = mapOf(join(dir, 'dos4k.raw'), { sectorSize: 512 });
    expect(map.sectorSize).toBe(512);
    // the EBR chain is not where 512-byte LBAs point: the chain stops with a warning
    expect(map.partitions.filter((p) => p.logical)).toEqual([]);
    expect(map.warnings.some((w) => /EBR at sector \d+ has no 55 AA signature/.test(w))).toBe(true);
  });
});

describe('gpt disks made by sfdisk', () => {
  const dir = fixture('volume-gpt.sh');
  const table = readSfdiskJson(join(dir, 'gpt.json'));

  it.each([
    ['gpt.raw', 'gpt.json', 'gpt.mmls'],
    ['gpt4k.raw', 'gpt4k.json', 'gpt4k.mmls'],
  ])('%s matches sfdisk --json and mmls', (img, json, mm) => {
    const path = join(dir, img);
    const map = mapOf(path);
    expectMatchesSfdisk(map, readSfdiskJson(join(dir, json)));
    expectVolumesWithin(map, statSync(path).size);
    expect(map.volumes).toEqual(map.partitions.filter((p) => !p.extended));
    expect(map.partitions).toHaveLength(7);
    expectMatchesMmls(map, parseMmls(readFileSync(join(dir, mm), 'utf8')));
    expect(map.warnings).toEqual([]);
  });

  it('reads attributes, type names and a 36-character name', () => {
    const map = mapOf(join(dir, 'gpt.raw'));
    expect(map.partitions.map((p) => p.typeName)).toEqual([
      'EFI System',
      'Microsoft reserved',
      'Microsoft basic data',
      'Linux filesystem',
      'Linux swap',
      'Linux LVM',
      'Linux filesystem',
    ]);
    // sfdisk: attrs="RequiredPartition GUID:63" = bits 0 and 63
    expect(map.partitions[5]?.attributes).toBe('0x8000000000000001');
    expect(map.partitions[0]?.attributes).toBe('0x0000000000000000');
    expect(map.partitions[6]?.name).toHaveLength(36);
  });

  it.each([
    ['gpt-zero-header.raw', 'GPT_BAD_SIGNATURE'],
    ['gpt-bad-header-crc.raw', 'GPT_HEADER_CRC'],
    ['gpt-bad-array.raw', 'GPT_ENTRIES_CRC'],
    ['gpt-zero-array.raw', 'GPT_ENTRIES_CRC'],
  ])('%s is read from the backup GPT and equals the undamaged listing', (img, code) => {
    const path = join(dir, img);
    const map = mapOf(path);
    const lastLba = statSync(path).size / 512 - 1;
    expect(map.warnings).toHaveLength(1);
    expect(map.warnings[0]).toContain(`using the backup GPT at LBA ${lastLba}`);
    expect(map.warnings[0]).toContain(`[${code}]`);
    map.warnings = [];
    expectMatchesSfdisk(map, table);
    expectVolumesWithin(map, statSync(path).size);
    expect(map.volumes).toEqual(map.partitions.filter((p) => !p.extended));
  });

  it('warns when the backup GPT of a good primary is damaged', () => {
    const bytes = readFileSync(join(dir, 'gpt.raw'));
    const reserved = bytes.length - 512 + 20; // reserved field of the backup header: its CRC no longer matches
    bytes[reserved] = (bytes[reserved] ?? 0) ^ 0xff;
    const map = readVolumeMap(new MemoryDevice(bytes, 'gpt-bad-backup'));
    expectMatchesSfdisk({ ...map, warnings: [] }, table);
    expectVolumesWithin(map, bytes.length);
    expect(map.volumes).toEqual(map.partitions.filter((p) => !p.extended));
    expect(map.warnings).toHaveLength(1);
    expect(map.warnings[0]).toMatch(/backup GPT is damaged .*GPT_HEADER_CRC/);
  });
});

describe('disks with no partition table', () => {
  const dir = fixture('volume-none.sh');

  it.each(['ext4', 'ntfs'])('a bare %s image is one whole-disk volume', (fs) => {
    const path = join(dir, `${fs}.raw`);
    const size = statSync(path).size;
    // blkid: a filesystem over the whole device and no partition table
    const blkid = readFileSync(join(dir, `${fs}.blkid`), 'utf8');
    expect(blkid).toContain(`TYPE=${fs}`);
    expect(blkid).not.toContain('PTTYPE');
    // sfdisk finds no partitions (for NTFS it reports an empty "dos" label: the boot sector ends in 55 AA)
    const json = readFileSync(join(dir, `${fs}.json`), 'utf8');
    if (json.trim() === '') expect(readFileSync(join(dir, `${fs}.sfdisk-err`), 'utf8')).toMatch(/does not contain/);
    else expect(JSON.parse(json).partitiontable.partitions).toBeUndefined();
    const map = mapOf(path);
    expect(map.scheme).toBe('none');
    expect(map.partitions).toEqual([]);
    expect(map.volumes).toEqual([
      { index: 1, offset: 0, length: size, scheme: 'none', type: 'none', typeName: 'whole disk', name: '' },
    ]);
    expect(map.warnings).toEqual([]);
  });
});

describe('type names', () => {
  /** `sfdisk -T` lines: "ID  Name". */
  function sfdiskTypes(label: string): Map<string, string> {
    const out = new Map<string, string>();
    for (const line of run('sfdisk', ['-T', '--label', label]).split('\n')) {
      const m = /^\s*([0-9A-Fa-f-]+)\s{2}(.+)$/.exec(line);
      if (m?.[1] && m[2]) out.set(m[1].toLowerCase(), m[2]);
    }
    return out;
  }

  it('every MBR type name is the one sfdisk uses', () => {
    const theirs = sfdiskTypes('dos');
    expect(theirs.size).toBeGreaterThan(50);
    for (const [type, name] of MBR_TYPES)
      expect([type.toString(16), name]).toEqual([type.toString(16), theirs.get(type.toString(16))]);
  });

  it('every GPT type name is the one sfdisk uses (ESXi OSData aside: sfdisk does not know it)', () => {
    const theirs = sfdiskTypes('gpt');
    expect(theirs.size).toBeGreaterThan(50);
    for (const [guid, name] of GPT_TYPES) {
      if (name === 'VMware OSData') expect(theirs.has(guid)).toBe(false);
      else expect([guid, name]).toEqual([guid, theirs.get(guid)]);
    }
  });
});
