/**
 * Little-endian field readers for the hot paths of the ext reader (one call
 * per inode field, millions of times per walk). Same results as u16le/u32le
 * of parsers/bytes.ts, by byte arithmetic instead of a DataView per call.
 * Callers only read inside structures whose length they checked first.
 */

export function le16(b: Uint8Array, off: number): number {
  return (b[off] as number) | ((b[off + 1] as number) << 8);
}

export function le32(b: Uint8Array, off: number): number {
  return (
    ((b[off] as number) | ((b[off + 1] as number) << 8) | ((b[off + 2] as number) << 16)) +
    (b[off + 3] as number) * 0x1000000
  );
}

export function le32s(b: Uint8Array, off: number): number {
  return le32(b, off) | 0;
}
