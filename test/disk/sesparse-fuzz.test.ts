/**
 * Mutation fuzzing of SEsparse extents: the constant and volatile headers,
 * the grain directory and the grain tables of (1) a file our builder made
 * (checked against qemu-img in sesparse.test.ts) and (2) the real ESXi file
 * from the corpus are mutated; opening and walking every span must either
 * succeed or throw one of our typed errors. A sample of accepted mutants is
 * compared with qemu-img (full content for the built file, the allocation
 * map for the 512 MiB real one).
 */
import {
  closeSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileSource } from '../../parsers/disk/file.js';
import { openSeSparseExtent } from '../../parsers/disk/vmdk/sesparse.js';
import { fixture, run } from '../helpers/fixtures.js';
import { expectTypedOrOk, mutate, newTally } from '../helpers/fuzz.js';
import { fuzzBuiltDelta, openAndWalk } from './builders/delta-checks.js';
import { descriptorText } from './builders/descriptor.js';
import { extentSpans, imageBytes, qemuMapRuns } from './builders/image.js';
import { buildSeSparse } from './builders/sesparse.js';

const GRAIN = 4096;
const GT = 4096;

describe('SEsparse fuzz', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vdbak-sesparse-fuzz-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  describe('built file', () => {
    const SECTORS = (16 * 1024 * 1024 + 2 * GRAIN) / 512; // one full table and a sliver of a second
    const SIZE = SECTORS * 512;
    const built = buildSeSparse({
      capacitySectors: SECTORS,
      grains: [
        { index: 0, kind: 'data', data: Buffer.alloc(GRAIN, 1) },
        { index: 1, kind: 'data', data: Buffer.alloc(GRAIN, 2) },
        { index: 2, kind: 'zero' },
        { index: 3, kind: 'unmapped' },
        { index: 4, kind: 'data', data: Buffer.alloc(GRAIN, 3), cluster: 9 },
        { index: GT - 1, kind: 'data', data: Buffer.alloc(GRAIN, 4) },
        { index: GT + 1, kind: 'data', data: Buffer.alloc(GRAIN, 5) },
      ],
      tableSlots: [1, 0],
    });
    // trailing room so that small mutated cluster numbers still land inside the file
    const base = Buffer.concat([imageBytes(built.image), Buffer.alloc(16 * GRAIN)]);
    const gd = built.layout.gdOffset * 512;
    const t0 = built.layout.tableAt.get(0) ?? 0;
    const t1 = built.layout.tableAt.get(1) ?? 0;
    const campaigns = [
      {
        name: 'headers',
        count: 700,
        regions: [
          { start: 0, end: 208 },
          { start: 512, end: 544 },
        ],
      },
      {
        name: 'directory and tables',
        count: 1300,
        regions: [
          { start: gd, end: gd + 16 },
          { start: t0, end: t0 + 5 * 8 },
          { start: t0 + (GT - 1) * 8, end: t0 + GT * 8 },
          { start: t1, end: t1 + 2 * 8 },
          { start: Math.min(t0, t1), end: Math.max(t0, t1) + GT * 8 },
        ],
      },
    ];
    const file = join(dir, 'built-delta.vmdk');
    const desc = join(dir, 'built.vmdk');
    writeFileSync(
      desc,
      descriptorText({
        createType: 'seSparse',
        cid: '12345678',
        extents: [{ sectors: SECTORS, type: 'SESPARSE', file: 'built-delta.vmdk' }],
      }),
    );

    for (const c of campaigns) {
      it(`${c.count} mutants of the ${c.name}: typed errors, or reads that match qemu-img`, () => {
        fuzzBuiltDelta({
          label: `SEsparse fuzz, built ${c.name}`,
          base,
          count: c.count,
          seed: 0x5e5 + c.count,
          regions: c.regions,
          file,
          desc,
          open: () => openSeSparseExtent(new FileSource(file, 'vmdk'), SIZE),
          sameCapacity: (bytes) => bytes.length >= 24 && Buffer.from(bytes).readBigUInt64LE(16) === BigInt(SECTORS),
        });
      });
    }
  });

  describe('real ESXi file', () => {
    const src = fixture('esx-sesparse-corpus.sh');
    const SIZE = 1048576 * 512;
    // the metadata that matters, gathered into one buffer to mutate: both headers,
    // the first directory entries, the first entries of the one grain table
    const pieces = [
      { at: 0, len: 1024 },
      { at: 0x1000 * 512, len: 64 },
      { at: 0x1800 * 512, len: 256 },
    ];
    const real = readFileSync(join(src, 'sesparse.vmdk'));
    const base = Buffer.concat(pieces.map((p) => real.subarray(p.at, p.at + p.len)));
    const file = join(dir, 'real.vmdk');
    copyFileSync(join(src, 'sesparse.vmdk'), file);
    const desc = join(dir, 'real-desc.vmdk');
    writeFileSync(desc, readFileSync(join(src, 'desc.vmdk'), 'utf8').replace('"sesparse.vmdk"', '"real.vmdk"'));

    it('600 mutants of its headers, directory and table: typed errors, or the allocation qemu-img maps', () => {
      const tally = newTally();
      let compared = 0;
      let eligible = 0;
      for (const { index, bytes } of mutate(base, 600, 0x5e5e, [
        { start: 0, end: 208 },
        { start: 512, end: 544 },
        { start: 1024, end: 1024 + 64 + 256 },
      ])) {
        // scatter the mutated buffer back (bytes cut off by a truncating mutation stay original)
        const fd = openSync(file, 'r+');
        let from = 0;
        for (const p of pieces) {
          const chunk = Buffer.from(base.subarray(from, from + p.len));
          chunk.set(bytes.subarray(from, Math.min(bytes.length, from + p.len)));
          writeSync(fd, chunk, 0, chunk.length, p.at);
          from += p.len;
        }
        closeSync(fd);
        let accepted = false;
        expectTypedOrOk(tally, index, () => {
          openAndWalk(() => openSeSparseExtent(new FileSource(file, 'vmdk'), SIZE));
          accepted = true;
        });
        const sameCapacity = bytes.length < 24 || Buffer.from(bytes).readBigUInt64LE(16) === 1048576n;
        if (accepted && sameCapacity && eligible++ % 8 === 0) {
          const e = openSeSparseExtent(new FileSource(file, 'vmdk'), SIZE);
          const ours = extentSpans(e);
          e.close();
          expect(ours, `mutant ${index}`).toEqual(qemuMapRuns(run('qemu-img', ['map', '--output=json', desc])));
          compared++;
        }
      }
      console.log(`SEsparse fuzz, real file: ${tally.ok} ok, ${tally.typed} typed, ${compared} vs qemu`, [
        ...tally.codes,
      ]);
      expect(tally.ok).toBeGreaterThan(30);
      expect(tally.typed).toBeGreaterThan(60);
      expect(compared).toBeGreaterThan(3);
    });
  });
});
