/**
 * The range algebra of agent/backup/regions.ts against a byte-map oracle
 * (random small cases: every byte's membership computed directly), and its
 * safety rules: a capped list only grows (never loses a used byte), an
 * unreadable or disordered free-space map ends as "used", read pieces never
 * cross a window. Also which host files are a VM's configuration.
 */
import { mkdirSync, mkdtempSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { configFiles, MAX_CONFIG_FILE_BYTES } from '../../agent/backup/config-files.js';
import {
  complement,
  FileRuns,
  merged,
  pieces,
  regions,
  shifted,
  subtract,
  trustedUsed,
  union,
} from '../../agent/backup/regions.js';
import type { ByteRange } from '../../parsers/blockdevice.js';

const SPACE = 400;

/** A deterministic generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomRanges(r: () => number, n: number): ByteRange[] {
  const out: ByteRange[] = [];
  for (let i = 0; i < n; i++) {
    const offset = Math.floor(r() * SPACE);
    out.push({ offset, length: 1 + Math.floor(r() * 30) });
  }
  return out;
}

function bytesOf(rs: Iterable<ByteRange>): boolean[] {
  const m = new Array<boolean>(SPACE + 64).fill(false);
  for (const x of rs) for (let i = x.offset; i < x.offset + x.length; i++) m[i] = true;
  return m;
}

/** A byte map as sorted, merged ranges. */
function rangesOf(m: boolean[]): ByteRange[] {
  const out: ByteRange[] = [];
  for (let i = 0; i < m.length; i++) {
    if (!m[i]) continue;
    const last = out[out.length - 1];
    if (last && last.offset + last.length === i) last.length++;
    else out.push({ offset: i, length: 1 });
  }
  return out;
}

const sorted = (rs: ByteRange[]) => [...rs].sort((a, b) => a.offset - b.offset);

describe('range algebra equals a byte map', () => {
  test.each(Array.from({ length: 40 }, (_, i) => i + 1))('seed %i', (seed) => {
    const r = rng(seed);
    const a = sorted(randomRanges(r, 12));
    const b = sorted(randomRanges(r, 12));
    const c = sorted(randomRanges(r, 5));
    const ma = bytesOf(a);
    const mb = bytesOf(b);
    const mc = bytesOf(c);
    expect([...merged(a)]).toEqual(rangesOf(ma));
    expect([...union(a, b, c)]).toEqual(rangesOf(ma.map((x, i) => x || mb[i]! || mc[i]!)));
    expect([...subtract(merged(a), merged(b))]).toEqual(rangesOf(ma.map((x, i) => x && !mb[i])));
    expect([...complement(merged(a), 50, 300)]).toEqual(rangesOf(ma.map((x, i) => !x && i >= 50 && i < 300)));
    // file runs in any order, through the typed-array union
    const fr = new FileRuns();
    for (const x of randomRanges(rng(seed), 12)) fr.add(x.offset, x.length);
    expect([...fr.ranges()]).toEqual(rangesOf(ma));
    // regions = allocated − excluded, uncapped
    expect(regions(a, [merged(b), merged(c)]).runs).toEqual(rangesOf(ma.map((x, i) => x && !mb[i] && !mc[i])));
  });
});

describe('caps only ever keep more', () => {
  test('FileRuns past its cap folds, then drops runs (their bytes stay in the regions)', () => {
    const fr = new FileRuns(8);
    for (let i = 0; i < 8; i++) fr.add(i * 10, 10); // touching: fold to one
    fr.add(200, 5);
    expect([...fr.ranges()]).toEqual([
      { offset: 0, length: 80 },
      { offset: 200, length: 5 },
    ]);
    for (let i = 0; i < 20; i++) fr.add(300 + i * 10, 5);
    expect(fr.droppedBytes).toBeGreaterThan(0);
    const kept = [...fr.ranges()].reduce((n, x) => n + x.length, 0);
    expect(kept + fr.droppedBytes).toBe(80 + 5 + 20 * 5);
  });

  test('regions over the run cap join neighbours: fewer runs, a superset of the bytes', () => {
    const allocated: ByteRange[] = Array.from({ length: 100 }, (_, i) => ({ offset: i * 8192, length: 512 }));
    const res = regions(allocated, [], 10);
    expect(res.runs.length).toBeLessThan(10);
    expect(res.joinedGap).toBeGreaterThan(0);
    expect([...subtract(merged(allocated), res.runs)]).toEqual([]);
  });
});

describe('a free-space map is trusted only as far as it reads', () => {
  test('an error midway: the rest of the volume is used', () => {
    const errors: unknown[] = [];
    const used = function* (): Generator<ByteRange> {
      yield { offset: 0, length: 10 };
      throw new Error('bad bitmap block');
    };
    expect([...trustedUsed(used, 100, (e) => errors.push(e))]).toEqual([
      { offset: 0, length: 10 },
      { offset: 10, length: 90 },
    ]);
    expect(errors).toHaveLength(1);
  });

  test('ranges out of order end the map the same way; ranges past the end are cut', () => {
    const errors: unknown[] = [];
    const used = () => [
      { offset: 50, length: 10 },
      { offset: 20, length: 5 },
    ];
    expect([...trustedUsed(used, 100, (e) => errors.push(e))]).toEqual([
      { offset: 50, length: 10 },
      { offset: 60, length: 40 },
    ]);
    expect([
      ...trustedUsed(
        () => [{ offset: 90, length: 50 }],
        100,
        () => undefined,
      ),
    ]).toEqual([{ offset: 90, length: 10 }]);
  });

  test('shifted cuts to the volume before moving to disk coordinates', () => {
    expect([...shifted([{ offset: 90, length: 20 }], 1000, 100)]).toEqual([{ offset: 1090, length: 10 }]);
  });
});

describe('read pieces', () => {
  test('never cross a window and hold at most maxBytes, in order, covering every run', () => {
    const runs: ByteRange[] = [
      { offset: 10, length: 100 },
      { offset: 250, length: 300 },
      { offset: 1000, length: 5 },
    ];
    const p = pieces(runs, 64, 256);
    for (const piece of p) {
      const w = Math.floor(piece[0]!.offset / 256);
      expect(piece.every((x) => Math.floor((x.offset + x.length - 1) / 256) === w)).toBe(true);
      expect(piece.reduce((n, x) => n + x.length, 0)).toBeLessThanOrEqual(64);
    }
    expect([...merged(p.flat())]).toEqual(runs);
  });
});

describe('configuration files of a VM', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vdbak-config-'));
  const vm = join(dir, 'vm');
  mkdirSync(vm);
  writeFileSync(join(vm, 'a.vmx'), 'nvram = "custom.nvram"\nextendedConfigFile = "../other.vmxf"\n');
  for (const f of ['a.vmsd', 'a.vmxf', 'custom.nvram', 'a.nvram', 'vmware.log', 'a.vmdk', 'b.vmx', 'b.vmsd']) {
    writeFileSync(join(vm, f), f);
  }
  writeFileSync(join(dir, 'other.vmxf'), 'not ours');

  test('the .vmx, its same-name siblings and the files it names in its folder; not disks, logs or other VMs', () => {
    const { files, warnings } = configFiles({ configPath: join(vm, 'a.vmx'), disks: [{ path: join(vm, 'a.vmdk') }] });
    expect(files.map((f) => f.name)).toEqual(['a.nvram', 'a.vmsd', 'a.vmx', 'a.vmxf', 'custom.nvram']);
    expect(warnings).toEqual([]);
  });

  test('no configuration file: nothing; a missing one: a warning', () => {
    expect(configFiles({ disks: [] }).files).toEqual([]);
    const gone = configFiles({ configPath: join(vm, 'gone.vmx'), disks: [] });
    expect(gone.files).toEqual([]);
    expect(gone.warnings.join()).toMatch(/gone\.vmx/);
  });

  test('a file over the cap is left out with a warning', () => {
    const big = join(dir, 'big');
    mkdirSync(big);
    writeFileSync(join(big, 'big.vmx'), 'x');
    const sparse = join(big, 'big.nvram');
    writeFileSync(sparse, '');
    // a sparse file: no disk space, just a size past the cap
    truncateSync(sparse, MAX_CONFIG_FILE_BYTES + 1);
    const { files, warnings } = configFiles({ configPath: join(big, 'big.vmx'), disks: [] });
    expect(files.map((f) => f.name)).toEqual(['big.vmx']);
    expect(warnings.join()).toMatch(/big\.nvram.*too large/);
  });
});
