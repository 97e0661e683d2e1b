/**
 * ext cases beyond mkfs -d (test/fixtures/ext-special.sh): a 20 000-name
 * hashed directory (with and without the file-type byte), unwritten extents,
 * filesystems that are not clean, and bad input — structures of a real image
 * broken on purpose (located with debugfs, the oracle), where the reader must
 * throw typed errors naming image, offset and inode, count local damage in
 * `problems` and still walk the rest.
 */
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { catchTyped } from '../helpers/fuzz.js';
import { MemoryDevice } from '../../parsers/blockdevice.js';
import { openDisk } from '../../parsers/disk/open.js';
import { CorruptError, isVdbakError } from '../../parsers/errors.js';
import { ExtFileSystem } from '../../parsers/fs/ext/fs.js';
import { extDriver } from '../../parsers/fs/ext/index.js';
import { decodeName, encodeName } from '../../parsers/fs/ext/names.js';
import type { FsEntry } from '../../parsers/fs/types.js';
import { fixture, run, runBytes, sha256 } from '../helpers/fixtures.js';
import { expectListing, flsListing, hashEntry, openExt, walkMap } from './ext-helpers.js';

let dir: string;
let small: string;
beforeAll(() => {
  dir = fixture('ext-special.sh');
  small = fixture('ext-small.sh');
});

describe.each(['bigdir-ext4', 'bigdir-ext2', 'bigdir-ext4-1k'])('%s: 20 000 names in one hashed directory', (name) => {
  test('every name once, agreeing with fls and debugfs', () => {
    const image = join(dir, `${name}.img`);
    const fs = openExt(image);
    const m = walkMap(fs);
    const names = fs.list('/big').map((e) => e.name);
    expect(names.length).toBe(20000);
    expect(new Set(names).size).toBe(20000);
    expect(names).toContain('entry-00001-with-a-longer-name');
    expect(names).toContain('entry-20000-with-a-longer-name');
    expect(fs.list('/big').every((e) => e.type === 'file')).toBe(true);
    const ours = new Map([...m.values()].filter((e) => e.path !== '/').map((e) => [e.path, Number(e.id)]));
    expectListing(image, ours, flsListing(image));
    expect(fs.problems).toEqual([]);
    expect(fs.info().features.includes('filetype')).toBe(name !== 'bigdir-ext2');
  });
});

test('walk() gives the same entries when its name batch is flushed every 7 names', () => {
  const image = join(dir, 'bigdir-ext4-1k.img');
  const whole = [...openExt(image).walk()].map((e) => `${e.id} ${e.path}`).sort();
  const small = new ExtFileSystem(openDisk(image), { walkBatch: 7 });
  expect([...small.walk()].map((e) => `${e.id} ${e.path}`).sort()).toEqual(whole);
  expect(small.problems).toEqual([]);
});

test('unwritten extents read as zeros and are marked unwritten', () => {
  const image = join(dir, 'uninit.img');
  const fs = openExt(image);
  const e = fs.lookup('/prealloc.bin') as FsEntry;
  const runs = fs.runs(e);
  expect(runs.some((r) => r.unwritten === true && r.volumeOffset !== null)).toBe(true);
  expect(runs.reduce((n, r) => n + r.length, 0)).toBe(e.size);
  expect(fs.read(e, 0, 4).toString()).toBe('head');
  expect(hashEntry(fs, e)).toBe(sha256(runBytes('debugfs', ['-R', 'cat /prealloc.bin', image])));
  expect(fs.info().clean).toBe(true);
});

test('a filesystem whose state is not clean, or that needs recovery, is reported as not clean', () => {
  const dirty = openExt(join(dir, 'dirty.img')).info();
  expect(dirty.clean).toBe(false);
  expect(dirty.facts?.state).toBe(0);
  const recover = openExt(join(dir, 'recover.img')).info();
  expect(recover.clean).toBe(false);
  expect(recover.facts?.needsRecovery).toBe(true);
});

// ---- bad input ---------------------------------------------------------------

function bytesOf(name: string): Buffer {
  return readFileSync(join(small, `${name}.img`));
}

/** Volume offset of an inode, from debugfs imap (the oracle). */
function inodeOffset(image: string, path: string): { ino: number; offset: number } {
  const out = run('debugfs', ['-R', `imap "${path}"`, image]);
  const m = /Inode (\d+) is part of block group \d+\s+located at block (\d+), offset 0x([0-9a-f]+)/.exec(out);
  if (!m) throw new Error(`imap ${path}: ${out}`);
  return { ino: Number(m[1]), offset: Number(m[2]) * 1024 + Number.parseInt(m[3] as string, 16) };
}

