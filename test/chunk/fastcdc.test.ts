import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CdcChunker,
  type ChunkSizes,
  ContentChunker,
  chunkBuffer,
  chunkLengths,
  DEFAULT_CHUNK_SIZES,
  GEAR,
  validateChunkSizes,
} from '../../agent/chunk/fastcdc.js';
import { prng } from '../helpers/fuzz.js';

/** Deterministic pseudo-random bytes (seeded), so a failure replays exactly. */
function randomBuffer(length: number, seed: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.alloc(length);
  for (let i = 0; i + 4 <= length; i += 4) b.writeUInt32LE(Math.floor(rnd() * 2 ** 32), i);
  for (let i = length & ~3; i < length; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

/** Small sizes so that a few MiB hold hundreds of chunks. */
const SMALL: ChunkSizes = { minSize: 2048, avgSize: 8192, maxSize: 65536 };

function feedInPieces(data: Uint8Array, sizes: ChunkSizes, pieceSizes: () => number): number[] {
  const cdc = new CdcChunker(sizes);
  const out: number[] = [];
  for (let pos = 0; pos < data.length;) {
    const n = Math.min(data.length - pos, pieceSizes());
    out.push(...cdc.update(data.subarray(pos, pos + n)));
    pos += n;
  }
  return [...out, ...cdc.finish()];
}

describe('FastCDC gear table', () => {
  it('is the documented SHA-256 derivation of the fixed seed', () => {
    // Rebuilt here independently from the doc comment: first 4 bytes (BE) of SHA-256(seed ‖ u32le(i)).
    for (let i = 0; i < 256; i++) {
      const idx = Buffer.alloc(4);
      idx.writeUInt32LE(i);
      const want = createHash('sha256').update('vdbak fastcdc gear v1').update(idx).digest().readInt32BE(0);
      expect(GEAR[i]).toBe(want);
    }
  });
});

describe('FastCDC boundaries', () => {
  const data = randomBuffer(4 << 20, 7);

  it('are identical whatever the feed sizes', () => {
    const whole = chunkLengths(data, SMALL);
    expect(whole.reduce((a, b) => a + b, 0)).toBe(data.length);
    expect(whole.length).toBeGreaterThan(200);
    const rnd = prng(99);
    const feeds: Array<() => number> = [
      () => 1 + Math.floor(rnd() * 100_000),
      () => 1 + Math.floor(rnd() * 7),
      () => 4096,
      () => 65536,
      () => 3 << 20,
    ];
    for (const f of feeds) expect(feedInPieces(data, SMALL, f)).toEqual(whole);
  });

  it('are the pinned cut points of a fixed input (the same data must chunk the same in every version)', () => {
    const data = Buffer.concat([randomBuffer(24 << 20, 42), Buffer.alloc(9 << 20), randomBuffer(3 << 20, 43)]);
    const digest = (cuts: number[]) => createHash('sha256').update(cuts.join(',')).digest('hex');
    const byDefault = chunkLengths(data, DEFAULT_CHUNK_SIZES);
    expect(byDefault.length).toBe(49);
    expect(digest(byDefault)).toBe('244a9f2119061f9417ff5d7c8e34caabe4e271c8cfe490c380e62d8f348f5d70');
    const small = chunkLengths(data.subarray(0, 4 << 20), SMALL);
    expect(small.length).toBe(452);
    expect(digest(small)).toBe('ff7e5bd15669da32c5cea655e82bbd5525677756c8b1d7e53f49eeeb332ca019');
  });

  it('respect min and max, and average near the target', () => {
    for (const sizes of [SMALL, { minSize: 64, avgSize: 256, maxSize: 1024 }]) {
      const lengths = chunkLengths(data, sizes);
      for (const l of lengths.slice(0, -1)) {
        expect(l).toBeGreaterThanOrEqual(sizes.minSize);
        expect(l).toBeLessThanOrEqual(sizes.maxSize);
      }
      expect(lengths.at(-1)!).toBeLessThanOrEqual(sizes.maxSize);
      const mean = data.length / lengths.length;
      // normalized chunking keeps the mean within [avg, min+avg] on random data
      expect(mean).toBeGreaterThan(sizes.avgSize * 0.8);
      expect(mean).toBeLessThan((sizes.minSize + sizes.avgSize) * 1.25);
    }
  });

  it('cut zeros (no content to key on) at exactly max size', () => {
    const zeros = Buffer.alloc(SMALL.maxSize * 3 + 100);
    expect(chunkLengths(zeros, SMALL)).toEqual([SMALL.maxSize, SMALL.maxSize, SMALL.maxSize, 100]);
  });

  it('handle empty and tiny inputs', () => {
    expect(chunkLengths(new Uint8Array(0), SMALL)).toEqual([]);
    expect(chunkLengths(Buffer.from([42]), SMALL)).toEqual([1]);
    expect(chunkLengths(data.subarray(0, SMALL.minSize), SMALL)).toEqual([SMALL.minSize]);
    expect(chunkBuffer(new Uint8Array(0), SMALL)).toEqual([]);
    const one = chunkBuffer(Buffer.from('abc'), SMALL);
    expect(one).toEqual([{ offset: 0, length: 3, hash: createHash('sha256').update('abc').digest('hex') }]);
    const c = new ContentChunker(SMALL);
    expect(c.push(new Uint8Array(0))).toEqual([]);
    expect(c.end()).toEqual([]);
  });

  it('re-find the same chunks after an insertion near the start (dedup)', () => {
    const big = randomBuffer(16 << 20, 11);
    const before = chunkBuffer(big, SMALL);
    for (const [at, insert] of [
      [1000, 1],
      [5000, 37],
      [20_000, 4096],
    ] as const) {
      const edited = Buffer.concat([big.subarray(0, at), randomBuffer(insert, at), big.subarray(at)]);
      const after = chunkBuffer(edited, SMALL);
      const known = new Set(before.map((c) => c.hash));
      const fresh = after.filter((c) => !known.has(c.hash));
      // only the chunk(s) around the edit change: a cut point is re-found within a couple of chunks
      expect(fresh.length).toBeGreaterThanOrEqual(1);
      expect(fresh.length).toBeLessThanOrEqual(3);
      expect(fresh.every((c) => c.offset < at + insert + 3 * SMALL.maxSize)).toBe(true);
      const freshBytes = fresh.reduce((a, c) => a + c.length, 0);
      expect(freshBytes).toBeLessThan(edited.length / 100);
    }
  });

  it('rejects sizes that cannot work', () => {
    expect(() => validateChunkSizes(DEFAULT_CHUNK_SIZES)).not.toThrow();
    for (const bad of [
      { minSize: 32, avgSize: 256, maxSize: 1024 },
      { minSize: 512, avgSize: 256, maxSize: 1024 },
      { minSize: 128, avgSize: 300, maxSize: 1024 },
      { minSize: 128, avgSize: 1024, maxSize: 1024 },
      { minSize: 128, avgSize: 1024, maxSize: 128 << 20 },
    ]) {
      expect(() => new CdcChunker(bad)).toThrow(RangeError);
    }
  });
});

describe('ContentChunker', () => {
  it('streams the same chunks, bytes and SHA-256 as one whole buffer, and does not keep the caller buffer', () => {
    const data = randomBuffer(3 << 20, 5);
    const want = chunkBuffer(data, SMALL);
    const c = new ContentChunker(SMALL);
    const got: { offset: number; length: number; hash: string }[] = [];
    const reused = Buffer.alloc(10_000);
    const rnd = prng(3);
    for (let pos = 0; pos < data.length;) {
      const n = Math.min(data.length - pos, 1 + Math.floor(rnd() * reused.length));
      data.copy(reused, 0, pos, pos + n);
      for (const ch of c.push(reused.subarray(0, n))) {
        expect(ch.bytes.equals(data.subarray(ch.offset, ch.offset + ch.length))).toBe(true);
        got.push({ offset: ch.offset, length: ch.length, hash: ch.hash });
      }
      reused.fill(0xee); // the chunker must have copied what it keeps
      pos += n;
    }
    for (const ch of c.end()) {
      expect(ch.bytes.equals(data.subarray(ch.offset))).toBe(true);
      got.push({ offset: ch.offset, length: ch.length, hash: ch.hash });
    }
    expect(got).toEqual(want);
    for (const g of got) {
      expect(g.hash).toBe(
        createHash('sha256')
          .update(data.subarray(g.offset, g.offset + g.length))
          .digest('hex'),
      );
    }
  });

  it('starts a new stream at offset 0 after end()', () => {
    const c = new ContentChunker(SMALL);
    const a = randomBuffer(100_000, 1);
    c.push(a);
    c.end();
    const again = [...c.push(a), ...c.end()];
    expect(again.map(({ offset, length, hash }) => ({ offset, length, hash }))).toEqual(chunkBuffer(a, SMALL));
    // plain data: survives structured cloning (worker threads)
    expect(structuredClone(again[0]!)).toEqual({ ...again[0]!, bytes: new Uint8Array(again[0]!.bytes) });
  });
});

describe('ContentChunker with views', () => {
  it('gives the same chunks as copying, views on the pushed buffer where a chunk lies inside it, copies across pushes', () => {
    const data = randomBuffer(6 << 20, 9);
    const want = chunkBuffer(data, SMALL);
    const c = new ContentChunker(SMALL, { views: true });
    const got: { offset: number; length: number; hash: string }[] = [];
    let viewed = 0;
    let copied = 0;
    const block = 1 << 20;
    for (let pos = 0; pos < data.length; pos += block) {
      // a fresh buffer per push, as the backup worker reads
      const fresh = Buffer.from(data.subarray(pos, pos + block));
      for (const ch of c.push(fresh)) {
        expect(ch.bytes.equals(data.subarray(ch.offset, ch.offset + ch.length))).toBe(true);
        if (ch.bytes.buffer === fresh.buffer) viewed++;
        else copied++;
        got.push({ offset: ch.offset, length: ch.length, hash: ch.hash });
      }
    }
    for (const ch of c.end()) got.push({ offset: ch.offset, length: ch.length, hash: ch.hash });
    expect(got).toEqual(want);
    // with 1 MiB pushes and chunks of 4–64 KiB nearly all chunks lie inside one push
    expect(viewed).toBeGreaterThan(copied * 10);
    expect(copied).toBeGreaterThan(0);
  });

  it('reset drops a stream cut short: the next stream starts at offset 0 with the same chunks as alone', () => {
    const a = randomBuffer(300_000, 3);
    const b = randomBuffer(500_000, 4);
    for (const views of [true, false]) {
      const c = new ContentChunker(SMALL, { views });
      c.push(a); // a read that failed half way: its tail is still held
      c.reset();
      const got = [...c.push(b.subarray(0, 123_456)), ...c.push(b.subarray(123_456)), ...c.end()];
      expect(got.map(({ offset, length, hash }) => ({ offset, length, hash }))).toEqual(chunkBuffer(b, SMALL));
    }
  });

  it('a tail kept across pushes is a private copy even with views', () => {
    const data = randomBuffer(200_000, 2);
    const c = new ContentChunker(SMALL, { views: true });
    const buf = Buffer.from(data.subarray(0, 100));
    expect(c.push(buf)).toEqual([]);
    buf.fill(0xee); // the caller reuses its buffer: the 100 kept bytes must not change
    const rest = [...c.push(data.subarray(100)), ...c.end()];
    expect(rest.map(({ offset, length, hash }) => ({ offset, length, hash }))).toEqual(chunkBuffer(data, SMALL));
  });
});
