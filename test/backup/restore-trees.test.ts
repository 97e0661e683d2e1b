/**
 * Issue 5 §4: back up real fixtures (inside VMDKs and VMDK snapshot chains)
 * with the built CLI, restore every file of every volume, and compare with the
 * source trees the images were made from: SHA-256 of every regular file,
 * symlink targets, mtimes (to the second), modes and owners where the
 * filesystem keeps them, and NTFS named streams (restored as `<name>:<stream>`
 * sidecar files). The same restores go through `--tar -` into GNU tar.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fixture, run } from '../helpers/fixtures.js';
import {
  type BackupJson,
  chainsFixture,
  CLI,
  compareTrees,
  type CompareOptions,
  fileSha,
  newRepo,
  readTsv,
  sampleStore,
  snapshotTree,
  vdbak,
  vdbakOk,
} from '../helpers/vdbak.js';

interface RestoreJson {
  files: number;
  dirs: number;
  links: number;
  bytes: number;
  notes: { path: string; kind: string; detail: string; restoredAs?: string }[];
}

let repo: string;
let scratch: string;
let chains: string;
let store: string;
let extVmdk: string;
let ntfsDisk: string;
/** Backup ids by a name of this test's choosing. */
const ids = new Map<string, number>();

function backup(name: string, args: string[]): BackupJson {
  const r = vdbakOk(['backup', '--repo', repo, '--json', ...args]).jsonLines<BackupJson>();
  expect(r).toHaveLength(1);
  ids.set(name, r[0]!.backupId);
  return r[0]!;
}

function id(name: string): string {
  const v = ids.get(name);
  if (v === undefined) throw new Error(`no backup ${name}`);
  return String(v);
}

/** Restores `path` of backup `name` into a new folder; returns the folder and the --json report. */
function restoreTo(name: string, path: string): { dir: string; report: RestoreJson } {
  const dir = join(mkdtempSync(join(scratch, 'r-')), 'out');
  const report = vdbakOk(['restore', '--repo', repo, id(name), path, '--to', dir, '--json']).json<RestoreJson>();
  return { dir, report };
}

/** Restores through `restore --tar -` piped into GNU tar -x (both must succeed); returns the folder. */
function restoreTar(name: string, path: string): string {
  const dir = join(mkdtempSync(join(scratch, 't-')), 'out');
  mkdirSync(dir);
  const r = spawnSync(
    'bash',
    [
      '-c',
      // GNU tar restores the xattrs the pax headers carry only when asked
      'set -o pipefail; "$0" "$1" restore --repo "$2" "$3" "$4" --tar - 2>"$5/../stderr" | tar -x --xattrs --xattrs-include="*" -C "$5"',
      process.execPath,
      CLI,
      repo,
      id(name),
      path,
      dir,
    ],
    { encoding: 'utf8' },
  );
  expect(r.status, `${r.stderr}\n${readFileSync(join(dir, '..', 'stderr'), 'utf8')}`).toBe(0);
  return dir;
}

function expectSameTree(src: string, restored: string, opts: CompareOptions): void {
  expect(compareTrees(snapshotTree(src), snapshotTree(restored), opts)).toEqual([]);
}

/** Named streams as DirSink and TarSink write them: a sidecar `<path>:<stream>` beside the entry. */
function expectStreams(restored: string, streams: [string, string, string][]): void {
  for (const [path, stream, contentFile] of streams) {
    const sidecar = join(restored, `${path.slice(1)}:${stream}`);
    expect(fileSha(sidecar), `${path}:${stream}`).toBe(fileSha(contentFile));
  }
}

const isSidecar = (p: string): boolean => /:[^/]+$/.test(p);
const extExtra = (p: string): boolean => p === 'lost+found';

// the restored trees and the repository are about 550 MB a run: leave nothing behind in /tmp
afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  if (repo) rmSync(dirname(repo), { recursive: true, force: true });
});

