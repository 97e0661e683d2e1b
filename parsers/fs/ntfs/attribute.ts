/**
 * Attributes inside an MFT record: the common header, the resident form
 * (value inside the record) and the non-resident form (a runlist and sizes).
 *
 * Spec: libyal libfsntfs "The MFT attribute" (attribute header, resident and
 * non-resident data). Every length and offset is checked against the used
 * part of the record before it is followed.
 */
import { assertLayout, toSafeNumber } from '../../bytes.js';
import type { Errors } from '../../errors.js';
import type { RecordHeader } from './record.js';

export const AttrType = {
  StandardInformation: 0x10,
  AttributeList: 0x20,
  FileName: 0x30,
  ObjectId: 0x40,
  SecurityDescriptor: 0x50,
  VolumeName: 0x60,
  VolumeInformation: 0x70,
  Data: 0x80,
  IndexRoot: 0x90,
  IndexAllocation: 0xa0,
  Bitmap: 0xb0,
  ReparsePoint: 0xc0,
  End: 0xffffffff,
} as const;

export const ATTR_FLAG_COMPRESSION_MASK = 0x00ff;
export const ATTR_FLAG_ENCRYPTED = 0x4000;
export const ATTR_FLAG_SPARSE = 0x8000;

export const ATTR_HEADER = {
  type: [0, 4],
  length: [4, 4],
  nonResident: [8, 1],
  nameLength: [9, 1],
  nameOffset: [10, 2],
  flags: [12, 2],
  id: [14, 2],
} as const;
export const RESIDENT_HEADER_SIZE = 24;
export const RESIDENT = { valueLength: [16, 4], valueOffset: [20, 2] } as const;
export const NONRESIDENT_HEADER_SIZE = 64;
export const NONRESIDENT = {
  startVcn: [16, 8],
  lastVcn: [24, 8],
  runlistOffset: [32, 2],
  compressionUnit: [34, 2],
  allocatedSize: [40, 8],
  dataSize: [48, 8],
  initializedSize: [56, 8],
} as const;
assertLayout('NtfsAttrHeader', 16, ATTR_HEADER);
assertLayout('NtfsResidentAttr', RESIDENT_HEADER_SIZE, RESIDENT);
assertLayout('NtfsNonResidentAttr', NONRESIDENT_HEADER_SIZE, NONRESIDENT);

export interface Attribute {
  type: number;
  name: string;
  flags: number;
  id: number;
  /** Record the attribute was found in (the base record or an extension). */
  record: number;
  /** Resident value (a view into the record buffer), or null when non-resident. */
  value: Buffer | null;
  startVcn: number;
  lastVcn: number;
  runlist: Buffer | null;
  /** Byte offset of the runlist in the volume, for errors. */
  runlistAt: number;
  compressionUnit: number;
  allocatedSize: number;
  dataSize: number;
  initializedSize: number;
}

/**
 * Decodes every attribute of a fixed-up record. `at` is the volume offset of
 * the record (for errors); `only`, when given, skips other types cheaply.
 */
export function parseAttributes(
  rec: Buffer,
  hdr: RecordHeader,
  err: Errors,
  at: number,
  inode: number,
  only?: ReadonlySet<number>,
): Attribute[] {
  const out: Attribute[] = [];
  let off = hdr.attrsOffset;
  const end = hdr.usedSize;
  while (off + 4 <= end) {
    const type = rec.readUInt32LE(off);
    if (type === AttrType.End) return out;
    if (off + 16 > end) break;
    const length = rec.readUInt32LE(off + ATTR_HEADER.length[0]);
    const nonResident = rec.readUInt8(off + ATTR_HEADER.nonResident[0]) !== 0;
    const min = nonResident ? NONRESIDENT_HEADER_SIZE : RESIDENT_HEADER_SIZE;
    if (length < min || length % 8 !== 0 || off + length > end) {
      throw err.corrupt('NTFS_BAD_ATTR_LENGTH', `attribute 0x${type.toString(16)} of length ${length}`, {
        offset: at + off + ATTR_HEADER.length[0],
        inode,
      });
    }
    if (!only || only.has(type)) out.push(parseOne(rec, off, length, nonResident, type, err, at, inode));
    off += length;
  }
  throw err.corrupt('NTFS_NO_END_MARKER', 'attributes run past the used size without an end marker', {
    offset: at + off,
    inode,
  });
}

