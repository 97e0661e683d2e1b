/**
 * Mutation fuzzing of FileSystem.allocated() (ext block bitmaps and group
 * descriptors, NTFS boot sector, $Bitmap's record and its clusters): for any
 * mutation, either a typed error or ranges that are sorted, separated,
 * non-empty and inside the device — in bounded time. A guest controls those
 * bytes, and a wrong answer here would leave used bytes out of a backup.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { MemoryDevice } from '../../parsers/blockdevice.js';
import { errorsFor } from '../../parsers/errors.js';
import { extDriver } from '../../parsers/fs/ext/index.js';
import { parseBootSector } from '../../parsers/fs/ntfs/boot.js';
import { ntfsDriver } from '../../parsers/fs/ntfs/index.js';
import type { FileSystemDriver } from '../../parsers/fs/types.js';
import { fixture, run } from '../helpers/fixtures.js';
import { expectTypedOrOk, mutate, newTally, type Region } from '../helpers/fuzz.js';

const CASES = 300;
const NTFS_CASES = 100;
/** A single case must finish well within this (a hang shows up here, not as a test timeout). */
const MAX_CASE_MS = 3000;

function checkShape(ranges: Iterable<{ offset: number; length: number }>, size: number, index: number): void {
  let end = -1;
  for (const r of ranges) {
    const ok = Number.isSafeInteger(r.offset) && Number.isSafeInteger(r.length) && r.length > 0 && r.offset > end;
    if (!ok || r.offset + r.length > size) {
      throw new Error(`fuzz case ${index}: bad range ${r.offset}+${r.length} after ${end} (device ${size})`);
    }
    end = r.offset + r.length;
  }
}

function fuzz(driver: FileSystemDriver, image: string, regions: Region[], seed: number, cases = CASES): void {
  const base = readFileSync(image);
  const tally = newTally();
  for (const { index, bytes } of mutate(base, cases, seed, regions)) {
    const t0 = Date.now();
    expectTypedOrOk(tally, index, () => {
      const dev = new MemoryDevice(bytes, `fuzz#${index}`);
      if (!driver.probe(dev)) return;
      checkShape(driver.open(dev).allocated!(), dev.size, index);
    });
    expect(Date.now() - t0, `case ${index}`).toBeLessThan(MAX_CASE_MS);
  }
  expect(tally.ok + tally.typed).toBe(cases);
  expect(tally.ok).toBeGreaterThan(cases / 10);
}

describe('ext: superblock, descriptors and block bitmaps', () => {
  test.each(['small-ext4', 'small-ext2'])('%s', (name) => {
    const image = join(fixture('ext-small.sh'), `${name}.img`);
    const dump = run('dumpe2fs', [image]);
    const bs = Number(/^Block size:\s+(\d+)/m.exec(dump)![1]);
    const regions: Region[] = [{ start: 1024, end: 2048 }];
    for (const m of dump.matchAll(/Group descriptors at (\d+)-(\d+)/g)) {
      regions.push({ start: Number(m[1]) * bs, end: (Number(m[2]) + 1) * bs });
    }
    for (const m of dump.matchAll(/Block bitmap at (\d+)/g)) {
      regions.push({ start: Number(m[1]) * bs, end: (Number(m[1]) + 1) * bs });
    }
    fuzz(extDriver, image, regions, name === 'small-ext4' ? 3 : 5);
  });
});

describe('NTFS: boot sector, $Bitmap record and clusters', () => {
  test('ntfs-features', () => {
    const image = join(fixture('ntfs-features.sh'), 'ntfs.img');
    const boot = parseBootSector(readFileSync(image).subarray(0, 512), errorsFor({ image, layer: 'ntfs' }));
    const stat = run('istat', ['-f', 'ntfs', image, '6']);
    const clusters = stat
      .slice(stat.lastIndexOf('Type: $DATA'))
      .split('\n')
      .slice(1)
      .join(' ')
      .split(/\s+/)
      .filter((x) => /^\d+$/.test(x))
      .map(Number);
    const regions: Region[] = [
      { start: 0, end: 512 },
      { start: boot.mftOffset + 6 * boot.recordSize, end: boot.mftOffset + 7 * boot.recordSize },
      ...clusters.map((c) => ({ start: c * boot.clusterSize, end: (c + 1) * boot.clusterSize })),
    ];
    // a 32 MiB image is copied per case: fewer cases
    fuzz(ntfsDriver, image, regions, 9, NTFS_CASES);
  });
});
