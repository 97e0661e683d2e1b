/**
 * Little helpers for decoding untrusted bytes safely.
 *
 * - 64-bit fields are read as bigint and become `number` only through
 *   `toSafeNumber`, which refuses anything past Number.MAX_SAFE_INTEGER.
 * - `checkRange` / `checkCount` are the one place where an untrusted
 *   offset, length or count is compared with a cap and with what the input
 *   can hold, before anything is allocated or looped over.
 * - Struct layouts are plain `as const` offset tables next to their parser;
 *   `assertLayout` checks once, at module load, that a table fits its size.
 */
import type { Errors } from './errors.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;

/** Largest virtual disk we accept (VMFS6 allows 62 TiB; qcow2 can say more): 256 TiB. */
export const MAX_DISK_SIZE = 256 * TiB;

function outOfRange(b: Uint8Array, off: number, n: number): never {
  throw new RangeError(`${n}-byte read at ${off} past buffer of ${b.length}`);
}

// Plain byte arithmetic: no DataView per call (these sit on every parser's hot path).
// A read past the buffer is a RangeError: a parser bug, since callers check lengths first.
export function u8(b: Uint8Array, off: number): number {
  const v = b[off];
  if (v === undefined) outOfRange(b, off, 1);
  return v;
}
export function u16le(b: Uint8Array, off: number): number {
  if (off < 0 || off + 2 > b.length) outOfRange(b, off, 2);
  return b[off]! | (b[off + 1]! << 8);
}
export function u32le(b: Uint8Array, off: number): number {
  if (off < 0 || off + 4 > b.length) outOfRange(b, off, 4);
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16)) + b[off + 3]! * 0x1000000;
}
export function i32le(b: Uint8Array, off: number): number {
  if (off < 0 || off + 4 > b.length) outOfRange(b, off, 4);
  return b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24);
}
export function u64le(b: Uint8Array, off: number): bigint {
  return (BigInt(u32le(b, off + 4)) << 32n) | BigInt(u32le(b, off));
}
export function i64le(b: Uint8Array, off: number): bigint {
  return (BigInt(i32le(b, off + 4)) << 32n) | BigInt(u32le(b, off));
}
export function u16be(b: Uint8Array, off: number): number {
  if (off < 0 || off + 2 > b.length) outOfRange(b, off, 2);
  return (b[off]! << 8) | b[off + 1]!;
}
export function u32be(b: Uint8Array, off: number): number {
  if (off < 0 || off + 4 > b.length) outOfRange(b, off, 4);
  return b[off]! * 0x1000000 + ((b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!);
}
export function u64be(b: Uint8Array, off: number): bigint {
  return (BigInt(u32be(b, off)) << 32n) | BigInt(u32be(b, off + 4));
}

/** The one checked way from a 64-bit on-disk value to a JS number. */
export function toSafeNumber(v: bigint, err: Errors, code: string, what: string, offset?: number): number {
  if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw err.limit(code, `${what} ${v} does not fit a safe integer`, { offset, value: v.toString() });
  }
  return Number(v);
}

/** Reads a u64le field and converts it through `toSafeNumber`. */
export function u64leNum(
  b: Uint8Array,
  off: number,
  err: Errors,
  code: string,
  what: string,
  fieldOffset?: number,
): number {
  return toSafeNumber(u64le(b, off), err, code, what, fieldOffset ?? off);
}

/**
 * Checks that [offset, offset+length) lies inside [0, limit). Use it for every
 * untrusted offset/length before a read or an allocation.
 */
export function checkRange(
  offset: number,
  length: number,
  limit: number,
  err: Errors,
  code: string,
  what: string,
  at?: number,
): void {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > limit
  ) {
    throw err.corrupt(code, `${what} [${offset}, +${length}) lies outside [0, ${limit})`, {
      offset: at ?? offset,
      length,
      limit,
    });
  }
}

/** Checks an untrusted count against a hard cap (and optionally what the input can hold). */
export function checkCount(n: number, cap: number, err: Errors, code: string, what: string, at?: number): void {
  if (!Number.isSafeInteger(n) || n < 0 || n > cap) {
    throw err.limit(code, `${what} ${n} exceeds the limit ${cap}`, { offset: at, value: n, cap });
  }
}

/** Asserts (at module load) that an offset table fits in a structure of `size` bytes. */
export function assertLayout(name: string, size: number, fields: Record<string, readonly [number, number]>): void {
  for (const [field, [off, len]] of Object.entries(fields)) {
    if (off < 0 || off + len > size) {
      throw new Error(`layout ${name}.${field} [${off}, +${len}) exceeds its size ${size}`);
    }
  }
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/** Decodes an ASCII/Latin-1 field, stopping at the first NUL. */
export function cString(b: Uint8Array, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const z = s.indexOf(0);
  return Buffer.from(z >= 0 ? s.subarray(0, z) : s).toString('latin1');
}

/** Formats 16 bytes in the mixed-endian GUID layout used by GPT and Microsoft formats. */
export function guidToString(b: Uint8Array, off = 0): string {
  const h = (i: number) => (b[off + i] ?? 0).toString(16).padStart(2, '0');
  return (
    h(3) +
    h(2) +
    h(1) +
    h(0) +
    '-' +
    h(5) +
    h(4) +
    '-' +
    h(7) +
    h(6) +
    '-' +
    h(8) +
    h(9) +
    '-' +
    h(10) +
    h(11) +
    h(12) +
    h(13) +
    h(14) +
    h(15)
  );
}
