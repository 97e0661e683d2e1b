/**
 * The ext2/ext3/ext4 superblock: 1024 bytes at byte 1024 of the volume.
 * Spec: kernel Documentation/filesystems/ext4/super.rst; libyal
 * "Extended File System (EXT)" format document.
 *
 * `readSuperblock` fetches the bytes; `parseSuperblock` validates every field
 * later code relies on (sizes, counts, geometry) against caps and the volume
 * size, so the rest of the driver can trust the result.
 */
import type { BlockDevice } from '../../blockdevice.js';
import { assertLayout, isPowerOfTwo } from '../../bytes.js';
import type { Errors } from '../../errors.js';
import { crc32c } from './crc32c.js';
import { le16, le32 } from './le.js';

export const SUPERBLOCK_OFFSET = 1024;
export const SUPERBLOCK_SIZE = 1024;
export const EXT_MAGIC = 0xef53;

/** Field offsets: [offset, size]. */
export const SB = {
  inodesCount: [0x00, 4],
  blocksCountLo: [0x04, 4],
  rBlocksCountLo: [0x08, 4],
  freeBlocksCountLo: [0x0c, 4],
  freeInodesCount: [0x10, 4],
  firstDataBlock: [0x14, 4],
  logBlockSize: [0x18, 4],
  logClusterSize: [0x1c, 4],
  blocksPerGroup: [0x20, 4],
  clustersPerGroup: [0x24, 4],
  inodesPerGroup: [0x28, 4],
  mtime: [0x2c, 4],
  wtime: [0x30, 4],
  magic: [0x38, 2],
  state: [0x3a, 2],
  creatorOs: [0x48, 4],
  revLevel: [0x4c, 4],
  firstIno: [0x54, 4],
  inodeSize: [0x58, 2],
  featureCompat: [0x5c, 4],
  featureIncompat: [0x60, 4],
  featureRoCompat: [0x64, 4],
  uuid: [0x68, 16],
  volumeName: [0x78, 16],
  lastMounted: [0x88, 64],
  descSize: [0xfe, 2],
  firstMetaBg: [0x104, 4],
  mkfsTime: [0x108, 4],
  blocksCountHi: [0x150, 4],
  freeBlocksCountHi: [0x158, 4],
  flags: [0x160, 4],
  backupBgs: [0x24c, 8],
  checksumType: [0x175, 1],
  checksumSeed: [0x270, 4],
  checksum: [0x3fc, 4],
} as const;
assertLayout('ext superblock', SUPERBLOCK_SIZE, SB);

export const COMPAT = {
  dir_prealloc: 0x1,
  imagic_inodes: 0x2,
  has_journal: 0x4,
  ext_attr: 0x8,
  resize_inode: 0x10,
  dir_index: 0x20,
  lazy_bg: 0x40,
  exclude_inode: 0x80,
  exclude_bitmap: 0x100,
  sparse_super2: 0x200,
  fast_commit: 0x400,
  stable_inodes: 0x800,
  orphan_file: 0x1000,
} as const;
export const INCOMPAT = {
  compression: 0x1,
  filetype: 0x2,
  needs_recovery: 0x4,
  journal_dev: 0x8,
  meta_bg: 0x10,
  extent: 0x40,
  '64bit': 0x80,
  mmp: 0x100,
  flex_bg: 0x200,
  ea_inode: 0x400,
  dirdata: 0x1000,
  metadata_csum_seed: 0x2000,
  large_dir: 0x4000,
  inline_data: 0x8000,
  encrypt: 0x10000,
  casefold: 0x20000,
} as const;
export const RO_COMPAT = {
  sparse_super: 0x1,
  large_file: 0x2,
  btree_dir: 0x4,
  huge_file: 0x8,
  uninit_bg: 0x10,
  dir_nlink: 0x20,
  extra_isize: 0x40,
  snapshot: 0x80,
  quota: 0x100,
  bigalloc: 0x200,
  metadata_csum: 0x400,
  replica: 0x800,
  read_only: 0x1000,
  project: 0x2000,
  shared_blocks: 0x4000,
  verity: 0x8000,
  orphan_present: 0x10000,
} as const;

