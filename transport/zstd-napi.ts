/**
 * zstd through the `zstd-napi` package: the reference C library compiled
 * natively as a Node-API addon, for Node versions whose node:zlib has no zstd
 * (Node 20). The package installs from the npm registry alone: its install
 * step tries a prebuilt binary and, when that cannot be fetched, builds the
 * addon with node-gyp from the zstd sources inside its tarball.
 *
 * One compression context and one output area live for the thread's lifetime
 * (the area grown to the largest frame asked for, which FastCDC's maximum
 * bounds), and the frame is copied once, behind the codec byte. zstd stops as
 * soon as the frame would not fit the area, as in zstd-wasm.ts. The frame is
 * `ZSTD_compressCCtx`'s output, which is what `ZSTD_compress` returns: a zstd
 * frame that declares its content size; each is checked anyway before use,
 * and one that does not is written by the `fallback` build instead.
 *
 * Loaded on first use, and only when it loads: a missing or unbuilt package
 * leaves the caller on the WebAssembly build.
 */
import { createRequire } from 'node:module';
import { declaresContentSize } from './chunk-format.js';
import type { HeapCompressor } from './zstd-wasm.js';

/** The little of the addon used here (zstd-napi's `binding` module). */
interface NapiBinding {
  CCtx: new () => { compress(dst: Uint8Array, src: Uint8Array, level: number): number };
}

/** zstd's error name (ZSTD_getErrorName) when the frame does not fit the output area. */
const DST_TOO_SMALL = 'Destination buffer is too small';
/** Smallest output area, so small chunks do not grow it step by step. */
const MIN_AREA = 1 << 20;

/** The addon, or undefined when the package is absent or its binary did not build. */
function loadBinding(): NapiBinding | undefined {
  try {
    const require = createRequire(import.meta.url);
    const binding = require('zstd-napi/binding') as Partial<NapiBinding>;
    return typeof binding.CCtx === 'function' ? (binding as NapiBinding) : undefined;
  } catch {
    return undefined;
  }
}

/** The addon's compressor, or undefined when it does not load (or VDBAK_ZSTD asks for another build). */
export function napiCompressor(fallback: () => HeapCompressor): HeapCompressor | undefined {
  const wanted = process.env.VDBAK_ZSTD;
  if (wanted !== undefined && wanted !== '' && wanted !== 'napi') return undefined;
  const binding = loadBinding();
  if (!binding) return undefined;
  const cctx = new binding.CCtx();
  let area = Buffer.allocUnsafeSlow(MIN_AREA);

  /** Frame length in `area`, or -1 when it is longer than `capacity`. */
  const run = (input: Uint8Array, level: number, capacity: number): number => {
    // the area only grows: a chunk never exceeds the chunker's maximum, so this is bounded by it
    if (capacity > area.length) area = Buffer.allocUnsafeSlow(Math.max(capacity, 2 * area.length));
    try {
      return cctx.compress(area.subarray(0, capacity), input, level);
    } catch (e) {
      // the addon throws zstd's error name; only a full output area means "does not pay", anything else is a bug
      if (e instanceof Error && e.message === DST_TOO_SMALL) return -1;
      throw e;
    }
  };

  return {
    compressPrefixed(input, level, prefix, maxFrame) {
      const n = run(input, level, Math.max(0, maxFrame));
      if (n < 0) return undefined;
      if (!declaresContentSize(area.subarray(0, n), input.length)) {
        return fallback().compressPrefixed(input, level, prefix, maxFrame);
      }
      const out = Buffer.allocUnsafeSlow(1 + n);
      out[0] = prefix;
      area.copy(out, 1, 0, n);
      return out;
    },
    compressedLength(input, level) {
      // more than ZSTD_compressBound (len + len/256 + 64 for small inputs): the probe wants the real length
      const n = run(input, level, input.length + (input.length >>> 7) + 512);
      return n < 0 ? Number.MAX_SAFE_INTEGER : n;
    },
  };
}
