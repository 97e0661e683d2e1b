/**
 * The ext inode: 128 bytes (ext2 "good old" size) plus an extra area of
 * i_extra_isize bytes (nanosecond times, creation time, checksum high half),
 * then in-inode extended attributes up to s_inode_size.
 * Spec: kernel Documentation/filesystems/ext4/inodes.rst, checksums.rst.
 */
import { assertLayout } from '../../bytes.js';
import type { Errors } from '../../errors.js';
import type { EntryType } from '../types.js';
import { crc32c, crc32cU32, crc32cZeros } from './crc32c.js';
import { le16, le32, le32s } from './le.js';
import type { Superblock } from './superblock.js';
import { RO_COMPAT } from './superblock.js';

export const GOOD_OLD_INODE_SIZE = 128;
/** Size of i_block: 15 block pointers, an extent root or inline bytes. */
export const I_BLOCK_SIZE = 60;
export const ROOT_INO = 2;

export const INO = {
  mode: [0x00, 2],
  uidLo: [0x02, 2],
  sizeLo: [0x04, 4],
  atime: [0x08, 4],
  ctime: [0x0c, 4],
  mtime: [0x10, 4],
  dtime: [0x14, 4],
  gidLo: [0x18, 2],
  linksCount: [0x1a, 2],
  blocksLo: [0x1c, 4],
  flags: [0x20, 4],
  block: [0x28, I_BLOCK_SIZE],
  generation: [0x64, 4],
  fileAclLo: [0x68, 4],
  sizeHigh: [0x6c, 4],
  blocksHigh: [0x74, 2],
  fileAclHigh: [0x76, 2],
  uidHigh: [0x78, 2],
  gidHigh: [0x7a, 2],
  checksumLo: [0x7c, 2],
  extraIsize: [0x80, 2],
  checksumHi: [0x82, 2],
  ctimeExtra: [0x84, 4],
  mtimeExtra: [0x88, 4],
  atimeExtra: [0x8c, 4],
  crtime: [0x90, 4],
  crtimeExtra: [0x94, 4],
} as const;
assertLayout('ext inode', 160, INO);

export const INODE_FLAGS = {
  compressed: 0x4,
  immutable: 0x10,
  append: 0x20,
  index: 0x1000,
  encrypt: 0x800,
  hugeFile: 0x40000,
  extents: 0x80000,
  eaInode: 0x200000,
  inlineData: 0x10000000,
} as const;

const S_IFMT = 0xf000;
const TYPES: Record<number, EntryType> = {
  4096: 'fifo',
  8192: 'chardev',
  16384: 'dir',
  24576: 'blockdev',
  32768: 'file',
  40960: 'symlink',
  49152: 'socket',
};

export interface Inode {
  ino: number;
  /** Full i_mode (type and permission bits). */
  mode: number;
  type: EntryType;
  uid: number;
  gid: number;
  size: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  crtimeNs: bigint | undefined;
  dtime: number;
  links: number;
  /** Blocks charged to the inode, in bytes. */
  allocatedBytes: number;
  flags: number;
  generation: number;
  /** External xattr block, 0 when none. */
  fileAcl: number;
  /** The 60 bytes of i_block. */
  block: Uint8Array;
  /** The whole on-disk inode (s_inode_size bytes). */
  raw: Uint8Array;
  /** Offset of the in-inode xattr area, or 0 when there is none. */
  xattrStart: number;
  /** false when metadata_csum is on and the stored checksum does not match. */
  checksumOk: boolean;
}

/** True when an on-disk inode slot has never held or no longer holds a file. */
export function isUnusedInode(raw: Uint8Array): boolean {
  return le16(raw, INO.mode[0]) === 0 || le16(raw, INO.linksCount[0]) === 0;
}

