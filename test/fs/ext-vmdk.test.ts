/**
 * ext4 read the way a backup reads it: a VMDK (monolithicSparse and
 * streamOptimized, made by qemu-img) opened by openDisk, its dos or GPT table
 * (made by sfdisk) read by readVolumeMap, the volume probed through the
 * filesystem registry. Oracles: sfdisk's partition start, fls -o on the raw
 * disk, and the source tree's SHA-256 sums.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { SliceDevice } from '../../parsers/blockdevice.js';
import { openDisk } from '../../parsers/disk/open.js';
import { probeFileSystem } from '../../parsers/fs/index.js';
import type { FsEntry } from '../../parsers/fs/types.js';
import { readVolumeMap } from '../../parsers/volume/index.js';
import { fixture, sha256sumFile } from '../helpers/fixtures.js';
import { flsListing, hashEntry, walkMap } from './ext-helpers.js';

let dir: string;
beforeAll(() => {
  dir = fixture('ext-vmdk.sh');
});

describe.each(['dos-sparse', 'dos-stream', 'gpt-sparse', 'gpt-stream'])('%s.vmdk', (name) => {
  test('openDisk → readVolumeMap → ext driver lists and reads the partition like fls and the source', () => {
    const label = name.split('-')[0] as string;
    const start = Number(readFileSync(join(dir, `${label}.start`), 'utf8'));
    const disk = openDisk(join(dir, `${name}.vmdk`));
    try {
      expect(disk.format).toBe('vmdk');
      const map = readVolumeMap(disk);
      expect(map.scheme).toBe(label === 'dos' ? 'mbr' : 'gpt');
      const found = map.volumes.flatMap((v) => {
        const dev = new SliceDevice(disk, v.offset, v.length);
        const driver = probeFileSystem(dev);
        return driver?.type === 'ext' ? [{ v, fs: driver.open(dev) }] : [];
      });
      expect(found.length).toBe(1);
      const { v, fs } = found[0] as (typeof found)[number];
      expect(v.offset).toBe(start * 512);
      expect(fs.info().label).toBe('inpart');
      const m = walkMap(fs);
      const ours = new Map([...m.values()].filter((e) => e.path !== '/').map((e) => [e.path, Number(e.id)]));
      expect(ours).toEqual(flsListing(join(dir, `${label}.raw`), start));
      for (const p of ['/dir/hello.txt', '/dir/sub/random.bin']) {
        expect(hashEntry(fs, m.get(p) as FsEntry), p).toBe(sha256sumFile(join(dir, 'src', p)));
      }
      expect(m.get('/link')?.linkTarget).toBe('dir/hello.txt');
      expect(fs.problems).toEqual([]);
    } finally {
      disk.close();
    }
  });
});
