/**
 * A vdbak repository on the controller: a folder holding the catalog
 * (`catalog.db`, SQLite WAL) and a lock, plus the backup target where packs
 * go (by default `<repo>/target`, or any path given at init, e.g. a mounted
 * backup share).
 *
 * The repository's settings (chunk sizes, pack size, zstd level, target) are
 * written once by `init` into the catalog's meta table, validated and frozen
 * when a repository is opened, and passed to whoever needs them.
 */
import { randomUUID } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  unlinkSync,
  writeSync,
  fsyncSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { Catalog } from '../catalog/catalog.js';
import { errorsFor } from '../parsers/errors.js';
import { DEFAULT_CHUNK_SIZES, type ChunkSizes, validateChunkSizes } from './chunk/fastcdc.js';
import { DEFAULT_ZSTD_LEVEL } from '../transport/chunk-format.js';
import { DEFAULT_PACK_TARGET_SIZE } from '../transport/pack.js';
import { LocalTarget } from '../transport/targets/local.js';
import type { Target } from '../transport/targets/types.js';

export const CATALOG_FILE = 'catalog.db';
export const LOCK_FILE = 'lock';
export const DEFAULT_REPO = '/var/lib/vdbak';

export interface RepoSettings {
  readonly repoId: string;
  readonly chunkSizes: Readonly<ChunkSizes>;
  readonly zstdLevel: number;
  readonly packTargetSize: number;
  /** Absolute path of the local target. */
  readonly targetPath: string;
}

export interface InitOptions {
  target?: string;
  chunkSizes?: Partial<ChunkSizes>;
  zstdLevel?: number;
  packTargetSize?: number;
}

const repoErr = (root: string) => errorsFor({ image: root, layer: 'repo' });

/** The repository folder a command works on: --repo, else $VDBAK_REPO, else /var/lib/vdbak. */
export function repoPath(flag: string | undefined): string {
  return resolve(flag ?? process.env.VDBAK_REPO ?? DEFAULT_REPO);
}

export function initRepo(root: string, opts: InitOptions = {}): RepoSettings {
  const dbPath = join(root, CATALOG_FILE);
  if (existsSync(dbPath)) {
    throw repoErr(root).unsupported('REPO_EXISTS', `${root} already holds a vdbak repository (${CATALOG_FILE})`);
  }
  const chunkSizes = { ...DEFAULT_CHUNK_SIZES, ...opts.chunkSizes };
  try {
    validateChunkSizes(chunkSizes);
  } catch (e) {
    throw repoErr(root).unsupported('REPO_BAD_CHUNK_SIZES', (e as Error).message);
  }
  const zstdLevel = opts.zstdLevel ?? DEFAULT_ZSTD_LEVEL;
  if (!Number.isInteger(zstdLevel) || zstdLevel < -7 || zstdLevel > 19) {
    throw repoErr(root).unsupported('REPO_BAD_ZSTD_LEVEL', `zstd level ${zstdLevel} is not in -7..19`);
  }
  const packTargetSize = opts.packTargetSize ?? DEFAULT_PACK_TARGET_SIZE;
  if (!Number.isInteger(packTargetSize) || packTargetSize < 64 * 1024 || packTargetSize > 512 * 1024 * 1024) {
    throw repoErr(root).unsupported('REPO_BAD_PACK_SIZE', `pack size ${packTargetSize} is not in 64 KiB..512 MiB`);
  }
  mkdirSync(root, { recursive: true });
  const targetPath = resolve(opts.target ?? join(root, 'target'));
  mkdirSync(targetPath, { recursive: true });
  const cat = Catalog.open(dbPath, { create: true });
  try {
    const settings: RepoSettings = {
      repoId: randomUUID(),
      chunkSizes,
      zstdLevel,
      packTargetSize,
      targetPath: realpathSync(targetPath),
    };
    cat.tx(() => {
      cat.setMeta('repo_id', settings.repoId);
      cat.setMeta('chunk_sizes', JSON.stringify(settings.chunkSizes));
      cat.setMeta('zstd_level', String(settings.zstdLevel));
      cat.setMeta('pack_target_size', String(settings.packTargetSize));
      cat.setMeta('target', JSON.stringify({ type: 'local', path: settings.targetPath }));
    });
    return settings;
  } finally {
    cat.close();
  }
}

