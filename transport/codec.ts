/**
 * Chunk codec, the writing side: compresses a chunk with zstd when it pays
 * and stores it raw otherwise (the format and the reading side are in
 * chunk-format.ts, re-exported here).
 *
 * zstd is the reference C library in whichever build is fastest here:
 * Node's own (node:zlib, Node >= 22.15; zstd-native.ts), else the zstd-napi
 * addon (zstd-napi.ts), else @bokuweb/zstd-wasm (zstd-wasm.ts), which is
 * always there. `VDBAK_ZSTD=native|napi|wasm` picks one (tests, benchmarks).
 * Every build writes the same format: one zstd frame that declares its size.
 */
import { CODEC_RAW, CODEC_ZSTD, DEFAULT_ZSTD_LEVEL, type EncodedChunk, MAX_CHUNK_LENGTH } from './chunk-format.js';
import { napiCompressor } from './zstd-napi.js';
import { nativeCompressor } from './zstd-native.js';
import { type HeapCompressor, wasmCompressor } from './zstd-wasm.js';

export * from './chunk-format.js';

export type ZstdBuild = 'native' | 'napi' | 'wasm';

let chosen: { build: ZstdBuild; compressor: HeapCompressor } | undefined;
/** Node's own zstd when it has one, else the zstd-napi addon when it loads, else the WebAssembly build. */
function choose(): { build: ZstdBuild; compressor: HeapCompressor } {
  if (chosen) return chosen;
  const native = nativeCompressor(wasmCompressor);
  const napi = native ? undefined : napiCompressor(wasmCompressor);
  chosen = native
    ? { build: 'native', compressor: native }
    : napi
      ? { build: 'napi', compressor: napi }
      : { build: 'wasm', compressor: wasmCompressor() };
  return chosen;
}

function compressor(): HeapCompressor {
  return (chosen ?? choose()).compressor;
}

/** Which zstd build writes frames in this process. */
export function zstdBuild(): ZstdBuild {
  return choose().build;
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