/** Incompatible features whose on-disk layout we cannot read. */
const UNREADABLE_INCOMPAT = INCOMPAT.compression | INCOMPAT.journal_dev | INCOMPAT.dirdata;

const STATE_VALID = 0x1;
const STATE_ERRORS = 0x2;
const SB_FLAG_UNSIGNED_HASH = 0x2;

const MIN_BLOCK_LOG = 10;
const MAX_BLOCK_LOG = 16;
const MAX_CLUSTER_LOG = 29;
const GOOD_OLD_INODE_SIZE = 128;
const GOOD_OLD_FIRST_INO = 11;
const DESC_SIZE_32 = 32;
const MAX_DESC_SIZE = 1024;

const CREATOR_OS = ['Linux', 'Hurd', 'Masix', 'FreeBSD', 'Lites'] as const;

export interface Superblock {
  inodesCount: number;
  blocksCount: number;
  freeBlocksCount: number;
  freeInodesCount: number;
  firstDataBlock: number;
  blockSize: number;
  clusterSize: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  groupCount: number;
  inodeSize: number;
  firstIno: number;
  descSize: number;
  firstMetaBg: number;
  compat: number;
  incompat: number;
  roCompat: number;
  state: number;
  uuid: Uint8Array;
  label: string;
  lastMounted: string;
  creatorOs: string;
  revLevel: number;
  mkfsTime: number;
  wtime: number;
  mtime: number;
  backupBgs: [number, number];
  unsignedHash: boolean;
  /** crc32c seed of every metadata checksum (metadata_csum). */
  csumSeed: number;
  /** Whether the stored superblock checksum matches (true when metadata_csum is off). */
  checksumOk: boolean;
  hasMetadataCsum: boolean;
  is64bit: boolean;
}

export function readSuperblock(dev: BlockDevice, err: Errors): Buffer {
  if (dev.size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE) {
    throw err.truncated('EXT_TOO_SMALL', `volume of ${dev.size} bytes cannot hold a superblock`, {
      offset: SUPERBLOCK_OFFSET,
    });
  }
  return dev.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE);
}

/** True when the bytes carry the ext magic (the cheap probe). */
export function hasExtMagic(sb: Uint8Array): boolean {
  return sb.length >= SUPERBLOCK_SIZE && le16(sb, SB.magic[0]) === EXT_MAGIC;
}

