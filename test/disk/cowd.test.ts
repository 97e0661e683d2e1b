/**
 * ESX "COWD" (vmfsSparse) snapshot deltas. No tool here writes COWD, so the
 * files come from our byte-by-byte builder (test/disk/builders/cowd.ts, after
 * the published layout: libyal libvmdk's VMDK document § "The COWD sparse
 * extent data file", qemu block/vmdk.c VMDK3Header). qemu-img, which reads
 * COWD through a vmfsSparse descriptor, checks every built file first (so the
 * builder cannot be wrong in the same way as the reader), then our reader must
 * give the same bytes and the same allocation.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileSource } from '../../parsers/disk/file.js';
import { openCowdExtent } from '../../parsers/disk/vmdk/cowd.js';
import { run, sha256 } from '../helpers/fixtures.js';
import { buildCowd, type CowdSpec } from './builders/cowd.js';
import { writeDelta, writeFlatBase } from './builders/descriptor.js';
import { expectDeltaDiskLikeQemu, qemuRaw } from './builders/delta-checks.js';
import { extentSpans, qemuMapRuns, readExtent } from './builders/image.js';

const GT = 4096; // grains per grain table

function patternDisk(bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let s = 0; s < bytes / 512; s++) b.fill((s * 13 + 5) & 0xff, s * 512, s * 512 + 512);
  return b;
}

function grainData(bytes: number, seed: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4) b.writeUInt32LE((seed * 2246822519 + i * 3) >>> 0, i);
  return b;
}

function expected(spec: CowdSpec, parent: Buffer | null): Buffer {
  const out = parent ? Buffer.from(parent) : Buffer.alloc(spec.capacitySectors * 512);
  const g = spec.grainSectors * 512;
  for (const grain of spec.grains) {
    const at = grain.index * g;
    out.set(grain.data.subarray(0, Math.max(0, Math.min(g, out.length - at))), at);
  }
  return out;
}

const layouts: { name: string; spec: CowdSpec }[] = [
  {
    // ESX's default grain of one sector: 2 MiB per table; table 1 absent; grains in
    // reverse file order in one place, contiguous in another
    name: 'grain-1-sector',
    spec: (() => {
      const gs = 1;
      const grains = [];
      for (let i = 0; i < 20; i++) grains.push({ index: 100 + i, data: grainData(512, i) });
      for (let i = 0; i < 5; i++) grains.push({ index: 2 * GT + 50 - i, data: grainData(512, 100 + i) });
      grains.push({ index: 3 * GT + 4095, data: grainData(512, 200) });
      grains.push({ index: 0, data: grainData(512, 300) });
      return { capacitySectors: 4 * GT * gs + 0, grainSectors: gs, grains };
    })(),
  },
  {
    // 4 KiB grains, a capacity that ends inside a grain table and inside a grain
    name: 'grain-8-sectors-partial',
    spec: (() => {
      const gs = 8;
      const capacitySectors = GT * gs + 5 * gs + 3;
      const grains = [
        { index: 1, data: grainData(4096, 1) },
        { index: 2, data: grainData(4096, 2) },
        { index: GT - 1, data: grainData(4096, 3) },
        { index: GT + 5, data: grainData(4096, 4) }, // the last, partial grain
        { index: GT, data: grainData(4096, 5) },
      ];
      return { capacitySectors, grainSectors: gs, grains };
    })(),
  },
  {
    // 64 KiB grains (one table covers 256 MiB) and a larger directory than needed
    name: 'grain-128-sectors',
    spec: {
      capacitySectors: (12 * 1024 * 1024) / 512,
      grainSectors: 128,
      grains: [
        { index: 0, data: grainData(65536, 9) },
        { index: 100, data: grainData(65536, 8) },
        { index: 101, data: grainData(65536, 7) },
      ],
      gdEntries: 4,
      parentFileName: 'base.vmdk',
    },
  },
];

describe('COWD: built layouts checked against qemu-img', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vdbak-cowd-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const { name, spec } of layouts) {
    it(`${name}: builder agrees with qemu-img, reader agrees with both`, () => {
      const bytes = spec.capacitySectors * 512;
      const parent = patternDisk(bytes);
      writeFlatBase(dir, parent);
      const { image } = buildCowd(spec);
      const d = writeDelta(dir, name, 'vmfsSparse', 'VMFSSPARSE', spec.capacitySectors, image);

      const want = expected(spec, parent);
      const wantAlone = expected(spec, null);
      expect(sha256(qemuRaw(dir, d.withParent))).toBe(sha256(want));
      expect(sha256(qemuRaw(dir, d.alone))).toBe(sha256(wantAlone));

      const e = openCowdExtent(new FileSource(d.extentPath, 'vmdk'), bytes);
      try {
        expect(e.type).toBe('VMFSSPARSE');
        expect(e.size).toBe(bytes);
        expect(sha256(readExtent(e, parent))).toBe(sha256(want));
        expect(sha256(readExtent(e))).toBe(sha256(wantAlone));
        expect(sha256(readExtent(e, parent, 1536 + 7))).toBe(sha256(want));
        expect(extentSpans(e)).toEqual(qemuMapRuns(run('qemu-img', ['map', '--output=json', d.alone])));
        const g = spec.grainSectors * 512;
        const listed = new Set(spec.grains.map((x) => x.index));
        for (let i = 0; i < Math.ceil(bytes / g); i++) {
          const s = e.span(i * g, 1);
          expect(s.kind).toBe(listed.has(i) ? 'data' : 'absent');
        }
      } finally {
        e.close();
      }
    });
  }

  for (const { name, spec } of layouts) {
    it(`${name}: openDisk of the delta over its flat base reads and maps as qemu-img`, () => {
      const extent = buildCowd(spec).image;
      const delta = {
        createType: 'vmfsSparse',
        extentType: 'VMFSSPARSE',
        capacitySectors: spec.capacitySectors,
        extent,
      };
      expectDeltaDiskLikeQemu(dir, name, delta, patternDisk(spec.capacitySectors * 512), (parent) =>
        expected(spec, parent),
      );
    });
  }
});

describe('COWD: the largest delta (2 TiB, sector numbers at the 32-bit limit)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vdbak-cowd-big-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const capacitySectors = 0xffffffff; // COWD counts sectors in a u32
  const bytes = capacitySectors * 512;
  // 1-sector grains: beyond 2^31 sectors (signed 32-bit), the very last sector, and one at 4 GiB
  const at = [0x80000000, 0xfffffffe, 2 ** 23, 0x7fffffff, 0];
  const spec: CowdSpec = {
    capacitySectors,
    grainSectors: 1,
    grains: at.map((index, i) => ({ index, data: Buffer.alloc(512, 0xa0 + i) })),
  };

  it('reads each grain where qemu-io finds it, and the rest as absent', () => {
    const d = writeDelta(dir, 'big', 'vmfsSparse', 'VMFSSPARSE', capacitySectors, buildCowd(spec).image);
    const e = openCowdExtent(new FileSource(d.extentPath, 'vmdk'), bytes);
    try {
      const runs = extentSpans(e);
      const data = runs.filter((r) => r.kind === 'data').map((r) => r.start);
      expect(data).toEqual([...at].sort((a, b) => a - b).map((s) => s * 512));
      expect(runs.every((r) => r.kind !== 'zero')).toBe(true);
      const cmds: string[] = [];
      at.forEach((sector, i) => {
        const s = e.span(sector * 512, 512);
        if (s.kind !== 'data') throw new Error(`grain ${sector} is ${s.kind}`);
        expect(s.file.read(s.fileOffset, 512).equals(Buffer.alloc(512, 0xa0 + i))).toBe(true);
        cmds.push('-c', `read -P 0x${(0xa0 + i).toString(16)} ${sector * 512} 512`);
      });
      // around them: absent, read as zeros without a parent
      for (const off of [512, 0x80000001 * 512, bytes - 1024, 0xffffffe * 512]) {
        expect(e.span(off, 512).kind).toBe('absent');
        cmds.push('-c', `read -P 0 ${off} 512`);
      }
      const out = run('qemu-io', ['-f', 'vmdk', '-r', ...cmds, d.alone]);
      expect(out).not.toContain('verification failed');
      expect(out.match(/^read 512\/512 bytes/gm)?.length).toBe(cmds.length / 2);
    } finally {
      e.close();
    }
  });
});
