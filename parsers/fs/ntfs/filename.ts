/**
 * $FILE_NAME (attribute 0x30): one name of a file in one directory, with the
 * parent's file reference (record + sequence) and the name's namespace.
 *
 * Spec: libyal libfsntfs "The file name attribute". Namespaces: 0 POSIX,
 * 1 Win32, 2 DOS (8.3 alias), 3 Win32 and DOS in one. Names are UTF-16LE
 * (surrogate pairs decode as they are; case is preserved).
 */
import { assertLayout } from '../../bytes.js';
import type { Errors } from '../../errors.js';
import { splitRef } from './record.js';

export const FILENAME_HEADER_SIZE = 66;
export const FILENAME = {
  parentRef: [0, 8],
  created: [8, 8],
  modified: [16, 8],
  mftChanged: [24, 8],
  accessed: [32, 8],
  allocatedSize: [40, 8],
  dataSize: [48, 8],
  flags: [56, 4],
  reparse: [60, 4],
  nameLength: [64, 1],
  namespace: [65, 1],
} as const;
assertLayout('NtfsFileName', FILENAME_HEADER_SIZE, FILENAME);

export const Namespace = { Posix: 0, Win32: 1, Dos: 2, Win32AndDos: 3 } as const;

export interface FileName {
  parentRecord: number;
  parentSequence: number;
  name: string;
  namespace: number;
}

export function parseFileName(v: Buffer, err: Errors, at: number, inode: number): FileName {
  if (v.length < FILENAME_HEADER_SIZE) {
    throw err.corrupt('NTFS_SHORT_FILENAME', `$FILE_NAME of ${v.length} bytes`, { offset: at, inode });
  }
  const len = v.readUInt8(FILENAME.nameLength[0]);
  if (len === 0 || FILENAME_HEADER_SIZE + len * 2 > v.length) {
    throw err.corrupt('NTFS_BAD_FILENAME_LENGTH', `name of ${len} characters in ${v.length} bytes`, {
      offset: at + FILENAME.nameLength[0],
      inode,
    });
  }
  const parent = splitRef(v, FILENAME.parentRef[0]);
  return {
    parentRecord: parent.record,
    parentSequence: parent.sequence,
    name: v.toString('utf16le', FILENAME_HEADER_SIZE, FILENAME_HEADER_SIZE + len * 2),
    namespace: v.readUInt8(FILENAME.namespace[0]),
  };
}
