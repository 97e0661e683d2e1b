/**
 * ext group descriptors: one per block group, 32 bytes (or s_desc_size with
 * the 64bit feature), packed in the group descriptor table after the
 * superblock, or spread over meta block groups with meta_bg.
 * Spec: kernel Documentation/filesystems/ext4/group_descr.rst and
 * blockgroup.rst (meta_bg placement), checksums.rst (bg_checksum).
 *
 * Only what reading needs is kept, in typed arrays (one slot per group).
 */
import type { BlockDevice } from '../../blockdevice.js';
import { assertLayout } from '../../bytes.js';
import type { Errors, VdbakError } from '../../errors.js';
import { crc32c, crc32cU32 } from './crc32c.js';
import { le16, le32 } from './le.js';
import { groupHasSuper, INCOMPAT, RO_COMPAT, type Superblock } from './superblock.js';

export const GD = {
  blockBitmapLo: [0x00, 4],
  inodeBitmapLo: [0x04, 4],
  inodeTableLo: [0x08, 4],
  flags: [0x12, 2],
  itableUnusedLo: [0x1c, 2],
  checksum: [0x1e, 2],
  inodeTableHi: [0x28, 4],
  itableUnusedHi: [0x32, 2],
} as const;
assertLayout('ext group descriptor', 64, GD);

/** bg_flags: the inode table and bitmap of this group were never initialised. */
export const BG_INODE_UNINIT = 0x1;

export interface GroupTable {
  /** First block of each group's inode table. */
  inodeTable: Float64Array;
  /** Inodes at the end of each group's table that were never used (0 when unknown). */
  itableUnused: Uint32Array;
  flags: Uint16Array;
  /** Groups whose descriptor checksum did not match (metadata_csum). */
  badChecksum: number[];
  /** Local damage: a group whose inode table lies outside the volume (its inodes are unreadable). */
  damaged: VdbakError[];
}

/** Block number holding descriptor block `nr` of the table (classic or meta_bg layout). */
export function descriptorBlock(sb: Superblock, nr: number): number {
  const sbBlock = Math.floor(1024 / sb.blockSize);
  const perBlock = sb.blockSize / sb.descSize;
  if (!(sb.incompat & INCOMPAT.meta_bg) || nr < sb.firstMetaBg) return sbBlock + 1 + nr;
  const g = nr * perBlock;
  let hasSuper = groupHasSuper(sb, g) ? 1 : 0;
  if (sb.blockSize === 1024 && nr === 0 && sb.firstDataBlock === 0) hasSuper++;
  return sb.firstDataBlock + g * sb.blocksPerGroup + hasSuper;
}

/** Reads and decodes every group descriptor. */
export function readGroups(dev: BlockDevice, sb: Superblock, err: Errors): GroupTable {
  const perBlock = sb.blockSize / sb.descSize;
  const nBlocks = Math.ceil(sb.groupCount / perBlock);
  const t: GroupTable = {
    inodeTable: new Float64Array(sb.groupCount),
    itableUnused: new Uint32Array(sb.groupCount),
    flags: new Uint16Array(sb.groupCount),
    badChecksum: [],
    damaged: [],
  };
  const uninitBg = (sb.roCompat & (RO_COMPAT.uninit_bg | RO_COMPAT.metadata_csum)) !== 0;
  // Consecutive descriptor blocks are read in one request (the classic layout is contiguous).
  let nr = 0;
  while (nr < nBlocks) {
    const first = descriptorBlock(sb, nr);
    let n = 1;
    while (nr + n < nBlocks && n < 1024 && descriptorBlock(sb, nr + n) === first + n) n++;
    if (first + n > sb.blocksCount || (first + n) * sb.blockSize > dev.size) {
      throw err.corrupt('EXT_GDT_OUT_OF_RANGE', `group descriptor block ${first} lies outside the volume`, {
        offset: first * sb.blockSize,
      });
    }
    const bytes = dev.read(first * sb.blockSize, n * sb.blockSize);
    for (let i = 0; i < n * perBlock; i++) {
      const g = nr * perBlock + i;
      if (g >= sb.groupCount) break;
      const d = bytes.subarray(i * sb.descSize, (i + 1) * sb.descSize);
      parseDescriptor(d, g, sb, t, uninitBg, first * sb.blockSize + i * sb.descSize, err);
    }
    nr += n;
  }
  return t;
}

function parseDescriptor(
  d: Uint8Array,
  g: number,
  sb: Superblock,
  t: GroupTable,
  uninitBg: boolean,
  offset: number,
  err: Errors,
): void {
  const wide = sb.is64bit && sb.descSize >= 64;
  const table = le32(d, GD.inodeTableLo[0]) + (wide ? le32(d, GD.inodeTableHi[0]) * 2 ** 32 : 0);
  const flags = le16(d, GD.flags[0]);
  const unused = le16(d, GD.itableUnusedLo[0]) + (wide ? le16(d, GD.itableUnusedHi[0]) * 65536 : 0);
  if (sb.hasMetadataCsum) {
    let c = crc32cU32(sb.csumSeed, g);
    c = crc32c(c, d.subarray(0, GD.checksum[0]));
    c = crc32c(c, ZERO2);
    c = crc32c(c, d.subarray(GD.checksum[0] + 2));
    if ((c & 0xffff) !== le16(d, GD.checksum[0])) t.badChecksum.push(g);
  }
  const tableBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / sb.blockSize);
  t.flags[g] = uninitBg ? flags : 0;
  t.itableUnused[g] = uninitBg && unused <= sb.inodesPerGroup ? unused : 0;
  if (table < 1 || table + tableBlocks > sb.blocksCount) {
    t.inodeTable[g] = -1;
    t.damaged.push(
      err.corrupt('EXT_BAD_INODE_TABLE', `group ${g} puts its inode table at block ${table}`, { offset, group: g }),
    );
    return;
  }
  t.inodeTable[g] = table;
}

const ZERO2 = new Uint8Array(2);
