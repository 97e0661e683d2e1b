/**
 * The blocks an ext filesystem uses, from its block bitmaps: one bitmap
 * block per group (bits are clusters with bigalloc), located by the group
 * descriptor. A group flagged BLOCK_UNINIT has no bitmap on disk: its used
 * blocks are the metadata mkfs put there (superblock and descriptor copies,
 * reserved GDT blocks, and any group's bitmaps or inode table, which flex_bg
 * may place in another group), as the kernel's ext4_init_block_bitmap and
 * e2fsprogs' read_bitmaps compute them.
 * Spec: kernel Documentation/filesystems/ext4/blockgroup.rst ("Lazy Block
 * Group Initialization", "Meta Block Groups", flex_bg), group_descr.rst.
 *
 * Whatever we cannot trust counts as used, never as free: a group whose
 * descriptor fails its checksum or puts its bitmap outside the filesystem
 * is wholly used. Memory: the descriptors' three locations per group, and
 * one batch of bitmap blocks at a time.
 */
import type { BlockDevice, ByteRange } from '../../blockdevice.js';
import type { Errors } from '../../errors.js';
import { setBitRuns, unionOfIntervals } from '../ranges.js';
import { descriptorBlock, type GroupTable } from './groups.js';
import { le16, le32 } from './le.js';
import { groupHasSuper, INCOMPAT, readSuperblock, type Superblock } from './superblock.js';

/** bg_flags: the group's block bitmap was never written (uninit_bg / metadata_csum). */
export const BG_BLOCK_UNINIT = 0x2;
/** s_reserved_gdt_blocks: u16 at 0xce of the superblock. */
const SB_RESERVED_GDT = 0xce;
/** Descriptor fields beyond groups.ts's (lo at 0x00/0x04/0x08, hi at 0x20/0x24/0x28 with 64bit). */
const GD_LOC = { blockBitmap: [0x00, 0x20], inodeBitmap: [0x04, 0x24], inodeTable: [0x08, 0x28] } as const;
/** Bitmap blocks fetched in one read when consecutive (flex_bg packs them). */
const BITMAP_BATCH_BLOCKS = 256;
/** Descriptor blocks fetched in one read. */
const GDT_BATCH_BLOCKS = 1024;

interface Locations {
  blockBitmap: Float64Array;
  inodeBitmap: Float64Array;
  inodeTable: Float64Array;
}

/**
 * Used byte ranges of the filesystem (volume coordinates, inside the
 * filesystem and the device), sorted and merged, group by group. `groups` is the table the filesystem read at open
 * (its flags and checksum verdicts).
 */
export function* extAllocated(dev: BlockDevice, sb: Superblock, groups: GroupTable, err: Errors): Generator<ByteRange> {
  const bs = sb.blockSize;
  const ratio = sb.clusterSize / bs;
  // a filesystem longer than its volume (truncated image): what lies past the device does not exist
  const fsEnd = Math.min(sb.blocksCount * bs, dev.size);
  const loc = readLocations(dev, sb, err);
  const bad = new Set(groups.badChecksum);
  const tableBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / bs);
  const anyUninit = groups.flags.some((f) => (f & BG_BLOCK_UNINIT) !== 0);
  const meta = anyUninit ? metadataRanges(sb, loc, tableBlocks) : undefined;
  const reservedGdt = Math.min(le16(readSuperblock(dev, err), SB_RESERVED_GDT), sb.blocksPerGroup);

  let pending: ByteRange | undefined;
  // ranges arrive in order; touching ones are joined before they are handed out
  const out: ByteRange[] = [];
  const push = (offset: number, end: number): void => {
    const e = Math.min(end, fsEnd);
    if (e <= offset) return;
    if (pending && offset <= pending.offset + pending.length) {
      pending.length = Math.max(pending.length, e - pending.offset);
      return;
    }
    if (pending) out.push(pending);
    pending = { offset, length: e - offset };
  };
  // blocks before the first group (block 0 with 1 KiB blocks: the boot block) are never free
  push(0, sb.firstDataBlock * bs);

  const groupStart = (g: number): number => sb.firstDataBlock + g * sb.blocksPerGroup;
  const unitsIn = (g: number): number =>
    Math.ceil((Math.min(sb.blocksCount, groupStart(g) + sb.blocksPerGroup) - groupStart(g)) / ratio);
  const usable = (g: number): boolean => {
    const b = loc.blockBitmap[g]!;
    return !bad.has(g) && b >= sb.firstDataBlock && b < sb.blocksCount && (b + 1) * bs <= dev.size;
  };

  let g = 0;
  while (g < sb.groupCount) {
    const start = groupStart(g);
    if (start * bs >= dev.size) break;
    if (!usable(g)) {
      push(start * bs, (start + sb.blocksPerGroup) * bs);
      g++;
    } else if (groups.flags[g]! & BG_BLOCK_UNINIT) {
      for (const [s, e] of uninitUsed(sb, g, reservedGdt, meta!)) {
        // with bigalloc a used block makes its whole cluster used
        const cs = Math.floor((s - sb.firstDataBlock) / ratio) * ratio + sb.firstDataBlock;
        const ce = Math.ceil((e - sb.firstDataBlock) / ratio) * ratio + sb.firstDataBlock;
        push(cs * bs, ce * bs);
      }
      g++;
    } else {
      // a batch of groups whose bitmap blocks follow each other: one read
      let n = 1;
      while (
        n < BITMAP_BATCH_BLOCKS &&
        g + n < sb.groupCount &&
        usable(g + n) &&
        !(groups.flags[g + n]! & BG_BLOCK_UNINIT) &&
        loc.blockBitmap[g + n] === loc.blockBitmap[g]! + n
      ) {
        n++;
      }
      const bytes = dev.read(loc.blockBitmap[g]! * bs, n * bs);
      for (let i = 0; i < n; i++) {
        const gs = groupStart(g + i) * bs;
        setBitRuns(bytes.subarray(i * bs, (i + 1) * bs), unitsIn(g + i), (first, count) =>
          push(gs + first * sb.clusterSize, gs + (first + count) * sb.clusterSize),
        );
      }
      g += n;
    }
    if (out.length > 0) {
      yield* out;
      out.length = 0;
    }
  }
  yield* out;
  if (pending) yield pending;
}

