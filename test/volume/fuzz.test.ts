/**
 * Mutation fuzzing of real partition tables: MBR entries, EBRs, GPT headers
 * and entry arrays of sfdisk-made tiny disks and of corpus images. Every case
 * must give a typed error or a well-formed VolumeMap whose volumes all lie
 * inside the device. Half of the GPT cases re-seal the CRCs after mutating,
 * so the mutations reach the field checks behind them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../parsers/blockdevice.js';
import { readVolumeMap } from '../../parsers/volume/index.js';
import type { VolumeMap } from '../../parsers/volume/types.js';
import { CORPUS, fixture } from '../helpers/fixtures.js';
import { expectTypedOrOk, mutate, newTally, type Region } from '../helpers/fuzz.js';
import { expectMatchesSfdisk, readSfdiskJson } from './oracles.js';

const small = fixture('volume-small.sh');
const corpus = fixture('volume-corpus.sh');
const none = fixture('volume-none.sh');

/** Structural checks on any map we return. */
function expectWellFormed(m: VolumeMap, size: number): void {
  expect([512, 4096]).toContain(m.sectorSize);
  expect(m.warnings.length).toBeLessThanOrEqual(64);
  for (const v of m.volumes) {
    expect(Number.isSafeInteger(v.offset) && Number.isSafeInteger(v.length)).toBe(true);
    expect(v.offset).toBeGreaterThanOrEqual(0);
    expect(v.length).toBeGreaterThan(m.scheme === 'none' ? -1 : 0);
    expect(v.offset + v.length).toBeLessThanOrEqual(size);
    expect(v.extended).toBeFalsy();
  }
  for (const p of m.partitions) {
    expect(Number.isSafeInteger(p.offset) && Number.isSafeInteger(p.length) && p.length > 0).toBe(true);
    expect(p.index).toBeGreaterThan(0);
  }
}

/** The 64-byte entry area of every sector that ends in 55 AA (the MBR and each EBR). */
function recordRegions(b: Uint8Array): Region[] {
  const out: Region[] = [];
  for (let at = 0; at + 512 <= b.length; at += 512) {
    if (b[at + 510] === 0x55 && b[at + 511] === 0xaa) out.push({ start: at + 446, end: at + 512 });
  }
  return out;
}

/** Re-seals the entry-array and header CRCs of the GPT header at `headerAt` (array at `arrayAt`, 128 × 128 bytes). */
function reseal(b: Uint8Array, headerAt: number, arrayAt: number): void {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (headerAt + 92 > buf.length || arrayAt + 128 * 128 > buf.length) return;
  buf.writeUInt32LE(crc32(buf.subarray(arrayAt, arrayAt + 128 * 128)), headerAt + 88);
  buf.writeUInt32LE(0, headerAt + 16);
  buf.writeUInt32LE(crc32(buf.subarray(headerAt, headerAt + 92)), headerAt + 16);
}

function fuzz(
  name: string,
  base: Uint8Array,
  count: number,
  seed: number,
  regions: Region[],
  after?: (b: Uint8Array) => void,
) {
  const tally = newTally();
  /** Error codes quoted in warnings (a damaged copy that was survived). */
  const warned = new Set<string>();
  for (const { index, bytes } of mutate(base, count, seed, regions)) {
    after?.(bytes);
    expectTypedOrOk(tally, index, () => {
      const m = readVolumeMap(new MemoryDevice(bytes, `${name}#${index}`));
      expectWellFormed(m, bytes.length);
      for (const w of m.warnings) for (const c of w.matchAll(/\[([A-Z0-9_]+)\]/g)) warned.add(c[1] ?? '');
    });
  }
  expect(tally.ok + tally.typed).toBe(count);
  return { ...tally, warned };
}

describe('volume fuzz', () => {
  it('MBR and EBRs of an sfdisk dos disk (3 logicals)', () => {
    const base = readFileSync(join(small, 'small-dos.raw'));
    // the unmutated disk is what sfdisk says it is
    expectMatchesSfdisk(readVolumeMap(new MemoryDevice(base)), readSfdiskJson(join(small, 'small-dos.json')));
    const regions = recordRegions(base);
    expect(regions).toHaveLength(4);
    const t = fuzz('small-dos', base, 1500, 11, [...regions, { start: 0, end: 512 }]);
    expect(t.ok).toBeGreaterThan(500);
  });

  it('GPT header and entries of an sfdisk GPT disk, CRCs broken or re-sealed', () => {
    const base = readFileSync(join(small, 'small-gpt.raw'));
    expectMatchesSfdisk(readVolumeMap(new MemoryDevice(base)), readSfdiskJson(join(small, 'small-gpt.json')));
    const last = base.length - 512;
    const regions = [
      { start: 446, end: 512 },
      { start: 512, end: 512 + 92 },
      { start: 1024, end: 1024 + 3 * 128 },
      { start: last, end: last + 92 },
      { start: last - 32 * 512, end: last - 32 * 512 + 3 * 128 },
    ];
    const broken = fuzz('small-gpt', base, 1000, 21, regions);
    const sealed = fuzz('small-gpt-sealed', base, 1000, 22, regions, (b) => {
      reseal(b, 512, 1024);
      reseal(b, last, last - 32 * 512);
    });
    expect(broken.warned).toContain('GPT_HEADER_CRC');
    expect(broken.warned).toContain('GPT_ENTRIES_CRC');
    // re-sealed mutations get past the CRCs into the field checks
    for (const code of ['GPT_ENTRY_SIZE', 'GPT_ENTRY_COUNT', 'GPT_MY_LBA', 'GPT_HEADER_SIZE', 'GPT_BAD_SIGNATURE']) {
      expect(sealed.warned).toContain(code);
    }
  });

  it('corpus 4Kn GPT, hybrid MBR and 4Kn MBR with an EBR', () => {
    const gpt4k = readFileSync(join(CORPUS, 'mbr_gpt', 'dissect', 'gpt_4k.bin'));
    fuzz(
      'gpt_4k',
      gpt4k,
      500,
      31,
      [
        { start: 446, end: 512 },
        { start: 4096, end: 4096 + 92 },
        { start: 8192, end: 8192 + 3 * 128 },
      ],
      (b) => reseal(b, 4096, 8192),
    );
    const hybrid = readFileSync(join(CORPUS, 'mbr_gpt', 'dissect', 'gpt_hybrid.bin'));
    fuzz('gpt_hybrid', hybrid, 500, 41, [
      { start: 446, end: 512 },
      { start: 512, end: 512 + 92 },
      { start: 1024, end: 1024 + 3 * 128 },
    ]);
    const mbr4k = readFileSync(join(corpus, 'mbr-4096-p1e1.bin')).subarray(0, 40 * 1024);
    fuzz('mbr-4096-p1e1', mbr4k, 500, 51, recordRegions(mbr4k));
  });

  it('a bare NTFS boot sector (55 AA, no table)', () => {
    const ntfs = readFileSync(join(none, 'ntfs.raw')).subarray(0, 64 * 1024);
    expect(readVolumeMap(new MemoryDevice(ntfs)).scheme).toBe('none');
    fuzz('ntfs', ntfs, 500, 61, [{ start: 0, end: 512 }]);
  });
});
