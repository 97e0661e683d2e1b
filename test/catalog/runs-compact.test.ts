/**
 * Long runs lists in the compact form (catalog/runs-compact.ts): exact round
 * trips, the form told by the blob's length, a far smaller blob for a disk's
 * regions, and damaged blobs refused with a typed error, never a wrong list.
 */
import { describe, expect, test } from 'vitest';
import {
  COMPACT_MIN_RUNS,
  decodeRuns,
  encodeRuns,
  encodeRunsTransient,
  RUN_BYTES,
  runCountOf,
  type RunRecord,
} from '../../catalog/records.js';
import { isCompactRuns, RunsFormatError } from '../../catalog/runs-compact.js';
import { prng } from '../../transport/prng.js';

/** Regions-like runs: block-aligned, ascending volume offsets with gaps, file offsets contiguous. */
function regionRuns(count: number, seed: number, block = 4096): RunRecord[] {
  const rand = prng(seed);
  const out: RunRecord[] = [];
  let file = 0;
  let vol = block * 2;
  for (let i = 0; i < count; i++) {
    vol += block * Math.floor(rand() * 300);
    const length = block * (1 + Math.floor(rand() * 64));
    out.push({ fileOffset: file, volumeOffset: vol, length });
    file += length;
    vol += length;
  }
  return out;
}

describe('compact runs', () => {
  test('round-trip exactly: regions, holes, unwritten runs, odd offsets, 2^50-byte volumes', () => {
    const lists: RunRecord[][] = [
      regionRuns(7500, 1),
      regionRuns(COMPACT_MIN_RUNS, 2, 512),
      regionRuns(300, 3).map((r, i) => (i % 7 === 0 ? { ...r, volumeOffset: null } : r)),
      regionRuns(300, 4).map((r, i) => (i % 5 === 0 ? { ...r, unwritten: true } : r)),
      regionRuns(100, 5).map((r) => ({ ...r, volumeOffset: (r.volumeOffset ?? 0) + 1 })),
      regionRuns(100, 6).map((r) => ({ ...r, volumeOffset: (r.volumeOffset ?? 0) + 2 ** 50 })),
      // out of order on the volume (a fragmented file): negative deltas
      regionRuns(200, 7)
        .reverse()
        .map((r, i, all) => ({ ...r, fileOffset: all.slice(0, i).reduce((a, x) => a + x.length, 0) })),
    ];
    for (const runs of lists) {
      const blob = encodeRuns(runs);
      expect(isCompactRuns(blob, RUN_BYTES)).toBe(true);
      expect(decodeRuns(blob)).toEqual(runs);
      expect(runCountOf(blob)).toBe(runs.length);
      // the transient encoder (the unchanged-file check compares blobs in SQL) gives the same bytes
      expect(Buffer.compare(encodeRunsTransient(runs), blob)).toBe(0);
    }
  });

  test('short lists keep the fixed form; catalogs written before read as they are', () => {
    const runs = regionRuns(COMPACT_MIN_RUNS - 1, 8);
    const blob = encodeRuns(runs);
    expect(blob.length).toBe(runs.length * RUN_BYTES);
    expect(decodeRuns(blob)).toEqual(runs);
    expect(runCountOf(blob)).toBe(runs.length);
  });

  test('a disk’s regions take a small part of the fixed form', () => {
    const runs = regionRuns(7500, 9);
    const blob = encodeRuns(runs);
    expect(blob.length).toBeLessThan((runs.length * RUN_BYTES) / 5);
  });

  test('values the form cannot hold fall back to the fixed form', () => {
    const runs = regionRuns(100, 10);
    runs[3] = { ...runs[3]!, volumeOffset: Number.MAX_SAFE_INTEGER - 10 };
    const blob = encodeRuns(runs);
    expect(blob.length).toBe(runs.length * RUN_BYTES);
    expect(decodeRuns(blob)).toEqual(runs);
  });

  test('a damaged blob is refused with a typed error or decodes to runs that are all sane', () => {
    const base = encodeRuns(regionRuns(500, 11));
    const rand = prng(12);
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(base);
      const flips = 1 + Math.floor(rand() * 4);
      for (let k = 0; k < flips; k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      const cut = rand() < 0.2 ? b.subarray(0, Math.floor(rand() * b.length)) : b;
      // a cut to a multiple of RUN_BYTES reads as the fixed form, which carries no check of its own
      if (!isCompactRuns(cut, RUN_BYTES)) continue;
      let runs: RunRecord[] | undefined;
      try {
        runs = decodeRuns(cut);
      } catch (e) {
        expect(e).toBeInstanceOf(RunsFormatError);
        expect((e as RunsFormatError).code).toBe('CATALOG_RUNS_FORMAT');
        refused++;
        continue;
      }
      for (const r of runs) {
        expect(Number.isSafeInteger(r.fileOffset) && r.fileOffset >= 0).toBe(true);
        expect(Number.isSafeInteger(r.length) && r.length >= 0).toBe(true);
        if (r.volumeOffset !== null) expect(Number.isSafeInteger(r.volumeOffset) && r.volumeOffset >= 0).toBe(true);
      }
    }
    expect(refused).toBeGreaterThan(1000);
  });
});