/** Volume offset of logical block `n` of a file, from debugfs bmap. */
function blockOffset(image: string, path: string, n: number): number {
  return Number(run('debugfs', ['-R', `bmap "${path}" ${n}`, image]).trim()) * 1024;
}

function openBytes(b: Uint8Array, name = 'broken.img'): ExtFileSystem {
  return extDriver.open(new MemoryDevice(b, name)) as ExtFileSystem;
}

function codes(fs: ExtFileSystem): string[] {
  return fs.problems.map((p) => p.error.code);
}

describe('bad input (small-ext4: 1 KiB blocks, 4 groups, metadata_csum)', () => {
  const image = () => join(small, 'small-ext4.img');

  test('a broken superblock magic: probe says no, open throws a typed error naming image and offset', () => {
    const b = bytesOf('small-ext4');
    b.writeUInt16LE(0, 1024 + 0x38);
    expect(extDriver.probe(new MemoryDevice(b))).toBe(false);
    const e = catchTyped(() => openBytes(b));
    expect(e).toBeInstanceOf(CorruptError);
    expect(e.code).toBe('EXT_BAD_MAGIC');
    expect(e.image).toBe('broken.img');
    expect(e.details.offset).toBe(1024 + 0x38);
  });

  test.each([
    [0x18, 40, 'EXT_BAD_BLOCK_SIZE'],
    [0x28, 0, 'EXT_BAD_INODES_PER_GROUP'],
    [0x20, 0, 'EXT_BAD_BLOCKS_PER_GROUP'],
    [0x04, 0xffffffff, 'EXT_BAD_GROUP_COUNT'],
    [0x00, 0xffffffff, 'EXT_BAD_INODE_COUNT'],
  ])('superblock field 0x%s = %s: %s', (field, value, code) => {
    const b = bytesOf('small-ext4');
    b.writeUInt32LE(value, 1024 + field);
    const e = catchTyped(() => openBytes(b));
    expect(e.code).toBe(code);
    expect(e.details.offset).toBeGreaterThanOrEqual(1024);
  });

  test('a group descriptor pointing its inode table outside the volume: that group is damage, the rest is walked', () => {
    const b = bytesOf('small-ext4');
    const gd1 = 2 * 1024 + 64; // 64-byte descriptors after the superblock block (1 KiB blocks: block 2)
    b.writeUInt32LE(0x0fffffff, gd1 + 0x08);
    const fs = openBytes(b);
    expect(codes(fs)).toContain('EXT_BAD_INODE_TABLE');
    expect(codes(fs)).toContain('EXT_GD_CSUM');
    const m = walkMap(fs);
    expect(m.has('/a/hello.txt')).toBe(true);
    const damaged = fs.problems.filter((p) => p.error.code === 'EXT_GROUP_DAMAGED');
    expect(damaged.length).toBeGreaterThan(0);
    for (const p of damaged) expect(p.error.details.inode).toBeGreaterThan(64);
  });

  test.each([
    ['magic', 0, 0x0001_1234, 'EXT_EXTENT_MAGIC'],
    ['depth', 4, 0x0009_0004, 'EXT_EXTENT_DEPTH'],
    ['entries over max', 0, 0x0009_f30a, 'EXT_EXTENT_COUNT'],
  ])(
    'extent header with a bad %s: the file is listed, its runs throw %s naming the inode',
    (_what, at, value, code) => {
      const b = bytesOf('small-ext4');
      const { ino, offset } = inodeOffset(image(), '/a/b/big.bin');
      b.writeUInt32LE(value, offset + 0x28 + at);
      const fs = openBytes(b);
      const m = walkMap(fs);
      const e = m.get('/a/b/big.bin') as FsEntry;
      expect(e.size).toBe(300000);
      const err = catchTyped(() => fs.runs(e));
      expect(err.code).toBe(code);
      expect(err.details.inode).toBe(ino);
      expect(codes(fs)).toContain('EXT_INODE_CSUM');
      expect(m.get('/d/f90')).toBeDefined();
    },
  );

  test.each([
    [0, 'rec_len 0'],
    [4000, 'rec_len past the block'],
  ])('a directory record with %s: damage counted, earlier names kept, the rest walked', (recLen) => {
    const b = bytesOf('small-ext4');
    const { ino } = inodeOffset(image(), '/d');
    const block = blockOffset(image(), '/d', 0);
    // '.' (12 bytes) then '..' (12 bytes) then the first name: break that one's rec_len.
    b.writeUInt16LE(recLen, block + 24 + 4);
    const fs = openBytes(b);
    const m = walkMap(fs);
    const bad = fs.problems.find((p) => p.error.code === 'EXT_DIRENT');
    expect(bad?.error.details.inode).toBe(ino);
    expect(bad?.error.details.offset).toBe(block + 24);
    expect(codes(fs)).toContain('EXT_DIR_CSUM');
    expect(m.get('/a/b/big.bin')).toBeDefined();
    expect(hashEntry(fs, m.get('/a/hello.txt') as FsEntry)).toBe(
      sha256(readFileSync(join(small, 'small.src/a/hello.txt'))),
    );
  });

  test('an absurd inode size: that entry is damage, the others are listed', () => {
    const b = bytesOf('small-ext4');
    const { ino, offset } = inodeOffset(image(), '/a/hello.txt');
    b.writeUInt32LE(0xffffffff, offset + 0x6c);
    const fs = openBytes(b);
    const m = walkMap(fs);
    expect(m.has('/a/hello.txt')).toBe(false);
    const p = fs.problems.find((x) => x.error.code === 'EXT_BAD_SIZE');
    expect(p?.error.details.inode).toBe(ino);
    expect(p?.path).toBe('/a/hello.txt');
    expect(m.has('/a/empty')).toBe(true);
  });

  test('an inode checksum mismatch is recorded and the entry still read', () => {
    const b = bytesOf('small-ext4');
    const { ino, offset } = inodeOffset(image(), '/a/b/big.bin');
    b[offset + 0x08] = (b[offset + 0x08] as number) ^ 1; // atime
    const fs = openBytes(b);
    const m = walkMap(fs);
    const p = fs.problems.find((x) => x.error.code === 'EXT_INODE_CSUM');
    expect(p?.error.details.inode).toBe(ino);
    expect(p?.error.details.offset).toBe(offset);
    expect(hashEntry(fs, m.get('/a/b/big.bin') as FsEntry)).toBe(
      sha256(readFileSync(join(small, 'small.src/a/b/big.bin'))),
    );
  });

  test('a directory that contains its own ancestor: the cycle is detected and the walk ends', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'vdbak-ext-'));
    const copy = join(tmp, 'cycle.img');
    copyFileSync(image(), copy);
    run('debugfs', ['-w', '-R', 'link /a /a/b/c/loop', copy]);
    const fs = openExt(copy);
    const paths = [...fs.walk()].map((e) => e.path);
    expect(paths).toContain('/a/b/c/loop');
    expect(paths.filter((p) => p.startsWith('/a/b/c/loop/')).length).toBe(0);
    expect(codes(fs)).toContain('EXT_DIR_CYCLE');
    expect(new Set(paths).size).toBe(paths.length);
  });

  test('an entry naming a reserved inode (the journal) is damage, not a file', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'vdbak-ext-'));
    const copy = join(tmp, 'reserved.img');
    copyFileSync(image(), copy);
    run('debugfs', ['-w', '-R', 'ln <8> /a/journal', copy]);
    expect(run('debugfs', ['-R', 'ls -p /a', copy])).toMatch(/\/8\/.*\/journal\//);
    const fs = openExt(copy);
    const m = walkMap(fs);
    expect(m.has('/a/journal')).toBe(false);
    expect(m.has('/a/hello.txt')).toBe(true);
    const p = fs.problems.find((x) => x.error.code === 'EXT_RESERVED_INODE');
    expect(p?.path).toBe('/a/journal');
    expect(p?.error.details.inode).toBe(8);
  });

  test('a name that appears twice in one directory is listed once and counted as damage', () => {
    const b = readFileSync(join(small, 'small-ext2.img'));
    // The record of /d/f10 (name_len 3, file type 1) renamed to f11, which exists already.
    const at = b.indexOf(Buffer.from([3, 1, ...Buffer.from('f10')]));
    expect(at).toBeGreaterThan(0);
    expect(b.indexOf(Buffer.from([3, 1, ...Buffer.from('f10')]), at + 1)).toBe(-1);
    b.write('f11', at + 2, 'latin1');
    const fs = openBytes(b);
    const paths = [...fs.walk()].map((e) => e.path);
    expect(paths.filter((p) => p === '/d/f11').length).toBe(1);
    expect(paths).not.toContain('/d/f10');
    expect(new Set(paths).size).toBe(paths.length);
    const p = fs.problems.find((x) => x.error.code === 'EXT_DUPLICATE_NAME');
    expect(p?.path).toBe('/d/f11');
    const names = fs.list('/d').map((e) => e.name);
    expect(new Set(names).size).toBe(names.length);
  });

  test('a volume cut short: open records it, reading past the end gives only typed errors', () => {
    const b = bytesOf('small-ext4').subarray(0, 1536 * 1024);
    const fs = openBytes(b);
    expect(codes(fs)).toContain('EXT_VOLUME_SHORT');
    for (const e of fs.walk()) {
      if (e.type !== 'file') continue;
      try {
        fs.read(e, 0, e.size);
      } catch (err) {
        expect(isVdbakError(err)).toBe(true);
      }
    }
  });
});

