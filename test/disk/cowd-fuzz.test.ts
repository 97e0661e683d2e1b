/**
 * Mutation fuzzing of COWD extents: the header, the grain directory and the
 * grain tables of a file our builder made (checked against qemu-img in
 * cowd.test.ts) are mutated; opening and walking every span must either
 * succeed or throw one of our typed errors. A sample of the mutants we accept
 * is read in full and compared with qemu-img convert of the same file, so an
 * accepted mutant is also read correctly.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, it } from 'vitest';
import { FileSource } from '../../parsers/disk/file.js';
import { openCowdExtent } from '../../parsers/disk/vmdk/cowd.js';
import { buildCowd } from './builders/cowd.js';
import { fuzzBuiltDelta } from './builders/delta-checks.js';
import { descriptorText } from './builders/descriptor.js';
import { imageBytes } from './builders/image.js';

const GT = 4096;
const SECTORS = 4 * GT; // 1-sector grains: 4 tables, 8 MiB
const SIZE = SECTORS * 512;
const grain = (seed: number) => Buffer.alloc(512, seed);
const built = buildCowd({
  capacitySectors: SECTORS,
  grainSectors: 1,
  grains: [
    { index: 0, data: grain(1) },
    { index: 1, data: grain(2) },
    { index: 2, data: grain(3) },
    { index: 4095, data: grain(4) },
    { index: 2 * GT + 10, data: grain(5) },
    { index: 2 * GT + 9, data: grain(6) },
  ],
});
// trailing room, so that small mutated sector numbers still land inside the file
const base = Buffer.concat([imageBytes(built.image), Buffer.alloc(96 * 1024 - built.image.size)]);
const gd = built.layout.gdOffset;
const t0 = built.layout.tableAt.get(0) ?? 0;
const t2 = built.layout.tableAt.get(2) ?? 0;
const campaigns = [
  { name: 'header', count: 800, regions: [{ start: 0, end: 32 }] },
  {
    name: 'directory and tables',
    count: 1700,
    regions: [
      { start: gd, end: gd + 16 }, // the four directory entries
      { start: t0, end: t0 + 16 }, // used table entries …
      { start: t0 + 4095 * 4, end: t0 + 4096 * 4 },
      { start: t2 + 9 * 4, end: t2 + 11 * 4 },
      { start: t0, end: t2 + GT * 4 }, // … and anywhere in the tables
    ],
  },
];

describe('COWD fuzz', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vdbak-cowd-fuzz-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'fuzz-delta.vmdk');
  const desc = join(dir, 'fuzz.vmdk');
  writeFileSync(
    desc,
    descriptorText({
      createType: 'vmfsSparse',
      cid: '12345678',
      extents: [{ sectors: SECTORS, type: 'VMFSSPARSE', file: 'fuzz-delta.vmdk' }],
    }),
  );

  for (const c of campaigns) {
    it(`${c.count} mutants of the ${c.name}: typed errors, or reads that match qemu-img`, () => {
      fuzzBuiltDelta({
        label: `COWD fuzz, ${c.name}`,
        base,
        count: c.count,
        seed: 0xc0d + c.count,
        regions: c.regions,
        file,
        desc,
        open: () => openCowdExtent(new FileSource(file, 'vmdk'), SIZE),
        // capacity field intact, so that qemu reads the same size
        sameCapacity: (bytes) => bytes.length >= 16 && Buffer.from(bytes).readUInt32LE(12) === SECTORS,
      });
    });
  }
});