/** Decodes and validates a superblock read from a volume of `volumeSize` bytes. */
export function parseSuperblock(b: Uint8Array, volumeSize: number, err: Errors): Superblock {
  const at = (f: readonly [number, number]) => SUPERBLOCK_OFFSET + f[0];
  const r32 = (f: readonly [number, number]) => le32(b, f[0]);
  if (!hasExtMagic(b)) throw err.corrupt('EXT_BAD_MAGIC', 'no ext superblock magic', { offset: at(SB.magic) });

  const logBlock = r32(SB.logBlockSize);
  if (logBlock > MAX_BLOCK_LOG - MIN_BLOCK_LOG) {
    throw err.corrupt('EXT_BAD_BLOCK_SIZE', `log block size ${logBlock} is out of range`, {
      offset: at(SB.logBlockSize),
    });
  }
  const blockSize = 1024 << logBlock;
  const incompat = r32(SB.featureIncompat);
  const roCompat = r32(SB.featureRoCompat);
  const compat = r32(SB.featureCompat);
  if (incompat & UNREADABLE_INCOMPAT) {
    const names = featureNames(0, incompat & UNREADABLE_INCOMPAT, 0).join(', ');
    throw err.unsupported('EXT_UNSUPPORTED_FEATURE', `incompatible feature(s) ${names}`, {
      offset: at(SB.featureIncompat),
    });
  }
  const bigalloc = (roCompat & RO_COMPAT.bigalloc) !== 0;
  const logCluster = r32(SB.logClusterSize);
  let clusterSize = blockSize;
  if (bigalloc) {
    if (logCluster < logBlock || logCluster > MAX_CLUSTER_LOG - MIN_BLOCK_LOG) {
      throw err.corrupt('EXT_BAD_CLUSTER_SIZE', `log cluster size ${logCluster} is out of range`, {
        offset: at(SB.logClusterSize),
      });
    }
    clusterSize = 1024 * 2 ** logCluster;
  }
  const is64bit = (incompat & INCOMPAT['64bit']) !== 0;
  const blocksCount = r32(SB.blocksCountLo) + (is64bit ? r32(SB.blocksCountHi) * 2 ** 32 : 0);
  const freeBlocksCount = r32(SB.freeBlocksCountLo) + (is64bit ? r32(SB.freeBlocksCountHi) * 2 ** 32 : 0);
  const firstDataBlock = r32(SB.firstDataBlock);
  const blocksPerGroup = r32(SB.blocksPerGroup);
  const inodesPerGroup = r32(SB.inodesPerGroup);
  const inodesCount = r32(SB.inodesCount);
  const revLevel = r32(SB.revLevel);
  const inodeSize = revLevel === 0 ? GOOD_OLD_INODE_SIZE : le16(b, SB.inodeSize[0]);
  const firstIno = revLevel === 0 ? GOOD_OLD_FIRST_INO : r32(SB.firstIno);

  if (blocksCount === 0 || blocksCount > Number.MAX_SAFE_INTEGER / blockSize) {
    throw err.corrupt('EXT_BAD_BLOCK_COUNT', `block count ${blocksCount} is impossible`, {
      offset: at(SB.blocksCountLo),
    });
  }
  if (firstDataBlock >= blocksCount || firstDataBlock > 1) {
    throw err.corrupt('EXT_BAD_FIRST_DATA_BLOCK', `first data block ${firstDataBlock} is impossible`, {
      offset: at(SB.firstDataBlock),
    });
  }
  const maxPerGroup = 8 * blockSize * (clusterSize / blockSize);
  if (blocksPerGroup === 0 || blocksPerGroup > maxPerGroup) {
    throw err.corrupt('EXT_BAD_BLOCKS_PER_GROUP', `blocks per group ${blocksPerGroup} is impossible`, {
      offset: at(SB.blocksPerGroup),
    });
  }
  if (inodesPerGroup === 0 || inodesPerGroup > 8 * blockSize) {
    throw err.corrupt('EXT_BAD_INODES_PER_GROUP', `inodes per group ${inodesPerGroup} is impossible`, {
      offset: at(SB.inodesPerGroup),
    });
  }
  if (!isPowerOfTwo(inodeSize) || inodeSize < GOOD_OLD_INODE_SIZE || inodeSize > blockSize) {
    throw err.corrupt('EXT_BAD_INODE_SIZE', `inode size ${inodeSize} is impossible`, { offset: at(SB.inodeSize) });
  }
  const groupCount = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
  if (inodesCount === 0 || groupCount * inodesPerGroup < inodesCount) {
    throw err.corrupt(
      'EXT_BAD_INODE_COUNT',
      `inode count ${inodesCount} does not match ${groupCount} groups of ${inodesPerGroup}`,
      { offset: at(SB.inodesCount) },
    );
  }
  if (firstIno < GOOD_OLD_FIRST_INO || firstIno > inodesCount) {
    throw err.corrupt('EXT_BAD_FIRST_INO', `first inode ${firstIno} is impossible`, { offset: at(SB.firstIno) });
  }
  let descSize = DESC_SIZE_32;
  if (is64bit) {
    descSize = le16(b, SB.descSize[0]);
    if (!isPowerOfTwo(descSize) || descSize < DESC_SIZE_32 || descSize > Math.min(MAX_DESC_SIZE, blockSize)) {
      throw err.corrupt('EXT_BAD_DESC_SIZE', `group descriptor size ${descSize} is impossible`, {
        offset: at(SB.descSize),
      });
    }
  }
  // Every group needs at least its descriptor and one inode table block on the volume.
  if (groupCount * descSize > volumeSize) {
    throw err.corrupt('EXT_BAD_GROUP_COUNT', `${groupCount} groups cannot fit a volume of ${volumeSize} bytes`, {
      offset: at(SB.blocksCountLo),
    });
  }

  const uuid = Uint8Array.from(b.subarray(SB.uuid[0], SB.uuid[0] + 16));
  const hasMetadataCsum = (roCompat & RO_COMPAT.metadata_csum) !== 0;
  let checksumOk = true;
  if (hasMetadataCsum) {
    checksumOk = crc32c(0xffffffff, b.subarray(0, SB.checksum[0])) === r32(SB.checksum);
  }
  const csumSeed =
    incompat & INCOMPAT.metadata_csum_seed ? r32(SB.checksumSeed) : hasMetadataCsum ? crc32c(0xffffffff, uuid) : 0;
  const os = r32(SB.creatorOs);

  return {
    inodesCount,
    blocksCount,
    freeBlocksCount,
    freeInodesCount: r32(SB.freeInodesCount),
    firstDataBlock,
    blockSize,
    clusterSize,
    blocksPerGroup,
    inodesPerGroup,
    groupCount,
    inodeSize,
    firstIno,
    descSize,
    firstMetaBg: r32(SB.firstMetaBg),
    compat,
    incompat,
    roCompat,
    state: le16(b, SB.state[0]),
    uuid,
    label: decodeLabel(b.subarray(SB.volumeName[0], SB.volumeName[0] + SB.volumeName[1])),
    lastMounted: decodeLabel(b.subarray(SB.lastMounted[0], SB.lastMounted[0] + SB.lastMounted[1])),
    creatorOs: CREATOR_OS[os] ?? `unknown (${os})`,
    revLevel,
    mkfsTime: r32(SB.mkfsTime),
    wtime: r32(SB.wtime),
    mtime: r32(SB.mtime),
    backupBgs: [r32(SB.backupBgs), le32(b, SB.backupBgs[0] + 4)],
    unsignedHash: (r32(SB.flags) & SB_FLAG_UNSIGNED_HASH) !== 0,
    csumSeed,
    checksumOk,
    hasMetadataCsum,
    is64bit,
  };
}