test('deleted and orphan inodes are not live entries (fls lists them as deleted or orphans)', () => {
  const image = join(small, 'small-deleted.img');
  const fs = openExt(image);
  const m = walkMap(fs);
  const orphan = readFileSync(join(small, 'orphan.ino'), 'utf8').trim();
  expect(m.has('/d/f89')).toBe(false);
  expect(m.has('/d/f90')).toBe(false);
  expect([...m.values()].some((e) => e.id === orphan)).toBe(false);
  expect(m.has('/d/f88')).toBe(true);
  const fls = run('fls', ['-r', '-p', image]);
  expect(fls).toMatch(/\* \d+(\(realloc\))?:\td\/f89/);
  const ours = new Map([...m.values()].filter((e) => e.path !== '/').map((e) => [e.path, Number(e.id)]));
  expect(ours).toEqual(flsListing(image));
  expect(fs.problems).toEqual([]);
  expect(fs.info().facts?.inodeCount).toBe(256);
});

test('a name that is not UTF-8 decodes reversibly (lone surrogates U+DC80..U+DCFF for the bad bytes)', () => {
  const image = join(small, 'small-names.img');
  const fs = openExt(image);
  const m = walkMap(fs);
  const name = 'bad\udcffname\udcc3(';
  const e = m.get(`/a/${name}`) as FsEntry;
  expect(e).toBeDefined();
  expect(encodeName(e.name)).toEqual(Buffer.from([...Buffer.from('bad'), 0xff, ...Buffer.from('name'), 0xc3, 0x28]));
  expect(e.id).toBe(m.get('/a/hello.txt')?.id);
  expect(e.nlink).toBe(2);
  expect(fs.lookup(`/a/${name}`)?.id).toBe(e.id);
  expect(fs.read(e, 0, e.size).toString()).toBe('hello\n');
  expect(decodeName(encodeName('plain ✓ 🎉'))).toBe('plain ✓ 🎉');
  const ls = runBytes('debugfs', ['-R', 'ls -p /a', image]);
  expect(ls.includes(Buffer.from([...Buffer.from(`/${e.id}/`)]))).toBe(true);
  expect(ls.includes(encodeName(e.name))).toBe(true);
  expect(fs.problems).toEqual([]);
});

