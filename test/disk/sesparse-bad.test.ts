/**
 * Broken SEsparse extents: each defect, patched into a file our builder made
 * (and that qemu-img reads, see sesparse.test.ts), must give the typed error
 * that names the file, the layer 'vmdk' and the offset of the field at
 * fault. The header checks are qemu's (check_se_sparse_const_header,
 * check_se_sparse_volatile_header, get_cluster_offset) plus our region checks.
 */
import { describe, expect, it } from 'vitest';
import { FileSource } from '../../parsers/disk/file.js';
import { openSeSparseExtent } from '../../parsers/disk/vmdk/sesparse.js';
import { itRejectsPatches, type PatchCase, patchedCopies } from './builders/delta-checks.js';
import { expectVmdkError } from './builders/errors.js';
import { imageBytes } from './builders/image.js';
import { buildSeSparse, seAllocatedEntry } from './builders/sesparse.js';

const GRAIN = 4096;
const GT = 4096;
const SIZE = 32 * 1024 * 1024; // two grain tables
const built = buildSeSparse({
  capacitySectors: SIZE / 512,
  grains: [
    { index: 3, kind: 'data', data: Buffer.alloc(GRAIN, 0x33) },
    { index: GT + 9, kind: 'data', data: Buffer.alloc(GRAIN, 0x44) },
    { index: GT + 10, kind: 'zero' },
  ],
});
const good = imageBytes(built.image);
const GD = built.layout.gdOffset * 512;
const T1 = built.layout.tableAt.get(1) ?? 0;

const u64 = (off: number, v: bigint) => (b: Buffer) => {
  b.writeBigUInt64LE(v, off);
  return b;
};

