/**
 * ext extended attributes: a list of entries either in the inode body after
 * i_extra_isize (behind a 4-byte magic) or in one external block (32-byte
 * header, crc32c with metadata_csum). Each entry names a prefix index
 * (user., trusted., security., system.posix_acl_*), a suffix and a value.
 * POSIX ACLs are stored in a compact ext4 format; they are returned in the
 * format getxattr(2) uses (version 2, 8-byte entries), so a restore can hand
 * them to setxattr unchanged.
 * Spec: kernel Documentation/filesystems/ext4/attributes.rst; fs/ext4/acl.h.
 */
import { assertLayout } from '../../bytes.js';
import type { Errors } from '../../errors.js';
import type { Xattr } from '../types.js';
import { crc32c } from './crc32c.js';
import { le16, le32 } from './le.js';

export const XATTR_MAGIC = 0xea020000;
export const XATTR_BLOCK_HEADER_SIZE = 32;
const ENTRY_HEADER_SIZE = 16;
/** Most entries one list may hold (each takes at least 20 bytes of a 64 KiB block). */
const MAX_ENTRIES = 4096;

const XH = { magic: [0, 4], refcount: [4, 4], blocks: [8, 4], hash: [12, 4], checksum: [16, 4] } as const;
const XE = { nameLen: [0, 1], nameIndex: [1, 1], valueOffs: [2, 2], valueInum: [4, 4], valueSize: [8, 4] } as const;
assertLayout('ext xattr block header', XATTR_BLOCK_HEADER_SIZE, XH);
assertLayout('ext xattr entry', ENTRY_HEADER_SIZE, XE);

const PREFIXES: Record<number, string> = {
  1: 'user.',
  2: 'system.posix_acl_access',
  3: 'system.posix_acl_default',
  4: 'trusted.',
  6: 'security.',
  7: 'system.',
  8: 'system.richacl',
};
const ACL_INDEXES = new Set([2, 3]);

/** The inline_data xattr holding the bytes of an inline file past the first 60. */
export const INLINE_DATA_XATTR = 'system.data';

export interface XattrWhere {
  err: Errors;
  ino: number;
  /** Volume offset of the list's start, for error messages. */
  offset: number;
  /** Reads a value kept in its own inode (ea_inode feature). */
  readEaInode(inum: number, size: number): Uint8Array;
}

/** Largest xattr value Linux accepts (XATTR_SIZE_MAX). */
export const MAX_XATTR_VALUE = 65536;

/** Whether the in-inode xattr area (from `start`) begins with the xattr magic. */
export function hasInodeXattrs(area: Uint8Array, start = 0): boolean {
  return area.length >= start + 4 && le32(area, start) === XATTR_MAGIC;
}

/** Parses the in-inode xattr area `area` (from i_extra_isize to the end of the inode). */
export function parseInodeXattrs(area: Uint8Array, where: XattrWhere): Xattr[] {
  if (!hasInodeXattrs(area)) return [];
  const entries = area.subarray(4);
  return parseEntries(entries, 0, entries, where);
}

/** Parses an external xattr block; `checksumOk` is false on a metadata_csum mismatch. */
export function parseXattrBlock(
  block: Uint8Array,
  blockNr: number,
  csumSeed: number | undefined,
  where: XattrWhere,
): { xattrs: Xattr[]; checksumOk: boolean } {
  if (le32(block, XH.magic[0]) !== XATTR_MAGIC) {
    throw where.err.corrupt('EXT_XATTR_MAGIC', 'bad xattr block magic', { offset: where.offset, inode: where.ino });
  }
  if (le32(block, XH.blocks[0]) !== 1) {
    throw where.err.corrupt('EXT_XATTR_BLOCKS', 'xattr block claims more than one block', {
      offset: where.offset,
      inode: where.ino,
    });
  }
  let checksumOk = true;
  if (csumSeed !== undefined) {
    const nr = Buffer.alloc(8);
    nr.writeBigUInt64LE(BigInt(blockNr));
    const copy = Buffer.from(block);
    copy.writeUInt32LE(0, XH.checksum[0]);
    checksumOk = crc32c(crc32c(csumSeed, nr), copy) === le32(block, XH.checksum[0]);
  }
  return { xattrs: parseEntries(block.subarray(XATTR_BLOCK_HEADER_SIZE), 0, block, where), checksumOk };
}

