/**
 * The NTFS reader on public images from other projects (../shared/corpus/ntfs,
 * see its SOURCES.md), several made by Windows. Oracles: fls/icat of The
 * Sleuth Kit on the same image, ntfs-3g's ntfsls/ntfscat where TSK cannot
 * read (2 MiB clusters), go-ntfs' golden listing, and the upstream
 * expectations quoted in SOURCES.md.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { type BlockDevice, SliceDevice } from '../../parsers/blockdevice.js';
import { RawImage } from '../../parsers/disk/raw.js';
import { errorsFor } from '../../parsers/errors.js';
import { parseBootSector } from '../../parsers/fs/ntfs/boot.js';
import { ntfsDriver } from '../../parsers/fs/ntfs/index.js';
import type { FileSystem } from '../../parsers/fs/types.js';
import { CORPUS, fixture, run, runBytes, sha256 } from '../helpers/fixtures.js';
import { expectBrowseMatchesWalk, fls, icatSha, ourListing, ourSha } from './ntfs-oracle.js';

const dir = fixture('ntfs-corpus.sh');
/** NTFS at sector 128 behind an MBR (sliced by hand until the volume layer is used here). */
const SECTOR_128 = new Set([
  'ntfs_index.raw',
  'ntfs-2m.raw',
  'ntfs-lastaccess.raw',
  'ntfs-ptrn.raw',
  'ntfs-ramslack.raw',
  'ntfs-si-vs-fn.raw',
]);

function volume(name: string): BlockDevice {
  const disk = new RawImage(join(dir, name));
  return SECTOR_128.has(name) ? new SliceDevice(disk, 128 * 512, disk.size - 128 * 512) : disk;
}
function open(name: string): FileSystem {
  return ntfsDriver.open(volume(name));
}

describe.each([
  'ntfs.bin',
  'ntfs-cloud.bin',
  'ntfs3.raw',
  'ntfs3_attrlist.raw',
  'ntfs_index.raw',
  'ntfs-lastaccess.raw',
  'ntfs-ptrn.raw',
  'ntfs-ramslack.raw',
  'ntfs-si-vs-fn.raw',
  'charlie.dd',
  'testfs1',
])('%s', (name) => {
  test('listing and every stream agree with fls and icat', () => {
    const image = join(dir, name);
    const off = SECTOR_128.has(name) ? 128 : 0;
    const fs = open(name);
    const { entries, streams } = ourListing(fs);
    const tsk = fls(image, off);
    const isStream = (p: string) => p.slice(1).includes(':');
    expect([...entries.keys()].sort()).toEqual(
      tsk
        .filter((l) => !isStream(l.path))
        .map((l) => l.path)
        .sort(),
    );
    expect([...streams.keys()].sort()).toEqual(
      tsk
        .filter((l) => isStream(l.path))
        .map((l) => l.path)
        .sort(),
    );
    for (const l of tsk) {
      if (!l.type.endsWith('/r')) continue;
      const colon = l.path.slice(1).indexOf(':');
      const e = entries.get(colon >= 0 ? l.path.slice(0, colon + 1) : l.path)!;
      expect(e.id, l.path).toBe(l.addr.split('-')[0]);
      expect(ourSha(fs, e, colon >= 0 ? l.path.slice(colon + 2) : undefined), l.path).toBe(icatSha(image, l.addr, off));
    }
    // fls prints names it finds only through the MFT (not in a directory index) with type '-/r'
    const notIndexed = tsk.filter((l) => l.type.startsWith('-/')).map((l) => l.path);
    if (name === 'ntfs3.raw') expect(notIndexed).toEqual(['/test/1.txt']);
    expectBrowseMatchesWalk(fs, entries, notIndexed);
    expect(fs.problems).toEqual([]);
  });
});

test('dissect ntfs.bin: File.txt, Large.txt and Directory as upstream expects', () => {
  const fs = open('ntfs.bin');
  const info = fs.info();
  expect(info).toMatchObject({ label: 'New Volume', blockSize: 4096 });
  expect(info.facts).toMatchObject({ mftRecordSize: 1024, indexRecordSize: 4096 });
  const file = fs.lookup('/File.txt')!;
  expect(file.id).toBe('41');
  expect(fs.read(file, 0, file.size).toString()).toBe('Contents here');
  const large = fs.lookup('/Large.txt')!;
  expect(large.id).toBe('44');
  expect(fs.read(large, 0, large.size).equals(Buffer.alloc(2 * 1024 * 1024, 'A'))).toBe(true);
  expect(
    fs
      .list('/Directory')
      .map((e) => e.name)
      .sort(),
  ).toEqual(['File 1.txt', 'File 2.txt']);
  // owners come from $Secure ($SDS) on Windows-made volumes: ntfs-3g's ntfssecaudit is the oracle
  for (const path of ['/File.txt', '/Large.txt', '/System Volume Information', '/Directory/File 1.txt']) {
    const audit = run('ntfssecaudit', [join(dir, 'ntfs.bin'), path]);
    const owner = /Windows owner (S-1-[0-9-]+)/.exec(audit)?.[1];
    expect(owner, path).toMatch(/^S-1-5-/);
    expect(fs.lookup(path)?.ownerSid, path).toBe(owner);
  }
});

