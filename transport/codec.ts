/**
 * Chunk codec, the writing side: compresses a chunk with zstd when it pays
 * and stores it raw otherwise (the format and the reading side are in
 * chunk-format.ts, re-exported here).
 *
 * zstd comes from @bokuweb/zstd-wasm (the reference C library built to
 * WebAssembly and shipped inside the npm package), through zstd-wasm.ts.
 */
import { CODEC_RAW, CODEC_ZSTD, DEFAULT_ZSTD_LEVEL, type EncodedChunk, MAX_CHUNK_LENGTH } from './chunk-format.js';
import { nativeCompressor } from './zstd-native.js';
import { type HeapCompressor, wasmCompressor, zstdWasm } from './zstd-wasm.js';

export * from './chunk-format.js';

// agent/ship/frames.ts calls the package's `compress` directly and relies on importing this module to start it
zstdWasm();

let chosen: HeapCompressor | undefined;
/** Node's own zstd when it has one (zstd-native.ts), else the WebAssembly build. */
function compressor(): HeapCompressor {
  chosen ??= nativeCompressor(wasmCompressor) ?? wasmCompressor();
  return chosen;
}

/** Which zstd build writes frames in this process. */
export function zstdBuild(): 'native' | 'wasm' {
  return compressor() === wasmCompressor() ? 'wasm' : 'native';
}

export interface EncodeOptions {
  /** zstd level (1–19; negative levels trade ratio for speed). */
  level?: number;
}

/** Chunks at least this long are probed before being compressed whole. */
export const PROBE_MIN_LENGTH = 64 * 1024;
/** Bytes of each probe sample (one from the start, one from the middle). */
const PROBE_SAMPLE = 8 * 1024;

/**
 * A cheap guess whether compressing a chunk pays: two 8 KiB samples are
 * compressed, and when neither saves 1/32 the chunk is stored raw without
 * compressing it whole. Already-compressed data (media, archives, encrypted
 * files) is a large share of a VM's bytes, and zstd spends nearly as long
 * failing on it as it does succeeding elsewhere.
 */
function worthCompressing(raw: Uint8Array, level: number): boolean {
  if (raw.length < PROBE_MIN_LENGTH) return true;
  const mid = (raw.length >>> 1) - (PROBE_SAMPLE >>> 1);
  for (const at of [0, mid]) {
    if (
      compressor().compressedLength(raw.subarray(at, at + PROBE_SAMPLE), level) <=
      PROBE_SAMPLE - (PROBE_SAMPLE >>> 5)
    ) {
      return true;
    }
  }
  return false;
}

/**
 * Compresses one chunk. The result is stored raw unless zstd saves at least
 * 1/32 of the size (decoding must then pay for itself).
 */
export function encodeChunk(chunk: { hash: string; bytes: Uint8Array }, opts: EncodeOptions = {}): EncodedChunk {
  const raw = chunk.bytes;
  if (raw.length > MAX_CHUNK_LENGTH) {
    throw new RangeError(`chunk of ${raw.length} bytes exceeds ${MAX_CHUNK_LENGTH}`);
  }
  const rawLength = raw.length;
  const level = opts.level ?? DEFAULT_ZSTD_LEVEL;
  if (rawLength > 0 && worthCompressing(raw, level)) {
    const stored = compressor().compressPrefixed(raw, level, CODEC_ZSTD, rawLength - (rawLength >>> 5));
    if (stored) return { hash: chunk.hash, rawLength, codec: CODEC_ZSTD, stored };
  }
  const stored = Buffer.allocUnsafeSlow(1 + rawLength);
  stored[0] = CODEC_RAW;
  stored.set(raw, 1);
  return { hash: chunk.hash, rawLength, codec: CODEC_RAW, stored };
}