/** Walks entries in `list` (ends at 4 zero bytes); value offsets are relative to `values`. */
function parseEntries(list: Uint8Array, start: number, values: Uint8Array, where: XattrWhere): Xattr[] {
  const out: Xattr[] = [];
  let p = start;
  const bad = (msg: string) =>
    where.err.corrupt('EXT_XATTR_ENTRY', msg, { offset: where.offset + p, inode: where.ino });
  for (let n = 0; ; n++) {
    if (p + 4 > list.length || le32(list, p) === 0) break;
    if (n >= MAX_ENTRIES) throw where.err.limit('EXT_XATTR_COUNT', 'too many xattr entries', { inode: where.ino });
    if (p + ENTRY_HEADER_SIZE > list.length) throw bad('xattr entry runs past its area');
    const nameLen = list[p + XE.nameLen[0]] as number;
    const index = list[p + XE.nameIndex[0]] as number;
    const valueOffs = le16(list, p + XE.valueOffs[0]);
    const valueInum = le32(list, p + XE.valueInum[0]);
    const valueSize = le32(list, p + XE.valueSize[0]);
    if (p + ENTRY_HEADER_SIZE + nameLen > list.length) throw bad('xattr name runs past its area');
    const suffix = Buffer.from(list.subarray(p + ENTRY_HEADER_SIZE, p + ENTRY_HEADER_SIZE + nameLen)).toString(
      'latin1',
    );
    if (valueInum === 0 && valueOffs + valueSize > values.length) {
      throw bad(`xattr value [${valueOffs}, +${valueSize}) runs past its area`);
    }
    if (valueInum !== 0 && valueSize > MAX_XATTR_VALUE) throw bad(`xattr value of ${valueSize} bytes`);
    const prefix = PREFIXES[index];
    if (prefix !== undefined) {
      const raw =
        valueInum !== 0 ? where.readEaInode(valueInum, valueSize) : values.subarray(valueOffs, valueOffs + valueSize);
      const value = ACL_INDEXES.has(index) ? aclToXattr(raw, where) : Uint8Array.from(raw);
      out.push({ name: prefix + suffix, value });
    }
    p += (ENTRY_HEADER_SIZE + nameLen + 3) & ~3;
  }
  return out;
}

const EXT4_ACL_VERSION = 1;
const XATTR_ACL_VERSION = 2;
const ACL_USER = 2;
const ACL_GROUP = 8;
const ACL_UNDEFINED_ID = 0xffffffff;

/** Converts an ext4 on-disk POSIX ACL to the getxattr(2) format. */
function aclToXattr(raw: Uint8Array, where: XattrWhere): Uint8Array {
  if (raw.length < 4 || le32(raw, 0) !== EXT4_ACL_VERSION) {
    throw where.err.corrupt('EXT_ACL_VERSION', 'POSIX ACL with an unknown version', {
      offset: where.offset,
      inode: where.ino,
    });
  }
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4);
  head.writeUInt32LE(XATTR_ACL_VERSION);
  parts.push(head);
  let p = 4;
  while (p < raw.length) {
    if (p + 4 > raw.length) break;
    const tag = le16(raw, p);
    const perm = le16(raw, p + 2);
    let id = ACL_UNDEFINED_ID;
    if (tag === ACL_USER || tag === ACL_GROUP) {
      if (p + 8 > raw.length) break;
      id = le32(raw, p + 4);
      p += 8;
    } else {
      p += 4;
    }
    const e = Buffer.alloc(8);
    e.writeUInt16LE(tag, 0);
    e.writeUInt16LE(perm, 2);
    e.writeUInt32LE(id, 4);
    parts.push(e);
  }
  if (p !== raw.length) {
    throw where.err.corrupt('EXT_ACL_ENTRY', 'POSIX ACL entry runs past its value', {
      offset: where.offset,
      inode: where.ino,
    });
  }
  return Buffer.concat(parts);
}