beforeAll(() => {
  chains = chainsFixture();
  store = sampleStore();
  extVmdk = fixture('ext-vmdk.sh');
  ntfsDisk = fixture('ntfs-disk.sh');
  repo = newRepo('trees');
  scratch = mkdtempSync(join(tmpdir(), 'vdbak-trees-'));
  const sample = vdbakOk([
    'backup',
    '--repo',
    repo,
    '--json',
    join(store, 'win01'),
    join(store, 'lin01'),
  ]).jsonLines<BackupJson>();
  for (const b of sample) ids.set(b.vm, b.backupId);
  backup('ext-dos-sparse', [join(extVmdk, 'dos-sparse.vmdk')]);
  backup('ext-gpt-stream', [join(extVmdk, 'gpt-stream.vmdk')]);
  backup('ntfs-gpt', [join(ntfsDisk, 'gpt.vmdk')]);
  backup('ntfs-dos', [join(ntfsDisk, 'dos.vmdk')]);
  backup('ext-v1', ['--name', 'ext', join(chains, 'ext', 'vm', 'disk.vmdk')]);
  backup('ext-v2', ['--name', 'ext', join(chains, 'ext', 'vm')]);
  backup('ntfs-v1', ['--name', 'ntfs', join(chains, 'ntfs', 'vm', 'disk.vmdk')]);
  backup('ntfs-v2', ['--name', 'ntfs', join(chains, 'ntfs', 'vm')]);
});

describe('the demo store (NTFS on GPT in a snapshot chain, ext4 on MBR in a streamOptimized VMDK)', () => {
  test('win01: every file and the Zone.Identifier stream', () => {
    const { dir, report } = restoreTo('win01', '/d0p2');
    expectSameTree(join(store, 'sources', 'win01'), dir, { extra: isSidecar });
    expect(readFileSync(join(dir, 'Users/ana/Documents/report.docx:Zone.Identifier'), 'utf8')).toBe(
      'downloaded from the internet\n',
    );
    expect(report.notes.filter((n) => n.kind === 'failed')).toEqual([]);
    expect(report.files).toBe(5);
  });

  test('lin01: every file, symlink, mode, owner and mtime', () => {
    const { dir } = restoreTo('lin01', '/d0p1');
    expectSameTree(join(store, 'sources', 'lin01'), dir, {
      mtime: true,
      mode: true,
      owner: true,
      extra: extExtra,
    });
  });
});

describe('ext4 in partitions in VMDKs (ext-vmdk.sh)', () => {
  test.each([
    ['ext-dos-sparse', '/d0p5'],
    ['ext-gpt-stream', '/d0p2'],
  ])('%s %s', (name, vol) => {
    const { dir } = restoreTo(name, vol);
    expectSameTree(join(extVmdk, 'src'), dir, { mtime: true, dirMtime: true, mode: true, extra: extExtra });
  });
});

describe('NTFS in partitions in VMDKs (ntfs-disk.sh)', () => {
  test.each([
    ['ntfs-gpt', '/d0p2'],
    ['ntfs-dos', '/d0p6'],
  ])('%s %s: files and the named stream', (name, vol) => {
    const { dir } = restoreTo(name, vol);
    expectSameTree(join(ntfsDisk, 'src'), dir, { extra: isSidecar });
    expect(readFileSync(join(dir, 'hello.txt:ads'), 'utf8')).toBe('stream in a vmdk\n');
  });
});

