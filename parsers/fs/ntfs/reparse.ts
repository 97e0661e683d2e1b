/**
 * $REPARSE_POINT (attribute 0xC0): a tag and tag-specific data. Symbolic
 * links (IO_REPARSE_TAG_SYMLINK) and junctions / mount points
 * (IO_REPARSE_TAG_MOUNT_POINT) carry a substitute name and a print name;
 * every other tag (cloud files, dedup, WOF …) is only recorded.
 *
 * Spec: libyal libfsntfs "The reparse point attribute"; [MS-FSCC] 2.1.2.
 */
import { assertLayout } from '../../bytes.js';
import type { Errors } from '../../errors.js';

export const REPARSE_TAG_MOUNT_POINT = 0xa0000003;
export const REPARSE_TAG_SYMLINK = 0xa000000c;
export const SYMLINK_FLAG_RELATIVE = 0x1;

export const REPARSE_HEADER_SIZE = 8;
export const REPARSE_HEADER = { tag: [0, 4], dataLength: [4, 2] } as const;
/** Offsets inside the tag data of symlinks and mount points. */
export const LINK_DATA = {
  substituteOffset: [0, 2],
  substituteLength: [2, 2],
  printOffset: [4, 2],
  printLength: [6, 2],
  symlinkFlags: [8, 4],
} as const;
assertLayout('NtfsReparseHeader', REPARSE_HEADER_SIZE, REPARSE_HEADER);
assertLayout('NtfsLinkReparseData', 12, LINK_DATA);

export interface ReparsePoint {
  tag: number;
  /** For symlinks and junctions: the target (print name, else substitute name without the \??\ prefix). */
  target?: string;
  relative?: boolean;
}

export function parseReparsePoint(v: Buffer, err: Errors, at: number, inode: number): ReparsePoint {
  if (v.length < REPARSE_HEADER_SIZE) {
    throw err.corrupt('NTFS_SHORT_REPARSE', `reparse point of ${v.length} bytes`, { offset: at, inode });
  }
  const tag = v.readUInt32LE(REPARSE_HEADER.tag[0]);
  const dataLength = v.readUInt16LE(REPARSE_HEADER.dataLength[0]);
  if (REPARSE_HEADER_SIZE + dataLength > v.length) {
    throw err.corrupt('NTFS_BAD_REPARSE_LENGTH', `reparse data of ${dataLength} bytes in ${v.length}`, {
      offset: at + REPARSE_HEADER.dataLength[0],
      inode,
    });
  }
  if (tag !== REPARSE_TAG_SYMLINK && tag !== REPARSE_TAG_MOUNT_POINT) return { tag };
  const data = v.subarray(REPARSE_HEADER_SIZE, REPARSE_HEADER_SIZE + dataLength);
  const isSymlink = tag === REPARSE_TAG_SYMLINK;
  const pathBase = isSymlink ? 12 : 8;
  if (data.length < pathBase) {
    throw err.corrupt('NTFS_SHORT_REPARSE', `link reparse data of ${data.length} bytes`, { offset: at, inode });
  }
  const name = (offField: readonly [number, number], lenField: readonly [number, number]): string => {
    const o = pathBase + data.readUInt16LE(offField[0]);
    const l = data.readUInt16LE(lenField[0]);
    if (l % 2 !== 0 || o + l > data.length) {
      throw err.corrupt('NTFS_BAD_REPARSE_NAME', `link name [${o}, +${l}) outside the reparse data`, {
        offset: at + REPARSE_HEADER_SIZE + offField[0],
        inode,
      });
    }
    return data.toString('utf16le', o, o + l);
  };
  const printName = name(LINK_DATA.printOffset, LINK_DATA.printLength);
  const substitute = name(LINK_DATA.substituteOffset, LINK_DATA.substituteLength);
  const target = printName || substitute.replace(/^\\\?\?\\/, '');
  const relative = isSymlink && (data.readUInt32LE(LINK_DATA.symlinkFlags[0]) & SYMLINK_FLAG_RELATIVE) !== 0;
  return { tag, target, relative };
}
