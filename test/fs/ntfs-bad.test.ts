/**
 * Damaged NTFS volumes (issue 4 "Bad input"): each defect is made by hand in
 * a copy of a real volume (ColinFinck's testfs1, made by mkntfs + ntfs-3g)
 * and must give a typed error naming the image, the layer, the byte offset
 * and the MFT record — from open() when the volume is unusable, else as a
 * problem of the walk, which goes on.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { MemoryDevice } from '../../parsers/blockdevice.js';
import { errorsFor, isVdbakError, type VdbakError } from '../../parsers/errors.js';
import { AttrType, parseAttributes } from '../../parsers/fs/ntfs/attribute.js';
import { parseBootSector } from '../../parsers/fs/ntfs/boot.js';
import { ntfsDriver } from '../../parsers/fs/ntfs/index.js';
import { Mft } from '../../parsers/fs/ntfs/mft.js';
import { applyFixups, parseRecordHeader } from '../../parsers/fs/ntfs/record.js';
import type { FsEntry } from '../../parsers/fs/types.js';
import { CORPUS } from '../helpers/fixtures.js';

const IMAGE = 'testfs1-damaged';
const base = readFileSync(join(CORPUS, 'ntfs/colinfinck/testfs1'));
const err = errorsFor({ image: IMAGE, layer: 'ntfs' });
const boot = parseBootSector(base.subarray(0, 512), err);
const mft = new Mft(new MemoryDevice(base, IMAGE), boot, err);
const healthy = [...ntfsDriver.open(new MemoryDevice(base, IMAGE)).walk()];
const byPath = new Map(healthy.map((e) => [e.path, e]));
const idOf = (p: string) => Number(byPath.get(p)!.id);

/** Volume offset of a record, and where its attributes are (found on a fixed-up copy). */
function locate(n: number) {
  const at = mft.offsetOf(n);
  const copy = Buffer.from(base.subarray(at, at + boot.recordSize));
  const h = parseRecordHeader(copy, err, at, n);
  const attrs = parseAttributes(copy, h, err, at, n).map((a) => ({
    ...a,
    /** offset of the attribute's header inside the record */
    headerAt: copy.indexOf(Buffer.from([a.type & 0xff, (a.type >> 8) & 0xff, 0, 0]), h.attrsOffset),
    valueAt: a.value ? a.value.byteOffset - copy.byteOffset : -1,
    runlistOffset: a.runlist ? a.runlistAt - at : -1,
  }));
  return { at, attrs };
}

function damaged(edit: (b: Buffer) => void) {
  const b = Buffer.from(base);
  edit(b);
  return new MemoryDevice(b, IMAGE);
}

function walkOf(edit: (b: Buffer) => void) {
  const fs = ntfsDriver.open(damaged(edit));
  const entries = [...fs.walk()];
  return { fs, entries, paths: new Set(entries.map((e) => e.path)) };
}

function openError(edit: (b: Buffer) => void): VdbakError {
  try {
    ntfsDriver.open(damaged(edit));
  } catch (e) {
    if (isVdbakError(e)) return e;
    throw e;
  }
  throw new Error('open succeeded');
}

describe('boot sector', () => {
  test('no NTFS OEM id: probe says no, open names the field', () => {
    const dev = damaged((b) => b.write('FAT32   ', 3, 'latin1'));
    expect(ntfsDriver.probe(dev)).toBe(false);
    expect(openError((b) => b.write('FAT32   ', 3, 'latin1'))).toMatchObject({
      code: 'NTFS_BAD_OEM',
      image: IMAGE,
      layer: 'ntfs',
      details: { offset: 3 },
    });
  });
  test.each([
    ['sectors per cluster 3', 0x0d, 3, 'NTFS_BAD_CLUSTER_SIZE'],
    ['sectors per cluster 2^(256-0xe0): 1 GiB clusters', 0x0d, 0xe0, 'NTFS_BAD_CLUSTER_SIZE'],
    ['bytes per sector 515', 0x0b, 3, 'NTFS_BAD_SECTOR_SIZE'],
    ['MFT record size field 0', 0x40, 0, 'NTFS_BAD_RECORD_SIZE'],
    ['MFT record size field -40 (2^40 bytes)', 0x40, 0x100 - 40, 'NTFS_BAD_RECORD_SIZE'],
    ['index record size field 100 clusters', 0x44, 100, 'NTFS_BAD_RECORD_SIZE'],
    ['boot signature', 0x1fe, 0, 'NTFS_BAD_SIGNATURE'],
  ])('%s', (_what, offset, value, code) => {
    expect(openError((b) => b.writeUInt8(value, offset))).toMatchObject({ code, details: { offset } });
  });
  test('negative record-size encodings: -10 is 1024 bytes, -12 is 4096', () => {
    const b = Buffer.from(base.subarray(0, 512));
    b.writeUInt8(0x100 - 12, 0x44);
    expect(parseBootSector(b, err)).toMatchObject({ recordSize: 1024, indexRecordSize: 4096 });
  });
  test('MFT cluster past the volume', () => {
    expect(openError((b) => b.writeBigUInt64LE(1n << 40n, 0x30))).toMatchObject({
      code: 'NTFS_BAD_MFT_LCN',
      details: { offset: 0x30 },
    });
  });
  test('$MFT data size larger than its runs: open fails, nothing huge is allocated', () => {
    const { at, attrs } = locate(0);
    const data = attrs.find((a) => a.type === AttrType.Data)!;
    const e = openError((b) => b.writeBigUInt64LE(1n << 45n, at + data.headerAt + 48));
    expect(e.details.inode).toBe(0);
    expect(['NTFS_ABSURD_SIZE', 'NTFS_RUNLIST_SHORT']).toContain(e.code);
  });
});

