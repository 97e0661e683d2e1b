/**
 * Oracles for the NTFS tests: The Sleuth Kit's `fls -r -p` and `icat` on the
 * same image, and the source tree a fixture was made from. Shared by the
 * ntfs*.test.ts files.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { FileSystem, FsEntry } from '../../parsers/fs/types.js';
import { run, sha256 } from '../helpers/fixtures.js';

/** Metafiles at the root: TSK lists them, our reader hides them (see parsers/fs/ntfs/filesystem.ts). */
const META = new Set([
  '$MFT',
  '$MFTMirr',
  '$LogFile',
  '$Volume',
  '$AttrDef',
  '$Bitmap',
  '$Boot',
  '$BadClus',
  '$Secure',
  '$UpCase',
  '$Extend',
  '$OrphanFiles',
]);

export interface FlsLine {
  type: string;
  /** inode-type-id as fls prints it, usable with icat. */
  addr: string;
  /** '/'-rooted path, with ':stream' for named streams. */
  path: string;
}

/** Live (not deleted) entries that fls lists, metafiles left out. */
export function fls(image: string, offsetSectors = 0): FlsLine[] {
  const args = ['-r', '-p', ...(offsetSectors ? ['-o', String(offsetSectors)] : []), image];
  const out: FlsLine[] = [];
  for (const line of run('fls', args).split('\n')) {
    const m = /^(\S+) (\* )?([0-9-]+)(\(realloc\))?:\t(.*)$/.exec(line);
    if (!m || m[2]) continue;
    const path = `/${m[5]}`;
    const top = path.split('/')[1]?.split(':')[0] ?? '';
    // TSK lists a directory's named stream twice, once as 'dir/.:stream'
    if (META.has(top) || path.includes('/.:')) continue;
    out.push({ type: m[1]!, addr: m[3]!, path });
  }
  return out;
}

/**
 * SHA-256 of what icat prints for an address (streamed: files may be GiBs),
 * or the error TSK printed when it refuses the file.
 */
export function icatSha(image: string, addr: string, offsetSectors = 0): string {
  const off = offsetSectors ? `-o ${offsetSectors}` : '';
  // icat's own complaints are tagged: the shell may print unrelated noise (profile hooks) on stderr
  const script = `icat ${off} "$1" "$2" 2> >(sed 's/^/ICAT: /' >&2) | sha256sum; wait`;
  const r = spawnSync('bash', ['-c', script, '_', image, addr], { encoding: 'utf8' });
  const complaint = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('ICAT: '))
    .join('\n');
  if (complaint) return `icat error: ${complaint}`;
  return r.stdout.split(' ')[0]!;
}

/** SHA-256 of a stream read through our reader, in 4 MiB pieces. */
export function ourSha(fs: FileSystem, e: FsEntry, stream?: string): string {
  const size = stream === undefined ? e.size : (e.streams?.find((s) => s.name === stream)?.size ?? -1);
  const h = createHash('sha256');
  for (let off = 0; off < size; off += 4 * 1024 * 1024) {
    h.update(fs.read(e, off, Math.min(4 * 1024 * 1024, size - off), stream));
  }
  return h.digest('hex');
}

/** Our listing: '/'-rooted paths (root and the orphan folder left out), with named streams as 'path:name'. */
export function ourListing(fs: FileSystem): { entries: Map<string, FsEntry>; streams: Map<string, FsEntry> } {
  const entries = new Map<string, FsEntry>();
  const streams = new Map<string, FsEntry>();
  for (const e of fs.walk()) {
    if (e.path === '/' || e.path.startsWith('/$OrphanFiles')) continue;
    entries.set(e.path, e);
    for (const s of e.streams ?? []) streams.set(`${e.path}:${s.name}`, e);
  }
  return { entries, streams };
}

export interface SourceEntry {
  type: 'file' | 'dir' | 'symlink';
  sha?: string;
  target?: string;
  ino: number;
}

/** The source tree a fixture was made from, by '/'-rooted path. */
export function sourceTree(dir: string): Map<string, SourceEntry> {
  const out = new Map<string, SourceEntry>();
  const visit = (abs: string, rel: string): void => {
    for (const name of readdirSync(abs)) {
      const p = join(abs, name);
      const r = `${rel}/${name}`;
      const st = lstatSync(p);
      if (st.isSymbolicLink()) out.set(r, { type: 'symlink', target: readlinkSync(p), ino: st.ino });
      else if (st.isDirectory()) {
        out.set(r, { type: 'dir', ino: st.ino });
        visit(p, r);
      } else out.set(r, { type: 'file', ino: st.ino, sha: fileSha(p, st.size) });
    }
  };
  visit(dir, '');
  return out;
}

function fileSha(path: string, size: number): string {
  // big (sparse) files go through sha256sum, an oracle we did not write
  return size > 64 * 1024 * 1024 ? run('sha256sum', [path]).split(' ')[0]! : sha256(readFileSync(path));
}

/**
 * Browsing agrees with the walk: list() of every directory gives the walk's
 * children of it, and lookup() of every path gives the walk's entry. Paths in
 * `notIndexed` are live records whose name is missing from their directory's
 * index: the walk (parent references) has them, browsing (the index) does not.
 */
export function expectBrowseMatchesWalk(
  fs: FileSystem,
  entries: Map<string, FsEntry>,
  notIndexed: string[] = [],
): void {
  const children = new Map<string, string[]>([['/', []]]);
  for (const [p, e] of entries) {
    if (notIndexed.includes(p)) {
      expect(fs.lookup(p), p).toBeUndefined();
      continue;
    }
    const parent = p.slice(0, p.lastIndexOf('/')) || '/';
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent)!.push(`${e.id} ${p}`);
    if (e.type === 'dir' && !children.has(p)) children.set(p, []);
  }
  for (const [dir, kids] of children) {
    expect(
      fs
        .list(dir)
        .map((e) => `${e.id} ${e.path}`)
        .sort(),
      dir,
    ).toEqual(kids.sort());
  }
  for (const [p, e] of entries) if (!notIndexed.includes(p)) expect(fs.lookup(p), p).toEqual(e);
}
