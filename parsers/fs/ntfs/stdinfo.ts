/**
 * $STANDARD_INFORMATION (attribute 0x10): the four timestamps, the DOS file
 * attributes and (NTFS 3.x) the security id that points into $Secure.
 *
 * Spec: libyal libfsntfs "The standard information attribute". Times are
 * FILETIME: 100 ns ticks since 1601-01-01 UTC.
 */
import { assertLayout } from '../../bytes.js';
import type { Errors } from '../../errors.js';

export const STDINFO_V1_SIZE = 48;
export const STDINFO_V3_SIZE = 72;
export const STDINFO = {
  created: [0, 8],
  modified: [8, 8],
  mftChanged: [16, 8],
  accessed: [24, 8],
  attributes: [32, 4],
  securityId: [52, 4],
} as const;
assertLayout('NtfsStandardInformation', STDINFO_V3_SIZE, STDINFO);

/** FILETIME of 1970-01-01 (100 ns ticks since 1601). */
export const FILETIME_UNIX_EPOCH = 116444736000000000n;

export const DosAttr = {
  ReadOnly: 0x0001,
  Hidden: 0x0002,
  System: 0x0004,
  Directory: 0x0010,
  Archive: 0x0020,
  Sparse: 0x0200,
  Reparse: 0x0400,
  Compressed: 0x0800,
  Offline: 0x1000,
  Encrypted: 0x4000,
} as const;

export interface StandardInformation {
  createdNs: bigint;
  modifiedNs: bigint;
  changedNs: bigint;
  accessedNs: bigint;
  attributes: number;
  /** 0 when absent (NTFS 1.x layout). */
  securityId: number;
}

/** FILETIME → nanoseconds since the Unix epoch (negative before 1970). */
export function filetimeToNs(b: Buffer, off: number): bigint {
  return (b.readBigUInt64LE(off) - FILETIME_UNIX_EPOCH) * 100n;
}

export function parseStandardInformation(v: Buffer, err: Errors, at: number, inode: number): StandardInformation {
  if (v.length < STDINFO_V1_SIZE) {
    throw err.corrupt('NTFS_SHORT_STDINFO', `$STANDARD_INFORMATION of ${v.length} bytes`, { offset: at, inode });
  }
  return {
    createdNs: filetimeToNs(v, STDINFO.created[0]),
    modifiedNs: filetimeToNs(v, STDINFO.modified[0]),
    changedNs: filetimeToNs(v, STDINFO.mftChanged[0]),
    accessedNs: filetimeToNs(v, STDINFO.accessed[0]),
    attributes: v.readUInt32LE(STDINFO.attributes[0]),
    securityId: v.length >= STDINFO_V3_SIZE ? v.readUInt32LE(STDINFO.securityId[0]) : 0,
  };
}
