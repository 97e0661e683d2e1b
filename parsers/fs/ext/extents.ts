/**
 * ext4 extent trees: a 12-byte header, then index entries (depth > 0) that
 * point to child blocks, or leaf extents (depth 0) that map up to 32768
 * logical blocks each (a length over 32768 marks an uninitialized extent of
 * length - 32768). The root lives in the inode's i_block; child blocks end
 * with a crc32c tail (metadata_csum).
 * Spec: kernel Documentation/filesystems/ext4/ifork.rst ("Extent Tree").
 */
import { assertLayout } from '../../bytes.js';
import { crc32c } from './crc32c.js';
import { le16, le32 } from './le.js';
import { type BlockRun, checkBlocks, type MapContext, pushRun } from './runs.js';

export const EXTENT_MAGIC = 0xf30a;
export const EXTENT_HEADER_SIZE = 12;
export const EXTENT_ENTRY_SIZE = 12;
/** The kernel never builds deeper trees (ext4_ext_check: depth > 5 is corrupt). */
export const MAX_EXTENT_DEPTH = 5;
const UNINIT_LEN = 32768;
const MAX_LOGICAL_BLOCK = 2 ** 32;

const EH = { magic: [0, 2], entries: [2, 2], max: [4, 2], depth: [6, 2] } as const;
const EI = { block: [0, 4], leafLo: [4, 4], leafHi: [8, 2] } as const;
const EE = { block: [0, 4], len: [4, 2], startHi: [6, 2], startLo: [8, 4] } as const;
assertLayout('ext4 extent header', EXTENT_HEADER_SIZE, EH);
assertLayout('ext4 extent index', EXTENT_ENTRY_SIZE, EI);
assertLayout('ext4 extent', EXTENT_ENTRY_SIZE, EE);

/**
 * Maps logical blocks [0, nBlocks) of the file whose extent root is `root`
 * (the 60 bytes of i_block). Extents past nBlocks (preallocated past EOF)
 * are clipped away.
 */
export function extentRuns(ctx: MapContext, root: Uint8Array, nBlocks: number): BlockRun[] {
  const out: BlockRun[] = [];
  const visited = new Set<number>();
  let nodes = 0;
  const maxNodes = Math.max(16, Math.ceil(ctx.sb.blocksCount / 4));
  const walk = (node: Uint8Array, expectDepth: number | undefined, nodeOffset: number | undefined, isRoot: boolean) => {
    const depth = checkHeader(ctx, node, expectDepth, nodeOffset, isRoot);
    const entries = le16(node, EH.entries[0]);
    let prevLblk = -1;
    for (let i = 0; i < entries; i++) {
      const e = EXTENT_HEADER_SIZE + i * EXTENT_ENTRY_SIZE;
      const lblk = le32(node, e);
      if (lblk <= prevLblk) {
        throw ctx.err.corrupt('EXT_EXTENT_ORDER', `extent entries out of order (${lblk} after ${prevLblk})`, {
          offset: nodeOffset,
          inode: ctx.ino,
        });
      }
      prevLblk = lblk;
      if (lblk >= nBlocks) break;
      if (depth > 0) {
        const child = le32(node, e + EI.leafLo[0]) + le16(node, e + EI.leafHi[0]) * 2 ** 32;
        checkBlocks(ctx, child, 1, 'extent index block', nodeOffset);
        if (visited.has(child) || ++nodes > maxNodes) {
          throw ctx.err.corrupt('EXT_EXTENT_LOOP', `extent tree revisits block ${child}`, {
            offset: child * ctx.sb.blockSize,
            inode: ctx.ino,
          });
        }
        visited.add(child);
        walk(ctx.readBlocks(child, 1), depth - 1, child * ctx.sb.blockSize, false);
        continue;
      }
      let len = le16(node, e + EE.len[0]);
      const unwritten = len > UNINIT_LEN;
      if (unwritten) len -= UNINIT_LEN;
      if (len === 0) continue;
      const pblk = le32(node, e + EE.startLo[0]) + le16(node, e + EE.startHi[0]) * 2 ** 32;
      if (lblk + len > MAX_LOGICAL_BLOCK) {
        throw ctx.err.corrupt('EXT_EXTENT_RANGE', `extent at logical block ${lblk} runs past 2^32`, {
          offset: nodeOffset,
          inode: ctx.ino,
        });
      }
      checkBlocks(ctx, pblk, len, 'extent', nodeOffset);
      const last = out[out.length - 1];
      if (last && lblk < last.lblk + last.len) {
        throw ctx.err.corrupt('EXT_EXTENT_OVERLAP', `extent at logical block ${lblk} overlaps the previous one`, {
          offset: nodeOffset,
          inode: ctx.ino,
        });
      }
      const keep = Math.min(len, nBlocks - lblk);
      pushRun(out, { lblk, pblk, len: keep, unwritten }, ctx);
    }
  };
  walk(root, undefined, undefined, true);
  return out;
}

function checkHeader(
  ctx: MapContext,
  node: Uint8Array,
  expectDepth: number | undefined,
  nodeOffset: number | undefined,
  isRoot: boolean,
): number {
  const at = { offset: nodeOffset, inode: ctx.ino };
  if (le16(node, EH.magic[0]) !== EXTENT_MAGIC)
    throw ctx.err.corrupt('EXT_EXTENT_MAGIC', 'bad extent header magic', at);
  const entries = le16(node, EH.entries[0]);
  const max = le16(node, EH.max[0]);
  const depth = le16(node, EH.depth[0]);
  const room = Math.floor((node.length - EXTENT_HEADER_SIZE - (isRoot ? 0 : 4)) / EXTENT_ENTRY_SIZE);
  if (max > room || entries > max) {
    throw ctx.err.corrupt('EXT_EXTENT_COUNT', `extent node claims ${entries} of ${max} entries (room for ${room})`, at);
  }
  if (depth > MAX_EXTENT_DEPTH || (expectDepth !== undefined && depth !== expectDepth)) {
    throw ctx.err.corrupt('EXT_EXTENT_DEPTH', `extent node depth ${depth} is impossible here`, at);
  }
  if (!isRoot && ctx.sb.hasMetadataCsum) {
    const tail = EXTENT_HEADER_SIZE + max * EXTENT_ENTRY_SIZE;
    if (crc32c(ctx.seed, node.subarray(0, tail)) !== le32(node, tail)) {
      ctx.problem(ctx.err.corrupt('EXT_EXTENT_CSUM', 'extent block checksum mismatch', at));
    }
  }
  return depth;
}
