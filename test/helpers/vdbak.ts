/**
 * Runs the built vdbak CLI (bin/vdbak.js → dist/) as a child process, the way
 * an administrator does: tests that use it run after `npm run build`.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fixture, ROOT } from './fixtures.js';
import type { BackupResult } from '../../agent/backup/job.js';

export const CLI = join(ROOT, 'bin', 'vdbak.js');
/** Restores of whole fixtures write megabytes to stdout (cat, --tar -). */
const MAX_OUTPUT = 1024 * 1024 * 1024;

export interface CliResult {
  code: number | null;
  stdout: string;
  /** stdout as bytes (cat, tar streams). */
  bytes: Buffer;
  stderr: string;
  /** stdout parsed as JSON; throws with the output when it is not. */
  json<T = unknown>(): T;
  /** stdout as JSON lines (backup --json prints one object per VM). */
  jsonLines<T = unknown>(): T[];
}

export function vdbak(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: Buffer | string } = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    maxBuffer: MAX_OUTPUT,
    env: { ...process.env, ...opts.env },
    input: opts.input,
  });
  if (r.error) throw r.error;
  const bytes = r.stdout;
  const stdout = bytes.toString('utf8');
  const stderr = r.stderr.toString('utf8');
  const what = `vdbak ${args.join(' ')} (exit ${r.status})\nstdout: ${stdout.slice(0, 2000)}\nstderr: ${stderr.slice(0, 2000)}`;
  return {
    code: r.status,
    stdout,
    bytes,
    stderr,
    json<T>(): T {
      try {
        return JSON.parse(stdout) as T;
      } catch {
        throw new Error(`not JSON: ${what}`);
      }
    },
    jsonLines<T>(): T[] {
      try {
        return stdout
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as T);
      } catch {
        throw new Error(`not JSON lines: ${what}`);
      }
    },
  };
}

/** Like vdbak() but a non-zero exit throws with the command's output. */
export function vdbakOk(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: Buffer | string } = {}): CliResult {
  const r = vdbak(args, opts);
  if (r.code !== 0) {
    throw new Error(
      `vdbak ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout.slice(0, 4000)}\nstderr: ${r.stderr}`,
    );
  }
  return r;
}

/** The statistics `backup --json` prints for one VM: the job's result as JSON. */
export type BackupJson = BackupResult;

/** What a test compares of one entry of a folder tree. */
export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  sha256?: string;
  linkTarget?: string;
  mode: number;
  uid: number;
  gid: number;
  /** Whole seconds (floor), from the nanosecond time: restores keep at least seconds. */
  mtimeS: bigint;
}

const NS_PER_S = 1_000_000_000n;

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n ? q - 1n : q;
}

/** Every entry under `root` (not root itself), by '/'-separated relative path; files hashed with SHA-256. */
export function snapshotTree(root: string): Map<string, TreeEntry> {
  const out = new Map<string, TreeEntry>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(rel ? join(root, rel) : root)) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(root, r);
      const st = lstatSync(p, { bigint: true });
      const e: TreeEntry = {
        type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other',
        size: Number(st.size),
        mode: Number(st.mode & 0o7777n),
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtimeS: floorDiv(st.mtimeNs, NS_PER_S),
      };
      if (e.type === 'file') e.sha256 = createHash('sha256').update(readFileSync(p)).digest('hex');
      if (e.type === 'symlink') e.linkTarget = readlinkSync(p);
      out.set(r, e);
      if (e.type === 'dir') walk(r);
    }
  };
  walk('');
  return out;
}

export interface CompareOptions {
  /** Compare mtimes of files and symlinks (to the second). */
  mtime?: boolean;
  /** Compare mtimes of folders too. */
  dirMtime?: boolean;
  /** Compare permission bits; setuid/setgid are expected dropped on files (restores drop them by default). */
  mode?: boolean;
  /** Compare uid/gid (a restore run as root sets them). */
  owner?: boolean;
  /** Restored paths that are expected beyond the source (named-stream sidecars, lost+found). */
  extra?: (path: string) => boolean;
  /** Source entries of type 'other' (fifos, devices, sockets) may be missing from the restore. */
  specialsOptional?: boolean;
}

/**
 * Differences between a source tree (the oracle) and a restored tree, one line
 * each; empty when they agree. Hard links are compared as content only.
 */
export function compareTrees(
  source: Map<string, TreeEntry>,
  restored: Map<string, TreeEntry>,
  opts: CompareOptions = {},
): string[] {
  const diffs: string[] = [];
  for (const [path, s] of source) {
    const r = restored.get(path);
    if (!r) {
      if (!(s.type === 'other' && opts.specialsOptional)) diffs.push(`${path}: missing (a ${s.type} in the source)`);
      continue;
    }
    if (r.type !== s.type) {
      diffs.push(`${path}: is a ${r.type}, the source has a ${s.type}`);
      continue;
    }
    if (s.type === 'file' && (r.size !== s.size || r.sha256 !== s.sha256)) {
      diffs.push(`${path}: content differs (size ${r.size} vs ${s.size}, sha256 ${r.sha256} vs ${s.sha256})`);
    }
    if (s.type === 'symlink' && r.linkTarget !== s.linkTarget) {
      diffs.push(`${path}: link target ${JSON.stringify(r.linkTarget)} vs ${JSON.stringify(s.linkTarget)}`);
    }
    const timed = s.type === 'dir' ? opts.dirMtime : opts.mtime && s.type !== 'other';
    if (timed && r.mtimeS !== s.mtimeS) diffs.push(`${path}: mtime ${r.mtimeS} vs ${s.mtimeS} (seconds)`);
    if (opts.mode && s.type !== 'symlink') {
      const want = s.type === 'file' ? s.mode & ~0o6000 : s.mode;
      if (r.mode !== want) diffs.push(`${path}: mode ${r.mode.toString(8)} vs ${want.toString(8)}`);
    }
    if (opts.owner && (r.uid !== s.uid || r.gid !== s.gid)) {
      diffs.push(`${path}: owner ${r.uid}:${r.gid} vs ${s.uid}:${s.gid}`);
    }
  }
  for (const path of restored.keys()) {
    if (!source.has(path) && !opts.extra?.(path)) diffs.push(`${path}: not in the source`);
  }
  return diffs;
}

/** SHA-256 of a file's bytes. */
export function fileSha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** The NTFS tree fixture the chains are made from: 512-byte clusters, a 64 MiB sparse file (shared with test/fs). */
export const NTFS_TREE_ARGS = ['512', String(64 * 1024 * 1024)];

/** backup-chains.sh's output: OUT/ext and OUT/ntfs (see the script). */
export function chainsFixture(): string {
  const ext = basename(fixture('ext-tree.sh'));
  const ntfs = basename(fixture('ntfs-tree.sh', NTFS_TREE_ARGS));
  return fixture('backup-chains.sh', [ext, ntfs]);
}

/** The demo's sample store (keyed by the hash of the script that makes it, as test/cli does). */
export function sampleStore(): string {
  const script = readFileSync(join(ROOT, 'scripts', 'make-sample-store.sh'));
  return fixture('sample-store.sh', [createHash('sha256').update(script).digest('hex').slice(0, 16)]);
}

/** Lines of a TSV file, split on tabs. */
export function readTsv(path: string): string[][] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t'));
}

/** A fresh repository in a new temporary folder; returns its path. */
export function newRepo(prefix: string, initArgs: string[] = []): string {
  const root = join(mkdtempSync(join(tmpdir(), `vdbak-${prefix}-`)), 'repo');
  vdbakOk(['init', '--repo', root, ...initArgs]);
  return root;
}