/** Decodes one inode (`raw` is s_inode_size bytes) found at volume `offset`. */
export function parseInode(raw: Uint8Array, ino: number, sb: Superblock, offset: number, err: Errors): Inode {
  const mode = le16(raw, INO.mode[0]);
  const type = TYPES[mode & S_IFMT] ?? 'other';
  const flags = le32(raw, INO.flags[0]);
  let extra = 0;
  if (sb.inodeSize > GOOD_OLD_INODE_SIZE) {
    extra = le16(raw, INO.extraIsize[0]);
    if (extra % 4 !== 0 || GOOD_OLD_INODE_SIZE + extra > sb.inodeSize) {
      throw err.corrupt('EXT_BAD_EXTRA_ISIZE', `i_extra_isize ${extra} does not fit the inode`, {
        offset: offset + INO.extraIsize[0],
        inode: ino,
      });
    }
  }
  const has = (f: readonly [number, number]) => fits(extra, f);
  const time = (lo: readonly [number, number], ex: readonly [number, number]) => inodeTime(raw, extra, lo, ex);
  const blocksRaw = le32(raw, INO.blocksLo[0]) + le16(raw, INO.blocksHigh[0]) * 2 ** 32;
  const hugeUnits = sb.roCompat & RO_COMPAT.huge_file && flags & INODE_FLAGS.hugeFile;
  const size = le32(raw, INO.sizeLo[0]) + le32(raw, INO.sizeHigh[0]) * 2 ** 32;
  if (size > Number.MAX_SAFE_INTEGER) {
    throw err.limit('EXT_BAD_SIZE', `inode size ${size} is impossible`, { offset: offset + INO.sizeLo[0], inode: ino });
  }
  let checksumOk = true;
  if (sb.hasMetadataCsum) checksumOk = inodeChecksum(raw, ino, sb, extra) === storedChecksum(raw, extra);
  const xattrStart = sb.inodeSize > GOOD_OLD_INODE_SIZE ? GOOD_OLD_INODE_SIZE + extra : 0;
  return {
    ino,
    mode,
    type,
    uid: le16(raw, INO.uidLo[0]) + le16(raw, INO.uidHigh[0]) * 65536,
    gid: le16(raw, INO.gidLo[0]) + le16(raw, INO.gidHigh[0]) * 65536,
    size,
    atimeNs: time(INO.atime, INO.atimeExtra),
    mtimeNs: time(INO.mtime, INO.mtimeExtra),
    ctimeNs: time(INO.ctime, INO.ctimeExtra),
    crtimeNs: has(INO.crtime) ? time(INO.crtime, INO.crtimeExtra) : undefined,
    dtime: le32(raw, INO.dtime[0]),
    links: le16(raw, INO.linksCount[0]),
    allocatedBytes: hugeUnits ? blocksRaw * sb.blockSize : blocksRaw * 512,
    flags,
    generation: le32(raw, INO.generation[0]),
    fileAcl: le32(raw, INO.fileAclLo[0]) + le16(raw, INO.fileAclHigh[0]) * 2 ** 32,
    block: new Uint8Array(raw.buffer, raw.byteOffset + INO.block[0], I_BLOCK_SIZE),
    raw,
    xattrStart,
    checksumOk,
  };
}

/** Whether field `f` lies inside the inode's extra area of `extra` bytes. */
function fits(extra: number, f: readonly [number, number]): boolean {
  return GOOD_OLD_INODE_SIZE + extra >= f[0] + f[1];
}

/**
 * A timestamp in nanoseconds: signed 32-bit seconds, plus (when the extra
 * field exists) 2 epoch bits that extend the seconds past 2038 and 30 bits of
 * nanoseconds.
 */
function inodeTime(
  raw: Uint8Array,
  extra: number,
  lo: readonly [number, number],
  ex: readonly [number, number],
): bigint {
  let sec = le32s(raw, lo[0]);
  let nsec = 0;
  if (fits(extra, ex)) {
    const e = le32(raw, ex[0]);
    sec += (e & 3) * 2 ** 32;
    nsec = e >>> 2;
    if (nsec > 999_999_999) nsec = 0;
  }
  return BigInt(sec) * 1_000_000_000n + BigInt(nsec);
}

function hasChecksumHi(extra: number): boolean {
  return extra >= INO.checksumHi[0] + INO.checksumHi[1] - GOOD_OLD_INODE_SIZE;
}

function storedChecksum(raw: Uint8Array, extra: number): number {
  const lo = le16(raw, INO.checksumLo[0]);
  return hasChecksumHi(extra) ? (lo | (le16(raw, INO.checksumHi[0]) << 16)) >>> 0 : lo;
}

/** Seed of every per-inode checksum (inode, extent blocks, directory blocks). */
export function inodeSeed(sb: Superblock, ino: number, generation: number): number {
  return crc32cU32(crc32cU32(sb.csumSeed, ino), generation);
}

function inodeChecksum(raw: Uint8Array, ino: number, sb: Superblock, extra: number): number {
  // Over the whole inode with both checksum fields read as zeros.
  const lo = INO.checksumLo[0];
  let c = inodeSeed(sb, ino, le32(raw, INO.generation[0]));
  c = crc32cZeros(crc32c(c, raw, 0, lo), 2);
  const hi = hasChecksumHi(extra);
  if (!hi) return crc32c(c, raw, lo + 2) & 0xffff;
  c = crc32cZeros(crc32c(c, raw, lo + 2, INO.checksumHi[0]), 2);
  return crc32c(c, raw, INO.checksumHi[0] + 2);
}

/** The device number of a char/block device inode, encoded like Linux's dev_t (glibc makedev). */
export function deviceNumber(block: Uint8Array): number {
  const old = le32(block, 0);
  let major: number;
  let minor: number;
  if (old !== 0) {
    major = (old >>> 8) & 0xff;
    minor = old & 0xff;
  } else {
    const dev = le32(block, 4);
    major = (dev & 0xfff00) >>> 8;
    minor = (dev & 0xff) | ((dev >>> 12) & 0xfff00);
  }
  return (major & 0xfff) * 256 + (minor & 0xff) + (minor >>> 8) * 2 ** 20 + Math.floor(major / 4096) * 2 ** 44;
}
