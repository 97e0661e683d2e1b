/**
 * ext directories. A directory's data is a sequence of blocks of linked
 * records (inode u32, rec_len u16, name_len, file_type, name). Hashed (htree,
 * dir_index) directories keep the same leaf blocks and hide their index in
 * records the linear walk skips: the root's index sits inside the '..' record
 * and interior nodes are one empty record spanning the block, so reading
 * every block linearly lists every name exactly once.
 * With metadata_csum, leaf blocks end with a 12-byte tail record holding a
 * crc32c, and index blocks with a dx_tail.
 * inline_data directories keep the parent's inode number in the first 4 bytes
 * of i_block and their records in the rest of i_block and the system.data xattr.
 * Spec: kernel Documentation/filesystems/ext4/directory.rst.
 */

import type { Errors, VdbakError } from '../../errors.js';
import { crc32c } from './crc32c.js';
import { le16, le32 } from './le.js';

export const DIRENT_HEADER_SIZE = 8;
/** Dirent file_type of a directory. */
export const FT_DIR = 2;
const MIN_REC_LEN = 12;
const MAX_REC_LEN = 65536;
const TAIL_SIZE = 12;
const TAIL_FILE_TYPE = 0xde;
const DX_ROOT_COUNT_OFFSET = 0x20;
const DX_NODE_COUNT_OFFSET = 0x08;
const DX_ENTRY_SIZE = 8;
const DX_TAIL_SIZE = 8;
const ZERO4 = new Uint8Array(4);

/**
 * The names of one directory, kept compact for directories of millions of
 * entries: inode numbers and name offsets in typed arrays, name bytes in one
 * pool (no object per name).
 */
export class DirList {
  count = 0;
  inos = new Uint32Array(64);
  /** Dirent file_type of each name (0 when the filesystem has no filetype feature). */
  types = new Uint8Array(64);
  /** A number the caller attaches to each name (walk(): the index of the parent directory). */
  tags = new Uint32Array(64);
  private starts = new Uint32Array(64);
  private lens = new Uint16Array(64);
  private pool = new Uint8Array(4096);
  private used = 0;

  constructor(private readonly maxEntries: number) {}

  push(
    ino: number,
    type: number,
    tag: number,
    src: Uint8Array,
    start: number,
    len: number,
    err: Errors,
    dirIno: number,
  ) {
    if (this.count >= this.maxEntries) {
      throw err.limit('EXT_DIR_TOO_LARGE', `directory holds more than ${this.maxEntries} names`, { inode: dirIno });
    }
    if (this.count === this.inos.length) {
      const n = this.count * 2;
      this.inos = grow(this.inos, new Uint32Array(n));
      this.types = grow(this.types, new Uint8Array(n));
      this.tags = grow(this.tags, new Uint32Array(n));
      this.starts = grow(this.starts, new Uint32Array(n));
      this.lens = grow(this.lens, new Uint16Array(n));
    }
    if (this.used + len > this.pool.length) this.pool = grow(this.pool, new Uint8Array((this.used + len) * 2));
    const pool = this.pool;
    for (let k = 0; k < len; k++) pool[this.used + k] = src[start + k] as number;
    this.inos[this.count] = ino;
    this.types[this.count] = type;
    this.tags[this.count] = tag;
    this.starts[this.count] = this.used;
    this.lens[this.count] = len;
    this.used += len;
    this.count++;
  }

  name(i: number): Uint8Array {
    const s = this.starts[i] as number;
    return this.pool.subarray(s, s + (this.lens[i] as number));
  }

  /** Positions 0..count-1 ordered by inode number (the order of the inode tables on disk). */
  byInode(): Uint32Array {
    const order = new Uint32Array(this.count);
    for (let i = 0; i < this.count; i++) order[i] = i;
    const inos = this.inos;
    return order.sort((a, b) => (inos[a] as number) - (inos[b] as number));
  }

  /** Forgets every name, keeping the allocated arrays for reuse. */
  clear(): void {
    this.count = 0;
    this.used = 0;
  }
}

/**
 * The names of one directory seen so far, to catch a name recorded twice.
 * Keyed by a 32-bit FNV-1a hash of the bytes; names that share a hash are
 * compared byte by byte, so the answer is exact.
 */
export class NameSet {
  private readonly byHash = new Map<number, Uint8Array | Uint8Array[]>();

