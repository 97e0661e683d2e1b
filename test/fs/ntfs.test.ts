/**
 * The NTFS reader against volumes made by mkntfs + ntfs-3g from a source
 * tree (test/fixtures/ntfs-*.sh), at several cluster sizes. Oracles: the
 * source tree itself, The Sleuth Kit (fls -r -p, icat, istat) on the same
 * image.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { RawImage } from '../../parsers/disk/raw.js';
import { probeFileSystem } from '../../parsers/fs/index.js';
import { ntfsDriver } from '../../parsers/fs/ntfs/index.js';
import type { FileSystem } from '../../parsers/fs/types.js';
import { fixture, run, sha256 } from '../helpers/fixtures.js';
import { expectBrowseMatchesWalk, fls, icatSha, ourListing, ourSha, sourceTree } from './ntfs-oracle.js';

const GiB = 1024 * 1024 * 1024;

function open(image: string): FileSystem {
  return ntfsDriver.open(new RawImage(image));
}

/** Listing and content equal the source tree and agree with fls/icat (icat on at most `icatLimit` files). */
function checkAgainstOracles(dir: string, icatLimit = Number.POSITIVE_INFINITY): FileSystem {
  const image = join(dir, 'ntfs.img');
  const fs = open(image);
  const { entries, streams } = ourListing(fs);
  const src = sourceTree(join(dir, 'src'));
  const tsk = fls(image);

  // listing: source tree = our paths = fls paths
  const ours = [...entries.keys()].sort();
  expect(ours).toEqual([...src.keys()].sort());
  expect(ours).toEqual(
    tsk
      .filter((l) => !l.path.slice(1).includes(':'))
      .map((l) => l.path)
      .sort(),
  );
  expect([...streams.keys()].sort()).toEqual(
    tsk
      .filter((l) => l.path.slice(1).includes(':'))
      .map((l) => l.path)
      .sort(),
  );

  // content and types against the source
  const inodes = new Map<number, string>();
  for (const [path, s] of src) {
    const e = entries.get(path)!;
    expect(e.type, path).toBe(s.type);
    if (s.type === 'file') expect(ourSha(fs, e), path).toBe(s.sha);
    if (s.type === 'symlink') expect(e.linkTarget, path).toBe(s.target);
    // hard links in the source are one id here
    const seen = inodes.get(s.ino);
    if (seen !== undefined && s.type === 'file') expect(e.id, path).toBe(seen);
    inodes.set(s.ino, e.id);
  }
  // named streams against what the fixture wrote
  const tsv = (() => {
    try {
      return readFileSync(join(dir, 'streams.tsv'), 'utf8');
    } catch {
      return '';
    }
  })();
  for (const line of tsv.split('\n').filter(Boolean)) {
    const [path, name, file] = line.split('\t');
    const e = entries.get(path!)!;
    expect(ourSha(fs, e, name), `${path}:${name}`).toBe(sha256(readFileSync(join(dir, file!))));
  }
  // content against icat, main streams (symlinks are raw Interix data on both sides) and named streams
  let checked = 0;
  for (const l of tsk) {
    if (!l.type.endsWith('/r') || checked >= icatLimit) continue;
    const colon = l.path.slice(1).indexOf(':');
    const path = colon >= 0 ? l.path.slice(0, colon + 1) : l.path;
    const e = entries.get(path)!;
    const tskSha = icatSha(image, l.addr);
    if (tskSha.includes('Run length is larger than file system')) {
      // TSK refuses sparse runs longer than the volume (the 3 GiB sparse file on 256 MiB): the source was the oracle
      expect(e.size, l.path).toBeGreaterThan(fs.info().totalBytes);
      continue;
    }
    expect(ourSha(fs, e, colon >= 0 ? l.path.slice(colon + 2) : undefined), l.path).toBe(tskSha);
    checked++;
  }
  // browsing through the $I30 indexes agrees with the walk over parent references
  expectBrowseMatchesWalk(fs, entries);
  expect(fs.problems).toEqual([]);
  return fs;
}

