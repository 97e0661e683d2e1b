import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as zlib from 'node:zlib';
import { join } from 'node:path';
import { compress } from '@bokuweb/zstd-wasm';
import { describe, expect, it } from 'vitest';
import { MAX_CHUNK_SIZE_LIMIT } from '../../agent/chunk/fastcdc.js';
import { isVdbakError } from '../../parsers/errors.js';
import {
  CODEC_RAW,
  CODEC_ZSTD,
  DEFAULT_ZSTD_LEVEL,
  decodeChunk,
  encodeChunk,
  MAX_CHUNK_LENGTH,
  zstdBuild,
} from '../../transport/codec.js';
import { ROOT } from '../helpers/fixtures.js';
import { expectTypedOrOk, mutate, newTally, prng } from '../helpers/fuzz.js';

const text = readFileSync(join(ROOT, 'node_modules', 'typescript', 'lib', 'typescript.js')).subarray(0, 1 << 20);
function randomBuffer(length: number, seed: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}
const random = randomBuffer(256 << 10, 4);
const hashOf = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const chunk = (bytes: Uint8Array) => ({ hash: hashOf(bytes), bytes });
const where = { image: 'test-pack', offset: 0 };

/** Whether the zstd-napi addon is installed and built (the codec then prefers it to zstd-wasm). */
function napiInstalled(): boolean {
  try {
    createRequire(import.meta.url)('zstd-napi/binding');
    return true;
  } catch {
    return false;
  }
}

