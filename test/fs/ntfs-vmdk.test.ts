/**
 * NTFS inside a partition inside a VMDK, through the whole stack: openDisk
 * (VMDK) → readVolumeMap (GPT, dos with a logical partition) → the
 * registered filesystem drivers → the NTFS reader. Oracles: the source tree,
 * and fls/icat with the partition offset on the raw disk the VMDK was made from.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { SliceDevice } from '../../parsers/blockdevice.js';
import { openDisk } from '../../parsers/disk/open.js';
import { probeFileSystem } from '../../parsers/fs/index.js';
import { readVolumeMap } from '../../parsers/volume/index.js';
import { fixture } from '../helpers/fixtures.js';
import { fls, icatSha, ourListing, ourSha, sourceTree } from './ntfs-oracle.js';

const dir = fixture('ntfs-disk.sh');

describe.each(['gpt', 'dos'])('%s disk in a VMDK', (label) => {
  test('the NTFS partition is found and read like the source, fls and icat', () => {
    const disk = openDisk(join(dir, `${label}.vmdk`));
    expect(disk.format).toBe('vmdk');
    const start = Number(readFileSync(join(dir, `${label}.start`), 'utf8'));
    const map = readVolumeMap(disk);
    const vol = map.volumes.find((v) => v.offset === start * 512)!;
    expect(vol).toBeDefined();
    const dev = new SliceDevice(disk, vol.offset, vol.length);
    const driver = probeFileSystem(dev);
    expect(driver?.type).toBe('ntfs');
    const fs = driver!.open(dev);
    const { entries, streams } = ourListing(fs);
    const src = sourceTree(join(dir, 'src'));
    expect([...entries.keys()].sort()).toEqual([...src.keys()].sort());
    for (const [path, s] of src) if (s.type === 'file') expect(ourSha(fs, entries.get(path)!), path).toBe(s.sha);
    const raw = join(dir, `${label}.raw`);
    const tsk = fls(raw, start);
    expect([...streams.keys()]).toEqual(['/hello.txt:ads']);
    for (const l of tsk.filter((x) => x.type.endsWith('/r'))) {
      const colon = l.path.slice(1).indexOf(':');
      const e = entries.get(colon >= 0 ? l.path.slice(0, colon + 1) : l.path)!;
      expect(ourSha(fs, e, colon >= 0 ? l.path.slice(colon + 2) : undefined), l.path).toBe(icatSha(raw, l.addr, start));
    }
    expect(fs.info().label).toBe('invmdk');
    expect(fs.problems).toEqual([]);
    disk.close();
  });
});
