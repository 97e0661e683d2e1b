/**
 * ext free space (FileSystem.allocated, parsers/fs/ext/bitmap.ts) against
 * dumpe2fs: the used ranges we read are exactly the complement of the free
 * block ranges dumpe2fs prints per group, on the ext-tree variants (every
 * feature set of issue 3) and on images whose groups are mostly BLOCK_UNINIT
 * (test/fixtures/regions-ext.sh: flex_bg, no flex_bg, meta_bg, 1 KiB blocks,
 * bigalloc, sparse_super2).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import type { ByteRange } from '../../parsers/blockdevice.js';
import { fixture, run } from '../helpers/fixtures.js';
import { openExt } from './ext-helpers.js';

const TREE = fixture('ext-tree.sh');
const UNINIT = fixture('regions-ext.sh');

function images(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.img'))
    .sort()
    .map((f) => join(dir, f));
}

/** Used byte ranges per dumpe2fs: everything in [0, blocks) minus each group's "Free blocks". */
function dumpe2fsUsed(img: string): { used: ByteRange[]; uninit: number } {
  const out = run('dumpe2fs', [img]);
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
  const bs = num(/^Block size:\s+(\d+)/m);
  const blocks = num(/^Block count:\s+(\d+)/m);
  const cluster = /^Cluster size:\s+(\d+)/m.test(out) ? num(/^Cluster size:\s+(\d+)/m) : bs;
  const ratio = cluster / bs;
  const free: [number, number][] = [];
  for (const line of out.matchAll(/^\s+Free blocks: (.*)$/gm)) {
    for (const part of line[1]!.split(', ').filter((p) => p.trim() !== '')) {
      const [a, b] = part.split('-').map(Number) as [number, number | undefined];
      // with bigalloc the numbers are the first blocks of the first and last free clusters
      free.push([a, (b ?? a) + ratio]);
    }
  }
  free.sort((x, y) => x[0] - y[0]);
  const used: ByteRange[] = [];
  let pos = 0;
  for (const [a, b] of free) {
    if (a > pos) used.push({ offset: pos * bs, length: (a - pos) * bs });
    pos = Math.max(pos, Math.min(b, blocks));
  }
  if (pos < blocks) used.push({ offset: pos * bs, length: (blocks - pos) * bs });
  return { used, uninit: (out.match(/BLOCK_UNINIT/g) ?? []).length };
}

describe('ext allocated ranges equal dumpe2fs free blocks inverted', () => {
  const all = [...images(TREE), ...images(UNINIT)];
  test('the fixtures include BLOCK_UNINIT groups of every layout', () => {
    const uninit = images(UNINIT).map((f) => dumpe2fsUsed(f).uninit);
    expect(uninit.every((n) => n > 0)).toBe(true);
  });
  test.each(all.map((f) => [f.split('/').slice(-2).join('/'), f]))('%s', (_name, img) => {
    const fs = openExt(img);
    const ours = [...fs.allocated()];
    // sorted, merged, inside the filesystem
    for (let i = 1; i < ours.length; i++) {
      expect(ours[i]!.offset).toBeGreaterThan(ours[i - 1]!.offset + ours[i - 1]!.length);
    }
    expect(ours.every((r) => r.length > 0)).toBe(true);
    expect(ours).toEqual(dumpe2fsUsed(img).used);
  });
});