/** The reference zstd command-line tool, fed on stdin. */
function zstdCli(args: string[], input: Uint8Array): Buffer {
  const r = spawnSync('zstd', args, { input, maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`zstd ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function expectCode(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (e) {
    expect(isVdbakError(e) && e.code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}, got success`);
}

describe('chunk codec', () => {
  it('compresses text with zstd and round-trips it', () => {
    const enc = encodeChunk(chunk(text));
    expect(enc.codec).toBe(CODEC_ZSTD);
    expect(enc.stored[0]).toBe(CODEC_ZSTD);
    expect(enc.rawLength).toBe(text.length);
    expect(enc.stored.length).toBeLessThan(text.length / 2);
    expect(decodeChunk(enc.stored, text.length, where).equals(text)).toBe(true);
  });

  it('writes frames the reference zstd tool decodes, and decodes what it writes', () => {
    const enc = encodeChunk(chunk(text));
    expect(zstdCli(['-d', '-c'], enc.stored.subarray(1)).equals(text)).toBe(true);
    for (const level of ['-1', '-19']) {
      const frame = zstdCli([level, '-c', '--stream-size=300000'], text.subarray(0, 300_000));
      const stored = Buffer.concat([Buffer.from([CODEC_ZSTD]), frame]);
      expect(decodeChunk(stored, 300_000, where).equals(text.subarray(0, 300_000))).toBe(true);
    }
  });

  it('stores incompressible and empty chunks raw', () => {
    for (const bytes of [random, Buffer.alloc(0), Buffer.from('x')]) {
      const enc = encodeChunk(chunk(bytes));
      expect(enc.codec).toBe(CODEC_RAW);
      expect(enc.stored.length).toBe(bytes.length + 1);
      expect(decodeChunk(enc.stored, bytes.length, where).equals(bytes)).toBe(true);
    }
  });

  it('honours the level option (higher level, smaller output) and is plain data', () => {
    const fast = encodeChunk(chunk(text), { level: DEFAULT_ZSTD_LEVEL });
    const small = encodeChunk(chunk(text), { level: 9 });
    expect(small.stored.length).toBeLessThan(fast.stored.length);
    expect(decodeChunk(small.stored, text.length, where).equals(text)).toBe(true);
    const cloned = structuredClone(fast);
    expect(decodeChunk(cloned.stored, cloned.rawLength, where).equals(text)).toBe(true);
  });

  it('refuses stored bytes that disagree with the index, with typed errors', () => {
    const z = encodeChunk(chunk(text)).stored;
    const r = encodeChunk(chunk(random)).stored;
    expectCode(() => decodeChunk(z, text.length - 1, where), 'CODEC_ZSTD_SIZE');
    expectCode(() => decodeChunk(r, random.length + 1, where), 'CODEC_RAW_SIZE');
    expectCode(() => decodeChunk(new Uint8Array(0), 0, where), 'CODEC_EMPTY');
    expectCode(() => decodeChunk(Buffer.from([7, 1, 2]), 2, where), 'CODEC_UNKNOWN');
    expectCode(() => decodeChunk(z, MAX_CHUNK_LENGTH + 1, where), 'CODEC_RAW_LENGTH');
    expectCode(() => decodeChunk(Buffer.from([CODEC_ZSTD, 1, 2, 3, 4, 5, 6]), 2, where), 'CODEC_ZSTD_MAGIC');
    // a frame written by a stream (no declared content size) is refused before decoding
    const streamed = zstdCli(['-c', '--no-content-size'], text.subarray(0, 1000));
    expectCode(
      () => decodeChunk(Buffer.concat([Buffer.from([CODEC_ZSTD]), streamed]), 1000, where),
      'CODEC_ZSTD_NO_SIZE',
    );
    // a window past what the 32-bit decoder takes (descriptor byte after the frame header descriptor)
    const wide = Buffer.from(encodeChunk(chunk(text)).stored);
    expect(wide[5]! & 0x20).toBe(0); // not single-segment: a window descriptor follows
    wide[6] = 0xf8; // exponent 31: a 2^41-byte window
    expectCode(() => decodeChunk(wide, text.length, where), 'CODEC_ZSTD_WINDOW');
    // two frames: the second one overflows the declared size
    const twice = Buffer.concat([z, z.subarray(1)]);
    expectCode(() => decodeChunk(twice, text.length, where), 'CODEC_ZSTD_DATA');
  });

  it('writes frames of the fastest zstd build here (wasm and napi byte for byte as the wasm package compresses)', () => {
    const native = typeof (zlib as { zstdCompressSync?: unknown }).zstdCompressSync === 'function';
    const wanted = process.env.VDBAK_ZSTD || undefined;
    const canNative = native && (wanted === undefined || wanted === 'native');
    const canNapi = napiInstalled() && (wanted === undefined || wanted === 'napi');
    expect(zstdBuild()).toBe(canNative ? 'native' : canNapi ? 'napi' : 'wasm');
    for (const [bytes, level] of [
      [text, 1],
      [text.subarray(0, 300_000), 3],
      [text.subarray(5, 70_000), -3],
      [text.subarray(0, 100), 1],
    ] as const) {
      const enc = encodeChunk(chunk(bytes), { level });
      expect(enc.codec).toBe(CODEC_ZSTD);
      if (zstdBuild() !== 'native') expect(enc.stored.subarray(1).equals(compress(bytes, level))).toBe(true);
      expect(zstdCli(['-d', '-c'], enc.stored.subarray(1)).equals(bytes)).toBe(true);
      expect(decodeChunk(enc.stored, bytes.length, where).equals(bytes)).toBe(true);
    }
    // a larger chunk after smaller ones (the heap areas grow) and smaller ones after it still round-trip
    const big = Buffer.concat([text, text, text]);
    for (const b of [big, text.subarray(0, 5000), big.subarray(1)]) {
      expect(decodeChunk(encodeChunk(chunk(b)).stored, b.length, where).equals(b)).toBe(true);
    }
  });

  it('stores raw a chunk that compresses, but by less than 1/32', () => {
    // text followed by random bytes: zstd saves ~1/64 of it, not enough to pay for decoding
    const mixed = Buffer.concat([text.subarray(0, 6000), randomBuffer(250_000, 8)]);
    expect(compress(mixed, 1).length).toBeLessThan(mixed.length);
    expect(compress(mixed, 1).length).toBeGreaterThan(mixed.length - mixed.length / 32);
    const enc = encodeChunk(chunk(mixed));
    expect(enc.codec).toBe(CODEC_RAW);
    expect(enc.stored.subarray(1).equals(mixed)).toBe(true);
  });

  it('caps chunks at the same size as the chunker', () => {
    expect(MAX_CHUNK_LENGTH).toBe(MAX_CHUNK_SIZE_LIMIT);
  });

  it('fuzz: mutated stored chunks decode to the right bytes or fail with a typed error', () => {
    const tally = newTally();
    const base = encodeChunk(chunk(text.subarray(0, 64 << 10))).stored;
    const want = text.subarray(0, 64 << 10);
    for (const { index, bytes } of mutate(base, 1500, 17)) {
      expectTypedOrOk(tally, index, () => {
        const out = decodeChunk(bytes, want.length, where);
        // zstd has a content checksum off by default: a decoded result must at least have the right length;
        // identity is then checked by SHA-256 in the pack reader
        expect(out.length).toBe(want.length);
      });
    }
    expect(tally.typed).toBeGreaterThan(500);
    expect(tally.codes.has('CODEC_ZSTD_DATA')).toBe(true);
  });
});
