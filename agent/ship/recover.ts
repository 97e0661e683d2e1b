/**
 * Recovery on a new controller from the target alone (issue 6 §7):
 *
 * 1. config.json says which repository the target holds.
 * 2. The newest catalog copy whose manifest and data verify (sizes, both
 *    SHA-256s, the frames' declared sizes) is decoded into NEWDIR/catalog.db;
 *    a copy that fails is reported and the next older one is tried.
 * 3. The catalog is pointed at the target where it was found.
 * 4. Backups that were running when the copy was taken are reaped (their
 *    writer is on the old machine, or gone).
 * 5. Packs the copy names but the target no longer holds (a prune after the
 *    copy) are dropped from it, then every pack the catalog does not know is
 *    recorded from its own index (adoptOrphanPacks). Their chunks become
 *    known, so the next backups deduplicate against them; but the file lists
 *    of backups made after the copy are not in any pack, so those backups are
 *    not recoverable.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, realpathSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Catalog } from '../../catalog/catalog.js';
import { SCHEMA_VERSION } from '../../catalog/schema.js';
import { errorsFor, isVdbakError } from '../../parsers/errors.js';
import { LocalTarget } from '../../transport/targets/local.js';
import type { Target } from '../../transport/targets/types.js';
import { adoptOrphanPacks } from '../backup/adopt.js';
import { CATALOG_FILE, lockRepo, openRepo } from '../repo.js';
import { readTargetConfig, type TargetConfig } from './config.js';
import { decodeCopyTo } from './frames.js';
import { CATALOG_PREFIX, type CatalogManifest, MAX_MANIFEST_BYTES, parseCopyName, parseManifest } from './manifest.js';

export interface SkippedCopy {
  copy: string;
  reason: string;
}

export interface RecoverResult {
  repo: string;
  target: string;
  repoId: string;
  /** The copy the catalog was rebuilt from. */
  copy: { name: string; time: string; newestBackupId: number | null; host: string };
  /** Newer copies that did not verify, newest first. */
  skipped: SkippedCopy[];
  /** Complete backups the recovered catalog holds. */
  backups: { id: number; vm: string; startedMs: number }[];
  /** Backups that newer (unusable) manifests list but the recovered catalog lacks. */
  lostBackups: { id: number; vm: string }[];
  /** Backups running when the copy was taken, now marked failed. */
  reaped: number[];
  /** Packs the copy named that are gone from the target (pruned after the copy). */
  missingPacks: string[];
  adopted: { packs: number; chunks: number; unreadable: string[] };
  /** Chunks that recovered backups reference but no pack on the target holds. */
  missingChunks: number;
  /** Recovered backups that lose file content to those chunks (e.g. forgotten and pruned after the copy). */
  damagedBackups: number[];
  warnings: string[];
}

/** Backups holding a version that references any of `missing`. */
function backupsReferencing(cat: Catalog, missing: Set<string>): number[] {
  const out = new Set<number>();
  if (missing.size === 0) return [];
  for (const v of cat.allVersions()) {
    const hit =
      v.chunks?.some((h) => missing.has(h)) || (v.streams ?? []).some((st) => st.chunks.some((h) => missing.has(h)));
    if (hit) for (const b of cat.backupsHolding(v)) out.add(b);
  }
  return [...out].sort((a, b) => a - b);
}

const recoverErr = (where: string) => errorsFor({ image: where, layer: 'repo' });

function removeQuietly(path: string): void {
  for (const p of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
    try {
      if (existsSync(p)) unlinkSync(p);
    } catch {
      // best effort: a leftover temp file is only clutter
    }
  }
}

async function readManifest(target: Target, name: string): Promise<CatalogManifest> {
  const { size } = await target.stat(name);
  if (size > MAX_MANIFEST_BYTES) {
    throw errorsFor({ image: name, layer: 'catalog' }).limit('SHIP_MANIFEST_SIZE', `manifest of ${size} bytes`);
  }
  return parseManifest(await target.get(name), name);
}

/** Opens a decoded copy and checks that it is this repository's catalog. */
function checkDecoded(path: string, config: TargetConfig, warnings: string[]): void {
  let cat: Catalog;
  try {
    cat = Catalog.open(path, { readonly: true });
  } catch (e) {
    throw recoverErr(path).corrupt(
      'SHIP_NOT_A_CATALOG',
      `the copy does not open as a catalog (${(e as Error).message})`,
    );
  }
  try {
    const ok = cat.db.pragma('quick_check', { simple: true });
    if (ok !== 'ok') throw recoverErr(path).corrupt('SHIP_INTEGRITY', `SQLite quick_check: ${String(ok)}`);
    const repoId = cat.getMeta('repo_id');
    if (repoId !== config.repoId) {
      throw recoverErr(path).corrupt('SHIP_REPO_ID', `the copy belongs to repository ${String(repoId)}`);
    }
    const sizes = cat.getMeta('chunk_sizes');
    if (sizes !== JSON.stringify(config.chunkSizes)) {
      warnings.push(`config.json and the catalog copy disagree on chunk sizes (${sizes}); the catalog's are used`);
    }
  } finally {
    cat.close();
  }
}

