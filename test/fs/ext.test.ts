/**
 * ext2/3/4 reader against images made by mkfs.ext* -d from one source tree
 * (test/fixtures/ext-tree.sh), one per feature set of issue 3. Oracles: the
 * source tree itself (lstat, sha256sum, getfattr), The Sleuth Kit's fls,
 * debugfs and dumpe2fs.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import type { ExtFileSystem } from '../../parsers/fs/ext/fs.js';
import type { FsEntry } from '../../parsers/fs/types.js';
import { fixture, run, sha256sumFile } from '../helpers/fixtures.js';
import {
  comparable,
  debugfsListing,
  flsListing,
  getfattr,
  hashEntry,
  listSource,
  openExt,
  walkMap,
} from './ext-helpers.js';

const VARIANTS: { name: string; features: string[]; blockSize: number; type: string }[] = [
  { name: 'ext2', features: ['dir_index', 'filetype', 'sparse_super'], blockSize: 4096, type: 'ext2' },
  { name: 'ext2-1k', features: ['filetype'], blockSize: 1024, type: 'ext2' },
  { name: 'ext3', features: ['has_journal'], blockSize: 4096, type: 'ext3' },
  {
    name: 'ext4',
    features: ['extent', 'flex_bg', '64bit', 'metadata_csum', 'huge_file'],
    blockSize: 4096,
    type: 'ext4',
  },
  { name: 'ext4-inline', features: ['inline_data', 'extent'], blockSize: 4096, type: 'ext4' },
  { name: 'ext4-noextent', features: ['flex_bg', 'metadata_csum'], blockSize: 4096, type: 'ext4' },
  { name: 'ext4-1k', features: ['extent', 'metadata_csum'], blockSize: 1024, type: 'ext4' },
  { name: 'ext4-2k', features: ['extent', 'metadata_csum'], blockSize: 2048, type: 'ext4' },
  { name: 'ext4-bigalloc', features: ['bigalloc', 'extent'], blockSize: 4096, type: 'ext4' },
  { name: 'ext4-metabg', features: ['meta_bg', '64bit'], blockSize: 4096, type: 'ext4' },
];

const SPARSE = '/sparse-5g.bin';
const ISLANDS = [0, 1048576, 4718592000, 5368709099];

let dir: string;
let source: ReturnType<typeof listSource>;
const sourceHashes = new Map<string, string>();

beforeAll(() => {
  dir = fixture('ext-tree.sh');
  source = listSource(join(dir, 'src'));
  for (const s of source) {
    if (s.type === 'file' && s.path !== SPARSE) sourceHashes.set(s.path, sha256sumFile(join(dir, 'src', s.path)));
  }
});

function readSource(path: string, offset: number, length: number): Buffer {
  const fd = openSync(join(dir, 'src', path), 'r');
  try {
    const b = Buffer.alloc(length);
    readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    closeSync(fd);
  }
}

describe.each(VARIANTS)('mkfs $name', (v) => {
  let fs: ExtFileSystem;
  let entries: Map<string, FsEntry>;
  let image: string;
  beforeAll(() => {
    image = join(dir, `${v.name}.img`);
    fs = openExt(image);
    entries = walkMap(fs);
  });

  test('e2fsck finds the image clean (sanity of the fixture)', () => {
    expect(run('cat', [join(dir, `${v.name}.fsck.txt`)])).not.toMatch(/UNEXPECTED|Fix\?/);
  });

  test('info() agrees with dumpe2fs', () => {
    const info = fs.info();
    const dump = run('dumpe2fs', ['-h', image]);
    const field = (k: string) => (new RegExp(`^${k}:\\s+(.*)$`, 'm').exec(dump)?.[1] ?? '').trim();
    expect(info.type).toBe(v.type);
    expect(info.label).toBe(field('Filesystem volume name'));
    expect(info.uuid).toBe(field('Filesystem UUID'));
    expect(info.blockSize).toBe(Number(field('Block size')));
    expect(info.blockSize).toBe(v.blockSize);
    expect(info.totalBytes).toBe(Number(field('Block count')) * v.blockSize);
    expect(info.usedBytes).toBe((Number(field('Block count')) - Number(field('Free blocks'))) * v.blockSize);
    expect(info.features.sort()).toEqual(field('Filesystem features').split(/\s+/).sort());
    for (const f of v.features) expect(info.features).toContain(f);
    expect(info.clean).toBe(true);
    expect(info.facts?.inodeCount).toBe(Number(field('Inode count')));
    expect(fs.problems).toEqual([]);
  });

  test('the listing equals the source tree (path, type, size, mode, owner, mtime, target, rdev)', () => {
    const ours = [...entries.values()]
      .filter((e) => e.path !== '/' && e.path !== '/lost+found')
      .map(comparable)
      .sort((a, b) => (a.path < b.path ? -1 : 1));
    expect(ours).toEqual(source);
    expect(fs.problems).toEqual([]);
  });

  // The Sleuth Kit cannot open bigalloc filesystems ("Cannot determine file system type"): debugfs below.
  if (!v.features.includes('bigalloc')) {
    test('the listing agrees with fls -r -p (paths and inode numbers)', () => {
      const fls = flsListing(image);
      const ours = new Map([...entries.values()].filter((e) => e.path !== '/').map((e) => [e.path, Number(e.id)]));
      expect(ours).toEqual(fls);
    });
  }

  test('the listing agrees with debugfs ls -p (paths and inode numbers)', () => {
    const dirs = ['/', '/lost+found', ...source.filter((s) => s.type === 'dir').map((s) => s.path)];
    const want = debugfsListing(image, dirs);
    const ours = new Map([...entries.values()].filter((e) => e.path !== '/').map((e) => [e.path, Number(e.id)]));
    expect(ours).toEqual(want);
  });

  test('every file hashes like the source (sha256sum)', () => {
    let n = 0;
    for (const [path, want] of sourceHashes) {
      const e = entries.get(path) as FsEntry;
      expect(hashEntry(fs, e), path).toBe(want);
      n++;
    }
    expect(n).toBeGreaterThan(20);
  });

  test('the 5 GiB sparse file: holes as null runs, islands where the source has them', () => {
    const e = entries.get(SPARSE) as FsEntry;
    expect(e.size).toBe(5 * 1024 ** 3);
    expect(e.flags).toContain('sparse');
    const runs = fs.runs(e);
    expect(runs.reduce((n, r) => n + r.length, 0)).toBe(e.size);
    const data = runs.filter((r) => r.volumeOffset !== null);
    expect(data.reduce((n, r) => n + r.length, 0)).toBeLessThanOrEqual(ISLANDS.length * 16384);
    for (const off of ISLANDS) {
      const n = Math.min(64, e.size - off);
      expect(fs.read(e, off, n)).toEqual(readSource(SPARSE, off, n));
      expect(data.some((r) => r.fileOffset <= off && off < r.fileOffset + r.length)).toBe(true);
    }
    expect(fs.read(e, 3 * 1024 ** 3, 4096).equals(Buffer.alloc(4096))).toBe(true);
  });

  test('hard links share one id, nlink 3 and the hardlink flag', () => {
    const names = ['/hard-a', '/hard-b', '/links/hard-c'].map((p) => entries.get(p) as FsEntry);
    expect(new Set(names.map((e) => e.id)).size).toBe(1);
    for (const e of names) {
      expect(e.nlink).toBe(3);
      expect(e.flags).toContain('hardlink');
    }
  });

  test('xattrs equal getfattr on the source (user, trusted, security, POSIX ACLs, external block)', () => {
    for (const p of ['/xattr-file', '/xattr-big', '/acl-file', '/acl-dir']) {
      const want = getfattr(join(dir, 'src', p));
      const got = new Map((entries.get(p)?.xattrs ?? []).map((x) => [x.name, Buffer.from(x.value).toString('hex')]));
      expect(got, p).toEqual(want);
    }
  });

  test('xattrs agree with debugfs ea_list', () => {
    const out = run('debugfs', ['-R', 'ea_list /xattr-file', image]);
    expect(out).toContain('user.color (4) = "blue"');
    expect(out).toContain('trusted.level (1) = "3"');
  });

  test('times and crtime agree with debugfs stat', () => {
    const e = entries.get('/random-3m.bin') as FsEntry;
    const stat = run('debugfs', ['-R', 'stat /random-3m.bin', image]);
    const t = (k: string) => {
      const m = new RegExp(`^\\s*${k}: 0x([0-9a-f]+)(?::([0-9a-f]+))?`, 'm').exec(stat);
      if (!m) return undefined;
      const lo = Number.parseInt(m[1] as string, 16) | 0;
      const extra = m[2] ? Number.parseInt(m[2], 16) : 0;
      return (BigInt(lo) + BigInt(extra & 3) * 2n ** 32n) * 1_000_000_000n + BigInt(extra >>> 2);
    };
    expect(e.mtimeNs).toBe(t('mtime'));
    expect(e.ctimeNs).toBe(t('ctime'));
    expect(e.atimeNs).toBe(t('atime'));
    expect(e.birthtimeNs).toBe(t('crtime'));
    expect(e.mtimeNs).toBe(1614834367123456789n);
  });

  test('lookup() and list() find what walk() found', () => {
    const deep = [...entries.keys()].find((p) => p.endsWith('level-30/file.txt')) as string;
    expect(fs.lookup(deep)?.id).toBe(entries.get(deep)?.id);
    expect(fs.lookup('/utf8/🎉 party 🚀.txt')?.size).toBe(6);
    expect(fs.lookup('/no/such')).toBeUndefined();
    expect(
      fs
        .list('/utf8')
        .map((e) => e.name)
        .sort(),
    ).toEqual(['héllo wörld.txt', '日本語のファイル', '🎉 party 🚀.txt'].sort());
  });
});

test('the whole sparse file hashes like sha256sum of the source (ext4)', () => {
  const fs = openExt(join(dir, 'ext4.img'));
  const e = fs.lookup(SPARSE) as FsEntry;
  expect(hashEntry(fs, e)).toBe(sha256sumFile(join(dir, 'src', SPARSE)));
});
