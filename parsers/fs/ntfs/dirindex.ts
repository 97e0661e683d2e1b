/**
 * Directory indexes ($I30): $INDEX_ROOT (resident, the top node) and
 * $INDEX_ALLOCATION (non-resident "INDX" records of the boot sector's index
 * record size, each with fixups) form a B-tree whose keys are $FILE_NAME
 * values. Used by lookup()/list() to browse one directory without reading the
 * whole MFT (the walk uses parent references instead).
 *
 * Spec: libyal libfsntfs "The index root attribute", "The index allocation
 * attribute", "Index node header", "Index value".
 */
import { assertLayout } from '../../bytes.js';
import type { Errors } from '../../errors.js';
import { type FileName, parseFileName } from './filename.js';
import { applyFixups, splitRef } from './record.js';

export const I30 = '$I30';
export const INDEX_ROOT_HEADER_SIZE = 16;
export const INDEX_ROOT = {
  attrType: [0, 4],
  collation: [4, 4],
  blockSize: [8, 4],
  clustersPerBlock: [12, 1],
} as const;
export const NODE_HEADER_SIZE = 16;
export const NODE_HEADER = { entriesOffset: [0, 4], totalSize: [4, 4], allocatedSize: [8, 4], flags: [12, 1] } as const;
export const INDEX_ENTRY_HEADER_SIZE = 16;
export const INDEX_ENTRY = { fileRef: [0, 8], length: [8, 2], keyLength: [10, 2], flags: [12, 4] } as const;
export const INDX_MAGIC = 0x58444e49; // 'INDX'
export const INDX_HEADER_SIZE = 24;
export const INDX_HEADER = { magic: [0, 4], usaOffset: [4, 2], usaCount: [6, 2], lsn: [8, 8], vcn: [16, 8] } as const;
assertLayout('NtfsIndexRoot', INDEX_ROOT_HEADER_SIZE, INDEX_ROOT);
assertLayout('NtfsIndexNodeHeader', NODE_HEADER_SIZE, NODE_HEADER);
assertLayout('NtfsIndexEntry', INDEX_ENTRY_HEADER_SIZE, INDEX_ENTRY);
assertLayout('NtfsIndxRecord', INDX_HEADER_SIZE, INDX_HEADER);

const ENTRY_HAS_SUBNODE = 0x1;
const ENTRY_LAST = 0x2;
const ATTR_TYPE_FILE_NAME = 0x30;

export interface IndexEntry extends FileName {
  record: number;
  sequence: number;
}

export interface IndexNode {
  entries: IndexEntry[];
  /** VCNs of child nodes, in key order. */
  children: number[];
}

/** Decodes the node that starts at `nodeAt` in `b` (entries may not pass `b`). */
export function parseIndexNode(b: Buffer, nodeAt: number, err: Errors, at: number, inode: number): IndexNode {
  if (nodeAt + NODE_HEADER_SIZE > b.length) {
    throw err.corrupt('NTFS_INDEX_SHORT', 'index node header runs past its buffer', { offset: at + nodeAt, inode });
  }
  const first = nodeAt + b.readUInt32LE(nodeAt + NODE_HEADER.entriesOffset[0]);
  const end = nodeAt + b.readUInt32LE(nodeAt + NODE_HEADER.totalSize[0]);
  if (first < nodeAt + NODE_HEADER_SIZE || end > b.length || first > end) {
    throw err.corrupt('NTFS_INDEX_BAD_NODE', `index entries [${first}, ${end}) outside the node`, {
      offset: at + nodeAt,
      inode,
    });
  }
  const node: IndexNode = { entries: [], children: [] };
  let off = first;
  while (off + INDEX_ENTRY_HEADER_SIZE <= end) {
    const length = b.readUInt16LE(off + INDEX_ENTRY.length[0]);
    const keyLength = b.readUInt16LE(off + INDEX_ENTRY.keyLength[0]);
    const flags = b.readUInt32LE(off + INDEX_ENTRY.flags[0]);
    const subnode = (flags & ENTRY_HAS_SUBNODE) !== 0;
    if (
      length < INDEX_ENTRY_HEADER_SIZE + (subnode ? 8 : 0) ||
      length % 8 !== 0 ||
      off + length > end ||
      INDEX_ENTRY_HEADER_SIZE + keyLength > length - (subnode ? 8 : 0)
    ) {
      throw err.corrupt('NTFS_INDEX_BAD_ENTRY', `index entry of ${length} bytes with a key of ${keyLength}`, {
        offset: at + off,
        inode,
      });
    }
    if (subnode) {
      const vcn = b.readBigUInt64LE(off + length - 8);
      if (vcn > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw err.corrupt('NTFS_INDEX_BAD_VCN', `child node VCN ${vcn}`, { offset: at + off + length - 8, inode });
      }
      node.children.push(Number(vcn));
    }
    if (flags & ENTRY_LAST) return node;
    const key = b.subarray(off + INDEX_ENTRY_HEADER_SIZE, off + INDEX_ENTRY_HEADER_SIZE + keyLength);
    const ref = splitRef(b, off + INDEX_ENTRY.fileRef[0]);
    node.entries.push({ ...parseFileName(key, err, at + off + INDEX_ENTRY_HEADER_SIZE, inode), ...ref });
    off += length;
  }
  throw err.corrupt('NTFS_INDEX_NO_LAST', 'index node without a last entry', { offset: at + off, inode });
}

/** $INDEX_ROOT value: the index record size it announces and its top node. */
export function parseIndexRoot(
  v: Buffer,
  err: Errors,
  at: number,
  inode: number,
): { blockSize: number; node: IndexNode } {
  if (v.length < INDEX_ROOT_HEADER_SIZE + NODE_HEADER_SIZE) {
    throw err.corrupt('NTFS_INDEX_SHORT', `$INDEX_ROOT of ${v.length} bytes`, { offset: at, inode });
  }
  if (v.readUInt32LE(INDEX_ROOT.attrType[0]) !== ATTR_TYPE_FILE_NAME) {
    throw err.unsupported('NTFS_INDEX_NOT_NAMES', 'a $I30 index that is not keyed by file names', {
      offset: at,
      inode,
    });
  }
  return {
    blockSize: v.readUInt32LE(INDEX_ROOT.blockSize[0]),
    node: parseIndexNode(v, INDEX_ROOT_HEADER_SIZE, err, at, inode),
  };
}

/** One "INDX" record of $INDEX_ALLOCATION (fixed up in place). */
export function parseIndexRecord(b: Buffer, vcn: number, err: Errors, at: number, inode: number): IndexNode {
  if (b.readUInt32LE(INDX_HEADER.magic[0]) !== INDX_MAGIC) {
    throw err.corrupt('NTFS_INDEX_BAD_MAGIC', `index record at VCN ${vcn} lacks "INDX"`, { offset: at, inode });
  }
  applyFixups(b, err, at, inode, INDX_HEADER_SIZE + 16);
  const own = b.readBigUInt64LE(INDX_HEADER.vcn[0]);
  if (own !== BigInt(vcn)) {
    throw err.corrupt('NTFS_INDEX_BAD_VCN', `index record says VCN ${own}, reached as ${vcn}`, { offset: at, inode });
  }
  return parseIndexNode(b, INDX_HEADER_SIZE, err, at, inode);
}
