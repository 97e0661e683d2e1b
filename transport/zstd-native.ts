/**
 * zstd from Node itself (node:zlib, Node ≥ 22.15 / 23.8), when present.
 *
 * The same reference library as the WebAssembly build, compiled natively:
 * ~1.5× faster at level 1 on the backup benchmark's text (246 against 166
 * MB/s with Node 22.15 on this machine; the zstd CLI does 274). Node 20 has
 * none: there zstd-napi.ts or zstd-wasm.ts writes the frames. The format does not change: a
 * frame is a zstd frame whichever build wrote it, and every frame is checked
 * to declare its content size (as decodeChunk requires) before it is used;
 * one that does not is written again by the WebAssembly build (`fallback`).
 */
import * as zlib from 'node:zlib';
import { declaresContentSize } from './chunk-format.js';
import type { HeapCompressor } from './zstd-wasm.js';

interface NativeZstd {
  zstdCompressSync(input: Uint8Array, options: { chunkSize?: number; params?: Record<number, number> }): Buffer;
  constants: { ZSTD_c_compressionLevel?: number };
}

/** Output buffer per call: one piece for a chunk of up to this size (Node's default is 16 KiB pieces, copied together). */
const OUTPUT_CHUNK = 1 << 20;

/** The native compressor, or undefined when this Node has no zstd (or VDBAK_ZSTD asks for another build). */
export function nativeCompressor(fallback: () => HeapCompressor): HeapCompressor | undefined {
  const z = zlib as unknown as Partial<NativeZstd>;
  const levelParam = z.constants?.ZSTD_c_compressionLevel;
  if (typeof z.zstdCompressSync !== 'function' || levelParam === undefined) return undefined;
  const wanted = process.env.VDBAK_ZSTD;
  if (wanted !== undefined && wanted !== '' && wanted !== 'native') return undefined;
  const compress = z.zstdCompressSync.bind(zlib);
  const frame = (input: Uint8Array, level: number): Buffer | undefined => {
    const f = compress(input, { chunkSize: OUTPUT_CHUNK, params: { [levelParam]: level } });
    return declaresContentSize(f, input.length) ? f : undefined;
  };
  return {
    compressPrefixed(input, level, prefix, maxFrame) {
      const f = frame(input, level);
      if (!f) return fallback().compressPrefixed(input, level, prefix, maxFrame);
      if (f.length > maxFrame) return undefined;
      const out = Buffer.allocUnsafeSlow(1 + f.length);
      out[0] = prefix;
      out.set(f, 1);
      return out;
    },
    compressedLength(input, level) {
      return frame(input, level)?.length ?? fallback().compressedLength(input, level);
    },
  };
}
