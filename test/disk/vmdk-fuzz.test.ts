/**
 * Mutation fuzzing of real qemu-made VMDKs: headers, grain directories and
 * tables, grain markers, footers and descriptor text. Every case must either
 * open and read consistently (what allocated() leaves out reads as zeros, a
 * piecewise read equals a whole read) or throw one of our typed errors.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDisk } from '../../parsers/disk/open.js';
import { fixture } from '../helpers/fixtures.js';
import { expectTypedOrOk, type FuzzTally, mutate, newTally, type Region } from '../helpers/fuzz.js';

const dir = fixture('vmdk-fuzz.sh');
const corpus = fixture('vmdk-corpus.sh');
const scratch = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'vdbak-vmdk-fuzz-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const WINDOW = 1024 * 1024;
const ZEROS = Buffer.alloc(WINDOW);
const isZero = (b: Buffer) => b.equals(ZEROS.subarray(0, b.length));

/** Opens `path`, reads up to 1 MiB whole and piecewise, and checks it against the allocation map. */
function exercise(path: string): void {
  const dev = openDisk(path);
  try {
    const len = Math.min(dev.size, WINDOW);
    const whole = dev.read(0, len);
    const map = dev.allocated(0, len);
    let pos = 0;
    for (const r of [...map, { offset: len, length: 0 }]) {
      if (!isZero(whole.subarray(pos, r.offset))) throw new Error(`unallocated bytes at ${pos} are not zero`);
      pos = r.offset + r.length;
    }
    for (let off = 0; off < len; off += 12_345) {
      const n = Math.min(12_345, len - off);
      if (!dev.read(off, n).equals(whole.subarray(off, off + n))) throw new Error(`piecewise read differs at ${off}`);
    }
    if (dev.size > len) dev.read(dev.size - 1, 1);
  } finally {
    dev.close();
  }
}

function u64At(b: Buffer, at: number): number {
  return Number(b.readBigUInt64LE(at));
}

/** Header, descriptor, both grain directories and every grain table of a qemu sparse file; plus each grain's first bytes. */
function sparseRegions(b: Buffer, withGrainHeads: boolean): Region[] {
  const regions: Region[] = [{ start: 0, end: 512 }];
  const desc = u64At(b, 28) * 512;
  if (desc > 0) regions.push({ start: desc, end: desc + u64At(b, 36) * 512 });
  const overhead = u64At(b, 64) * 512;
  const rgd = u64At(b, 48) * 512;
  if (rgd > 0 && rgd < overhead) regions.push({ start: rgd, end: overhead });
  if (withGrainHeads) {
    const gd = u64At(b, 56) * 512;
    const gt = b.readUInt32LE(gd) * 512;
    for (let i = 0; i < 512; i++) {
      const g = b.readUInt32LE(gt + i * 4) * 512;
      if (g > 1) regions.push({ start: g, end: g + 16 });
    }
  }
  return regions;
}

function fuzzFile(tally: FuzzTally, name: string, base: Buffer, count: number, seed: number, regions: Region[]) {
  const path = join(scratch, name);
  for (const { index, bytes } of mutate(base, count, seed, regions)) {
    writeFileSync(path, bytes);
    expectTypedOrOk(tally, index, () => exercise(path));
  }
}

describe('vmdk fuzz', () => {
  it('monolithicSparse: header, descriptor, grain directories and tables', () => {
    const tally = newTally();
    const base = readFileSync(join(dir, 'monolithicSparse.vmdk'));
    fuzzFile(tally, 'ms.vmdk', base, 1000, 11, sparseRegions(base, false));
    expect(tally.ok + tally.typed).toBe(1000);
    expect(tally.typed).toBeGreaterThan(50);
  });

  it('streamOptimized: header, tables and grain markers', () => {
    const tally = newTally();
    const base = readFileSync(join(dir, 'streamOptimized.vmdk'));
    fuzzFile(tally, 'so.vmdk', base, 1000, 12, sparseRegions(base, true));
    expect(tally.ok + tally.typed).toBe(1000);
    expect(tally.typed).toBeGreaterThan(50);
  });

  it('streamOptimized with the grain directory at the end: footer and end-of-stream markers', () => {
    const tally = newTally();
    const base = readFileSync(join(corpus, 'diskaccesslibrary', 'StreamOptimized.vmdk'));
    fuzzFile(tally, 'dal.vmdk', base, 400, 13, [
      { start: 0, end: 512 },
      { start: base.length - 1536, end: base.length },
    ]);
    expect(tally.ok + tally.typed).toBe(400);
    expect(tally.codes.has('VMDK_FOOTER_MARKERS')).toBe(true);
  });

  it('descriptor text of a twoGbMaxExtentSparse disk', () => {
    const tally = newTally();
    copyFileSync(join(dir, 'twoGbMaxExtentSparse-s001.vmdk'), join(scratch, 'twoGbMaxExtentSparse-s001.vmdk'));
    const text = readFileSync(join(dir, 'twoGbMaxExtentSparse.vmdk'));
    const end = text.indexOf(0) > 0 ? text.indexOf(0) : text.length;
    fuzzFile(tally, 'two.vmdk', text.subarray(0, end), 600, 14, []);
    expect(tally.ok + tally.typed).toBe(600);
    expect(tally.ok).toBeGreaterThan(0);
  });

  it("a snapshot's embedded descriptor (parentCID, parentFileNameHint) and tables", () => {
    const tally = newTally();
    copyFileSync(join(dir, 'monolithicSparse.vmdk'), join(scratch, 'monolithicSparse.vmdk'));
    const base = readFileSync(join(dir, 'child.vmdk'));
    fuzzFile(tally, 'child.vmdk', base, 600, 15, sparseRegions(base, true));
    expect(tally.ok + tally.typed).toBe(600);
    expect(tally.codes.size).toBeGreaterThan(3);
  });
});
