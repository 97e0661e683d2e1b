/**
 * NTFS features that ntfs-3g does not write by itself:
 * - Windows reparse points (symlinks, junctions, other tags) and a DOS 8.3
 *   alias, written through ntfs-3g's system.ntfs_reparse_data and
 *   system.ntfs_dos_name attributes (test/fixtures/ntfs-features.sh);
 * - an EFS-encrypted file and a file whose initialized size is below its data
 *   size, made by editing those fields in a copy of a real volume (testfs1,
 *   mkntfs + ntfs-3g), as Windows would have written them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { MemoryDevice } from '../../parsers/blockdevice.js';
import { RawImage } from '../../parsers/disk/raw.js';
import { errorsFor } from '../../parsers/errors.js';
import { AttrType, parseAttributes } from '../../parsers/fs/ntfs/attribute.js';
import { parseBootSector } from '../../parsers/fs/ntfs/boot.js';
import { ntfsDriver } from '../../parsers/fs/ntfs/index.js';
import { Mft } from '../../parsers/fs/ntfs/mft.js';
import { parseRecordHeader } from '../../parsers/fs/ntfs/record.js';
import { CORPUS, fixture, run } from '../helpers/fixtures.js';
import { fls, ourListing } from './ntfs-oracle.js';

test('reparse points: symlinks and junctions with their targets, other tags recorded', () => {
  const dir = fixture('ntfs-features.sh');
  const image = join(dir, 'ntfs.img');
  const fs = ntfsDriver.open(new RawImage(image));
  const { entries } = ourListing(fs);
  expect([...entries.keys()].sort()).toEqual(
    fls(image)
      .map((l) => l.path)
      .sort(),
  );
  const rows = readFileSync(join(dir, 'reparse.tsv'), 'utf8').split('\n').filter(Boolean);
  expect(rows.length).toBe(4);
  for (const row of rows) {
    const [path, tag, target] = row.split('\t');
    const e = entries.get(path!)!;
    expect(e.reparseTag, path).toBe(Number(tag));
    expect(e.flags).toContain('reparse');
    if (target) expect(e, path).toMatchObject({ type: 'symlink', linkTarget: target });
    else expect(e.type, path).toBe('file');
  }
  expect(entries.get('/junction')!.flags).toContain('junction');
  // TSK agrees these records carry a $REPARSE_POINT
  expect(run('istat', [image, entries.get('/junction')!.id])).toMatch(/REPARSE_POINT/);
  expect(fs.problems).toEqual([]);
});

test('the DOS 8.3 alias is kept as shortName, the long name is the name', () => {
  const dir = fixture('ntfs-features.sh');
  const image = join(dir, 'ntfs.img');
  const fs = ntfsDriver.open(new RawImage(image));
  const e = fs.lookup('/A rather long file name.text')!;
  const dos = readFileSync(join(dir, 'dosname.txt'), 'utf8').trim();
  expect(dos).toBe('ARATHE~1.TEX');
  expect(e).toMatchObject({ name: 'A rather long file name.text', shortName: dos, nlink: 1 });
  expect(run('istat', [image, e.id])).toContain(`Name: ${dos}`);
  expect([...fs.walk()].filter((x) => x.id === e.id).length).toBe(1);
});

const IMAGE = 'testfs1-edited';
const base = readFileSync(join(CORPUS, 'ntfs/colinfinck/testfs1'));
const err = errorsFor({ image: IMAGE, layer: 'ntfs' });
const boot = parseBootSector(base.subarray(0, 512), err);
const mft = new Mft(new MemoryDevice(base, IMAGE), boot, err);
const original = ntfsDriver.open(new MemoryDevice(base, IMAGE));
const file = original.lookup('/1000-bytes-file')!;
const content = original.read(file, 0, file.size);

/** Edits record `n` of a copy of testfs1 (fields outside the fixup positions). */
function edited(edit: (b: Buffer, at: number, attrs: { type: number; headerAt: number; valueAt: number }[]) => void) {
  const n = Number(file.id);
  const at = mft.offsetOf(n);
  const copy = Buffer.from(base.subarray(at, at + boot.recordSize));
  const h = parseRecordHeader(copy, err, at, n);
  let off = h.attrsOffset;
  const attrs = parseAttributes(copy, h, err, at, n).map((a) => {
    const headerAt = off;
    off += copy.readUInt32LE(off + 4);
    return { type: a.type, headerAt, valueAt: a.value ? a.value.byteOffset - copy.byteOffset : -1 };
  });
  const b = Buffer.from(base);
  edit(b, at, attrs);
  return ntfsDriver.open(new MemoryDevice(b, IMAGE));
}

test('an EFS-encrypted file is listed, flagged, and its raw data kept', () => {
  const fs = edited((b, at, attrs) => {
    const si = attrs.find((a) => a.type === AttrType.StandardInformation)!;
    b.writeUInt32LE(b.readUInt32LE(at + si.valueAt + 32) | 0x4000, at + si.valueAt + 32);
    const data = attrs.find((a) => a.type === AttrType.Data)!;
    b.writeUInt16LE(b.readUInt16LE(at + data.headerAt + 12) | 0x4000, at + data.headerAt + 12);
  });
  const e = fs.lookup('/1000-bytes-file')!;
  expect(e.flags).toContain('encrypted');
  expect(e.attributes! & 0x4000).toBe(0x4000);
  expect(fs.read(e, 0, e.size).equals(content)).toBe(true);
  expect(fs.runs(e)).toEqual(original.runs(file));
});

test('bytes past the initialized size read as zeros and are marked unwritten', () => {
  const fs = edited((b, at, attrs) => {
    const data = attrs.find((a) => a.type === AttrType.Data)!;
    b.writeBigUInt64LE(100n, at + data.headerAt + 56);
  });
  const e = fs.lookup('/1000-bytes-file')!;
  const got = fs.read(e, 0, e.size);
  expect(got.subarray(0, 100).equals(content.subarray(0, 100))).toBe(true);
  expect(got.subarray(100).equals(Buffer.alloc(900))).toBe(true);
  const runs = fs.runs(e);
  expect(runs[0]).toMatchObject({ fileOffset: 0, length: 100 });
  expect(runs[1]).toMatchObject({ fileOffset: 100, length: 900, unwritten: true });
});
