/**
 * Oracles for the volume tests: `sfdisk --json` listings and `mmls` output
 * (The Sleuth Kit), parsed and compared with a VolumeMap field by field.
 */
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { RawImage } from '../../parsers/disk/raw.js';
import { readVolumeMap, type VolumeOptions } from '../../parsers/volume/index.js';
import type { Volume, VolumeMap } from '../../parsers/volume/types.js';
import { run } from '../helpers/fixtures.js';

export interface SfdiskPartition {
  node: string;
  start: number;
  size: number;
  type: string;
  uuid?: string;
  name?: string;
  bootable?: boolean;
}

export interface SfdiskTable {
  label: 'dos' | 'gpt';
  id: string;
  sectorsize: number;
  partitions?: SfdiskPartition[];
}

export function readSfdiskJson(path: string): SfdiskTable {
  return (JSON.parse(readFileSync(path, 'utf8')) as { partitiontable: SfdiskTable }).partitiontable;
}

/** The partition number sfdisk gives a node ("disk.raw5", "/dev/loop0p5" → 5). */
export function partitionNumber(node: string): number {
  const m = /(\d+)$/.exec(node);
  if (!m?.[1]) throw new Error(`no partition number in ${node}`);
  return Number(m[1]);
}

const EXTENDED = new Set([0x05, 0x0f, 0x85]);

/** Asserts that `map` lists exactly what sfdisk lists: start, size, type, name, uuid, boot flag, ids. */
export function expectMatchesSfdisk(map: VolumeMap, t: SfdiskTable): void {
  expect(map.scheme).toBe(t.label === 'dos' ? 'mbr' : 'gpt');
  expect(map.sectorSize).toBe(t.sectorsize);
  expect(map.diskId).toBe(t.id.toLowerCase());
  const ss = t.sectorsize;
  const want = t.partitions ?? [];
  expect(map.partitions.map((p) => p.index)).toEqual(want.map((p) => partitionNumber(p.node)));
  for (const [i, s] of want.entries()) {
    const p = map.partitions[i] as Volume;
    expect(p.offset, `partition ${p.index} offset`).toBe(s.start * ss);
    expect(p.length, `partition ${p.index} length`).toBe(s.size * ss);
    if (t.label === 'dos') {
      const type = Number.parseInt(s.type, 16);
      expect(Number.parseInt(p.type, 16), `partition ${p.index} type`).toBe(type);
      expect(p.bootable ?? false, `partition ${p.index} bootable`).toBe(s.bootable ?? false);
      expect(p.extended ?? false).toBe(EXTENDED.has(type));
      expect(p.logical ?? false).toBe(p.index >= 5);
      expect(p.name).toBe('');
    } else {
      expect(p.type, `partition ${p.index} type`).toBe(s.type.toLowerCase());
      expect(p.uuid, `partition ${p.index} uuid`).toBe(s.uuid?.toLowerCase());
      expect(p.name, `partition ${p.index} name`).toBe(s.name ?? '');
    }
  }
}

/**
 * Asserts how `volumes` derive from `partitions` on a device of `deviceSize`
 * bytes: data partitions only, clipped to the device (declaredLength keeps
 * the table's length), those starting past the end left out.
 */
export function expectVolumesWithin(map: VolumeMap, deviceSize: number): void {
  if (map.scheme === 'none') {
    expect(map.partitions).toEqual([]);
    expect(map.volumes).toEqual([
      { index: 1, offset: 0, length: deviceSize, scheme: 'none', type: 'none', typeName: 'whole disk', name: '' },
    ]);
    return;
  }
  const expected = map.partitions
    .filter((p) => !p.extended && p.offset < deviceSize)
    .map((p) =>
      p.offset + p.length > deviceSize ? { ...p, length: deviceSize - p.offset, declaredLength: p.length } : p,
    );
  expect(map.volumes).toEqual(expected);
  for (const v of map.volumes) expect(v.offset + v.length).toBeLessThanOrEqual(deviceSize);
}

export interface MmlsRow {
  slot: string;
  start: number;
  length: number;
  description: string;
}

/** The partition rows of `mmls` output (Meta and unallocated rows left out). */
export function parseMmls(text: string): MmlsRow[] {
  const rows: MmlsRow[] = [];
  for (const line of text.split('\n')) {
    const m = /^\d+:\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(.*)$/.exec(line);
    if (!m || m[1] === 'Meta' || m[1] === '-------') continue;
    rows.push({ slot: m[1] ?? '', start: Number(m[2]), length: Number(m[4]), description: (m[5] ?? '').trim() });
  }
  return rows;
}

export function mmls(path: string, sectorSize = 512): MmlsRow[] {
  return parseMmls(run('mmls', sectorSize === 512 ? [path] : ['-b', String(sectorSize), path]));
}

/** Asserts that mmls sees the same data partitions (start and length, in sectors) as `map`. */
export function expectMatchesMmls(map: VolumeMap, rows: MmlsRow[]): void {
  const ss = map.sectorSize;
  const ours = map.partitions
    .filter((p) => !p.extended)
    .map((p) => ({ start: p.offset / ss, length: p.length / ss }))
    .sort((a, b) => a.start - b.start);
  const theirs = rows.map((r) => ({ start: r.start, length: r.length })).sort((a, b) => a.start - b.start);
  expect(theirs.length).toBeGreaterThan(0);
  expect(ours).toEqual(theirs);
}

/** Opens a raw image file and reads its volume map. */
export function mapOf(path: string, opts?: VolumeOptions): VolumeMap {
  const dev = new RawImage(path);
  try {
    return readVolumeMap(dev, opts);
  } finally {
    dev.close();
  }
}