describe.each([
  { cluster: 512, sparse: 64 * 1024 * 1024 },
  { cluster: 4096, sparse: 3 * GiB },
  { cluster: 65536, sparse: 64 * 1024 * 1024 },
])('ntfs-3g volume, $cluster-byte clusters', ({ cluster, sparse }) => {
  const dir = fixture('ntfs-tree.sh', [String(cluster), String(sparse)]);
  const image = join(dir, 'ntfs.img');

  test('listing, content and streams equal the source tree, fls and icat', () => {
    const fs = checkAgainstOracles(dir);
    expect(fs.info().blockSize).toBe(cluster);
  });

  test('hard links, symlinks, sparse file, Unicode names, lookup and list', () => {
    const fs = open(image);
    expect(probeFileSystem(new RawImage(image))?.type).toBe('ntfs');
    const a = fs.lookup('/links/a.txt')!;
    const c = fs.lookup('/links/other/c.txt')!;
    expect(a.id).toBe(c.id);
    expect(a.nlink).toBe(3);
    expect(a.flags).toContain('hardlink');
    const sym = fs.lookup('/links/sym-rel')!;
    expect(sym).toMatchObject({ type: 'symlink', linkTarget: '../small.txt' });
    const sp = fs.lookup('/sparse.bin')!;
    expect(sp.size).toBe(sparse);
    expect(sp.flags).toContain('sparse');
    const runs = fs.runs(sp);
    expect(runs.some((r) => r.volumeOffset === null)).toBe(true);
    expect(runs.reduce((n, r) => n + r.length, 0)).toBe(sparse);
    expect(fs.read(sp, sparse / 2, 13).toString()).toBe('in the middle');
    // allocated bytes of the sparse file are few: the runs say so, istat agrees on the run count
    const allocated = runs.filter((r) => r.volumeOffset !== null).reduce((n, r) => n + r.length, 0);
    expect(allocated).toBeLessThanOrEqual(Math.max(cluster, 16 * 4096));
    const names = fs
      .list('/unicode')
      .map((e) => e.name)
      .sort();
    expect(names).toContain('😀 emoji 🎉.txt');
    expect(names).toContain('日本語のファイル.txt');
    expect(fs.lookup('/unicode/mixedcase.txt')).toBeUndefined();
    expect(fs.lookup('/unicode/MixedCase.TXT')?.size).toBe(14);
    expect(fs.list('/').map((e) => e.name)).not.toContain('$MFT');
    expect(fs.lookup('/gone.txt')).toBeUndefined();
    const info = fs.info();
    expect(info).toMatchObject({ type: 'ntfs', label: 'vdbak', clean: true });
    expect(info.facts?.orphans).toBe(0);
    // a walk after lookups reuses the tree (a second code path): same entries as a fresh single-pass walk
    const fresh = [...open(image).walk()].map((e) => `${e.id} ${e.path}`).sort();
    expect([...fs.walk()].map((e) => `${e.id} ${e.path}`).sort()).toEqual(fresh);
    // the owner comes from the $SECURITY_DESCRIPTOR ntfs-3g writes; ntfs-3g's own view of it
    const sec = run('ntfssecaudit', [image, '/small.txt']);
    const owner = /Windows owner (S-1-[0-9-]+)/.exec(sec)?.[1];
    expect(owner).toBeDefined();
    expect(fs.lookup('/small.txt')?.ownerSid).toBe(owner);
  });

  if (cluster <= 4096) {
    test('LZNT1-compressed files decompress to the source', () => {
      const fs = open(image);
      for (const name of ['numbers.txt', 'random.bin', 'mixed.txt']) {
        const e = fs.lookup(`/zip/${name}`)!;
        expect(e.flags).toContain('compressed');
        expect(run('istat', [image, e.id])).toMatch(/Non-Resident, Compressed/);
        expect(fs.runs(e)).toEqual([]);
        expect(ourSha(fs, e)).toBe(sha256(readFileSync(join(dir, 'src/zip', name))));
        // reads that start inside a compression unit
        const whole = fs.read(e, 0, e.size);
        expect(fs.read(e, 70001, 5000).equals(whole.subarray(70001, 75001))).toBe(true);
      }
    });
  }
});

test('a heavily fragmented file with an $ATTRIBUTE_LIST (extension records)', () => {
  const dir = fixture('ntfs-frag.sh');
  const image = join(dir, 'ntfs.img');
  const inode = readFileSync(join(dir, 'big.inode'), 'utf8').trim();
  const fs = checkAgainstOracles(dir, 50);
  const big = fs.lookup('/big.bin')!;
  expect(big.id).toBe(inode);
  const istat = run('istat', [image, inode]);
  expect(istat).toMatch(/\$ATTRIBUTE_LIST/);
  // part of the runlist lives in an extension record (a $DATA piece starting past VCN 0)
  const pieces = [...istat.matchAll(/Type: 128-\d+\s+MFT Entry: (\d+)\s+VCN: (\d+)/g)];
  expect(pieces.some((m) => m[1] !== inode && Number(m[2]) > 0)).toBe(true);
  // the runs are many and land where istat says: compare the cluster list
  const runs = fs.runs(big);
  expect(runs.length).toBeGreaterThan(100);
  const clusters: number[] = [];
  for (const r of runs) for (let o = 0; o < r.length; o += 4096) clusters.push((r.volumeOffset! + o) / 4096);
  const tsk = istat
    .split('$DATA')
    .pop()!
    .split('\n')
    .slice(1)
    .join(' ')
    .trim()
    .split(/\s+/)
    .filter((w) => /^\d+$/.test(w))
    .map(Number);
  expect(clusters).toEqual(tsk.slice(0, clusters.length));
  expect(ourSha(fs, big)).toBe(icatSha(image, inode));
  // the $MFT itself grew into the holes too: it is read through a fragmented runlist
  const mftClusters = run('istat', [image, '0'])
    .split('$DATA')
    .pop()!
    .split('\n')
    .slice(1)
    .join(' ')
    .trim()
    .split(/\s+/)
    .map(Number);
  const fragments = mftClusters.filter((c, i) => i === 0 || c !== mftClusters[i - 1]! + 1).length;
  expect(fragments).toBeGreaterThan(10);
});

test('a directory of 20 000 entries', () => {
  const dir = fixture('ntfs-bigdir.sh');
  const fs = checkAgainstOracles(dir, 40);
  const list = fs.list('/big');
  expect(list.length).toBe(20000);
  expect(fs.lookup('/big/entry-19000.txt')?.size).toBe('file 19000\n'.length);
});
