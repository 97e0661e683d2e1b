/**
 * ext names are bytes; decodeName/encodeName must round-trip any byte string
 * and leave valid UTF-8 exactly as Node's own decoder reads it.
 */
import { expect, test } from 'vitest';
import { decodeName, encodeName } from '../../parsers/fs/ext/names.js';
import { prng } from '../helpers/fuzz.js';

test('any 1–255 byte name round-trips; valid UTF-8 decodes as TextDecoder does', () => {
  const rnd = prng(3);
  const strict = new TextDecoder('utf-8', { fatal: true });
  let invalid = 0;
  for (let n = 0; n < 5000; n++) {
    const len = 1 + Math.floor(rnd() * 255);
    const b = new Uint8Array(len);
    // Mostly ASCII and well-formed sequences, with some raw high bytes mixed in.
    for (let i = 0; i < len; i++) b[i] = rnd() < 0.8 ? 0x20 + Math.floor(rnd() * 0x5f) : Math.floor(rnd() * 256);
    const s = decodeName(b);
    expect(encodeName(s)).toEqual(Buffer.from(b));
    let valid: string | undefined;
    try {
      valid = strict.decode(b);
    } catch {
      invalid++;
    }
    if (valid !== undefined) expect(s).toBe(valid);
    else expect(/[\udc80-\udcff]/.test(s)).toBe(true);
  }
  expect(invalid).toBeGreaterThan(1000);
  for (const s of ['é', '日本語', '🎉', 'a\u{10ffff}b']) expect(decodeName(Buffer.from(s))).toBe(s);
  // Overlong encodings, surrogates and bytes past U+10FFFF are not UTF-8: escaped byte by byte.
  for (const bad of [
    [0xc0, 0xaf],
    [0xed, 0xa0, 0x80],
    [0xf4, 0x90, 0x80, 0x80],
    [0xe2, 0x82],
  ]) {
    expect(decodeName(Uint8Array.from(bad))).toBe(String.fromCharCode(...bad.map((x) => 0xdc00 + x)));
  }
});