export async function recoverFromTarget(targetDir: string, newRoot: string): Promise<RecoverResult> {
  const root = resolve(newRoot);
  if (!existsSync(targetDir) || !statSync(targetDir).isDirectory()) {
    throw recoverErr(targetDir).notFound('SHIP_NO_TARGET', `${targetDir} is not a folder`);
  }
  const targetPath = realpathSync(targetDir);
  if (existsSync(join(root, CATALOG_FILE))) {
    throw recoverErr(root).unsupported('REPO_EXISTS', `${root} already holds a vdbak repository (${CATALOG_FILE})`);
  }
  const target = new LocalTarget(targetPath);
  const config = await readTargetConfig(target);
  if (!config) {
    throw recoverErr(targetPath).notFound(
      'SHIP_NO_CONFIG',
      `${targetPath} has no config.json: no catalog was ever shipped there (or it is not a vdbak target)`,
    );
  }
  const manifests: string[] = [];
  for await (const name of target.list(CATALOG_PREFIX)) {
    if (parseCopyName(name)?.kind === 'manifest') manifests.push(name);
  }
  manifests.sort().reverse();
  mkdirSync(root, { recursive: true });
  const warnings: string[] = [];
  const skipped: SkippedCopy[] = [];
  const newerBackups = new Map<number, string>();
  let chosen: CatalogManifest | undefined;
  const tmp = join(root, `.recover-${process.pid}-${randomBytes(6).toString('hex')}.db`);
  for (const name of manifests) {
    try {
      const m = await readManifest(target, name);
      if (m.repoId !== config.repoId) throw recoverErr(name).corrupt('SHIP_REPO_ID', `copy of repository ${m.repoId}`);
      if (m.schemaVersion > SCHEMA_VERSION) {
        throw recoverErr(name).unsupported(
          'SHIP_SCHEMA',
          `copy has catalog schema ${m.schemaVersion}; this vdbak knows up to ${SCHEMA_VERSION}`,
        );
      }
      for (const b of m.backups) newerBackups.set(b.id, b.vm);
      try {
        await decodeCopyTo(target, m, tmp);
        checkDecoded(tmp, config, warnings);
      } catch (e) {
        removeQuietly(tmp);
        throw e;
      }
      chosen = m;
      break;
    } catch (e) {
      if (!isVdbakError(e)) throw e;
      skipped.push({ copy: name, reason: e.message });
    }
  }
  if (!chosen) {
    const why = skipped.map((s) => `\n  ${s.copy}: ${s.reason}`).join('');
    throw recoverErr(targetPath).notFound(
      'SHIP_NO_COPY',
      manifests.length ? `no catalog copy on the target verifies:${why}` : 'the target holds no catalog copy',
    );
  }
  renameSync(tmp, join(root, CATALOG_FILE));
  const cat = Catalog.open(join(root, CATALOG_FILE));
  try {
    cat.setMeta('target', JSON.stringify({ type: 'local', path: targetPath }));
  } finally {
    cat.close();
  }

  const repo = openRepo(root);
  const release = lockRepo(root, 'recover');
  try {
    // every backup that was running in the copy is dead: its writer was on the old controller
    const reaped = repo.catalog.reapDeadBackups(() => false);
    const onTarget = new Set<string>();
    for await (const name of target.list('packs/')) onTarget.add(name);
    const missingPacks: string[] = [];
    for (const p of repo.catalog.packs()) {
      if (onTarget.has(p.name)) continue;
      missingPacks.push(p.name);
      // its chunks may live on in packs a prune wrote after the copy; adoption records them there
      repo.catalog.replacePackChunks([p.id], null);
    }
    const adopted = await adoptOrphanPacks(repo);
    repo.catalog.collectReferenced();
    const missing = new Set(repo.catalog.missingReferenced());
    const damagedBackups = backupsReferencing(repo.catalog, missing);
    repo.catalog.checkpoint();
    const backups = repo.catalog.backups().map((b) => ({ id: b.id, vm: b.vmName, startedMs: b.startedMs }));
    const have = new Set(backups.map((b) => b.id));
    const lostBackups = [...newerBackups]
      .filter(([id]) => !have.has(id))
      .map(([id, vm]) => ({ id, vm }))
      .sort((a, b) => a.id - b.id);
    if (missingPacks.length) {
      warnings.push(
        `${missingPacks.length} pack(s) named by the copy are gone from the target (pruned after the copy); run 'vdbak check --read-data'`,
      );
    }
    if (missing.size) {
      warnings.push(
        `${missing.size} chunk(s) that backup(s) ${damagedBackups.join(', ')} reference are on no pack of the target; run 'vdbak check' to see which files`,
      );
    }
    if (adopted.unreadable.length) {
      warnings.push(`${adopted.unreadable.length} pack(s) on the target have an index that does not verify`);
    }
    return {
      repo: root,
      target: targetPath,
      repoId: config.repoId,
      copy: { name: chosen.base, time: chosen.time, newestBackupId: chosen.newestBackupId, host: chosen.host },
      skipped,
      backups,
      lostBackups,
      reaped,
      missingPacks,
      adopted,
      missingChunks: missing.size,
      damagedBackups,
      warnings,
    };
  } finally {
    release();
    repo.close();
  }
}
