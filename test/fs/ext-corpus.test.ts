/**
 * ext reader on the public images of ../shared/corpus/ext (SOURCES.md):
 * listings against The Sleuth Kit (`fls` listings staged in
 * corpus/expected/tsk_fls, and fls run here), contents against `icat`, and the
 * upstream expectations of dfvfs, dissect.extfs, go-ext4 and e2fsprogs.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import type { FsEntry } from '../../parsers/fs/types.js';
import { CORPUS, fixture, run, runBytes, sha256 } from '../helpers/fixtures.js';
import { expectListing, flsListing, hashEntry, openExt, parseFls, walkMap } from './ext-helpers.js';

let dir: string;
beforeAll(() => {
  dir = fixture('ext-corpus.sh');
});

const img = (name: string) => join(dir, `${name}.img`);
const ours = (m: Map<string, FsEntry>) =>
  new Map([...m.values()].filter((e) => e.path !== '/').map((e) => [e.path, Number(e.id)]));

const IMAGES = [
  'dfvfs_ext2',
  'dissect_ext4',
  'dissect_ext4_symlink_test1',
  'dissect_ext4_symlink_test2',
  'dissect_ext4_symlink_test3',
  'e2fsprogs_d_inline_dump',
  'e2fsprogs_f_desc_size_128',
  'e2fsprogs_f_h_normal',
  'e2fsprogs_f_h_unsigned',
  'e2fsprogs_f_uninit_ext_past_eof',
  'e2fsprogs_f_valid_ea_in_inode',
  'e2fsprogs_j_recover_csum3_64bit',
  'go-ext4_hierarchy_32',
  'go-ext4_hierarchy_64',
  'go-ext4_tiny',
];

describe.each(IMAGES)('corpus %s', (name) => {
  test('listing equals fls -r -p (staged listing where there is one, and a live run), debugfs arbitrating', () => {
    const fs = openExt(img(name));
    const m = walkMap(fs);
    const staged = join(CORPUS, 'expected', 'tsk_fls', `ext_${name}.fls.txt`);
    if (existsSync(staged)) expectListing(img(name), ours(m), parseFls(readFileSync(staged, 'utf8')));
    expectListing(img(name), ours(m), flsListing(img(name)));
    expect(fs.problems).toEqual([]);
  });

  test('file contents equal debugfs cat, symlink targets debugfs stat/cat (up to 300)', () => {
    const fs = openExt(img(name));
    const all = [...walkMap(fs).values()];
    for (const e of all.filter((x) => x.type === 'file').slice(0, 300)) {
      // debugfs cat prints the whole inline area of an inline file, past i_size.
      const want = runBytes('debugfs', ['-R', `cat <${e.id}>`, img(name)]);
      expect(hashEntry(fs, e), e.path).toBe(sha256(e.flags?.includes('inline') ? want.subarray(0, e.size) : want));
    }
    for (const e of all.filter((x) => x.type === 'symlink').slice(0, 300)) {
      const stat = run('debugfs', ['-R', `stat <${e.id}>`, img(name)]);
      const fast = /Fast link dest: "(.*)"/.exec(stat)?.[1];
      const want = fast ?? runBytes('debugfs', ['-R', `cat <${e.id}>`, img(name)]).toString('utf8');
      expect(e.linkTarget, e.path).toBe(want);
    }
  });
});

test('dfvfs ext2: passwords.txt content, per-file SHA-256 and a read at offset 10', () => {
  const fs = openExt(img('dfvfs_ext2'));
  const m = walkMap(fs);
  const pw = m.get('/passwords.txt') as FsEntry;
  expect(pw.id).toBe('14');
  expect(fs.read(pw, 0, pw.size).toString()).toBe(
    'place,user,password\nbank,joesmith,superrich\nalarm system,-,1234\ntreasure chest,-,1111\nuber secret laire,admin,admin\n',
  );
  const hashes = readFileSync(join(CORPUS, 'expected/dfvfs_end_to_end/ext2.vmdk.hashes'), 'utf8').trim().split('\n');
  for (const line of hashes) {
    const [hash, path] = line.split('\t') as [string, string];
    expect(hashEntry(fs, m.get(path) as FsEntry), path).toBe(hash);
  }
  const paths = readFileSync(join(CORPUS, 'expected/dfvfs_end_to_end/ext2.vmdk.paths'), 'utf8').trim().split('\n');
  expect([...m.keys()].sort()).toEqual(paths.filter((p) => !p.includes('$OrphanFiles')).sort());
  expect(fs.read(m.get('/a_directory/another_file') as FsEntry, 10, 5).toString()).toBe('other');
  expect(m.get('/a_link')?.type).toBe('symlink');
});

test('dissect ext4.bin: geometry, uuid, test_file and security xattrs', () => {
  const fs = openExt(img('dissect_ext4'));
  const info = fs.info();
  expect(info.uuid).toBe('ab98e08e-e2da-4bc9-bfc6-1ac5eafb1001');
  expect(info.totalBytes / info.blockSize).toBe(2048);
  expect(info.facts?.groups).toBe(1);
  const m = walkMap(fs);
  expect(
    fs
      .list('/')
      .map((e) => e.name)
      .sort(),
  ).toEqual(['lost+found', 'test_file', 'xattr_cap']);
  const f = m.get('/test_file') as FsEntry;
  expect(fs.read(f, 0, f.size).toString()).toBe('dissect test file in ext4\n');
  const names = (m.get('/xattr_cap')?.xattrs ?? []).map((x) => x.name).sort();
  expect(names).toEqual(['security.capability', 'security.selinux']);
  const ea = run('debugfs', ['-R', 'ea_list /xattr_cap', img('dissect_ext4')]);
  for (const x of m.get('/xattr_cap')?.xattrs ?? []) expect(ea).toContain(`${x.name} (${x.value.length})`);
});

test('go-ext4 hierarchy: the golden listing (mode, size, mtime), md5 of fortune3', () => {
  const golden = JSON.parse(readFileSync(join(CORPUS, 'ext/go-ext4/hierarchy_64.ext4.golden'), 'utf8')) as {
    listdir: string[];
    fortune3_md5: string;
  };
  for (const name of ['go-ext4_hierarchy_64']) {
    const fs = openExt(img(name));
    const m = walkMap(fs);
    for (const line of golden.listdir.filter((l) => l !== '')) {
      const [, mode, ino, uid, gid, size, mtime, path] = /^(\S+)\s+(\d+) (\d+) (\d+)\s+(\d+) (\S+) (.*)$/.exec(
        line,
      ) as unknown as string[];
      const e = m.get(`/${path}`) as FsEntry;
      expect(e, path).toBeDefined();
      expect(e.id).toBe(ino);
      expect(e.size).toBe(Number(size));
      expect([e.uid, e.gid]).toEqual([Number(uid), Number(gid)]);
      expect(e.type === 'dir' ? 'd' : '-').toBe(mode?.[0]);
      expect(new Date(Number(e.mtimeNs / 1_000_000_000n) * 1000).toISOString().replace('.000', '')).toBe(mtime);
    }
    const f3 = m.get('/directory1/subdirectory1/fortune3') as FsEntry;
    expect(
      createHash('md5')
        .update(fs.read(f3, 0, f3.size))
        .digest('hex'),
    ).toBe(golden.fortune3_md5);
  }
});

test('e2fsprogs d_inline_dump: inline files and directories (debugfs expect)', () => {
  const fs = openExt(img('e2fsprogs_d_inline_dump'));
  const byId = new Map([...walkMap(fs).values()].map((e) => [e.id, e]));
  const long = byId.get('13') as FsEntry;
  expect(long.size).toBe(80);
  expect(long.flags).toContain('inline');
  expect(long.xattrs).toEqual([{ name: 'user.a', value: new Uint8Array([0x62]) }]);
  expect(fs.read(long, 0, 80)).toEqual(runBytes('debugfs', ['-R', 'cat <13>', img('e2fsprogs_d_inline_dump')]));
  expect(byId.get('18')?.size).toBe(20);
  const longDir = byId.get('16') as FsEntry;
  expect(longDir.type).toBe('dir');
  expect(longDir.size).toBe(132);
  expect(fs.list(longDir.path).length).toBeGreaterThan(0);
  expect(fs.runs(long)).toEqual([]);
});

test('e2fsprogs f_uninit_ext_past_eof: extents past EOF are not data', () => {
  const fs = openExt(img('e2fsprogs_f_uninit_ext_past_eof'));
  const a = fs.lookup('/a') as FsEntry;
  expect(a.size).toBe(0);
  expect(fs.runs(a)).toEqual([]);
  expect(fs.problems).toEqual([]);
});

test('e2fsprogs f_valid_ea_in_inode: in-inode xattrs agree with debugfs ea_list', () => {
  const image = img('e2fsprogs_f_valid_ea_in_inode');
  const fs = openExt(image);
  let checked = 0;
  for (const e of walkMap(fs).values()) {
    if (!e.xattrs) continue;
    const ea = run('debugfs', ['-R', `ea_list <${e.id}>`, image]);
    for (const x of e.xattrs) expect(ea).toContain(`${x.name} (${x.value.length})`);
    checked += e.xattrs.length;
  }
  expect(checked).toBeGreaterThan(0);
});

test('e2fsprogs f_h_normal / f_h_unsigned: htree directories list every name once', () => {
  for (const name of ['e2fsprogs_f_h_normal', 'e2fsprogs_f_h_unsigned']) {
    const fs = openExt(img(name));
    const m = walkMap(fs);
    // e2fsck: 47730 inodes in use; 1..10 are reserved (only the root, 2, has a name).
    expect(new Set([...m.values()].map((e) => e.id)).size).toBe(47730 - 10 + 1);
  }
});

test('e2fsprogs j_recover_csum3_64bit: needs journal recovery, reported as not clean', () => {
  const fs = openExt(img('e2fsprogs_j_recover_csum3_64bit'));
  const info = fs.info();
  expect(info.clean).toBe(false);
  expect(info.facts?.needsRecovery).toBe(true);
  expect(info.features).toContain('needs_recovery');
  expect(info.features).toContain('64bit');
  for (const name of IMAGES.filter((n) => n !== 'e2fsprogs_j_recover_csum3_64bit')) {
    expect(openExt(img(name)).info().clean, name).toBe(true);
  }
});

test('the fixture holds every corpus ext image', () => {
  expect(readdirSync(dir).filter((f) => f.endsWith('.img')).length).toBe(IMAGES.length);
});
