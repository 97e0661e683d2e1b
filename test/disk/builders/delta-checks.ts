/**
 * Checks shared by the tests of the snapshot-delta extents (COWD, SEsparse):
 * qemu-img convert as the content oracle, openDisk of a built delta over a
 * flat base (and alone) against qemu-img, patched copies of a good delta that
 * must give typed errors, and a fuzz campaign over a built delta whose
 * accepted mutants are compared with qemu-img.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { openDisk } from '../../../parsers/disk/open.js';
import type { ExtentReader } from '../../../parsers/disk/vmdk/extent.js';
import type { ErrorKind } from '../../../parsers/errors.js';
import { run, sha256 } from '../../helpers/fixtures.js';
import { expectTypedOrOk, mutate, newTally, type Region } from '../../helpers/fuzz.js';
import { writeDelta, writeFlatBase } from './descriptor.js';
import { expectVmdkError } from './errors.js';
import { walkExtent } from './fuzz-read.js';
import { type ImageFile, qemuDataRanges, readExtent } from './image.js';

/** The whole virtual disk of `descriptor` as qemu-img convert reads it. */
export function qemuRaw(dir: string, descriptor: string): Buffer {
  const out = join(dir, 'qemu-out.raw');
  run('qemu-img', ['convert', '-O', 'raw', descriptor, out]);
  const b = readFileSync(out);
  rmSync(out);
  return b;
}

/**
 * Writes `extent` as delta `name` over a flat base holding `parent`, then
 * checks that openDisk of the delta with its parent and alone reads
 * `expected(parent)` / `expected(null)`, as qemu-img does, and maps as qemu-img map.
 */
export function expectDeltaDiskLikeQemu(
  dir: string,
  name: string,
  delta: { createType: string; extentType: string; capacitySectors: number; extent: ImageFile },
  parent: Buffer,
  expected: (parent: Buffer | null) => Buffer,
): void {
  const bytes = delta.capacitySectors * 512;
  writeFlatBase(dir, parent);
  const d = writeDelta(dir, `${name}-disk`, delta.createType, delta.extentType, delta.capacitySectors, delta.extent);
  for (const [desc, want] of [
    [d.withParent, expected(parent)],
    [d.alone, expected(null)],
  ] as const) {
    const disk = openDisk(desc);
    try {
      expect(disk.size).toBe(bytes);
      expect(sha256(disk.read(0, bytes))).toBe(sha256(want));
      expect(sha256(qemuRaw(dir, desc))).toBe(sha256(want));
      expect(disk.allocated(0, bytes)).toEqual(qemuDataRanges(run('qemu-img', ['map', '--output=json', desc])));
    } finally {
      disk.close();
    }
  }
}

/** Changes a copy of a good file in place, or returns a new (e.g. cut) buffer. */
export type Patch = (b: Buffer) => Buffer | undefined;
/** A defect: its name, the patch, and the error code, field offset and kind it must give. */
export type PatchCase = [what: string, patch: Patch, code: string, offset: number, kind: ErrorKind];

/**
 * A temporary folder (removed after the tests; call inside a describe) and a
 * writer of patched copies of `good` into it, each returning its path.
 */
export function patchedCopies(prefix: string, good: Uint8Array): (patch: Patch) => string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  return (patch) => {
    const b = Buffer.from(good);
    const path = join(dir, `bad-${n++}.vmdk`);
    writeFileSync(path, patch(b) ?? b);
    return path;
  };
}

/** One test per case: opening the patched copy throws that typed error at that offset. */
export function itRejectsPatches(
  cases: PatchCase[],
  variant: (patch: Patch) => string,
  open: (path: string) => unknown,
): void {
  for (const [what, patch, code, offset, kind] of cases) {
    it(`${what}: ${code} at ${offset}`, () => {
      const path = variant(patch);
      expectVmdkError(() => open(path), { image: path, code, offset, kind });
    });
  }
}

/** Opens an extent and walks all of it (the fuzz case), closing it whatever happens. */
export function openAndWalk(open: () => ExtentReader): void {
  const e = open();
  try {
    walkExtent(e);
  } finally {
    e.close();
  }
}

export interface BuiltFuzzCampaign {
  /** For the log line, e.g. "COWD fuzz, header". */
  label: string;
  base: Uint8Array;
  count: number;
  seed: number;
  regions: Region[];
  /** Where each mutant is written, and the descriptor that makes qemu-img read it. */
  file: string;
  desc: string;
  open: () => ExtentReader;
  /** True when the mutant's capacity field is intact, so that qemu-img reads the same size. */
  sameCapacity: (bytes: Uint8Array) => boolean;
}

/**
 * Every mutant must open and walk or throw a typed error; every 10th accepted
 * mutant with an intact capacity is read in full and compared with qemu-img
 * convert. Both outcomes must be reached, and accepted mutants must meet qemu.
 */
export function fuzzBuiltDelta(c: BuiltFuzzCampaign): void {
  const tally = newTally();
  let compared = 0;
  let eligible = 0;
  for (const { index, bytes } of mutate(c.base, c.count, c.seed, c.regions)) {
    writeFileSync(c.file, bytes);
    let accepted = false;
    expectTypedOrOk(tally, index, () => {
      openAndWalk(c.open);
      accepted = true;
    });
    if (accepted && c.sameCapacity(bytes) && eligible++ % 10 === 0) {
      const e = c.open();
      const ours = readExtent(e);
      e.close();
      const out = join(dirname(c.file), 'qemu.raw');
      run('qemu-img', ['convert', '-O', 'raw', c.desc, out]);
      expect(sha256(ours), `mutant ${index}`).toBe(sha256(readFileSync(out)));
      compared++;
    }
  }
  console.log(`${c.label}: ${tally.ok} ok, ${tally.typed} typed, ${compared} compared with qemu`, [...tally.codes]);
  expect(tally.ok).toBeGreaterThan(c.count / 20);
  expect(tally.typed).toBeGreaterThan(c.count / 10);
  expect(compared).toBeGreaterThan(3);
}