describe('records (the walk goes on)', () => {
  const fileId = idOf('/file-with-12345');
  const bigId = idOf('/1000-bytes-file');

  function expectProblem(
    fs: { problems: { error: { code: string; details: { inode?: number; offset?: number }; image: string } }[] },
    code: string,
    inode: number,
  ) {
    const p = fs.problems.find((x) => x.error.code === code);
    expect(p, `problem ${code} in ${JSON.stringify(fs.problems)}`).toBeDefined();
    expect(p!.error.details.inode).toBe(inode);
    expect(p!.error.image).toBe(IMAGE);
    expect(typeof p!.error.details.offset).toBe('number');
  }

  test('fixup mismatch: that record is skipped and counted, the others are listed', () => {
    const { at } = locate(fileId);
    const { fs, paths } = walkOf((b) => b.writeUInt16LE(b.readUInt16LE(at + 510) ^ 0xffff, at + 510));
    expectProblem(fs, 'NTFS_FIXUP_MISMATCH', fileId);
    expect(fs.problems[0]!.error.details.offset).toBe(at + 510);
    expect(paths.has('/file-with-12345')).toBe(false);
    expect(paths.size).toBe(healthy.length - 1);
  });

  test('attribute length past the record', () => {
    const { at, attrs } = locate(fileId);
    const { fs, paths } = walkOf((b) => b.writeUInt32LE(0x1000, at + attrs[0]!.headerAt + 4));
    expectProblem(fs, 'NTFS_BAD_ATTR_LENGTH', fileId);
    expect(paths.has('/empty-file')).toBe(true);
  });

  test('runlist pointing outside the volume', () => {
    const { at, attrs } = locate(bigId);
    const data = attrs.find((a) => a.type === AttrType.Data)!;
    // a run header with a 4-byte LCN far past the volume
    const { fs, paths } = walkOf((b) => {
      const r = at + data.runlistOffset;
      b.set([0x41, 0x02, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00], r);
    });
    expectProblem(fs, 'NTFS_RUN_OUTSIDE_VOLUME', bigId);
    expect(paths.has('/1000-bytes-file')).toBe(false);
  });

  test('runlist overlapping itself', () => {
    const { at, attrs } = locate(bigId);
    const data = attrs.find((a) => a.type === AttrType.Data)!;
    const lcn = data.runlist!.readUInt16LE(2);
    const { fs } = walkOf((b) =>
      b.set([0x21, 0x01, lcn & 0xff, lcn >> 8, 0x11, 0x01, 0x00, 0x00], at + data.runlistOffset),
    );
    expectProblem(fs, 'NTFS_RUNS_OVERLAP', bigId);
  });

  test('absurd data size', () => {
    const { at, attrs } = locate(bigId);
    const data = attrs.find((a) => a.type === AttrType.Data)!;
    const { fs } = walkOf((b) => b.writeBigUInt64LE(1n << 60n, at + data.headerAt + 48));
    expectProblem(fs, 'NTFS_ABSURD_SIZE', bigId);
  });

  test('a record not in use is not listed', () => {
    const { at } = locate(fileId);
    const { fs, paths } = walkOf((b) => b.writeUInt16LE(b.readUInt16LE(at + 22) & ~1, at + 22));
    expect(paths.has('/file-with-12345')).toBe(false);
    expect(fs.problems).toEqual([]);
  });

  test('a stale parent reference (sequence mismatch) makes an orphan, counted in facts', () => {
    const { at, attrs } = locate(fileId);
    const fn = attrs.find((a) => a.type === AttrType.FileName)!;
    const { fs, paths } = walkOf((b) => b.writeUInt16LE(b.readUInt16LE(at + fn.valueAt + 6) + 1, at + fn.valueAt + 6));
    expect(paths.has('/$OrphanFiles/file-with-12345')).toBe(true);
    expect(paths.has('/$OrphanFiles')).toBe(true);
    expect(fs.info().facts?.orphans).toBe(1);
    expect(fs.lookup('/$OrphanFiles/file-with-12345')?.size).toBe(5);
  });

  test('a cycle of parent references ends, is reported, and lands under the orphan folder', () => {
    const one = idOf('/many_subdirs/1');
    const two = idOf('/many_subdirs/2');
    const a = locate(one);
    const b2 = locate(two);
    const fnA = a.attrs.find((x) => x.type === AttrType.FileName)!;
    const fnB = b2.attrs.find((x) => x.type === AttrType.FileName)!;
    const seqOf = (n: number) => base.readUInt16LE(mft.offsetOf(n) + 16);
    const { fs, entries } = walkOf((b) => {
      b.writeUIntLE(two, a.at + fnA.valueAt, 6);
      b.writeUInt16LE(seqOf(two), a.at + fnA.valueAt + 6);
      b.writeUIntLE(one, b2.at + fnB.valueAt, 6);
      b.writeUInt16LE(seqOf(one), b2.at + fnB.valueAt + 6);
    });
    expect(fs.problems.some((p) => p.error.code === 'NTFS_PARENT_CYCLE')).toBe(true);
    const moved = entries.filter((e: FsEntry) => e.id === String(one) || e.id === String(two));
    expect(moved.length).toBe(2);
    for (const e of moved) expect(e.path.startsWith('/$OrphanFiles/')).toBe(true);
    expect(Number(fs.info().facts?.orphans)).toBeGreaterThan(0);
  });

  test('a truncated image: typed errors only, the records that are there are listed', () => {
    const fs = ntfsDriver.open(new MemoryDevice(base.subarray(0, base.length - 64 * 1024), IMAGE));
    const entries = [...fs.walk()];
    expect(entries.length).toBeGreaterThan(0);
    for (const e of entries.filter((x) => x.type === 'file')) {
      try {
        fs.read(e, 0, e.size);
      } catch (x) {
        expect(isVdbakError(x)).toBe(true);
      }
    }
  });
});

