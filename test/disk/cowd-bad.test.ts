/**
 * Broken COWD extents: each defect, patched into a file our builder made
 * (and that qemu-img reads, see cowd.test.ts), must give the typed error that
 * names the file, the layer 'vmdk' and the offset of the field at fault.
 */
import { describe, expect, it } from 'vitest';
import { FileSource } from '../../parsers/disk/file.js';
import { openCowdExtent } from '../../parsers/disk/vmdk/cowd.js';
import { buildCowd } from './builders/cowd.js';
import { itRejectsPatches, type PatchCase, patchedCopies } from './builders/delta-checks.js';
import { expectVmdkError } from './builders/errors.js';
import { imageBytes } from './builders/image.js';

const GT = 4096;
const SIZE = 4 * GT * 512; // 4 grain tables of 1-sector grains = 8 MiB
const built = buildCowd({
  capacitySectors: SIZE / 512,
  grainSectors: 1,
  grains: [
    { index: 7, data: Buffer.alloc(512, 0x11) },
    { index: 2 * GT + 1, data: Buffer.alloc(512, 0x22) },
  ],
});
const good = imageBytes(built.image);
const GD = built.layout.gdOffset;
const GT2 = built.layout.tableAt.get(2) ?? 0;
/** A patch that stores the u32 `v` at `off`. */
const u32 = (off: number, v: number) => (b: Buffer) => {
  b.writeUInt32LE(v, off);
  return b;
};

describe('COWD: bad input gives typed errors', () => {
  const variant = patchedCopies('vdbak-cowd-bad-', good);
  const open = (path: string, size = SIZE) => openCowdExtent(new FileSource(path, 'vmdk'), size);

  it('the unpatched file opens and reads (control)', () => {
    const e = open(variant(() => undefined));
    expect(e.span(7 * 512, 512)).toMatchObject({ kind: 'data', length: 512 });
    e.close();
  });

  const headerCases: PatchCase[] = [
    ['wrong magic', (b) => b.fill('KDMV', 0, 4), 'VMDK_COWD_BAD_MAGIC', 0, 'CorruptError'],
    ['version 2', u32(4, 2), 'VMDK_COWD_VERSION', 4, 'UnsupportedError'],
    ['grain size 0', u32(16, 0), 'VMDK_COWD_GRAIN_SIZE', 16, 'CorruptError'],
    ['grain size 4 GiB', u32(16, 0x800000), 'VMDK_COWD_GRAIN_SIZE', 16, 'CorruptError'],
    ['capacity 0', u32(12, 0), 'VMDK_COWD_CAPACITY', 12, 'CorruptError'],
    ['capacity below the descriptor size', u32(12, 100), 'VMDK_COWD_CAPACITY', 12, 'CorruptError'],
    ['absurd directory count', u32(24, 0xffffffff), 'VMDK_COWD_GD_COUNT', 24, 'LimitError'],
    ['directory too small for the capacity', u32(24, 3), 'VMDK_COWD_GD_TOO_SMALL', 24, 'CorruptError'],
    ['directory inside the header', u32(20, 2), 'VMDK_COWD_GD_OFFSET', 20, 'CorruptError'],
    ['directory past the end', u32(20, 0x7fffffff), 'VMDK_COWD_GD_PAST_EOF', 20, 'CorruptError'],
    ['file shorter than the header', (b) => b.subarray(0, 100), 'VMDK_COWD_HEADER_SHORT', 0, 'TruncatedError'],
    ['grain table past the end', u32(GD + 2 * 4, 0xfffffff0), 'VMDK_COWD_GT_PAST_EOF', GD + 8, 'CorruptError'],
    [
      'grain table cut by the end of file',
      (b) => b.subarray(0, GT2 + 100),
      'VMDK_COWD_GT_PAST_EOF',
      GD + 8,
      'CorruptError',
    ],
  ];
  itRejectsPatches(headerCases, variant, open);

  it('a grain past the end of the file fails when that grain is mapped, naming its table entry', () => {
    const path = variant(u32(GT2 + 5 * 4, 0xffffff00));
    const e = open(path);
    try {
      expect(e.span(7 * 512, 512).kind).toBe('data'); // other grains still read
      expectVmdkError(() => e.span((2 * GT + 5) * 512, 512), {
        image: path,
        code: 'VMDK_COWD_GRAIN_PAST_EOF',
        offset: GT2 + 5 * 4,
        kind: 'CorruptError',
      });
    } finally {
      e.close();
    }
  });

  it('a grain cut by the end of the file', () => {
    const grainAt = built.layout.grainAt.get(2 * GT + 1) ?? 0;
    const path = variant((b) => b.subarray(0, grainAt + 100));
    const e = open(path);
    try {
      expectVmdkError(() => e.span((2 * GT + 1) * 512, 512), {
        image: path,
        code: 'VMDK_COWD_GRAIN_PAST_EOF',
        offset: GT2 + 1 * 4,
      });
    } finally {
      e.close();
    }
  });

  it('an extent size the descriptor cannot mean, and a span outside the extent', () => {
    const path = variant(() => undefined);
    expectVmdkError(() => open(path, 0), { image: path, code: 'VMDK_COWD_EXTENT_SIZE', offset: 0 });
    expectVmdkError(() => open(path, SIZE + 512), { image: path, code: 'VMDK_COWD_CAPACITY', offset: 12 });
    const e = open(path);
    expectVmdkError(() => e.span(SIZE, 1), { image: path, code: 'VMDK_SPAN_RANGE', offset: SIZE });
    expectVmdkError(() => e.span(0, 1.5), { image: path, code: 'VMDK_SPAN_RANGE', offset: 0 });
    e.close();
  });
});