function readSettings(cat: Catalog, root: string): RepoSettings {
  const err = repoErr(root);
  const get = (k: string): string => {
    const v = cat.getMeta(k);
    if (v === undefined) throw err.corrupt('REPO_META_MISSING', `catalog meta '${k}' is missing`);
    return v;
  };
  try {
    const chunkSizes = JSON.parse(get('chunk_sizes')) as ChunkSizes;
    validateChunkSizes(chunkSizes);
    const target = JSON.parse(get('target')) as { type: string; path: string };
    if (target.type !== 'local' || typeof target.path !== 'string') {
      throw err.unsupported('REPO_TARGET', `target type ${target.type} is not supported here`);
    }
    return Object.freeze({
      repoId: get('repo_id'),
      chunkSizes: Object.freeze(chunkSizes),
      zstdLevel: Number(get('zstd_level')),
      packTargetSize: Number(get('pack_target_size')),
      targetPath: target.path,
    });
  } catch (e) {
    if (e instanceof SyntaxError) throw err.corrupt('REPO_META_BAD', `catalog meta: ${e.message}`);
    throw e;
  }
}

export interface Repo {
  readonly root: string;
  readonly catalogPath: string;
  readonly settings: RepoSettings;
  readonly catalog: Catalog;
  readonly target: Target;
  close(): void;
}

export interface OpenRepoOptions {
  readonly?: boolean;
  /** Use this target instead of the configured one (tests inject faults through it). */
  target?: Target;
}

export function openRepo(root: string, opts: OpenRepoOptions = {}): Repo {
  const catalogPath = join(root, CATALOG_FILE);
  if (!existsSync(catalogPath)) {
    throw repoErr(root).notFound('REPO_NOT_FOUND', `no vdbak repository at ${root} (run 'vdbak init --repo ${root}')`);
  }
  const catalog = Catalog.open(catalogPath, { readonly: opts.readonly });
  try {
    const settings = readSettings(catalog, root);
    const target = opts.target ?? new LocalTarget(settings.targetPath);
    return { root, catalogPath, settings, catalog, target, close: () => catalog.close() };
  } catch (e) {
    catalog.close();
    throw e;
  }
}

/** Opens the repository named by --repo (else $VDBAK_REPO, else the default), runs `fn`, closes it. */
export function withRepo<T>(
  flag: string | undefined,
  fn: (r: Repo) => Promise<T>,
  opts: OpenRepoOptions = {},
): Promise<T> {
  const repo = openRepo(repoPath(flag), opts);
  return fn(repo).finally(() => repo.close());
}

/** True when a process with that pid runs on this host (a lock or backup of another host is presumed alive). */
export function processAlive(pid: number, host: string = hostname()): boolean {
  if (host !== hostname()) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the repository's writer lock (one writer at a time: backup, forget,
 * prune). A lock left by a dead process on this host is taken over.
 */
export function lockRepo(root: string, what: string): () => void {
  const path = join(root, LOCK_FILE);
  const me = JSON.stringify({ pid: process.pid, host: hostname(), what, since: new Date().toISOString() });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o644);
      writeSync(fd, me);
      fsyncSync(fd);
      closeSync(fd);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        try {
          unlinkSync(path);
        } catch {
          // already gone: nothing to release
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let holder: { pid?: number; host?: string; what?: string } = {};
      try {
        holder = JSON.parse(readFileSync(path, 'utf8')) as typeof holder;
      } catch {
        // a lock being written right now, or garbage: treat as held unless its pid is known dead
      }
      if (typeof holder.pid === 'number' && !processAlive(holder.pid, holder.host)) {
        unlinkSync(path);
        continue;
      }
      throw repoErr(root).io(
        'REPO_LOCKED',
        `repository is busy: ${holder.what ?? 'another command'} (pid ${holder.pid ?? '?'} on ${holder.host ?? '?'}) holds ${path}`,
      );
    }
  }
  throw repoErr(root).io('REPO_LOCKED', `could not take ${path}`);
}
