/**
 * NTFS free space (FileSystem.allocated, parsers/fs/ntfs/bitmap.ts) against
 * $Bitmap as The Sleuth Kit reads it (`icat -f ntfs IMG 6`), decoded here
 * bit by bit, on volumes with 512-byte and 4 KiB clusters; and a damaged
 * $Bitmap never makes used clusters look free.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import type { ByteRange } from '../../parsers/blockdevice.js';
import { RawImage } from '../../parsers/disk/raw.js';
import { ntfsAllocated } from '../../parsers/fs/ntfs/bitmap.js';
import { ntfsDriver } from '../../parsers/fs/ntfs/index.js';
import type { StreamReader } from '../../parsers/fs/ntfs/stream.js';
import { fixture, runBytes } from '../helpers/fixtures.js';
import { NTFS_TREE_ARGS } from '../helpers/vdbak.js';

const IMAGES = [
  join(fixture('ntfs-tree.sh', NTFS_TREE_ARGS), 'ntfs.img'),
  join(fixture('ntfs-features.sh'), 'ntfs.img'),
  join(fixture('regions-vm.sh'), 'ntfs.img'),
];

/** Cluster size and count from the boot sector. */
function geometry(img: string): { clusterSize: number; totalClusters: number } {
  const b = readFileSync(img).subarray(0, 512);
  const bps = b.readUInt16LE(0x0b);
  const spc = b.readUInt8(0x0d);
  const clusterSize = bps * (spc <= 0x80 ? spc : 2 ** (256 - spc));
  return { clusterSize, totalClusters: Math.floor((Number(b.readBigUInt64LE(0x28)) * bps) / clusterSize) };
}

/** Set bits of icat's $Bitmap as byte ranges, one cluster at a time. */
function oracle(img: string): ByteRange[] {
  const { clusterSize, totalClusters } = geometry(img);
  const bits = runBytes('icat', ['-f', 'ntfs', img, '6']);
  const out: ByteRange[] = [];
  for (let c = 0; c < totalClusters; c++) {
    if (!((bits[c >> 3]! >> (c & 7)) & 1)) continue;
    const last = out[out.length - 1];
    if (last && last.offset + last.length === c * clusterSize) last.length += clusterSize;
    else out.push({ offset: c * clusterSize, length: clusterSize });
  }
  return out;
}

describe('NTFS allocated ranges equal $Bitmap read by icat', () => {
  test.each(IMAGES.map((f) => [f.split('/').slice(-2).join('/'), f]))('%s', (_name, img) => {
    const fs = ntfsDriver.open(new RawImage(img));
    const ours = [...fs.allocated!()];
    const want = oracle(img);
    expect(want.length).toBeGreaterThan(1);
    expect(ours).toEqual(want);
  });
});

describe('a short or lying $Bitmap', () => {
  const fake = (bytes: Buffer): StreamReader =>
    ({
      stream: { size: bytes.length },
      read: (off: number, len: number) => bytes.subarray(off, off + len),
    }) as unknown as StreamReader;

  test('clusters past the end of $Bitmap count as used', () => {
    const r = [...ntfsAllocated(fake(Buffer.from([0x01, 0x00])), { clusterSize: 4096, totalClusters: 40 }, 1 << 30)];
    expect(r).toEqual([
      { offset: 0, length: 4096 },
      { offset: 16 * 4096, length: 24 * 4096 },
    ]);
  });

  test('a cluster count past the device is cut at the device', () => {
    const r = [...ntfsAllocated(fake(Buffer.alloc(2, 0xff)), { clusterSize: 4096, totalClusters: 2 ** 40 }, 8 * 4096)];
    expect(r).toEqual([{ offset: 0, length: 8 * 4096 }]);
  });
});