  /** Adds `name` (kept by reference: its bytes must not change while the set is used); false when it was there already. */
  add(name: Uint8Array): boolean {
    let h = 0x811c9dc5;
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ (name[i] as number), 0x01000193);
    const prev = this.byHash.get(h);
    if (prev === undefined) {
      this.byHash.set(h, name);
      return true;
    }
    const list = Array.isArray(prev) ? prev : [prev];
    if (list.some((p) => sameBytes(p, name))) return false;
    list.push(name);
    this.byHash.set(h, list);
    return true;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function grow<T extends Uint8Array | Uint16Array | Uint32Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

export interface DirBlockContext {
  err: Errors;
  ino: number;
  hasFileType: boolean;
  /** crc32c seed of this directory (metadata_csum), or undefined when checksums are off. */
  seed: number | undefined;
  /** The directory is hashed (EXT4_INDEX_FL). */
  indexed: boolean;
  problem(e: VdbakError): void;
}

/**
 * Parses the records of one directory block (or inline area) at volume
 * `offset`. A malformed record ends the block (recorded as a problem) but
 * the records before it are kept.
 */
export function parseDirBlock(
  block: Uint8Array,
  offset: number,
  ctx: DirBlockContext,
  out: DirList,
  opts: { first?: boolean; inline?: boolean } = {},
): void {
  if (!opts.inline && ctx.seed !== undefined) checkBlockChecksum(block, offset, ctx, opts.first === true);
  let p = 0;
  while (p + DIRENT_HEADER_SIZE <= block.length) {
    const ino = le32(block, p);
    let recLen = le16(block, p + 4);
    // 64 KiB blocks cannot say 65536 in 16 bits: it is stored as 0 or 65535.
    if (block.length >= MAX_REC_LEN && (recLen === 0 || recLen === MAX_REC_LEN - 1)) recLen = MAX_REC_LEN;
    const nameLen = ctx.hasFileType ? (block[p + 6] as number) : le16(block, p + 6);
    const minLen = (DIRENT_HEADER_SIZE + nameLen + 3) & ~3;
    if (
      recLen < Math.min(MIN_REC_LEN, block.length - p) ||
      recLen % 4 !== 0 ||
      recLen < minLen ||
      p + recLen > block.length
    ) {
      ctx.problem(
        ctx.err.corrupt('EXT_DIRENT', `directory record with rec_len ${recLen}, name_len ${nameLen}`, {
          offset: offset + p,
          inode: ctx.ino,
        }),
      );
      return;
    }
    if (ino !== 0 && nameLen > 0) {
      const type = ctx.hasFileType ? (block[p + 7] as number) : 0;
      out.push(ino, type, 0, block, p + DIRENT_HEADER_SIZE, nameLen, ctx.err, ctx.ino);
    }
    p += recLen;
  }
}

function checkBlockChecksum(block: Uint8Array, offset: number, ctx: DirBlockContext, first: boolean): void {
  const seed = ctx.seed as number;
  const n = block.length;
  const tail = n - TAIL_SIZE;
  const isTail =
    n >= TAIL_SIZE &&
    le32(block, tail) === 0 &&
    le16(block, tail + 4) === TAIL_SIZE &&
    block[tail + 6] === 0 &&
    block[tail + 7] === TAIL_FILE_TYPE;
  let ok = true;
  if (isTail) {
    ok = crc32c(seed, block.subarray(0, tail)) === le32(block, tail + 8);
  } else if (ctx.indexed) {
    const countOffset = first ? DX_ROOT_COUNT_OFFSET : isDxNode(block) ? DX_NODE_COUNT_OFFSET : -1;
    if (countOffset < 0) return;
    const limit = le16(block, countOffset);
    const count = le16(block, countOffset + 2);
    const tailAt = countOffset + limit * DX_ENTRY_SIZE;
    if (count > limit || tailAt + DX_TAIL_SIZE > n) {
      ok = false;
    } else {
      // Over the counted entries, then the tail with its checksum field as zeros.
      const c = crc32c(seed, block.subarray(0, countOffset + count * DX_ENTRY_SIZE));
      ok = crc32c(crc32c(c, block.subarray(tailAt, tailAt + 4)), ZERO4) === le32(block, tailAt + 4);
    }
  }
  if (!ok) {
    ctx.problem(ctx.err.corrupt('EXT_DIR_CSUM', 'directory block checksum mismatch', { offset, inode: ctx.ino }));
  }
}

/** An htree interior node: one empty record spanning the whole block. */
function isDxNode(block: Uint8Array): boolean {
  const recLen = le16(block, 4);
  return le32(block, 0) === 0 && (recLen === block.length || (recLen === 0 && block.length === 65536));
}