/** Every group's bitmap and inode-table locations (-1 where the descriptor says nothing usable). */
function readLocations(dev: BlockDevice, sb: Superblock, err: Errors): Locations {
  const n = sb.groupCount;
  const loc: Locations = {
    blockBitmap: new Float64Array(n).fill(-1),
    inodeBitmap: new Float64Array(n).fill(-1),
    inodeTable: new Float64Array(n).fill(-1),
  };
  const perBlock = sb.blockSize / sb.descSize;
  const nBlocks = Math.ceil(n / perBlock);
  const wide = sb.is64bit && sb.descSize >= 64;
  const read = (d: Uint8Array, [lo, hi]: readonly [number, number]): number =>
    le32(d, lo) + (wide ? le32(d, hi) * 2 ** 32 : 0);
  let nr = 0;
  while (nr < nBlocks) {
    const first = descriptorBlock(sb, nr);
    let k = 1;
    while (nr + k < nBlocks && k < GDT_BATCH_BLOCKS && descriptorBlock(sb, nr + k) === first + k) k++;
    if (first + k > sb.blocksCount || (first + k) * sb.blockSize > dev.size) {
      throw err.corrupt('EXT_GDT_OUT_OF_RANGE', `group descriptor block ${first} lies outside the volume`, {
        offset: first * sb.blockSize,
      });
    }
    const bytes = dev.read(first * sb.blockSize, k * sb.blockSize);
    for (let i = 0; i < k * perBlock; i++) {
      const g = nr * perBlock + i;
      if (g >= n) break;
      const d = bytes.subarray(i * sb.descSize, (i + 1) * sb.descSize);
      loc.blockBitmap[g] = read(d, GD_LOC.blockBitmap);
      loc.inodeBitmap[g] = read(d, GD_LOC.inodeBitmap);
      loc.inodeTable[g] = read(d, GD_LOC.inodeTable);
    }
    nr += k;
  }
  return loc;
}

/** Every group's bitmaps and inode table as merged, sorted block intervals [start, end). */
function metadataRanges(sb: Superblock, loc: Locations, tableBlocks: number): Float64Array {
  const n = sb.groupCount;
  const starts = new Float64Array(3 * n);
  const ends = new Float64Array(3 * n);
  let k = 0;
  const add = (s: number, len: number): void => {
    if (s < sb.firstDataBlock || s + len > sb.blocksCount) return; // nonsense places nothing
    starts[k] = s;
    ends[k] = s + len;
    k++;
  };
  for (let g = 0; g < n; g++) {
    add(loc.blockBitmap[g]!, 1);
    add(loc.inodeBitmap[g]!, 1);
    add(loc.inodeTable[g]!, tableBlocks);
  }
  const merged: number[] = [];
  for (const [s, e] of unionOfIntervals(starts.subarray(0, k), ends.subarray(0, k))) merged.push(s, e);
  return Float64Array.from(merged);
}

/** Used block intervals of a BLOCK_UNINIT group, sorted (they may touch or overlap). */
function uninitUsed(sb: Superblock, g: number, reservedGdt: number, meta: Float64Array): [number, number][] {
  const out: [number, number][] = [];
  const start = sb.firstDataBlock + g * sb.blocksPerGroup;
  const end = Math.min(sb.blocksCount, start + sb.blocksPerGroup);
  const perBlock = sb.blockSize / sb.descSize;
  const metaBg = (sb.incompat & INCOMPAT.meta_bg) !== 0;
  const hasSuper = groupHasSuper(sb, g) ? 1 : 0;
  if (hasSuper) out.push([start, start + 1]);
  if (!metaBg || Math.floor(g / perBlock) < sb.firstMetaBg) {
    const oldDesc = metaBg ? sb.firstMetaBg : Math.ceil(sb.groupCount / perBlock) + reservedGdt;
    if (hasSuper) out.push([start + 1, start + 1 + oldDesc]);
  } else {
    const r = g % perBlock;
    if (r === 0 || r === 1 || r === perBlock - 1) out.push([start + hasSuper, start + hasSuper + 1]);
  }
  // metadata intervals inside [start, end): binary search for the first that ends after start
  let lo = 0;
  let hi = meta.length / 2;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (meta[2 * mid + 1]! <= start) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < meta.length / 2 && meta[2 * i]! < end; i++) {
    out.push([Math.max(start, meta[2 * i]!), Math.min(end, meta[2 * i + 1]!)]);
  }
  return out
    .map(([s, e]): [number, number] => [Math.max(s, start), Math.min(e, end)])
    .filter(([s, e]) => e > s)
    .sort((a, b) => a[0] - b[0]);
}
