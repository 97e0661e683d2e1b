/**
 * inline_data: small files and directories kept inside the inode. The first
 * 60 bytes live in i_block, the rest in the value of the in-inode xattr
 * "system.data". An inline directory starts with its parent's inode number
 * (4 bytes) and then holds ordinary directory records ('.' and '..' are
 * implied).
 * Spec: kernel Documentation/filesystems/ext4/inlinedata.rst.
 */
import type { Errors } from '../../errors.js';
import type { Xattr } from '../types.js';
import { I_BLOCK_SIZE, type Inode } from './inode.js';
import { INLINE_DATA_XATTR } from './xattr.js';

export const INLINE_DIR_PARENT_SIZE = 4;

/** The inline bytes of a file: i_block followed by the system.data value, cut to i_size. */
export function inlineContent(inode: Inode, xattrs: Xattr[], err: Errors): Buffer {
  const rest = xattrs.find((x) => x.name === INLINE_DATA_XATTR)?.value ?? new Uint8Array(0);
  if (inode.size > I_BLOCK_SIZE + rest.length) {
    throw err.corrupt(
      'EXT_INLINE_SIZE',
      `inline file of ${inode.size} bytes holds only ${I_BLOCK_SIZE + rest.length}`,
      {
        inode: inode.ino,
      },
    );
  }
  return Buffer.concat([inode.block, rest]).subarray(0, inode.size);
}

/** The two record areas of an inline directory (after the parent inode number, then system.data). */
export function inlineDirAreas(inode: Inode, xattrs: Xattr[]): Uint8Array[] {
  const rest = xattrs.find((x) => x.name === INLINE_DATA_XATTR)?.value;
  const areas = [inode.block.subarray(INLINE_DIR_PARENT_SIZE)];
  if (rest && rest.length > 0) areas.push(rest);
  return areas;
}
