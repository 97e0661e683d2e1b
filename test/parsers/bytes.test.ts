/** The byte readers against DataView (the platform's own decoder) on random bytes. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { i32le, i64le, u16be, u16le, u32be, u32le, u64be, u64le } from '../../parsers/bytes.js';

describe('byte readers', () => {
  it('decode exactly as DataView does, at every alignment', () => {
    const b = randomBytes(4096);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    for (let off = 0; off + 8 <= b.length; off++) {
      expect(u16le(b, off)).toBe(dv.getUint16(off, true));
      expect(u16be(b, off)).toBe(dv.getUint16(off, false));
      expect(u32le(b, off)).toBe(dv.getUint32(off, true));
      expect(u32be(b, off)).toBe(dv.getUint32(off, false));
      expect(i32le(b, off)).toBe(dv.getInt32(off, true));
      expect(u64le(b, off)).toBe(dv.getBigUint64(off, true));
      expect(u64be(b, off)).toBe(dv.getBigUint64(off, false));
      expect(i64le(b, off)).toBe(dv.getBigInt64(off, true));
    }
  });

  it('refuse to read past the buffer', () => {
    const b = new Uint8Array(8);
    expect(() => u32le(b, 5)).toThrow(RangeError);
    expect(() => u64le(b, 1)).toThrow(RangeError);
    expect(() => u16be(b, -1)).toThrow(RangeError);
  });
});
