/**
 * $ATTRIBUTE_LIST (attribute 0x20): where each attribute of a file lives when
 * they do not fit in the base record (many names, very fragmented or very
 * large files). Each entry names the attribute (type, name, first VCN, id)
 * and the extension record that holds it.
 *
 * Spec: libyal libfsntfs "The attribute list attribute".
 */
import { assertLayout } from '../../bytes.js';
import type { Errors } from '../../errors.js';
import { splitRef } from './record.js';

export const ATTRLIST_ENTRY_MIN = 26;
export const ATTRLIST_ENTRY = {
  type: [0, 4],
  length: [4, 2],
  nameLength: [6, 1],
  nameOffset: [7, 1],
  startVcn: [8, 8],
  fileRef: [16, 8],
  id: [24, 2],
} as const;
assertLayout('NtfsAttrListEntry', ATTRLIST_ENTRY_MIN, ATTRLIST_ENTRY);

export interface AttrListEntry {
  type: number;
  name: string;
  record: number;
  sequence: number;
  id: number;
}

export function parseAttributeList(v: Buffer, err: Errors, at: number, inode: number): AttrListEntry[] {
  const out: AttrListEntry[] = [];
  let off = 0;
  while (off + ATTRLIST_ENTRY_MIN <= v.length) {
    const length = v.readUInt16LE(off + ATTRLIST_ENTRY.length[0]);
    const nameLength = v.readUInt8(off + ATTRLIST_ENTRY.nameLength[0]);
    const nameOffset = v.readUInt8(off + ATTRLIST_ENTRY.nameOffset[0]);
    if (length < ATTRLIST_ENTRY_MIN || off + length > v.length || nameOffset + nameLength * 2 > length) {
      throw err.corrupt('NTFS_BAD_ATTRLIST_ENTRY', `attribute list entry of ${length} bytes`, {
        offset: at + off,
        inode,
      });
    }
    const ref = splitRef(v, off + ATTRLIST_ENTRY.fileRef[0]);
    out.push({
      type: v.readUInt32LE(off + ATTRLIST_ENTRY.type[0]),
      name: nameLength ? v.toString('utf16le', off + nameOffset, off + nameOffset + nameLength * 2) : '',
      record: ref.record,
      sequence: ref.sequence,
      id: v.readUInt16LE(off + ATTRLIST_ENTRY.id[0]),
    });
    off += length;
  }
  return out;
}