describe('directory indexes (list and lookup)', () => {
  /** Offsets (in the image) of the child-VCN fields of the index root of a directory. */
  function rootChildFields(dirId: number): number[] {
    const { at, attrs } = locate(dirId);
    const root = attrs.find((a) => a.type === AttrType.IndexRoot)!;
    const node = at + root.valueAt + 16;
    const fields: number[] = [];
    let off = node + base.readUInt32LE(node);
    for (;;) {
      const length = base.readUInt16LE(off + 8);
      const flags = base.readUInt32LE(off + 12);
      if (flags & 1) fields.push(off + length - 8);
      if (flags & 2) return fields;
      off += length;
    }
  }

  /** Image offset of a child-VCN field inside the top INDX record of a directory (clear of fixup positions). */
  function topNodeChildField(dirId: number, topVcn: bigint): number {
    for (let off = 0; off + 4096 <= base.length; off += 512) {
      if (base.toString('latin1', off, off + 4) !== 'INDX' || base.readBigUInt64LE(off + 16) !== topVcn) continue;
      const copy = Buffer.from(base.subarray(off, off + 4096));
      applyFixups(copy, err, off, dirId, 40);
      let e = 24 + copy.readUInt32LE(24);
      for (;;) {
        const length = copy.readUInt16LE(e + 8);
        const flags = copy.readUInt32LE(e + 12);
        const field = e + length - 8;
        if (flags & 1 && (field % 512) + 8 <= 510 && copy.readUInt32LE(e + 16) === dirId) return off + field;
        if (flags & 2) break;
        e += length;
      }
    }
    throw new Error('no child field found');
  }

  test('an index node that points back to itself (a loop in the B-tree) is a typed error', () => {
    const dirId = idOf('/many_subdirs');
    const [rootField] = rootChildFields(dirId);
    const topVcn = base.readBigUInt64LE(rootField!);
    const field = topNodeChildField(dirId, topVcn);
    const fs = ntfsDriver.open(damaged((b) => b.writeBigUInt64LE(topVcn, field)));
    let caught: unknown;
    try {
      fs.list('/many_subdirs');
    } catch (e) {
      caught = e;
    }
    expect(caught).toMatchObject({ code: 'NTFS_INDEX_LOOP', image: IMAGE, layer: 'ntfs', details: { inode: dirId } });
    // the walk does not depend on indexes: every entry is still there
    expect([...fs.walk()].length).toBe(healthy.length);
  });

  test('a child VCN past the index allocation is a typed error naming the directory', () => {
    const dirId = idOf('/many_subdirs');
    const fields = rootChildFields(dirId);
    const fs = ntfsDriver.open(damaged((b) => b.writeBigUInt64LE(1n << 40n, fields[0]!)));
    expect(() => fs.lookup('/many_subdirs/1')).toThrow(expect.objectContaining({ code: 'NTFS_INDEX_BAD_VCN' }));
  });
});