test('ntfs3_attrlist: record 27 has 100 hard links spread by an $ATTRIBUTE_LIST', () => {
  const fs = open('ntfs3_attrlist.raw');
  const links = [...fs.walk()].filter((e) => e.id === '27');
  expect(links.map((e) => e.path).sort()).toEqual(Array.from({ length: 100 }, (_, i) => `/${i + 1}.txt`).sort());
  expect(links.every((e) => e.nlink === 100)).toBe(true);
  expect(run('istat', [join(dir, 'ntfs3_attrlist.raw'), '27'])).toMatch(/\$ATTRIBUTE_LIST/);
});

test('ntfs-ramslack: the LZNT1-compressed /1.txt', () => {
  const fs = open('ntfs-ramslack.raw');
  const e = fs.lookup('/1.txt')!;
  expect(e.id).toBe('39');
  expect(e.flags).toContain('compressed');
  expect(run('istat', ['-o', '128', join(dir, 'ntfs-ramslack.raw'), '39'])).toMatch(/Compressed/);
  expect(ourSha(fs, e)).toBe(icatSha(join(dir, 'ntfs-ramslack.raw'), '39', 128));
});

test('testfs1: the sparse file has holes and data at 0 and 500000', () => {
  const fs = open('testfs1');
  const e = fs.lookup('/sparse-file')!;
  expect(e.size).toBe(500005);
  expect(e.flags).toContain('sparse');
  expect(fs.runs(e).some((r) => r.volumeOffset === null)).toBe(true);
  expect(fs.list('/many_subdirs').length).toBe(512);
  expect(ourSha(fs, e)).toBe(icatSha(join(dir, 'testfs1'), e.id));
});

test('charlie.dd: alternate data streams as go-ntfs ls.golden lists them', () => {
  const fs = open('charlie.dd');
  const e = fs.lookup('/Nine.txt')!;
  const golden = new Map<string, number>();
  for (const line of readFileSync(join(CORPUS, 'ntfs/go-ntfs/ls.golden'), 'utf8').split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells[2] === '/Nine.txt') golden.set(cells[6] ?? '', Number(cells[3]));
  }
  expect(e.size).toBe(golden.get('Nine.txt'));
  const ours = new Map((e.streams ?? []).map((s) => [`Nine.txt:${s.name}`, s.size]));
  golden.delete('Nine.txt');
  expect(ours).toEqual(golden);
});

test('ntfs-cloud: OneDrive placeholders keep their reparse tags, as istat reports them', () => {
  const fs = open('ntfs-cloud.bin');
  const tagged = [...fs.walk()].filter((e) => e.reparseTag !== undefined);
  expect(tagged.length).toBeGreaterThan(3);
  for (const e of tagged) {
    expect(e.flags).toContain('reparse');
    expect(e.type).not.toBe('symlink');
    expect(run('istat', [join(dir, 'ntfs-cloud.bin'), e.id])).toMatch(/\$REPARSE_POINT/);
  }
});

test('ntfs-2m: 2 MiB clusters (TSK cannot read it; ntfs-3g can)', () => {
  const fs = open('ntfs-2m.raw');
  expect(fs.info().blockSize).toBe(2 * 1024 * 1024);
  const vol = join(dir, 'ntfs-2m.vol');
  const listed = run('ntfsls', ['-R', '-p', '/', vol])
    .split('\n\n')
    .flatMap((block) => {
      const [head, ...names] = block.split('\n');
      const parent = head!.replace(/:$/, '').replace(/\/$/, '');
      return names.filter((n) => n && n !== '.' && n !== '..').map((n) => `${parent}/${n}`);
    })
    .filter((p) => !p.slice(1).startsWith('$'));
  const { entries } = ourListing(fs);
  expect([...entries.keys()].sort()).toEqual(listed.sort());
  for (const e of entries.values()) {
    if (e.type === 'file') expect(ourSha(fs, e), e.path).toBe(sha256(runBytes('ntfscat', [vol, e.path])));
  }
});

test('boot_2m.bin: a boot sector with 2 MiB clusters', () => {
  const b = runBytes('bash', ['-c', 'gunzip -c "$1" | head -c 512', '_', join(CORPUS, 'ntfs/dissect/boot_2m.bin.gz')]);
  const boot = parseBootSector(b, errorsFor({ image: 'boot_2m.bin', layer: 'ntfs' }));
  expect(boot.clusterSize).toBe(0x200000);
  expect(boot.recordSize).toBe(1024);
});
