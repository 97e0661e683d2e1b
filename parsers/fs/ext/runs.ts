/**
 * What the extent tree and the block map both produce: the physical blocks
 * behind a file's logical blocks, coalesced into runs, plus the small
 * context (block reader, checksum seed, problem sink) they read with.
 */
import type { Errors, VdbakError } from '../../errors.js';
import type { Superblock } from './superblock.js';

export interface BlockRun {
  /** First logical block of the file covered by the run. */
  lblk: number;
  /** First physical block of the volume. */
  pblk: number;
  /** Number of blocks. */
  len: number;
  /** ext4 uninitialized extent: allocated, reads as zeros. */
  unwritten: boolean;
}

/** Most runs one file may have (a 16 TiB file of single-block runs, and then some). */
export const MAX_RUNS = 1 << 24;

export interface MapContext {
  sb: Superblock;
  err: Errors;
  ino: number;
  /** crc32c seed of this inode's metadata blocks (metadata_csum). */
  seed: number;
  /** Reads `count` whole blocks starting at physical block `pblk`. */
  readBlocks(pblk: number, count: number): Uint8Array;
  /** Records local damage (a checksum mismatch) and lets reading go on. */
  problem(e: VdbakError): void;
}

/** Appends a run, merging it into the previous one when they are contiguous. */
export function pushRun(out: BlockRun[], r: BlockRun, ctx: MapContext): void {
  const last = out[out.length - 1];
  if (last && last.unwritten === r.unwritten && last.lblk + last.len === r.lblk && last.pblk + last.len === r.pblk) {
    last.len += r.len;
    return;
  }
  if (out.length >= MAX_RUNS) {
    throw ctx.err.limit('EXT_TOO_MANY_RUNS', `more than ${MAX_RUNS} runs`, { inode: ctx.ino });
  }
  out.push(r);
}

/** Checks that physical blocks [pblk, pblk+len) lie inside the filesystem. */
export function checkBlocks(ctx: MapContext, pblk: number, len: number, what: string, offset?: number): void {
  if (!Number.isSafeInteger(pblk) || pblk < 1 || len < 1 || pblk + len > ctx.sb.blocksCount) {
    throw ctx.err.corrupt('EXT_BLOCK_OUT_OF_RANGE', `${what} [${pblk}, +${len}) lies outside the filesystem`, {
      offset,
      inode: ctx.ino,
    });
  }
}