test('an extent block checksum mismatch is recorded and the file still reads', () => {
  const b = bytesOf('small-ext4');
  const img = join(small, 'small-ext4.img');
  const etb = Number(/\(ETB0\):(\d+)/.exec(run('debugfs', ['-R', 'stat /d/islands.bin', img]))?.[1]) * 1024;
  const entries = b.readUInt16LE(etb + 2);
  b[etb + 12 + 12 * entries + 1] = (b[etb + 12 + 12 * entries + 1] as number) ^ 0x40; // an unused slot after the last extent
  const fs = openBytes(b);
  const e = walkMap(fs).get('/d/islands.bin') as FsEntry;
  expect(hashEntry(fs, e)).toBe(sha256(readFileSync(join(small, 'small.src/d/islands.bin'))));
  const p = fs.problems.find((x) => x.error.code === 'EXT_EXTENT_CSUM');
  expect(p?.error.details.offset).toBe(etb);
  expect(p?.error.details.inode).toBe(Number(e.id));
});

test('an extent tree of depth 2 (600 extents, 1 KiB blocks) hashes like the source', () => {
  const image = join(small, 'small-ext4.img');
  expect(run('debugfs', ['-R', 'stat /d/many.bin', image])).toContain('(ETB1)');
  const fs = openExt(image);
  const e = fs.lookup('/d/many.bin') as FsEntry;
  expect(hashEntry(fs, e)).toBe(sha256(readFileSync(join(small, 'small.src/d/many.bin'))));
  expect(fs.runs(e).filter((r) => r.volumeOffset !== null).length).toBe(600);
  expect(fs.problems).toEqual([]);
});

test('small-ext2: block maps with single and double indirect blocks hash like the source', () => {
  const fs = openExt(join(small, 'small-ext2.img'));
  const m = walkMap(fs);
  for (const p of ['/a/b/big.bin', '/d/islands.bin', '/d/many.bin', '/a/hello.txt']) {
    expect(hashEntry(fs, m.get(p) as FsEntry), p).toBe(sha256(readFileSync(join(small, 'small.src', p))));
  }
  const islands = fs.runs(m.get('/d/islands.bin') as FsEntry);
  expect(islands.filter((r) => r.volumeOffset === null).length).toBeGreaterThan(5);
  expect(fs.problems).toEqual([]);
});
