/**
 * The one small contract every layer reads through (DESIGN.md "BlockDevice").
 *
 * A BlockDevice is a fixed-size, positional, synchronous byte source:
 * - `read(offset, length)` returns exactly `length` bytes or throws a typed
 *   error; it never returns short. Reads are positional: there is no shared
 *   cursor, so a device can serve several readers.
 * - `allocated(offset, length)` lists the ranges that hold data. Everything
 *   else in the device reads as zeros and later layers skip it instead of
 *   reading it (sparse images, unallocated grains, zero clusters).
 *
 * Caching, read-ahead and throttling are wrappers around a BlockDevice, never
 * flags inside one. Sync reads are deliberate: parsers run on worker threads
 * (piscina) where blocking is the cheapest way to read a file.
 */
import { checkRange } from './bytes.js';
import { errorsFor } from './errors.js';

export interface ByteRange {
  offset: number;
  length: number;
}

export interface BlockDevice {
  /** Size in bytes (virtual size for an image). */
  readonly size: number;
  /** What the device is, for error messages (usually the image path). */
  readonly name: string;
  /** Exactly `length` bytes at `offset`; throws a typed error if out of range or unreadable. */
  read(offset: number, length: number): Buffer;
  /**
   * Sorted, non-overlapping, merged ranges inside [offset, offset+length) that
   * hold data. Ranges not listed read as zeros.
   */
  allocated(offset: number, length: number): ByteRange[];
  /** Releases file handles (idempotent). */
  close(): void;
}

/** Merges sorted or unsorted ranges into sorted, non-overlapping, coalesced ranges. */
export function mergeRanges(ranges: ByteRange[]): ByteRange[] {
  const sorted = ranges.filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const out: ByteRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset);
    } else {
      out.push({ offset: r.offset, length: r.length });
    }
  }
  return out;
}

/** Clips ranges to [offset, offset+length). */
export function clipRanges(ranges: ByteRange[], offset: number, length: number): ByteRange[] {
  const end = offset + length;
  const out: ByteRange[] = [];
  for (const r of ranges) {
    const s = Math.max(r.offset, offset);
    const e = Math.min(r.offset + r.length, end);
    if (e > s) out.push({ offset: s, length: e - s });
  }
  return out;
}

/** Sum of the lengths of `ranges`. */
export function totalLength(ranges: ByteRange[]): number {
  let n = 0;
  for (const r of ranges) n += r.length;
  return n;
}

/** Validates a read request against a device size (shared by every implementation). */
export function checkRead(
  dev: { size: number; name: string },
  offset: number,
  length: number,
  layer: 'raw' | 'disk' | 'volume' | 'vmdk' | 'qcow2' = 'disk',
): void {
  checkRange(offset, length, dev.size, errorsFor({ image: dev.name, layer }), 'READ_OUT_OF_RANGE', 'read');
}

/**
 * A window [offset, offset+length) of another device, e.g. one partition.
 * Reads and allocation maps are translated; nothing is copied.
 */
export class SliceDevice implements BlockDevice {
  readonly size: number;
  readonly name: string;
  constructor(
    private readonly parent: BlockDevice,
    private readonly start: number,
    length: number,
    name?: string,
  ) {
    checkRange(
      start,
      length,
      parent.size,
      errorsFor({ image: parent.name, layer: 'volume' }),
      'SLICE_OUT_OF_RANGE',
      'volume',
    );
    this.size = length;
    this.name = name ?? `${parent.name}@${start}`;
  }
  read(offset: number, length: number): Buffer {
    checkRead(this, offset, length, 'volume');
    return this.parent.read(this.start + offset, length);
  }
  allocated(offset: number, length: number): ByteRange[] {
    checkRead(this, offset, length, 'volume');
    return this.parent
      .allocated(this.start + offset, length)
      .map((r) => ({ offset: r.offset - this.start, length: r.length }));
  }
  close(): void {
    /* the parent owns the handles */
  }
}

/** An in-memory device, for tests and for tiny structures. */
export class MemoryDevice implements BlockDevice {
  readonly size: number;
  constructor(
    private readonly bytes: Uint8Array,
    readonly name = 'memory',
  ) {
    this.size = bytes.length;
  }
  read(offset: number, length: number): Buffer {
    checkRead(this, offset, length);
    return Buffer.from(this.bytes.subarray(offset, offset + length));
  }
  allocated(offset: number, length: number): ByteRange[] {
    checkRead(this, offset, length);
    return length > 0 ? [{ offset, length }] : [];
  }
  close(): void {}
}