describe('SEsparse: bad input gives typed errors', () => {
  const variant = patchedCopies('vdbak-sesparse-bad-', good);
  const open = (path: string, size = SIZE) => openSeSparseExtent(new FileSource(path, 'vmdk'), size);

  it('the unpatched file opens and reads (control)', () => {
    const e = open(variant(() => undefined));
    expect(e.span(3 * GRAIN, GRAIN)).toMatchObject({ kind: 'data', length: GRAIN });
    expect(e.span((GT + 10) * GRAIN, GRAIN)).toMatchObject({ kind: 'zero', length: GRAIN });
    e.close();
  });

  const cases: PatchCase[] = [
    ['wrong magic', u64(0, 0xcafecafen), 'VMDK_SESPARSE_BAD_MAGIC', 0, 'CorruptError'],
    ['unknown version', u64(8, 0x200000002n), 'VMDK_SESPARSE_VERSION', 8, 'UnsupportedError'],
    ['grain size 16 sectors', u64(24, 16n), 'VMDK_SESPARSE_GRAIN_SIZE', 24, 'UnsupportedError'],
    ['grain table size 128 sectors', u64(32, 128n), 'VMDK_SESPARSE_GT_SIZE', 32, 'UnsupportedError'],
    ['flags set', u64(40, 1n), 'VMDK_SESPARSE_FLAGS', 40, 'UnsupportedError'],
    ['reserved3 set', u64(64, 5n), 'VMDK_SESPARSE_RESERVED', 64, 'UnsupportedError'],
    ['padding not zero', u64(296, 0x100n), 'VMDK_SESPARSE_PADDING', 297, 'UnsupportedError'],
    ['capacity past 2^53', u64(16, 1n << 60n), 'VMDK_SESPARSE_FIELD', 16, 'LimitError'],
    ['capacity past the largest disk', u64(16, 1n << 50n), 'VMDK_SESPARSE_CAPACITY', 16, 'LimitError'],
    ['capacity below the descriptor size', u64(16, 1000n), 'VMDK_SESPARSE_CAPACITY', 16, 'CorruptError'],
    ['volatile header past the end', u64(80, 1n << 30n), 'VMDK_SESPARSE_VOLATILE_PAST_EOF', 80, 'CorruptError'],
    ['volatile header inside the const header', u64(80, 0n), 'VMDK_SESPARSE_REGION', 80, 'CorruptError'],
    ['volatile magic', u64(512, 0xcafebaben), 'VMDK_SESPARSE_VOLATILE_MAGIC', 512, 'CorruptError'],
    ['journal to replay', u64(512 + 24, 1n), 'VMDK_SESPARSE_DIRTY', 536, 'UnsupportedError'],
    ['volatile padding', u64(512 + 100, 7n), 'VMDK_SESPARSE_PADDING', 612, 'UnsupportedError'],
    ['absurd directory size', u64(136, 1n << 40n), 'VMDK_SESPARSE_GD_COUNT', 136, 'LimitError'],
    ['empty directory', u64(136, 0n), 'VMDK_SESPARSE_REGION', 128, 'CorruptError'],
    ['directory past the end', u64(128, 1n << 32n), 'VMDK_SESPARSE_GD_PAST_EOF', 128, 'CorruptError'],
    ['empty grain region', u64(200, 0n), 'VMDK_SESPARSE_REGION', 192, 'CorruptError'],
    ['file shorter than a header', (b) => b.subarray(0, 300), 'VMDK_SESPARSE_HEADER_SHORT', 0, 'TruncatedError'],
    [
      'directory entry of an unknown kind',
      u64(GD + 8, 0x2000000000000000n),
      'VMDK_SESPARSE_GD_ENTRY',
      GD + 8,
      'CorruptError',
    ],
    [
      'directory entry past 32 bits (qemu)',
      u64(GD + 8, 0x1000000100000000n),
      'VMDK_SESPARSE_GD_ENTRY',
      GD + 8,
      'CorruptError',
    ],
    [
      'grain table index past the table region',
      u64(GD + 8, 0x1000000000000400n),
      'VMDK_SESPARSE_GT_INDEX',
      GD + 8,
      'CorruptError',
    ],
    [
      'grain table cut by the end of file',
      (b) => b.subarray(0, T1 + 1000),
      'VMDK_SESPARSE_GT_PAST_EOF',
      GD + 8,
      'CorruptError',
    ],
  ];
  itRejectsPatches(cases, variant, open);

  const entryCases: [string, bigint, string][] = [
    ['unknown entry type 4', 0x4000000000000000n, 'VMDK_SESPARSE_GT_ENTRY'],
    ['unknown entry type 15', 0xf000000000000001n, 'VMDK_SESPARSE_GT_ENTRY'],
    ['unallocated entry with stray bits (qemu)', 0x0000000000000010n, 'VMDK_SESPARSE_GT_ENTRY'],
    ['cluster past the grain region', seAllocatedEntry(SIZE / GRAIN), 'VMDK_SESPARSE_GRAIN_INDEX'],
    ['cluster with all 60 bits set', 0x3fffffffffffffffn, 'VMDK_SESPARSE_GRAIN_INDEX'],
    ['cluster inside the region but past the end of file', seAllocatedEntry(5000), 'VMDK_SESPARSE_GRAIN_PAST_EOF'],
  ];
  for (const [what, entry, code] of entryCases) {
    it(`${what}: ${code} when that grain is mapped, naming its table entry`, () => {
      const at = T1 + 20 * 8;
      const path = variant(u64(at, entry));
      const e = open(path);
      try {
        expect(e.span(3 * GRAIN, GRAIN).kind).toBe('data'); // the rest still reads
        expectVmdkError(() => e.span((GT + 20) * GRAIN, GRAIN), {
          image: path,
          code,
          offset: at,
          kind: 'CorruptError',
        });
        if (code !== 'VMDK_SESPARSE_GRAIN_PAST_EOF') {
          // an undecodable entry also stops a run of absent grains that reaches it: no silent skipping
          expectVmdkError(() => e.span((GT + 11) * GRAIN, 64 * GRAIN), { image: path, code, offset: at });
        }
      } finally {
        e.close();
      }
    });
  }

  it('a span outside the extent, and an impossible extent size', () => {
    const path = variant(() => undefined);
    const e = open(path);
    expectVmdkError(() => e.span(-1, 10), { image: path, code: 'VMDK_SPAN_RANGE', offset: -1 });
    expectVmdkError(() => e.span(0, Number.NaN), { image: path, code: 'VMDK_SPAN_RANGE', offset: 0 });
    e.close();
    expectVmdkError(() => open(path, 1.5), { image: path, code: 'VMDK_SESPARSE_EXTENT_SIZE', offset: 0 });
  });
});
