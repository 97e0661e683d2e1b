/**
 * Mutation fuzzing of real qcow2 images (made by qemu-img, test/fixtures/qcow2-bad.sh):
 * the header and extensions, the L1 table, the L2 tables and the compressed
 * clusters are mutated in turn. Opening, reading and mapping a mutated image
 * must either succeed or throw one of our typed errors.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDisk } from '../../parsers/disk/open.js';
import { HEADER } from '../../parsers/disk/qcow2/header.js';
import { isVdbakError } from '../../parsers/errors.js';
import { fixture, sha256 } from '../helpers/fixtures.js';
import { expectTypedOrOk, mutate, newTally, type Region } from '../helpers/fuzz.js';
import { deviceSha256 } from './qcow2-helpers.js';

const dir = fixture('qcow2-bad.sh');
const scratch = mkdtempSync(join(tmpdir(), 'vdbak-qcow2-fuzz-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
copyFileSync(join(dir, 'fz-base.qcow2'), join(scratch, 'fz-base.qcow2'));

const CASES_PER_REGION = 300;
const MiB = 1024 * 1024;

/** The regions of a valid image worth mutating, found by reading its own tables. */
function regionsOf(b: Buffer): Record<string, Region[]> {
  const clusterSize = 2 ** b.readUInt32BE(HEADER.clusterBits[0]);
  const l1 = Number(b.readBigUInt64BE(HEADER.l1TableOffset[0]));
  const l1Size = b.readUInt32BE(HEADER.l1Size[0]);
  const l2: Region[] = [];
  const compressed: Region[] = [];
  for (let i = 0; i < l1Size; i++) {
    const table = Number(b.readBigUInt64BE(l1 + i * 8) & 0x00ff_ffff_ffff_fe00n);
    if (table === 0) continue;
    l2.push({ start: table, end: table + clusterSize });
    for (let j = 0; j < clusterSize / 8 && compressed.length < 64; j++) {
      const entry = b.readBigUInt64BE(table + j * 8);
      if (entry & (1n << 62n)) {
        const host = Number(entry & ((1n << BigInt(70 - Math.log2(clusterSize))) - 1n));
        compressed.push({ start: host, end: host + 64 });
      }
    }
  }
  const regions: Record<string, Region[]> = {
    header: [{ start: 0, end: Math.min(clusterSize, 512) }],
    l1: [{ start: l1, end: l1 + l1Size * 8 }],
    l2,
  };
  if (compressed.length > 0) regions.compressed = compressed;
  return regions;
}

/** Opens, reads and maps a (mutated) image; bounded so a grown virtual size stays cheap. */
function exercise(path: string): void {
  const dev = openDisk(path);
  try {
    const head = Math.min(dev.size, MiB);
    dev.read(0, head);
    dev.allocated(0, Math.min(dev.size, 4 * MiB));
    if (dev.size > head) {
      const tail = Math.min(dev.size - head, 64 * 1024);
      dev.read(dev.size - tail, tail);
      dev.allocated(dev.size - tail, tail);
    }
  } finally {
    dev.close();
  }
}

describe('qcow2 fuzz: mutated headers, L1/L2 tables and compressed clusters', () => {
  const images = ['fz-v3-512-deflate.qcow2', 'fz-v3-4k-zstd.qcow2', 'fz-v2-4k.qcow2', 'fz-top.qcow2'];
  for (const name of images) {
    it(`${name}: only typed errors or successful reads`, () => {
      const base = readFileSync(join(dir, name));
      exercise(join(dir, name));
      const regions = regionsOf(base);
      const target = join(scratch, name);
      const tally = newTally();
      let seed = 1;
      for (const [, rs] of Object.entries(regions)) {
        for (const { index, bytes } of mutate(base, CASES_PER_REGION, seed++, rs)) {
          writeFileSync(target, bytes);
          expectTypedOrOk(tally, index, () => exercise(target));
        }
      }
      expect(tally.ok + tally.typed).toBe(Object.keys(regions).length * CASES_PER_REGION);
      // the mutations must reach the checks, not only bytes nobody reads
      expect(tally.typed).toBeGreaterThan(CASES_PER_REGION / 4);
      expect(tally.codes.size).toBeGreaterThanOrEqual(10);
    });
  }
});

/** sha256 of `qemu-img convert -O raw`, or null when qemu refuses the image. */
function qemuSha(path: string): string | null {
  const out = `${path}.raw`;
  const r = spawnSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path, out], { timeout: 20_000 });
  try {
    return r.status === 0 ? sha256(readFileSync(out)) : null;
  } finally {
    rmSync(out, { force: true });
  }
}

describe('qcow2 fuzz against qemu: when both read a mutated image, both read the same bytes', () => {
  const CASES = 100;
  for (const name of ['fz-v3-512-deflate.qcow2', 'fz-v3-4k-zstd.qcow2', 'fz-v2-4k.qcow2', 'fz-top.qcow2']) {
    it(`${name}`, () => {
      const base = readFileSync(join(dir, name));
      const regions = Object.values(regionsOf(base)).flat();
      const target = join(scratch, `oracle-${name}`);
      let compared = 0;
      for (const { index, bytes } of mutate(base, CASES, 1000 + name.length, regions)) {
        writeFileSync(target, bytes);
        let ours: string | null = null;
        try {
          const dev = openDisk(target);
          try {
            if (dev.size <= 4 * MiB) ours = deviceSha256(dev);
          } finally {
            dev.close();
          }
        } catch (e) {
          if (!isVdbakError(e)) throw e;
        }
        if (ours === null) continue;
        const theirs = qemuSha(target);
        if (theirs === null) continue;
        compared++;
        expect(ours, `case ${index}: our read differs from qemu-img convert`).toBe(theirs);
      }
      expect(compared).toBeGreaterThan(0);
    });
  }
});
