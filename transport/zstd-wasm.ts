/**
 * zstd through @bokuweb/zstd-wasm (the reference C library built to
 * WebAssembly), loaded on first use and synchronously, and compressing
 * straight on its heap.
 *
 * Loading: the package's own `init()` reads and instantiates its module
 * asynchronously, so whoever imports it must await it first. A single-file
 * restore of chunks stored raw needs no zstd at all, and one of zstd chunks
 * needs only the decoder: here the module is instantiated the first time a
 * frame is written or read (a few ms, synchronously, through Emscripten's
 * `instantiateWasm` hook), and a process that never meets a zstd chunk never
 * loads it.
 *
 * Compressing: the package's `compress` mallocs an input and an output area
 * per call, copies the result out with `slice()`, and frees both; a backup
 * calls it thousands of times per GiB, and the codec then copied the result
 * once more behind its codec byte. Here one input and one output area live for
 * the thread's lifetime (grown to the largest chunk seen, which FastCDC caps),
 * and the frame is copied once, straight into the stored chunk behind its
 * prefix byte. The output area is only as large as the caller accepts: zstd
 * stops as soon as the frame would not fit. The frame is the library's own
 * `ZSTD_compress` output, byte for byte.
 *
 * The package exposes its Emscripten module only through a file its
 * `exports` map does not list, so it is loaded by path next to the entry point.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** The little of the WebAssembly API used here (the project's lib settings carry no DOM types). */
interface Wasm {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: object };
}
const wasm = (globalThis as unknown as { WebAssembly: Wasm }).WebAssembly;

interface ZstdModule {
  HEAPU8: Uint8Array;
  calledRun?: boolean;
  init(wasm: Uint8Array): void;
  instantiateWasm?: (imports: object, receive: (instance: object, module: object) => void) => object;
  _malloc(size: number): number;
  _free(ptr: number): void;
  _ZSTD_compress(dst: number, dstCapacity: number, src: number, srcSize: number, level: number): number;
  _ZSTD_isError(code: number): number;
}

interface ZstdPackage {
  decompress(frame: Uint8Array): Uint8Array;
  compress(input: Uint8Array, level?: number): Uint8Array;
}

let loaded: { module: ZstdModule; pkg: ZstdPackage } | undefined;

/** The package, its module instantiated (once per thread). */
export function zstdWasm(): { module: ZstdModule; pkg: ZstdPackage } {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const entry = require.resolve('@bokuweb/zstd-wasm');
  const { Module } = require(join(dirname(entry), 'module.js')) as { Module: ZstdModule };
  if (!Module.calledRun) {
    const bytes = readFileSync(join(dirname(entry), 'zstd.wasm'));
    Module.instantiateWasm = (imports, receive) => {
      const compiled = new wasm.Module(bytes);
      const instance = new wasm.Instance(compiled, imports);
      receive(instance, compiled);
      return instance.exports;
    };
    Module.init(bytes);
    if (!Module.calledRun) throw new Error('zstd-wasm did not start synchronously'); // our bug, not the data's
  }
  loaded = { module: Module, pkg: require(entry) as ZstdPackage };
  return loaded;
}

/** Smallest heap area allocated, so small chunks do not grow it step by step. */
const MIN_AREA = 1 << 20;

export interface HeapCompressor {
  /**
   * `prefix` followed by the zstd frame of `input`, or undefined when the
   * frame would be longer than `maxFrame` bytes.
   */
  compressPrefixed(input: Uint8Array, level: number, prefix: number, maxFrame: number): Buffer | undefined;
  /** Length of the zstd frame of `input` (for probes: nothing is copied out). */
  compressedLength(input: Uint8Array, level: number): number;
}

let compressor: HeapCompressor | undefined;

/** The compressor of this thread. */
export function wasmCompressor(): HeapCompressor {
  compressor ??= makeCompressor(zstdWasm().module);
  return compressor;
}

function makeCompressor(m: ZstdModule): HeapCompressor {
  let src = 0;
  let srcCap = 0;
  let dst = 0;
  let dstCap = 0;

  const reserve = (inputLength: number, outputLength: number): void => {
    // the areas only grow: a chunk never exceeds the chunker's maximum, so this is bounded by it
    if (inputLength > srcCap) {
      if (src) m._free(src);
      srcCap = Math.max(MIN_AREA, inputLength);
      src = m._malloc(srcCap);
    }
    if (outputLength > dstCap) {
      if (dst) m._free(dst);
      dstCap = Math.max(MIN_AREA, outputLength);
      dst = m._malloc(dstCap);
    }
    if (!src || !dst) throw new RangeError(`zstd heap: cannot allocate ${srcCap} + ${dstCap} bytes`);
  };

  /** Frame length, or -1 when it does not fit in `capacity`. */
  const run = (input: Uint8Array, level: number, capacity: number): number => {
    reserve(input.length, capacity);
    // HEAPU8 is replaced when the memory grows (malloc above): read it after allocating
    m.HEAPU8.set(input, src);
    const n = m._ZSTD_compress(dst, capacity, src, input.length, level);
    return m._ZSTD_isError(n) ? -1 : n >>> 0;
  };

  return {
    compressPrefixed(input, level, prefix, maxFrame) {
      const n = run(input, level, Math.max(0, maxFrame));
      if (n < 0) return undefined;
      const out = Buffer.allocUnsafeSlow(1 + n);
      out[0] = prefix;
      out.set(m.HEAPU8.subarray(dst, dst + n), 1);
      return out;
    },
    compressedLength(input, level) {
      // more than ZSTD_compressBound (len + len/256 + 64 for small inputs): the probe wants the real length
      const n = run(input, level, input.length + (input.length >>> 7) + 512);
      return n < 0 ? Number.MAX_SAFE_INTEGER : n;
    },
  };
}
