/**
 * Shared helpers of the ext tests: open an image file through openDisk,
 * list a source directory with node:fs (the oracle for mkfs -d fixtures),
 * parse `fls -r -p` and `getfattr`, hash entries as we read them.
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { openDisk } from '../../parsers/disk/open.js';
import type { ExtFileSystem } from '../../parsers/fs/ext/fs.js';
import { extDriver } from '../../parsers/fs/ext/index.js';
import type { FileSystem, FsEntry } from '../../parsers/fs/types.js';
import { run } from '../helpers/fixtures.js';

export function openExt(path: string): ExtFileSystem {
  const dev = openDisk(path);
  if (!extDriver.probe(dev)) throw new Error(`${path}: not ext`);
  return extDriver.open(dev) as ExtFileSystem;
}

export interface Listed {
  path: string;
  type: string;
  size?: number;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  linkTarget?: string;
  rdev?: number;
}

/** The comparable fields of an entry (size only where it is content: files and symlinks). */
export function comparable(e: FsEntry): Listed {
  const l: Listed = { path: e.path, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, mtimeNs: e.mtimeNs };
  if (e.type === 'file' || e.type === 'symlink') l.size = e.size;
  if (e.linkTarget !== undefined) l.linkTarget = e.linkTarget;
  if (e.rdev !== undefined) l.rdev = e.rdev;
  return l;
}

/** Lists a source tree with lstat: what mkfs -d should have copied. */
export function listSource(root: string): Listed[] {
  const out: Listed[] = [];
  const walk = (dir: string, rel: string) => {
    for (const name of readdirSync(dir)) {
      const full = join(dir, name);
      const st = lstatSync(full, { bigint: true });
      const path = `${rel}/${name}`;
      const type = st.isFile()
        ? 'file'
        : st.isDirectory()
          ? 'dir'
          : st.isSymbolicLink()
            ? 'symlink'
            : st.isFIFO()
              ? 'fifo'
              : st.isCharacterDevice()
                ? 'chardev'
                : st.isBlockDevice()
                  ? 'blockdev'
                  : st.isSocket()
                    ? 'socket'
                    : 'other';
      const l: Listed = {
        path,
        type,
        mode: Number(st.mode) & 0o7777,
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtimeNs: st.mtimeNs,
      };
      if (type === 'file' || type === 'symlink') l.size = Number(st.size);
      if (type === 'symlink') l.linkTarget = readlinkSync(full);
      if (type === 'chardev' || type === 'blockdev') l.rdev = Number(st.rdev);
      out.push(l);
      if (type === 'dir') walk(full, path);
    }
  };
  walk(root, '');
  return out.sort((a, b) => (a.path < b.path ? -1 : 1));
}

/** `fls -r -p` on an image: live (path, inode) pairs, without TSK's virtual $OrphanFiles. */
export function flsListing(image: string, offsetSectors?: number): Map<string, number> {
  const args = ['-r', '-p', ...(offsetSectors !== undefined ? ['-o', String(offsetSectors)] : []), image];
  return parseFls(run('fls', args));
}

export function parseFls(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\S)\/(\S) (\* )?(\d+)(?:\(realloc\))?:\t([^\t]*)/.exec(line);
    if (!m || m[3] || m[1] === 'V' || m[2] === 'V') continue;
    const path = m[5] as string;
    if (path.startsWith('$OrphanFiles')) continue;
    out.set(`/${path}`, Number(m[4]));
  }
  return out;
}

/**
 * `debugfs ls -p` over the given directories: (path, inode) of every name
 * but '.' and '..'. A second oracle, and the only one for bigalloc (TSK cannot read it).
 */
export function debugfsListing(image: string, dirs: string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const d of dirs) {
    const text = run('debugfs', ['-R', `ls -p "${d}"`, image]);
    for (const line of text.split('\n')) {
      const m = /^\/(\d+)\/[0-7]+\/\d+\/\d+\/(.*)\/\d*\/$/.exec(line);
      if (!m || m[2] === '.' || m[2] === '..' || m[1] === '0') continue;
      out.set(`${d === '/' ? '' : d}/${m[2]}`, Number(m[1]));
    }
  }
  return out;
}

/** Every entry of a walk keyed by path. */
export function walkMap(fs: FileSystem): Map<string, FsEntry> {
  const m = new Map<string, FsEntry>();
  for (const e of fs.walk()) {
    if (m.has(e.path)) throw new Error(`walk yielded ${e.path} twice`);
    m.set(e.path, e);
  }
  return m;
}

/** SHA-256 of an entry's content, read in 4 MiB pieces. */
export function hashEntry(fs: FileSystem, e: FsEntry): string {
  const h = createHash('sha256');
  const piece = 4 * 1024 * 1024;
  for (let off = 0; off < e.size; off += piece) h.update(fs.read(e, off, Math.min(piece, e.size - off)));
  return h.digest('hex');
}

/** All xattrs of a source file as getfattr(1) reports them: name → hex value. */
export function getfattr(path: string): Map<string, string> {
  const out = new Map<string, string>();
  const text = run('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', path]);
  for (const line of text.split('\n')) {
    const m = /^([^#=][^=]*)=0x([0-9a-f]*)$/.exec(line.trim());
    if (m) out.set(m[1] as string, m[2] as string);
  }
  return out;
}

/**
 * Our (path → inode) listing equals TSK's, except where e2fsprogs (debugfs ncheck)
 * sides with us: TSK reads htree index blocks as names (of unused or unrelated inodes), and
 * does not read the system.data part of inline directories.
 */
export function expectListing(image: string, got: Map<string, number>, tsk: Map<string, number>): void {
  const extra = [...got].filter(([p, i]) => tsk.get(p) !== i);
  const missing = [...tsk].filter(([p, i]) => got.get(p) !== i);
  for (const [p, i] of extra) expect(ncheck(image, i), p).toContain(p);
  for (const [p, i] of missing) expect(ncheck(image, i), p).not.toContain(p);
  expect(extra.length + missing.length).toBeLessThan(5);
}

export function ncheck(image: string, ino: number): string[] {
  return run('debugfs', ['-R', `ncheck ${ino}`, image])
    .split('\n')
    .slice(1)
    .map((l) => l.split('\t')[1] ?? '')
    .filter((p) => p !== '');
}
