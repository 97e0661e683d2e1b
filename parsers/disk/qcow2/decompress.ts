/**
 * Decompression of one qcow2 compressed cluster.
 *
 * - compression_type 0: raw deflate (zlib without header), as qemu writes it.
 * - compression_type 1: one zstd frame (RFC 8878), decoded by `fzstd`.
 *
 * The compressed size in the L2 entry is rounded to 512-byte sectors, so the
 * bytes handed in usually run past the end of the stream (into the next
 * compressed cluster). Deflate stops by itself; for zstd we find the end of
 * the frame by walking its block headers. A cluster must decompress to
 * exactly one cluster, as qemu requires; anything else is a CorruptError.
 */
import { constants, inflateRawSync } from 'node:zlib';
import { Decompress } from 'fzstd';
import { MiB, u32le } from '../../bytes.js';
import { type Errors, isVdbakError } from '../../errors.js';
import { COMPRESSION_ZSTD } from './header.js';

const ZSTD_MAGIC = 0xfd2fb528;
/** Largest zstd window we let the decoder allocate (qemu clusters are at most 2 MiB). */
const MAX_ZSTD_WINDOW = 8 * MiB;
const ZSTD_BLOCK_RAW = 0;
const ZSTD_BLOCK_RLE = 1;
const ZSTD_BLOCK_COMPRESSED = 2;
const ZSTD_MAX_BLOCK = 128 * 1024;
const ZSTD_CHECKSUM = 4;

/** Decompresses `packed` (read at file offset `at`) into one cluster of `clusterSize` bytes. */
export function decompressCluster(
  packed: Uint8Array,
  compressionType: number,
  clusterSize: number,
  err: Errors,
  at: number,
): Buffer {
  try {
    const out =
      compressionType === COMPRESSION_ZSTD ? zstdCluster(packed, clusterSize, err, at) : inflate(packed, clusterSize);
    if (out.length !== clusterSize) {
      throw err.corrupt('QCOW2_DECOMPRESSED_SIZE', `compressed cluster gives ${out.length} bytes, not ${clusterSize}`, {
        offset: at,
      });
    }
    return out;
  } catch (e) {
    if (isVdbakError(e)) throw e;
    throw err.corrupt('QCOW2_DECOMPRESS', `compressed cluster does not decompress: ${(e as Error).message}`, {
      offset: at,
    });
  }
}

function inflate(packed: Uint8Array, clusterSize: number): Buffer {
  // Z_SYNC_FLUSH: a stream cut short yields what it has (then the size check fails) instead of throwing
  return inflateRawSync(packed, { maxOutputLength: clusterSize, finishFlush: constants.Z_SYNC_FLUSH });
}

function zstdCluster(packed: Uint8Array, clusterSize: number, err: Errors, at: number): Buffer {
  const frame = packed.subarray(0, zstdFrameLength(packed, clusterSize, err, at));
  const out = Buffer.alloc(clusterSize);
  let filled = 0;
  const d = new Decompress((chunk) => {
    if (filled + chunk.length > clusterSize) {
      throw err.corrupt('QCOW2_DECOMPRESSED_SIZE', `zstd frame gives more than ${clusterSize} bytes`, { offset: at });
    }
    out.set(chunk, filled);
    filled += chunk.length;
  });
  d.push(frame, true);
  return out.subarray(0, filled);
}

/**
 * Length of the zstd frame at the start of `b`, found from its header and
 * block headers (RFC 8878 §3.1.1). Also refuses frames whose window or
 * declared content size could make the decoder allocate more than a cluster
 * justifies.
 */
function zstdFrameLength(b: Uint8Array, clusterSize: number, err: Errors, at: number): number {
  const bad = (what: string) => err.corrupt('QCOW2_ZSTD_FRAME', `zstd frame: ${what}`, { offset: at });
  if (b.length < 6 || u32le(b, 0) !== ZSTD_MAGIC) throw bad('no frame magic');
  const fhd = b[4] ?? 0;
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  const hasChecksum = (fhd >> 2) & 1;
  const dictFlag = fhd & 3;
  if (fhd & 8) throw bad('reserved header bit set');
  let pos = 5;
  if (!singleSegment) {
    const wd = b[pos] ?? 0;
    const base = 2 ** (10 + (wd >> 3));
    if (base + (base / 8) * (wd & 7) > MAX_ZSTD_WINDOW) throw bad('window larger than allowed');
    pos += 1;
  }
  pos += [0, 1, 2, 4][dictFlag] ?? 0;
  const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag] ?? 0;
  if (pos + fcsBytes > b.length) throw bad('header runs past the data');
  if (fcsBytes > 0) {
    let fcs = 0;
    for (let i = Math.min(fcsBytes, 6) - 1; i >= 0; i--) fcs = fcs * 256 + (b[pos + i] ?? 0);
    if (fcsBytes === 8 && ((b[pos + 6] ?? 0) | (b[pos + 7] ?? 0)) !== 0) throw bad('content size too large');
    if (fcsBytes === 2) fcs += 256;
    if (fcs !== clusterSize) throw bad(`declared content size ${fcs} is not the cluster size ${clusterSize}`);
  }
  pos += fcsBytes;
  // every block header takes 3 bytes, so this loop ends within b.length / 3 turns
  for (;;) {
    if (pos + 3 > b.length) throw bad('block header runs past the data');
    const header = (b[pos] ?? 0) | ((b[pos + 1] ?? 0) << 8) | ((b[pos + 2] ?? 0) << 16);
    const last = header & 1;
    const type = (header >> 1) & 3;
    const size = header >>> 3;
    pos += 3;
    if (type === ZSTD_BLOCK_RLE) pos += 1;
    else if (type === ZSTD_BLOCK_RAW || type === ZSTD_BLOCK_COMPRESSED) {
      if (size > ZSTD_MAX_BLOCK) throw bad(`block of ${size} bytes`);
      pos += size;
    } else throw bad('reserved block type');
    if (pos > b.length) throw bad('block runs past the data');
    if (last) break;
  }
  if (hasChecksum) pos += ZSTD_CHECKSUM;
  if (pos > b.length) throw bad('checksum runs past the data');
  return pos;
}