function decodeLabel(b: Uint8Array): string {
  const z = b.indexOf(0);
  const s = z >= 0 ? b.subarray(0, z) : b;
  return Buffer.from(s).toString('utf8');
}

/**
 * True when the filesystem was cleanly unmounted: no journal to replay, no
 * orphan file to process, state "valid" without "errors".
 */
export function isClean(sb: Superblock): boolean {
  return (
    (sb.incompat & INCOMPAT.needs_recovery) === 0 &&
    (sb.roCompat & RO_COMPAT.orphan_present) === 0 &&
    (sb.state & STATE_VALID) !== 0 &&
    !(sb.state & STATE_ERRORS)
  );
}

/** Feature names as e2fsprogs prints them; unknown bits as FEATURE_C12 / _I / _R. */
export function featureNames(compat: number, incompat: number, roCompat: number): string[] {
  const out: string[] = [];
  const add = (v: number, table: Record<string, number>, tag: string) => {
    for (let bit = 0; bit < 32; bit++) {
      const m = 2 ** bit;
      if (!(Math.floor(v / m) % 2)) continue;
      const name = Object.entries(table).find(([, x]) => x === m)?.[0];
      out.push(name ?? `FEATURE_${tag}${bit}`);
    }
  };
  add(compat, COMPAT, 'C');
  add(incompat, INCOMPAT, 'I');
  add(roCompat, RO_COMPAT, 'R');
  return out;
}

/** Whether group `g` holds a superblock backup (and so a group descriptor table copy). */
export function groupHasSuper(sb: Superblock, g: number): boolean {
  if (g === 0) return true;
  if (sb.compat & COMPAT.sparse_super2) return g === sb.backupBgs[0] || g === sb.backupBgs[1];
  if (g <= 1 || !(sb.roCompat & RO_COMPAT.sparse_super)) return true;
  if (!(g & 1)) return false;
  return isPowerOf(g, 3) || isPowerOf(g, 5) || isPowerOf(g, 7);
}

function isPowerOf(n: number, base: number): boolean {
  let x = base;
  while (x < n) x *= base;
  return x === n;
}
