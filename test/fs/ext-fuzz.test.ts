/**
 * Mutation fuzzing of real ext images (test/fixtures/ext-small.sh): bytes of
 * the superblock, group descriptors, inode tables, an extent index block and
 * directory blocks are changed; opening, walking and reading everything must
 * give typed errors or output, never hang or throw anything else. On ext4
 * every structure carries a crc32c: a case that records no problem must give
 * exactly the clean listing and contents.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { MemoryDevice } from '../../parsers/blockdevice.js';
import { extDriver } from '../../parsers/fs/ext/index.js';
import type { FileSystem } from '../../parsers/fs/types.js';
import { fixture, run } from '../helpers/fixtures.js';
import { expectTypedOrOk, mutate, newTally, type Region } from '../helpers/fuzz.js';
import { openExt } from './ext-helpers.js';

const BLOCK = 1024;
const CASES = 1200;
/** A single case must finish well within this (a hang shows up here, not as a test timeout). */
const MAX_CASE_MS = 3000;

let small: string;
beforeAll(() => {
  small = fixture('ext-small.sh');
});

/** Listing and content digest of a filesystem: everything the walk and reads produce. */
function digest(fs: FileSystem): string {
  const h = createHash('sha256');
  for (const e of fs.walk()) {
    h.update(`${e.id} ${e.path} ${e.type} ${e.size} ${e.mode} ${e.uid} ${e.gid} ${e.mtimeNs} ${e.linkTarget ?? ''}\n`);
    for (const x of e.xattrs ?? []) h.update(x.name).update(x.value);
    if (e.type === 'file') {
      h.update(JSON.stringify(fs.runs(e)));
      h.update(fs.read(e, 0, Math.min(e.size, 1 << 20)));
    }
  }
  h.update(JSON.stringify(fs.info()));
  return h.digest('hex');
}

/** Where the metadata lives, from dumpe2fs and debugfs (the oracles), plus directory blocks from a clean read. */
function regions(image: string): Region[] {
  const out: Region[] = [{ start: 1024, end: 2048 }];
  const dump = run('dumpe2fs', [image]);
  for (const m of dump.matchAll(/Primary superblock at \d+, Group descriptors at (\d+)-(\d+)/g)) {
    out.push({ start: Number(m[1]) * BLOCK, end: (Number(m[2]) + 1) * BLOCK });
  }
  for (const m of dump.matchAll(/Inode table at (\d+)-(\d+)/g)) {
    out.push({ start: Number(m[1]) * BLOCK, end: Math.min((Number(m[2]) + 1) * BLOCK, Number(m[1]) * BLOCK + 16384) });
  }
  const stat = run('debugfs', ['-R', 'stat /d/islands.bin', image]);
  for (const m of stat.matchAll(/\(ETB\d+\):(\d+)/g))
    out.push({ start: Number(m[1]) * BLOCK, end: (Number(m[1]) + 1) * BLOCK });
  const fs = openExt(image);
  for (const e of fs.walk()) {
    if (e.type !== 'dir') continue;
    for (const r of fs.runs(e))
      if (r.volumeOffset !== null) out.push({ start: r.volumeOffset, end: r.volumeOffset + r.length });
  }
  return out;
}

describe.each(['small-ext4', 'small-ext2'])('fuzz %s', (name) => {
  test(`${CASES} mutations: typed errors or output in bounded time; on ext4 no problem means clean output`, () => {
    const image = join(small, `${name}.img`);
    const base = readFileSync(image);
    const clean = digest(extDriver.open(new MemoryDevice(base, image)));
    const tally = newTally();
    let quiet = 0;
    let quietSame = 0;
    for (const { index, bytes } of mutate(base, CASES, name === 'small-ext4' ? 7 : 11, regions(image))) {
      const t0 = Date.now();
      expectTypedOrOk(tally, index, () => {
        const dev = new MemoryDevice(bytes, `${name}#${index}`);
        if (!extDriver.probe(dev)) return;
        const fs = extDriver.open(dev);
        const d = digest(fs);
        if (fs.problems.length === 0 && bytes.length === base.length) {
          quiet++;
          if (d === clean) quietSame++;
          else if (name === 'small-ext4')
            throw new Error(`fuzz case ${index}: no problem recorded but the output changed`);
        }
      });
      expect(Date.now() - t0, `case ${index}`).toBeLessThan(MAX_CASE_MS);
    }
    expect(tally.ok + tally.typed).toBe(CASES);
    expect(tally.typed).toBeGreaterThan(20);
    expect(tally.ok).toBeGreaterThan(CASES / 20);
    if (name === 'small-ext4') expect(quietSame).toBe(quiet);
  });
});
