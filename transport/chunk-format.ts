/**
 * Chunk codec, the format and the reading side: how one chunk's bytes are
 * stored, and how they are read back. No zstd is loaded until a zstd chunk is
 * read (transport/zstd-wasm.ts), so a restore of chunks stored raw never pays
 * for it. The writing side is codec.ts.
 *
 * A stored chunk is one codec byte followed by the payload:
 *   0 RAW   payload = the chunk's bytes (used when compression does not pay);
 *   1 ZSTD  payload = one zstd frame (RFC 8878) that declares its content size.
 * The codec byte travels with the data, so chunks stay readable when the
 * default codec or level changes. Encryption, when it comes, is another codec
 * byte wrapping these.
 *
 * Before decoding untrusted bytes we parse the zstd frame header ourselves and
 * require its declared content size to equal the chunk's raw length (at most
 * MAX_CHUNK_LENGTH), so the decoder never allocates more than the pack index
 * can justify.
 */
import { toSafeNumber, u16le, u32le, u64le } from '../parsers/bytes.js';
import { transportErrors } from './errors.js';
import { zstdWasm } from './zstd-wasm.js';

export const CODEC_RAW = 0;
export const CODEC_ZSTD = 1;
export type CodecId = typeof CODEC_RAW | typeof CODEC_ZSTD;

/** Largest chunk we encode or decode (FastCDC's maximum is capped to the same). */
export const MAX_CHUNK_LENGTH = 64 * 1024 * 1024;

/**
 * zstd level 1: in this WebAssembly build it compresses 1.5–4x faster than
 * level 3 for 5–10% more output (benchmarks/chunking.ts); compression is the
 * slowest step of a backup, so speed wins by default.
 */
export const DEFAULT_ZSTD_LEVEL = 1;

const ZSTD_MAGIC = 0xfd2fb528;
/**
 * Largest window the 32-bit (WebAssembly) zstd decoder accepts (ZSTD_WINDOWLOG_MAX_32).
 * A frame past it makes the library's own header probe fail, so we refuse it first.
 */
const ZSTD_WINDOWLOG_MAX = 30;

/** A chunk ready to be packed: plain data, safe to post between worker threads. */
export interface EncodedChunk {
  /** SHA-256 of the raw bytes, lowercase hex. */
  hash: string;
  rawLength: number;
  codec: CodecId;
  /** Codec byte + payload: exactly what goes into the pack. */
  stored: Buffer;
}

/** Where a stored chunk came from, for error messages. */
export interface ChunkSource {
  /** Pack (or other object) name. */
  image: string;
  /** Offset of the stored chunk in it. */
  offset: number;
}

/**
 * Decodes one stored chunk whose raw length the caller knows (from the pack
 * index). Throws typed errors (`CODEC_*`) on any mismatch; never returns bytes
 * of another length. Identity (SHA-256) is checked by the caller.
 */
export function decodeChunk(stored: Uint8Array, rawLength: number, where: ChunkSource): Buffer {
  const err = transportErrors(where.image, 'codec');
  const at = { offset: where.offset };
  if (!Number.isSafeInteger(rawLength) || rawLength < 0 || rawLength > MAX_CHUNK_LENGTH) {
    throw err.limit('CODEC_RAW_LENGTH', `raw length ${rawLength} exceeds ${MAX_CHUNK_LENGTH}`, at);
  }
  if (stored.length < 1) throw err.truncated('CODEC_EMPTY', 'stored chunk has no codec byte', at);
  const codec = stored[0];
  const payload = stored.subarray(1);
  if (codec === CODEC_RAW) {
    if (payload.length !== rawLength) {
      throw err.corrupt('CODEC_RAW_SIZE', `raw chunk holds ${payload.length} bytes, index says ${rawLength}`, at);
    }
    return Buffer.from(payload);
  }
  if (codec === CODEC_ZSTD) {
    const declared = zstdContentSize(payload, err, where.offset + 1);
    if (declared !== rawLength) {
      throw err.corrupt('CODEC_ZSTD_SIZE', `zstd frame declares ${declared} bytes, index says ${rawLength}`, at);
    }
    let out: Uint8Array;
    try {
      out = zstdWasm().pkg.decompress(payload);
    } catch (e) {
      throw err.corrupt('CODEC_ZSTD_DATA', `zstd data does not decode (${(e as Error).message})`, at);
    }
    if (out.length !== rawLength) {
      throw err.corrupt('CODEC_ZSTD_SIZE', `zstd frame decoded to ${out.length} bytes, index says ${rawLength}`, at);
    }
    return Buffer.from(out.buffer, out.byteOffset, out.length);
  }
  throw err.unsupported('CODEC_UNKNOWN', `unknown codec ${codec}`, at);
}

/**
 * Reads the content size a zstd frame header declares (RFC 8878 §3.1.1.1).
 * Frames that do not declare it are refused: we always write it.
 */
/**
 * Whether `frame` is one zstd frame header that declares `length` bytes of
 * content, as decodeChunk requires: a frame written by any zstd build is
 * checked with this before it is stored.
 */
export function declaresContentSize(frame: Uint8Array, length: number): boolean {
  try {
    return zstdContentSize(frame, transportErrors('frame', 'codec'), 0) === length;
  } catch {
    return false;
  }
}

function zstdContentSize(frame: Uint8Array, err: ReturnType<typeof transportErrors>, offset: number): number {
  if (frame.length < 6) throw err.truncated('CODEC_ZSTD_HEADER', 'zstd frame header is cut short', { offset });
  if (u32le(frame, 0) !== ZSTD_MAGIC) throw err.corrupt('CODEC_ZSTD_MAGIC', 'not a zstd frame', { offset });
  const descriptor = frame[4]!;
  const fcsFlag = descriptor >>> 6;
  const singleSegment = (descriptor >>> 5) & 1;
  if (descriptor & 0x08) throw err.corrupt('CODEC_ZSTD_HEADER', 'zstd reserved bit set', { offset });
  const dictIdSize = [0, 1, 2, 4][descriptor & 3]!;
  const fcsSize = fcsFlag === 0 ? singleSegment : [0, 2, 4, 8][fcsFlag]!;
  if (!singleSegment && frame.length > 5 && 10 + (frame[5]! >>> 3) > ZSTD_WINDOWLOG_MAX) {
    throw err.unsupported('CODEC_ZSTD_WINDOW', 'zstd window larger than 1 GiB', { offset });
  }
  const fcsAt = 5 + (singleSegment ? 0 : 1) + dictIdSize;
  if (fcsSize === 0) {
    throw err.unsupported('CODEC_ZSTD_NO_SIZE', 'zstd frame does not declare its content size', { offset });
  }
  if (frame.length < fcsAt + fcsSize) {
    throw err.truncated('CODEC_ZSTD_HEADER', 'zstd frame header is cut short', { offset });
  }
  if (fcsSize === 1) return frame[fcsAt]!;
  if (fcsSize === 2) return u16le(frame, fcsAt) + 256;
  if (fcsSize === 4) return u32le(frame, fcsAt);
  return toSafeNumber(u64le(frame, fcsAt), err, 'CODEC_ZSTD_SIZE', 'zstd content size', offset);
}
