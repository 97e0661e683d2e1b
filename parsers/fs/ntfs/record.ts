/**
 * MFT record (FILE record segment) header and its fixups.
 *
 * Spec: libyal libfsntfs "MFT entry header" and "The fix-up values". Every
 * 512-byte stride of a record ends with the update sequence number; the real
 * last two bytes of each stride are kept in the update sequence array. A
 * stride whose last two bytes differ from the number is a torn write: the
 * record is rejected.
 */
import { assertLayout } from '../../bytes.js';
import type { Errors } from '../../errors.js';

export const FIXUP_STRIDE = 512;
export const RECORD_MAGIC = 0x454c4946; // 'FILE'
export const RECORD_FLAG_IN_USE = 0x0001;
export const RECORD_FLAG_DIRECTORY = 0x0002;

export const RECORD_HEADER_SIZE = 42;
export const RECORD_HEADER = {
  magic: [0, 4],
  usaOffset: [4, 2],
  usaCount: [6, 2],
  lsn: [8, 8],
  sequence: [16, 2],
  linkCount: [18, 2],
  attrsOffset: [20, 2],
  flags: [22, 2],
  usedSize: [24, 4],
  allocatedSize: [28, 4],
  baseRef: [32, 8],
  nextAttrId: [40, 2],
} as const;
assertLayout('MftRecordHeader', RECORD_HEADER_SIZE, RECORD_HEADER);

export interface RecordHeader {
  sequence: number;
  linkCount: number;
  attrsOffset: number;
  flags: number;
  usedSize: number;
  /** Base record number (0 for a base record itself). */
  baseRecord: number;
  baseSequence: number;
  inUse: boolean;
  isDirectory: boolean;
}

/** Splits a file reference into record number and sequence number. */
export function splitRef(b: Buffer, off: number): { record: number; sequence: number } {
  const lo = b.readUInt32LE(off);
  const hi = b.readUInt16LE(off + 4);
  return { record: hi * 0x100000000 + lo, sequence: b.readUInt16LE(off + 6) };
}

/** True when the slot was never written (all-zero magic): not a record, not damage. */
export function isEmptySlot(rec: Buffer): boolean {
  return rec.readUInt32LE(0) === 0;
}

/**
 * Verifies and undoes the fixups of one record (in place). `at` is the byte
 * offset of the record (for errors), `inode` its number. Index records
 * ("INDX") use the same scheme with a shorter header (`headerSize`).
 */
export function applyFixups(
  rec: Buffer,
  err: Errors,
  at: number,
  inode: number,
  headerSize: number = RECORD_HEADER_SIZE,
): void {
  const usaOffset = rec.readUInt16LE(RECORD_HEADER.usaOffset[0]);
  const usaCount = rec.readUInt16LE(RECORD_HEADER.usaCount[0]);
  const strides = rec.length / FIXUP_STRIDE;
  if (usaCount !== strides + 1 || usaOffset % 2 !== 0 || usaOffset < headerSize) {
    throw err.corrupt('NTFS_BAD_FIXUP_ARRAY', `update sequence array of ${usaCount} at ${usaOffset}`, {
      offset: at + RECORD_HEADER.usaOffset[0],
      inode,
    });
  }
  if (usaOffset + usaCount * 2 > FIXUP_STRIDE - 2) {
    throw err.corrupt('NTFS_BAD_FIXUP_ARRAY', 'update sequence array runs past the first sector', {
      offset: at + usaOffset,
      inode,
    });
  }
  const usn = rec.readUInt16LE(usaOffset);
  for (let i = 0; i < strides; i++) {
    const end = (i + 1) * FIXUP_STRIDE - 2;
    if (rec.readUInt16LE(end) !== usn) {
      throw err.corrupt('NTFS_FIXUP_MISMATCH', `sector ${i} of the record does not end with its update number`, {
        offset: at + end,
        inode,
      });
    }
    rec.writeUInt16LE(rec.readUInt16LE(usaOffset + 2 + 2 * i), end);
  }
}

/** Checks the magic, undoes the fixups and decodes the header of a record buffer (exactly one record). */
export function parseRecordHeader(rec: Buffer, err: Errors, at: number, inode: number): RecordHeader {
  const magic = rec.readUInt32LE(0);
  if (magic !== RECORD_MAGIC) {
    throw err.corrupt('NTFS_BAD_RECORD_MAGIC', `record magic 0x${magic.toString(16)}`, { offset: at, inode });
  }
  applyFixups(rec, err, at, inode);
  const attrsOffset = rec.readUInt16LE(RECORD_HEADER.attrsOffset[0]);
  const usedSize = rec.readUInt32LE(RECORD_HEADER.usedSize[0]);
  if (usedSize > rec.length || attrsOffset < RECORD_HEADER_SIZE || attrsOffset + 4 > usedSize || attrsOffset % 8) {
    throw err.corrupt('NTFS_BAD_RECORD_HEADER', `attributes at ${attrsOffset}, used size ${usedSize}`, {
      offset: at + RECORD_HEADER.attrsOffset[0],
      inode,
    });
  }
  const flags = rec.readUInt16LE(RECORD_HEADER.flags[0]);
  const base = splitRef(rec, RECORD_HEADER.baseRef[0]);
  return {
    sequence: rec.readUInt16LE(RECORD_HEADER.sequence[0]),
    linkCount: rec.readUInt16LE(RECORD_HEADER.linkCount[0]),
    attrsOffset,
    flags,
    usedSize,
    baseRecord: base.record,
    baseSequence: base.sequence,
    inUse: (flags & RECORD_FLAG_IN_USE) !== 0,
    isDirectory: (flags & RECORD_FLAG_DIRECTORY) !== 0,
  };
}
