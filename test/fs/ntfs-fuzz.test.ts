/**
 * Mutation fuzzing of real NTFS volumes: the boot sector and the first MFT
 * records (headers, fixups, attribute headers, runlists, names, attribute
 * lists) under a walk that reads the start of every stream and asks for
 * info(); the directory indexes (INDX records, index roots) under list() and
 * lookup(); LZNT1 on a real compression unit. Only correct output or typed
 * errors are allowed, never a hang or a RangeError/TypeError, and memory
 * stays bounded.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { MemoryDevice } from '../../parsers/blockdevice.js';
import { errorsFor } from '../../parsers/errors.js';
import { parseBootSector } from '../../parsers/fs/ntfs/boot.js';
import { ntfsDriver } from '../../parsers/fs/ntfs/index.js';
import { lznt1Decompress } from '../../parsers/fs/ntfs/lznt1.js';
import { CORPUS, fixture, run } from '../helpers/fixtures.js';
import { expectTypedOrOk, mutate, newTally, type Region } from '../helpers/fuzz.js';

function exercise(bytes: Uint8Array): void {
  const fs = ntfsDriver.open(new MemoryDevice(bytes, 'fuzz'));
  for (const e of fs.walk()) {
    if (e.type === 'file') fs.read(e, 0, Math.min(e.size, 64 * 1024));
    for (const s of e.streams ?? []) fs.read(e, 0, Math.min(s.size, 4096), s.name);
    if (e.type === 'file' && e.size > 0) fs.runs(e);
  }
  fs.info();
  fs.list('/');
}

function regionsOf(image: Buffer, records: number): Region[] {
  const boot = parseBootSector(image.subarray(0, 512), errorsFor({ image: 'fuzz', layer: 'ntfs' }));
  return [
    { start: 0, end: 512 },
    { start: boot.mftOffset, end: boot.mftOffset + records * boot.recordSize },
  ];
}

test.each([
  { name: 'testfs1 (mkntfs + ntfs-3g, 512-byte clusters)', cases: 1500, seed: 11, records: 80 },
  { name: 'ntfs.bin (Windows, compressed files, $Secure)', cases: 400, seed: 29, records: 64 },
])('fuzz $name', ({ name, cases, seed, records }) => {
  const image = name.startsWith('testfs1')
    ? readFileSync(join(CORPUS, 'ntfs/colinfinck/testfs1'))
    : readFileSync(join(fixture('ntfs-corpus.sh'), 'ntfs.bin'));
  exercise(image);
  const tally = newTally();
  const started = Date.now();
  for (const { index, bytes } of mutate(image, cases, seed, regionsOf(image, records))) {
    const t0 = Date.now();
    expectTypedOrOk(tally, index, () => exercise(bytes));
    // a case that takes seconds is a loop that the input drives
    expect(Date.now() - t0, `case ${index}`).toBeLessThan(5000);
  }
  expect(tally.ok + tally.typed).toBe(cases);
  expect(tally.typed).toBeGreaterThan(cases / 20);
  expect(process.memoryUsage().rss).toBeLessThan(2 * 1024 ** 3);
  console.log(
    `${name}: ${tally.ok} ok, ${tally.typed} typed in ${Date.now() - started} ms`,
    Object.fromEntries(tally.codes),
  );
});

/** Browses the two indexed directories through list() (the $I30 indexes), and looks a few paths up. */
function browse(bytes: Uint8Array): void {
  const fs = ntfsDriver.open(new MemoryDevice(bytes, 'fuzz'));
  fs.list('/');
  fs.list('/many_subdirs');
  fs.lookup('/many_subdirs/77');
  fs.lookup('/many_subdirs/512');
  fs.lookup('/sparse-file');
}

test('fuzz the directory indexes of testfs1 (INDX records and index roots)', () => {
  const image = readFileSync(join(CORPUS, 'ntfs/colinfinck/testfs1'));
  const regions: Region[] = [];
  for (let off = 0; off + 4 <= image.length; off += 512) {
    if (image.toString('latin1', off, off + 4) === 'INDX') regions.push({ start: off, end: off + 4096 });
  }
  expect(regions.length).toBeGreaterThan(2);
  // the index roots live in the directories' MFT records: the root and many_subdirs
  const boot = parseBootSector(image.subarray(0, 512), errorsFor({ image: 'fuzz', layer: 'ntfs' }));
  const fs = ntfsDriver.open(new MemoryDevice(image, 'fuzz'));
  for (const id of [5, Number(fs.lookup('/many_subdirs')!.id)]) {
    regions.push({ start: boot.mftOffset + id * boot.recordSize, end: boot.mftOffset + (id + 1) * boot.recordSize });
  }
  browse(image);
  const tally = newTally();
  for (const { index, bytes } of mutate(image, 800, 17, regions)) {
    const t0 = Date.now();
    expectTypedOrOk(tally, index, () => browse(bytes));
    expect(Date.now() - t0, `case ${index}`).toBeLessThan(5000);
  }
  expect(tally.typed).toBeGreaterThan(40);
  console.log(`indexes: ${tally.ok} ok, ${tally.typed} typed`, Object.fromEntries(tally.codes));
});

test('fuzz LZNT1 on a compression unit of a real compressed file', () => {
  const err = errorsFor({ image: 'fuzz', layer: 'ntfs' });
  // the stored clusters of the first compression unit of /zip/numbers.txt, found by istat
  const dir = fixture('ntfs-tree.sh', ['4096', String(3 * 1024 ** 3)]);
  const image = join(dir, 'ntfs.img');
  const inode = run('fls', ['-p', '-r', image])
    .split('\n')
    .find((l) => l.endsWith('\tzip/numbers.txt'))!
    .split(' ')[1]!
    .split('-')[0]!;
  const istat = run('istat', [image, inode]);
  const clusters = istat.split('$DATA').pop()!.split('\n').slice(1).join(' ').trim().split(/\s+/).map(Number);
  const stored = clusters.slice(0, 16).filter((c) => c > 0);
  expect(stored.length).toBeLessThan(16);
  const fd = readFileSync(image);
  const unit = Buffer.concat(stored.map((c) => fd.subarray(c * 4096, (c + 1) * 4096)));
  const plain = readFileSync(join(dir, 'src/zip/numbers.txt')).subarray(0, 65536);
  expect(lznt1Decompress(unit, 65536, err, 0).equals(plain)).toBe(true);
  const tally = newTally();
  for (const { index, bytes } of mutate(unit, 3000, 5)) {
    expectTypedOrOk(tally, index, () => lznt1Decompress(Buffer.from(bytes), 65536, err, 0));
  }
  expect(tally.ok + tally.typed).toBe(3000);
  expect(tally.typed).toBeGreaterThan(0);
});
