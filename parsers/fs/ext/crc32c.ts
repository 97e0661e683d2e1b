/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) as ext4 uses it for
 * metadata_csum: the raw register update with no final inversion
 * (the kernel's `crc32c(crc, data, len)`), so callers pass the seed
 * (0xffffffff, or the filesystem's checksum seed) and compare the result as is.
 * Spec: kernel Documentation/filesystems/ext4/checksums.rst.
 */

const POLY = 0x82f63b78;

/** Slicing-by-8 tables: TABLES[k][b] is the CRC of byte b followed by k zero bytes. */
const TABLES: Uint32Array[] = (() => {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  const t0 = t[0] as Uint32Array;
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t0[i] = c >>> 0;
  }
  for (let i = 0; i < 256; i++) {
    for (let k = 1; k < 8; k++) {
      const prev = (t[k - 1] as Uint32Array)[i] as number;
      (t[k] as Uint32Array)[i] = ((prev >>> 8) ^ (t0[prev & 0xff] as number)) >>> 0;
    }
  }
  return t;
})();

const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES as [
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
];

/** Continues a CRC-32C register over data[start, end) (no pre- or post-inversion). */
export function crc32c(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  let c = crc >>> 0;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const a = (c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
    c =
      T7[a & 0xff]! ^
      T6[(a >>> 8) & 0xff]! ^
      T5[(a >>> 16) & 0xff]! ^
      T4[a >>> 24]! ^
      T3[data[i + 4]!]! ^
      T2[data[i + 5]!]! ^
      T1[data[i + 6]!]! ^
      T0[data[i + 7]!]!;
  }
  for (; i < end; i++) c = (c >>> 8) ^ T0[(c ^ data[i]!) & 0xff]!;
  return c >>> 0;
}

/** CRC-32C register continued over `n` zero bytes (a checksum field read as zeros). */
export function crc32cZeros(crc: number, n: number): number {
  let c = crc >>> 0;
  for (let k = 0; k < n; k++) c = (c >>> 8) ^ T0[c & 0xff]!;
  return c >>> 0;
}

/** CRC-32C register continued over one little-endian u32. */
export function crc32cU32(crc: number, v: number): number {
  let c = crc >>> 0;
  for (let k = 0; k < 4; k++) c = (c >>> 8) ^ T0[(c ^ (v >>> (8 * k))) & 0xff]!;
  return c >>> 0;
}
