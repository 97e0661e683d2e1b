import { describe, expect, it } from 'vitest';
import { GEAR } from '../../agent/chunk/fastcdc.js';
import { jsGearScanner, wasmGearScanner } from '../../agent/chunk/gear-scan.js';
import { prng } from '../helpers/fuzz.js';

function randomBuffer(length: number, seed: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

/** The gear loop as fastcdc.ts documents it, one byte at a time. */
function reference(data: Uint8Array, from: number, to: number, h: number, mask: number): [number, number] {
  for (let j = from; j < to; j++) {
    h = ((h << 1) + GEAR[data[j]!]!) | 0;
    if ((h & mask) === 0) return [j + 1, h];
  }
  return [-1, h];
}

const topMask = (bits: number): number => (((1 << bits) - 1) << (32 - bits)) | 0;

describe('gear scanners', () => {
  const wasm = wasmGearScanner(GEAR);
  const js = jsGearScanner(GEAR);

  it('has a WebAssembly build on this Node', () => {
    expect(wasm).toBeDefined();
  });

  it('find the same cut and hash as the documented loop, both builds, across block boundaries', () => {
    const data = randomBuffer(600_000, 11);
    const rnd = prng(12);
    let hits = 0;
    let misses = 0;
    for (let i = 0; i < 400; i++) {
      const from = Math.floor(rnd() * 300_000);
      const to = Math.min(data.length, from + Math.floor(rnd() * 280_000));
      const h = Math.floor(rnd() * 2 ** 32) | 0;
      const mask = topMask(8 + Math.floor(rnd() * 14)); // cuts every 256 B to every 2 MiB
      const [cut, after] = reference(data, from, to, h, mask);
      for (const s of [wasm!, js]) {
        expect(s.scan(data, from, to, h, mask)).toBe(cut);
        expect(s.h).toBe(after);
      }
      if (cut >= 0) hits++;
      else misses++;
    }
    expect(hits).toBeGreaterThan(50);
    expect(misses).toBeGreaterThan(50);
  });

  it('cut on the last byte of a 64 KiB block and on the first byte of the next', () => {
    const data = randomBuffer(300_000, 13);
    // positions whose hash has few bits set: a mask of the other bits cuts there and (almost surely) nowhere before
    const popcount = (x: number): number => x.toString(2).replace(/0/g, '').length;
    const spots: [number, number][] = [];
    let h = 0;
    for (let p = 0; p < data.length && spots.length < 3; p++) {
      h = ((h << 1) + GEAR[data[p]!]!) | 0;
      if (p > 140_000 && popcount(h >>> 0) <= 7) spots.push([p, h]);
    }
    expect(spots.length).toBe(3);
    const BLOCK = 64 * 1024;
    for (const [p, hp] of spots) {
      for (const from of [p + 1 - BLOCK, p - BLOCK, p + 1 - 2 * BLOCK]) {
        const [cut, after] = reference(data, from, data.length, 0, ~hp);
        expect(cut).toBe(p + 1);
        for (const s of [wasm!, js]) {
          expect(s.scan(data, from, data.length, 0, ~hp)).toBe(cut);
          expect(s.h).toBe(after);
        }
      }
    }
  });

  it('leave the hash unchanged on an empty span', () => {
    for (const s of [wasm!, js]) {
      expect(s.scan(Buffer.alloc(10), 5, 5, 1234, topMask(10))).toBe(-1);
      expect(s.h).toBe(1234);
    }
  });
});
