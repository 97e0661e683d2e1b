/**
 * Span walking shared by the VMDK extents that map the disk through a grain
 * directory (GD) of grain tables (GT) with one entry per grain: ESX "COWD"
 * (cowd.ts) and SEsparse (sesparse.ts). Each format decodes its own entries;
 * this module turns them into runs: whole missing grain tables, runs of equal
 * non-data grains, and runs of grains stored one after another in the file.
 * A run never crosses the end of a grain table.
 */
import type { Errors } from '../../errors.js';

/** A grain entry that says "not in this extent: read the parent". */
export const GRAIN_ABSENT = -1;
/** A grain entry that says "zeros" (without reading the parent). */
export const GRAIN_ZERO = -2;

export interface GrainGeometry {
  /** Bytes of virtual disk the extent covers. */
  readonly size: number;
  readonly grainBytes: number;
  /** Virtual bytes one grain table covers. */
  readonly gtCover: number;
  /** Byte offset of each needed grain table in the file, 0 = absent. */
  readonly gd: Float64Array;
  /** How much a data entry grows from one grain to the next one stored right after it. */
  readonly dataStep: number;
  /**
   * Entry `index` of the grain table behind GD entry `gdIndex` (which is
   * present): GRAIN_ABSENT, GRAIN_ZERO, or the grain's position (>= 0).
   */
  grain(gdIndex: number, index: number): number;
}

export type GrainRun =
  | { kind: 'absent'; length: number }
  | { kind: 'zero'; length: number }
  /** Grains `first` … `last` (positions), the last at entry `index` of table `gdIndex`. */
  | { kind: 'data'; length: number; first: number; last: number; gdIndex: number; index: number };

/** The run of equal kind at `offset`, at most `maxLength` bytes long. */
export function grainRun(g: GrainGeometry, err: Errors, offset: number, maxLength: number): GrainRun {
  if (
    !Number.isSafeInteger(offset) ||
    offset < 0 ||
    offset >= g.size ||
    !Number.isSafeInteger(maxLength) ||
    maxLength <= 0
  ) {
    throw err.corrupt('VMDK_SPAN_RANGE', `span at ${offset} (+${maxLength}) outside the extent of ${g.size}`, {
      offset,
    });
  }
  const end = Math.min(g.size, offset + maxLength);
  let gdIndex = Math.floor(offset / g.gtCover);
  if ((g.gd[gdIndex] ?? 0) === 0) {
    // whole grain tables missing: one absent run over all of them
    let stop = (gdIndex + 1) * g.gtCover;
    while (stop < end && (g.gd[++gdIndex] ?? 0) === 0) stop += g.gtCover;
    return { kind: 'absent', length: Math.min(stop, end) - offset };
  }
  const gtStart = gdIndex * g.gtCover;
  const gtEnd = Math.min(end, gtStart + g.gtCover);
  let i = Math.floor((offset - gtStart) / g.grainBytes);
  const first = g.grain(gdIndex, i);
  let stop = gtStart + (i + 1) * g.grainBytes;
  if (first < 0) {
    while (stop < gtEnd && g.grain(gdIndex, i + 1) === first) {
      i++;
      stop += g.grainBytes;
    }
    return { kind: first === GRAIN_ZERO ? 'zero' : 'absent', length: Math.min(stop, gtEnd) - offset };
  }
  // grains stored one after another in the file make one data run
  let last = first;
  while (stop < gtEnd && g.grain(gdIndex, i + 1) === last + g.dataStep) {
    i++;
    last += g.dataStep;
    stop += g.grainBytes;
  }
  return { kind: 'data', length: Math.min(stop, gtEnd) - offset, first, last, gdIndex, index: i };
}

/** Decoded grain tables by GD index, at most `limit` at once (the oldest goes first). */
export class GrainTableCache {
  private readonly tables = new Map<number, Uint32Array>();

  constructor(
    private readonly limit: number,
    private readonly load: (gdIndex: number) => Uint32Array,
  ) {}

  get(gdIndex: number): Uint32Array {
    const cached = this.tables.get(gdIndex);
    if (cached) return cached;
    const gt = this.load(gdIndex);
    if (this.tables.size >= this.limit) {
      const oldest = this.tables.keys().next().value;
      if (oldest !== undefined) this.tables.delete(oldest);
    }
    this.tables.set(gdIndex, gt);
    return gt;
  }

  clear(): void {
    this.tables.clear();
  }
}