describe('the ext fixture tree in a VMDK snapshot chain (backup-chains.sh)', () => {
  const opts: CompareOptions = { mtime: true, mode: true, owner: true, specialsOptional: true, extra: extExtra };

  test('version 1 (the base): every file, link, mode, owner and time; folders keep their times', () => {
    const { dir, report } = restoreTo('ext-v1', '/d0p1');
    expectSameTree(join(chains, 'ext', 'src'), dir, { ...opts, dirMtime: true });
    expect(report.notes.filter((n) => n.kind === 'failed')).toEqual([]);
    // what a folder cannot hold is reported, not silently dropped
    const unsupported = report.notes.filter((n) => n.kind === 'unsupported').map((n) => n.path);
    expect(unsupported).toEqual(expect.arrayContaining(['blockdev', 'chardev', 'fifo', 'socket']));
    expect(report.notes.some((n) => /setuid\/setgid/.test(n.detail))).toBe(true);
  });

  test('version 2 (read through the snapshot delta)', () => {
    const { dir } = restoreTo('ext-v2', '/d0p1');
    expectSameTree(join(chains, 'ext', 'src2'), dir, opts);
  });

  test('version 2 through restore --tar - | tar -x', () => {
    const dir = restoreTar('ext-v2', '/d0p1');
    // tar keeps fifos; devices and sockets are noted, not written
    expectSameTree(join(chains, 'ext', 'src2'), dir, opts);
    // text xattrs (user, trusted, security) travel as SCHILY.xattr records: getfattr reads the same
    const xattrs = (p: string) =>
      run('getfattr', ['-d', '-m', '-', '-e', 'hex', '--absolute-names', p]).replace(/^# file: .*\n/, '');
    for (const f of ['xattr-file', 'xattr-big']) {
      expect(xattrs(join(dir, f)), f).toBe(xattrs(join(chains, 'ext', 'src2', f)));
      expect(xattrs(join(dir, f))).toMatch(/user\./);
    }
  });

  test('restore --tar - into a reader that stops early ends with a typed error, no stack', () => {
    const r = spawnSync(
      'bash',
      [
        '-c',
        '"$0" "$1" restore --repo "$2" "$3" /d0p1 --tar - 2>"$4" | head -c 100 >/dev/null; echo "${PIPESTATUS[0]}"',
        process.execPath,
        CLI,
        repo,
        id('ext-v2'),
        join(scratch, 'epipe.stderr'),
      ],
      { encoding: 'utf8' },
    );
    const stderr = readFileSync(join(scratch, 'epipe.stderr'), 'utf8');
    expect(r.stdout.trim()).toBe('1');
    expect(stderr, stderr).toMatch(/^vdbak: .*\[[A-Z0-9_]+\]/);
    expect(stderr).not.toMatch(/\n\s+at /);
  });

  test('restore --tar FILE writes the same tree; an existing FILE is refused', () => {
    const base = mkdtempSync(join(scratch, 'tf-'));
    const tarFile = join(base, 'v2.tar');
    const r = vdbak(['restore', '--repo', repo, id('ext-v2'), '/d0p1', '--tar', tarFile]);
    expect(r.code, r.stderr).toBe(0);
    const dir = join(base, 'out');
    mkdirSync(dir);
    const x = spawnSync('tar', ['-x', '-C', dir, '-f', tarFile], { encoding: 'utf8' });
    expect(x.status, x.stderr).toBe(0);
    expectSameTree(join(chains, 'ext', 'src2'), dir, opts);
    const again = vdbak(['restore', '--repo', repo, id('ext-v2'), '/d0p1/bulk', '--tar', tarFile]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/RESTORE_EXISTS/);
  });

  test('a second restore into the same folder keeps what is there unless --overwrite', () => {
    const { dir } = restoreTo('ext-v1', '/d0p1/bulk');
    const f010 = join(dir, 'bulk', 'f010');
    const v1 = fileSha(f010);
    const keep = vdbak(['restore', '--repo', repo, id('ext-v2'), '/d0p1/bulk', '--to', dir, '--json']);
    const notes = keep.json<RestoreJson>().notes;
    expect(notes.some((n) => n.kind === 'exists' && n.path === 'bulk/f010')).toBe(true);
    expect(fileSha(f010)).toBe(v1);
    vdbakOk(['restore', '--repo', repo, id('ext-v2'), '/d0p1/bulk', '--to', dir, '--overwrite']);
    expect(fileSha(f010)).toBe(fileSha(join(chains, 'ext', 'src2', 'bulk', 'f010')));
  });

  test('ls -R --json lists every source entry with its type, size, mode, owner and mtime', () => {
    const rows = vdbakOk(['ls', '--repo', repo, id('ext-v2'), '/d0p1', '-R', '--json']).json<
      { path: string; type: string; size: number; mode: number; uid: number; gid: number; mtime: string }[]
    >();
    const listed = new Map(rows.map((r) => [r.path.replace(/^\/d0p1\//, ''), r]));
    const src = snapshotTree(join(chains, 'ext', 'src2'));
    expect([...listed.keys()].filter((p) => !src.has(p))).toEqual(['lost+found']);
    const diffs: string[] = [];
    for (const [p, e] of src) {
      const r = listed.get(p);
      if (!r) {
        diffs.push(`${p}: not listed`);
        continue;
      }
      const type = ['file', 'dir', 'symlink'].includes(r.type) ? r.type : 'other';
      const secs = BigInt(Math.floor(Date.parse(r.mtime) / 1000));
      if (type !== e.type) diffs.push(`${p}: type ${r.type} vs ${e.type}`);
      if (e.type === 'file' && r.size !== e.size) diffs.push(`${p}: size ${r.size} vs ${e.size}`);
      if (e.type !== 'symlink' && r.mode !== e.mode)
        diffs.push(`${p}: mode ${r.mode.toString(8)} vs ${e.mode.toString(8)}`);
      if (r.uid !== e.uid || r.gid !== e.gid) diffs.push(`${p}: owner ${r.uid}:${r.gid} vs ${e.uid}:${e.gid}`);
      // (folder times in src2 are the host's: debugfs left the image's alone)
      if (e.type !== 'dir' && secs !== e.mtimeS) diffs.push(`${p}: mtime ${r.mtime} vs ${e.mtimeS}`);
    }
    expect(diffs).toEqual([]);
  });

  test('a single folder and a single file', () => {
    const { dir } = restoreTo('ext-v2', '/d0p1/deep/level-1');
    expectSameTree(join(chains, 'ext', 'src2', 'deep', 'level-1'), join(dir, 'level-1'), opts);
    const one = restoreTo('ext-v2', '/d0p1/bulk/added.bin');
    expect(fileSha(join(one.dir, 'added.bin'))).toBe(fileSha(join(chains, 'ext', 'src2', 'bulk', 'added.bin')));
  });
});

describe('the NTFS fixture tree in a VMDK snapshot chain (backup-chains.sh)', () => {
  const streams = (v: string): [string, string, string][] =>
    readTsv(join(chains, 'ntfs', v)).map(([p, s, f]) => [p!, s!, join(chains, 'ntfs', f!)]);
  const opts: CompareOptions = { mtime: true, extra: isSidecar };

  test('version 1: files (LZNT1-compressed, sparse, hard-linked, deep, Unicode), symlinks, mtimes, streams', () => {
    const { dir } = restoreTo('ntfs-v1', '/d0p2');
    expectSameTree(join(chains, 'ntfs', 'src'), dir, opts);
    expectStreams(dir, streams('streams.tsv'));
  });

  test('version 2 (read through the snapshot delta), with a changed stream', () => {
    const { dir } = restoreTo('ntfs-v2', '/d0p2');
    expectSameTree(join(chains, 'ntfs', 'src2'), dir, opts);
    expectStreams(dir, streams('streams2.tsv'));
  });

  test('version 2 through restore --tar - | tar -x', () => {
    const dir = restoreTar('ntfs-v2', '/d0p2');
    expectSameTree(join(chains, 'ntfs', 'src2'), dir, opts);
    expectStreams(dir, streams('streams2.tsv'));
  });

  test('the volume by its label', () => {
    const { dir } = restoreTo('ntfs-v2', '/vdbak/links');
    expectSameTree(join(chains, 'ntfs', 'src2', 'links'), join(dir, 'links'), opts);
  });
});
