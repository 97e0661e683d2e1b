/**
 * LZNT1, the compression of NTFS compressed files: the data is cut in 4 KiB
 * chunks, each with a 2-byte header (bit 15 = compressed, bits 0–11 = stored
 * size − 3); compressed chunks are groups of a flag byte and 8 tokens
 * (literal byte, or a 16-bit back reference whose offset/length split moves
 * with the position inside the chunk).
 *
 * Spec: [MS-XCA] 2.5 "LZNT1"; libyal libfsntfs "Compression".
 */
import type { Errors } from '../../errors.js';

export const LZNT1_CHUNK_SIZE = 4096;
const CHUNK_COMPRESSED = 0x8000;
const CHUNK_SIZE_MASK = 0x0fff;

/**
 * Decompresses `src` into a buffer of `outSize` bytes (what is not produced
 * stays zero). Throws a typed error on a malformed stream.
 */
export function lznt1Decompress(src: Buffer, outSize: number, err: Errors, at: number, inode?: number): Buffer {
  const out = Buffer.alloc(outSize);
  let pos = 0;
  let chunkStart = 0;
  while (pos + 2 <= src.length && chunkStart < outSize) {
    const h = src.readUInt16LE(pos);
    if (h === 0) break;
    const stored = (h & CHUNK_SIZE_MASK) + 1;
    const dataStart = pos + 2;
    const dataEnd = dataStart + stored;
    if (dataEnd > src.length) {
      throw err.corrupt('NTFS_LZNT1_CHUNK', `chunk of ${stored} bytes runs past the compressed data`, {
        offset: at + pos,
        inode,
      });
    }
    const limit = Math.min(chunkStart + LZNT1_CHUNK_SIZE, outSize);
    if ((h & CHUNK_COMPRESSED) === 0) {
      src.copy(out, chunkStart, dataStart, dataStart + Math.min(stored, limit - chunkStart));
    } else {
      decompressChunk(src, dataStart, dataEnd, out, chunkStart, limit, err, at, inode);
    }
    pos = dataEnd;
    chunkStart += LZNT1_CHUNK_SIZE;
  }
  return out;
}

function decompressChunk(
  src: Buffer,
  p: number,
  end: number,
  out: Buffer,
  chunkStart: number,
  limit: number,
  err: Errors,
  at: number,
  inode: number | undefined,
): void {
  let o = chunkStart;
  while (p < end && o < limit) {
    const flags = src[p++] ?? 0;
    for (let bit = 0; bit < 8 && p < end && o < limit; bit++) {
      if ((flags & (1 << bit)) === 0) {
        out[o++] = src[p++] ?? 0;
        continue;
      }
      if (p + 2 > end) {
        throw err.corrupt('NTFS_LZNT1_TOKEN', 'back reference cut by the end of the chunk', { offset: at + p, inode });
      }
      const token = src.readUInt16LE(p);
      p += 2;
      const here = o - chunkStart;
      let lengthBits = 12;
      for (let q = here - 1; q >= 0x10; q >>= 1) lengthBits--;
      const back = (token >>> lengthBits) + 1;
      let length = (token & ((1 << lengthBits) - 1)) + 3;
      if (back > here) {
        throw err.corrupt('NTFS_LZNT1_BACKREF', `back reference ${back} before the chunk start`, {
          offset: at + p - 2,
          inode,
        });
      }
      length = Math.min(length, limit - o);
      for (let i = 0; i < length; i++, o++) out[o] = out[o - back] ?? 0;
    }
  }
}
