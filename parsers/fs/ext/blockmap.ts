/**
 * ext2/ext3 block maps: i_block holds 12 direct block pointers, then one
 * single-, one double- and one triple-indirect pointer; an indirect block is
 * an array of 32-bit block numbers. A zero pointer is a hole (for an
 * indirect pointer: a hole as large as everything below it).
 * Spec: kernel Documentation/filesystems/ext4/ifork.rst ("Direct/Indirect
 * Block Addressing"); libyal ext document, "Block numbers".
 */
import { le32 } from './le.js';
import { type BlockRun, checkBlocks, type MapContext, pushRun } from './runs.js';

const DIRECT_BLOCKS = 12;
const INDIRECT_LEVELS = 3;

/** Maps logical blocks [0, nBlocks) of a block-mapped file. */
export function blockMapRuns(ctx: MapContext, iblock: Uint8Array, nBlocks: number): BlockRun[] {
  const out: BlockRun[] = [];
  const perBlock = ctx.sb.blockSize / 4;
  const add = (lblk: number, pblk: number) => {
    checkBlocks(ctx, pblk, 1, 'data block');
    pushRun(out, { lblk, pblk, len: 1, unwritten: false }, ctx);
  };
  for (let i = 0; i < DIRECT_BLOCKS && i < nBlocks; i++) {
    const p = le32(iblock, i * 4);
    if (p !== 0) add(i, p);
  }
  // Walks the indirect block `pblk` of `level` (1 = its pointers are data blocks) that starts at lblk `base`.
  const seen = new Set<number>();
  const walk = (pblk: number, level: number, base: number) => {
    checkBlocks(ctx, pblk, 1, 'indirect block');
    // Blocks are never shared inside one map: a repeat is a loop in corrupt metadata.
    if (seen.has(pblk)) {
      throw ctx.err.corrupt('EXT_BLOCKMAP_LOOP', `indirect block ${pblk} appears twice`, {
        offset: pblk * ctx.sb.blockSize,
        inode: ctx.ino,
      });
    }
    seen.add(pblk);
    const block = ctx.readBlocks(pblk, 1);
    const span = perBlock ** (level - 1);
    for (let i = 0; i < perBlock; i++) {
      const lblk = base + i * span;
      if (lblk >= nBlocks) return;
      const p = le32(block, i * 4);
      if (p === 0) continue;
      if (level === 1) add(lblk, p);
      else walk(p, level - 1, lblk);
    }
  };
  let base = DIRECT_BLOCKS;
  for (let level = 1; level <= INDIRECT_LEVELS && base < nBlocks; level++) {
    const p = le32(iblock, (DIRECT_BLOCKS + level - 1) * 4);
    if (p !== 0) walk(p, level, base);
    base += perBlock ** level;
  }
  return out;
}
