/**
 * SEsparse extents (ESXi 6.5+ snapshot deltas) against qemu-img, which reads
 * them (block/vmdk.c) and was written by people who are not us:
 * - the real SEsparse file from dissect.hypervisor's tests (corpus), opened
 *   by qemu through a helper descriptor;
 * - files made by our byte-by-byte builder (test/disk/builders/sesparse.ts)
 *   for the layouts the corpus lacks: zero and unmapped grains, several grain
 *   tables in a shuffled order, clusters past 4096 (the split bit field), a
 *   partial last grain table. qemu-img convert/map check each built file first,
 *   so a wrong builder cannot make a wrong reader pass.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileSource } from '../../parsers/disk/file.js';
import { openSeSparseExtent } from '../../parsers/disk/vmdk/sesparse.js';
import { fixture, run, sha256 } from '../helpers/fixtures.js';
import { writeDelta, writeFlatBase } from './builders/descriptor.js';
import { expectDeltaDiskLikeQemu, qemuRaw } from './builders/delta-checks.js';
import { extentSpans, qemuMapRuns, readExtent } from './builders/image.js';
import { buildSeSparse, type SeGrain, type SeSparseSpec } from './builders/sesparse.js';

const GRAIN = 4096;
const GT = 4096; // grains per table

/** A parent whose every sector says which one it is: absent grains show through. */
function patternDisk(bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let s = 0; s < bytes / 512; s++) b.fill((s * 7 + 3) & 0xff, s * 512, s * 512 + 512);
  return b;
}

function grainData(seed: number): Buffer {
  const b = Buffer.alloc(GRAIN);
  for (let i = 0; i < GRAIN; i += 4) b.writeUInt32LE((seed * 2654435761 + i) >>> 0, i);
  return b;
}

/** What the delta over `parent` must read as. */
function expected(spec: SeSparseSpec, parent: Buffer | null): Buffer {
  const out = parent ? Buffer.from(parent) : Buffer.alloc(spec.capacitySectors * 512);
  for (const g of spec.grains) {
    const at = g.index * GRAIN;
    const end = Math.min(at + GRAIN, out.length);
    if (g.kind === 'data') out.set((g.data ?? Buffer.alloc(GRAIN)).subarray(0, end - at), at);
    else out.fill(0, at, end);
  }
  return out;
}

describe('SEsparse: the real ESXi extent from the corpus', () => {
  const dir = fixture('esx-sesparse-corpus.sh');
  const size = 1048576 * 512; // the descriptor's RW line

  it('reads the same bytes as qemu-img convert, and the first 16 MiB are "a" (dissect test)', () => {
    const e = openSeSparseExtent(new FileSource(join(dir, 'sesparse.vmdk'), 'vmdk'), size);
    try {
      const all = readExtent(e);
      expect(sha256(all)).toBe(sha256(readFileSync(join(dir, 'qemu.raw'))));
      expect(all.subarray(0, 16 * 1024 * 1024).every((x) => x === 0x61)).toBe(true);
      expect(all[16 * 1024 * 1024]).toBe(0);
    } finally {
      e.close();
    }
  });

  it('maps allocation (and file offsets) exactly as qemu-img map', () => {
    const e = openSeSparseExtent(new FileSource(join(dir, 'sesparse.vmdk'), 'vmdk'), size);
    try {
      const ours = extentSpans(e);
      expect(ours).toEqual(qemuMapRuns(readFileSync(join(dir, 'qemu-map.json'), 'utf8')));
      expect(ours[0]).toEqual({ start: 0, length: 16 * 1024 * 1024, kind: 'data', fileOffset: 0x3000 * 512 });
      // spans bounded by maxLength still cover the same bytes
      expect(sha256(readExtent(e, undefined, 3 * GRAIN + 5))).toBe(sha256(readExtent(e)));
    } finally {
      e.close();
    }
  });
});

