/**
 * Each zstd build the codec may choose (transport/zstd-*.ts), tested on its
 * own whatever build this process would pick: the WebAssembly one always,
 * the zstd-napi addon when it is installed, Node's own when this Node has it.
 * Every build must write frames the reference tool decodes and that declare
 * their content size; wasm and napi compile the same library version, so
 * their frames must equal the package's own `compress` byte for byte.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { compress } from '@bokuweb/zstd-wasm';
import { afterEach, describe, expect, it } from 'vitest';
import { declaresContentSize } from '../../transport/chunk-format.js';
import { napiCompressor } from '../../transport/zstd-napi.js';
import { nativeCompressor } from '../../transport/zstd-native.js';
import { type HeapCompressor, wasmCompressor } from '../../transport/zstd-wasm.js';
import { ROOT } from '../helpers/fixtures.js';
import { prng } from '../helpers/fuzz.js';

const text = readFileSync(join(ROOT, 'node_modules', 'typescript', 'lib', 'typescript.js'));
function randomBuffer(length: number, seed: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

function zstdDecode(frame: Uint8Array): Buffer {
  const r = spawnSync('zstd', ['-d', '-c'], { input: frame, maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`zstd -d: ${r.stderr}`);
  return r.stdout;
}

function napiInstalled(): boolean {
  try {
    createRequire(import.meta.url)('zstd-napi/binding');
    return true;
  } catch {
    return false;
  }
}

const PREFIX = 0x5a;
const saved = process.env.VDBAK_ZSTD;
afterEach(() => {
  if (saved === undefined) delete process.env.VDBAK_ZSTD;
  else process.env.VDBAK_ZSTD = saved;
});

/** The builds present here, each made with VDBAK_ZSTD unset. */
function builds(): [string, HeapCompressor][] {
  delete process.env.VDBAK_ZSTD;
  const out: [string, HeapCompressor][] = [['wasm', wasmCompressor()]];
  const napi = napiCompressor(wasmCompressor);
  if (napi) out.push(['napi', napi]);
  const native = nativeCompressor(wasmCompressor);
  if (native) out.push(['native', native]);
  return out;
}

describe('zstd builds', () => {
  it('loads the napi addon exactly when it is installed, and only when no other build is asked for', () => {
    delete process.env.VDBAK_ZSTD;
    expect(napiCompressor(wasmCompressor) !== undefined).toBe(napiInstalled());
    for (const other of ['wasm', 'native']) {
      process.env.VDBAK_ZSTD = other;
      expect(napiCompressor(wasmCompressor)).toBeUndefined();
    }
    process.env.VDBAK_ZSTD = 'napi';
    expect(napiCompressor(wasmCompressor) !== undefined).toBe(napiInstalled());
    expect(nativeCompressor(wasmCompressor)).toBeUndefined();
  });

  it('writes prefixed frames that decode, declare their size, and match the wasm package byte for byte', () => {
    const inputs: [Buffer, number][] = [
      [text.subarray(0, 100), 1],
      [text.subarray(0, 300_000), 1],
      [text.subarray(7, 70_007), 3],
      [text.subarray(0, 200_000), -3],
      // past the builds' first 1 MiB areas: they grow, and smaller inputs after it still work
      [text.subarray(0, 3 << 20), 1],
      [text.subarray(1000, 5000), 1],
    ];
    for (const [name, c] of builds()) {
      for (const [input, level] of inputs) {
        const out = c.compressPrefixed(input, level, PREFIX, input.length);
        expect(out, `${name} ${input.length}`).toBeDefined();
        expect(out![0]).toBe(PREFIX);
        const frame = out!.subarray(1);
        expect(declaresContentSize(frame, input.length)).toBe(true);
        expect(zstdDecode(frame).equals(input)).toBe(true);
        expect(c.compressedLength(input, level)).toBe(frame.length);
        if (name !== 'native') expect(frame.equals(compress(input, level)), `${name} ${input.length}`).toBe(true);
      }
    }
  });

  it('gives up on a frame longer than the caller accepts, and keeps working after', () => {
    const random = randomBuffer(200_000, 5);
    const piece = text.subarray(0, 100_000);
    for (const [name, c] of builds()) {
      expect(c.compressPrefixed(random, 1, PREFIX, random.length - (random.length >>> 5)), name).toBeUndefined();
      const full = c.compressedLength(piece, 1);
      expect(c.compressPrefixed(piece, 1, PREFIX, full - 1), name).toBeUndefined();
      // zstd wants some room beyond the frame while it writes (exactly the frame's length may not do)
      const fits = c.compressPrefixed(piece, 1, PREFIX, full + 1024);
      expect(fits?.length, name).toBe(full + 1);
      expect(zstdDecode(fits!.subarray(1)).equals(piece)).toBe(true);
      // the probe reports the real length of what does not compress
      expect(c.compressedLength(random, 1)).toBeGreaterThan(random.length);
    }
  });
});