function parseOne(
  rec: Buffer,
  off: number,
  length: number,
  nonResident: boolean,
  type: number,
  err: Errors,
  at: number,
  inode: number,
): Attribute {
  const nameLength = rec.readUInt8(off + ATTR_HEADER.nameLength[0]);
  const nameOffset = rec.readUInt16LE(off + ATTR_HEADER.nameOffset[0]);
  if (nameLength > 0 && nameOffset + nameLength * 2 > length) {
    throw err.corrupt('NTFS_BAD_ATTR_NAME', `attribute name at ${nameOffset} runs past the attribute`, {
      offset: at + off + ATTR_HEADER.nameOffset[0],
      inode,
    });
  }
  const name = nameLength ? rec.toString('utf16le', off + nameOffset, off + nameOffset + nameLength * 2) : '';
  const a: Attribute = {
    type,
    name,
    flags: rec.readUInt16LE(off + ATTR_HEADER.flags[0]),
    id: rec.readUInt16LE(off + ATTR_HEADER.id[0]),
    record: inode,
    value: null,
    startVcn: 0,
    lastVcn: -1,
    runlist: null,
    runlistAt: 0,
    compressionUnit: 0,
    allocatedSize: 0,
    dataSize: 0,
    initializedSize: 0,
  };
  if (!nonResident) {
    const vlen = rec.readUInt32LE(off + RESIDENT.valueLength[0]);
    const voff = rec.readUInt16LE(off + RESIDENT.valueOffset[0]);
    if (voff + vlen > length) {
      throw err.corrupt('NTFS_BAD_RESIDENT_VALUE', `resident value [${voff}, +${vlen}) runs past the attribute`, {
        offset: at + off + RESIDENT.valueLength[0],
        inode,
      });
    }
    a.value = rec.subarray(off + voff, off + voff + vlen);
    a.dataSize = a.allocatedSize = a.initializedSize = vlen;
    return a;
  }
  const num = (field: readonly [number, number], what: string): number => {
    const v = rec.readBigUInt64LE(off + field[0]);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw err.limit('NTFS_ABSURD_SIZE', `${what} ${v} is absurd`, { offset: at + off + field[0], inode });
    }
    return toSafeNumber(v, err, 'NTFS_ABSURD_SIZE', what, at + off + field[0]);
  };
  a.startVcn = num(NONRESIDENT.startVcn, 'start VCN');
  const lastVcn = rec.readBigInt64LE(off + NONRESIDENT.lastVcn[0]);
  // an empty non-resident attribute has last VCN -1
  a.lastVcn = lastVcn === -1n ? -1 : num(NONRESIDENT.lastVcn, 'last VCN');
  if (a.lastVcn < a.startVcn - 1) {
    throw err.corrupt('NTFS_BAD_VCN_RANGE', `VCN range ${a.startVcn}..${a.lastVcn}`, {
      offset: at + off + NONRESIDENT.startVcn[0],
      inode,
    });
  }
  const rlOff = rec.readUInt16LE(off + NONRESIDENT.runlistOffset[0]);
  if (rlOff < NONRESIDENT_HEADER_SIZE || rlOff > length) {
    throw err.corrupt('NTFS_BAD_RUNLIST_OFFSET', `runlist at ${rlOff} outside the attribute`, {
      offset: at + off + NONRESIDENT.runlistOffset[0],
      inode,
    });
  }
  a.runlist = rec.subarray(off + rlOff, off + length);
  a.runlistAt = at + off + rlOff;
  a.compressionUnit = rec.readUInt16LE(off + NONRESIDENT.compressionUnit[0]);
  a.allocatedSize = num(NONRESIDENT.allocatedSize, 'allocated size');
  a.dataSize = num(NONRESIDENT.dataSize, 'data size');
  a.initializedSize = num(NONRESIDENT.initializedSize, 'initialized size');
  return a;
}