describe('SEsparse: built layouts checked against qemu-img', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vdbak-sesparse-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const layouts: { name: string; spec: SeSparseSpec }[] = [
    {
      // 3 tables and a partial 4th; table 1 absent; tables stored in reverse slots;
      // data grains contiguous and not; zero and unmapped grains; the very last grain
      name: 'mixed',
      spec: (() => {
        const grains: SeGrain[] = [];
        for (let i = 0; i < 6; i++) grains.push({ index: 10 + i, kind: 'data', data: grainData(i) });
        grains.push({ index: 20, kind: 'zero' }, { index: 21, kind: 'zero' }, { index: 22, kind: 'unmapped' });
        grains.push({ index: 23, kind: 'data', data: grainData(50) });
        grains.push({ index: 2 * GT + 5, kind: 'data', data: grainData(60) });
        grains.push({ index: 2 * GT + 4, kind: 'data', data: grainData(61) }); // stored after its successor
        grains.push({ index: 2 * GT + 4095, kind: 'unmapped' });
        grains.push({ index: 3 * GT, kind: 'zero' });
        grains.push({ index: 3 * GT + 1, kind: 'data', data: grainData(70) });
        return {
          capacitySectors: (3 * 16 * 1024 * 1024 + 2 * GRAIN) / 512,
          grains,
          tableSlots: [2, 1, 0],
          spareTables: 3,
        };
      })(),
    },
    {
      // clusters past 4096 use both halves of the entry's split bit field
      name: 'high-clusters',
      spec: {
        capacitySectors: (64 * 1024 * 1024) / 512,
        grains: [
          { index: 0, kind: 'data', data: grainData(1), cluster: 4095 },
          { index: 1, kind: 'data', data: grainData(2), cluster: 4096 },
          { index: 2, kind: 'data', data: grainData(3), cluster: 4097 },
          { index: GT + 7, kind: 'data', data: grainData(4), cluster: 3 * 4096 + 17 },
          { index: GT + 8, kind: 'data', data: grainData(5), cluster: 0 },
        ],
      },
    },
    {
      name: 'all-zero-and-unmapped',
      spec: {
        capacitySectors: (16 * 1024 * 1024) / 512,
        grains: Array.from({ length: 64 }, (_, i) => ({ index: i * 3, kind: i % 2 ? 'zero' : 'unmapped' }) as SeGrain),
      },
    },
  ];

  for (const { name, spec } of layouts) {
    it(`${name}: builder agrees with qemu-img, reader agrees with both`, () => {
      const bytes = spec.capacitySectors * 512;
      const parent = patternDisk(bytes);
      writeFlatBase(dir, parent);
      const { image } = buildSeSparse(spec);
      const d = writeDelta(dir, name, 'seSparse', 'SESPARSE', spec.capacitySectors, image);

      // the builder is right: qemu reads what we meant to write
      const want = expected(spec, parent);
      const wantAlone = expected(spec, null);
      expect(sha256(qemuRaw(dir, d.withParent))).toBe(sha256(want));
      expect(sha256(qemuRaw(dir, d.alone))).toBe(sha256(wantAlone));

      const e = openSeSparseExtent(new FileSource(d.extentPath, 'vmdk'), bytes);
      try {
        expect(sha256(readExtent(e, parent))).toBe(sha256(want));
        expect(sha256(readExtent(e))).toBe(sha256(wantAlone));
        expect(sha256(readExtent(e, parent, GRAIN + 512))).toBe(sha256(want));
        const map = run('qemu-img', ['map', '--output=json', d.alone]);
        expect(extentSpans(e)).toEqual(qemuMapRuns(map));
        // unallocated grains are 'absent' (parent), zero and unmapped are 'zero'
        for (const g of spec.grains) {
          const s = e.span(g.index * GRAIN, GRAIN);
          expect(s.kind).toBe(g.kind === 'data' ? 'data' : 'zero');
        }
        const listed = new Set(spec.grains.map((g) => g.index));
        const hole = Array.from({ length: bytes / GRAIN }, (_, i) => i).find((i) => !listed.has(i)) ?? 0;
        expect(e.span(hole * GRAIN, GRAIN).kind).toBe('absent');
      } finally {
        e.close();
      }
    });
  }

  for (const { name, spec } of layouts) {
    it(`${name}: openDisk of the delta over its flat base reads and maps as qemu-img`, () => {
      const extent = buildSeSparse(spec).image;
      const delta = { createType: 'seSparse', extentType: 'SESPARSE', capacitySectors: spec.capacitySectors, extent };
      expectDeltaDiskLikeQemu(dir, name, delta, patternDisk(spec.capacitySectors * 512), (parent) =>
        expected(spec, parent),
      );
    });
  }
});

describe('SEsparse: a 4 TiB delta (offsets and cluster numbers past 32 bits)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vdbak-sesparse-big-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const capacitySectors = 2 ** 33;
  const bytes = capacitySectors * 512;
  const lastGrain = bytes / GRAIN - 1;
  const spec: SeSparseSpec = {
    capacitySectors,
    grains: [
      { index: 2 ** 29, kind: 'data', data: Buffer.alloc(GRAIN, 0xb1) }, // 2 TiB
      { index: 2 ** 20 + 3, kind: 'data', data: Buffer.alloc(GRAIN, 0xb2), cluster: 2 ** 20 + 5 }, // cluster past 2^20
      { index: lastGrain, kind: 'data', data: Buffer.alloc(GRAIN, 0xb3) },
      { index: lastGrain - 1, kind: 'zero' },
      { index: 2 ** 29 + 1, kind: 'unmapped' },
    ],
  };

  it('reads each grain where qemu-io finds it; zero, unmapped and absent grains read as zeros', () => {
    const d = writeDelta(dir, 'big', 'seSparse', 'SESPARSE', capacitySectors, buildSeSparse(spec).image);
    const e = openSeSparseExtent(new FileSource(d.extentPath, 'vmdk'), bytes);
    try {
      const runs = extentSpans(e);
      expect(runs.filter((r) => r.kind === 'data').map((r) => r.start / GRAIN)).toEqual([
        2 ** 20 + 3,
        2 ** 29,
        lastGrain,
      ]);
      expect(runs.filter((r) => r.kind === 'zero').map((r) => r.start / GRAIN)).toEqual([2 ** 29 + 1, lastGrain - 1]);
      const cmds: string[] = [];
      for (const g of spec.grains) {
        const s = e.span(g.index * GRAIN, GRAIN);
        const fill = g.data?.[0] ?? 0;
        if (g.kind === 'data') {
          if (s.kind !== 'data') throw new Error(`grain ${g.index} is ${s.kind}`);
          expect(s.file.read(s.fileOffset, GRAIN).equals(Buffer.alloc(GRAIN, fill))).toBe(true);
        } else expect(s.kind).toBe('zero');
        cmds.push('-c', `read -P 0x${fill.toString(16)} ${g.index * GRAIN} ${GRAIN}`);
      }
      for (const off of [GRAIN, 2 ** 41 - GRAIN, bytes - 3 * GRAIN]) {
        expect(e.span(off, GRAIN).kind).toBe('absent');
        cmds.push('-c', `read -P 0 ${off} ${GRAIN}`);
      }
      const out = run('qemu-io', ['-f', 'vmdk', '-r', ...cmds, d.alone]);
      expect(out).not.toContain('verification failed');
      expect(out.match(/^read 4096\/4096 bytes/gm)?.length).toBe(cmds.length / 2);
    } finally {
      e.close();
    }
  });
});
