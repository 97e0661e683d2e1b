/**
 * Catalog shipping: a consistent copy of the catalog goes to the target, so
 * that losing the controller loses nothing (DESIGN.md, issue 6 §7).
 *
 * 1. SQLite's online backup copies the live catalog into a temporary file in
 *    the repository folder (a consistent snapshot, taken while readers and
 *    even the writer go on; the catalog can be large, so not in /tmp).
 * 2. The copy is switched out of WAL mode (one self-contained file), and what
 *    it holds is read from the copy itself, so the manifest describes exactly
 *    the bytes shipped.
 * 3. It is compressed into zstd frames (frames.ts) streamed to the target as
 *    `catalog/<stamp>-<id>.db.zst` (one piece in memory at a time, whatever
 *    the catalog's size); then the manifest `catalog/<stamp>-<id>.json`.
 * 4. Older copies beyond the last `keep` are deleted, manifest first, so that
 *    a manifest never names deleted data.
 *
 * The target's config.json (the settings fixed at init) is written if missing.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { errorsFor } from '../../parsers/errors.js';
import type { Target } from '../../transport/targets/types.js';
import { processAlive, type Repo } from '../repo.js';
import { ensureTargetConfig } from './config.js';
import { compressFrames, DEFAULT_PIECE_SIZE } from './frames.js';
import {
  CATALOG_PREFIX,
  CODEC_ZSTD_FRAMES,
  type CatalogManifest,
  dataName,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  manifestName,
  type ManifestBackup,
  newBase,
  parseCopyName,
  stampMs,
} from './manifest.js';

/** Copies kept on the target unless told otherwise (a week of nightly ships). */
export const DEFAULT_KEEP = 7;
export const MAX_KEEP = 10_000;

export interface ShipOptions {
  keep?: number;
  /** Raw bytes per zstd frame (tests make it small to cross frame boundaries). */
  pieceSize?: number;
  /** The time the copy is stamped with (tests). */
  nowMs?: number;
}

export interface ShipResult {
  manifest: CatalogManifest;
  manifestObject: string;
  dataObject: string;
  configWritten: boolean;
  /** Objects deleted by keep-N, manifests before their data. */
  deleted: string[];
  kept: number;
}

interface CopyFacts {
  schemaVersion: number;
  repoId: string;
  backups: ManifestBackup[];
  vms: { name: string; identity: string; backups: number }[];
  packs: number;
  chunks: number;
}

/** Switches the copy to a single file and reads what it holds. */
function inspectCopy(path: string): CopyFacts {
  const db = new Database(path, { fileMustExist: true });
  try {
    // a temporary file: what is shipped is its bytes, read back right away, so it needs no fsync of its own
    db.pragma('synchronous = OFF');
    db.pragma('journal_mode = DELETE');
    const schemaVersion = db.pragma('user_version', { simple: true }) as number;
    const repoId = (db.prepare(`SELECT value FROM meta WHERE key = 'repo_id'`).get() as { value: string }).value;
    const backups = (
      db
        .prepare(
          `SELECT b.id, m.name AS vm, m.identity, b.started_ms, b.finished_ms FROM backups b JOIN vms m ON m.id = b.vm_id
           WHERE b.state = 'complete' ORDER BY b.id`,
        )
        .all() as { id: number; vm: string; identity: string; started_ms: number; finished_ms: number | null }[]
    ).map((r) => ({
      id: r.id,
      vm: r.vm,
      vmIdentity: r.identity,
      startedMs: r.started_ms,
      finishedMs: r.finished_ms,
    }));
    const vms = db
      .prepare(
        `SELECT m.name, m.identity, count(b.id) AS backups FROM vms m
         LEFT JOIN backups b ON b.vm_id = m.id AND b.state = 'complete' GROUP BY m.id ORDER BY m.name, m.id`,
      )
      .all() as { name: string; identity: string; backups: number }[];
    const packs = (db.prepare('SELECT count(*) AS c FROM packs').get() as { c: number }).c;
    const chunks = (db.prepare('SELECT count(*) AS c FROM chunks').get() as { c: number }).c;
    return { schemaVersion, repoId, backups, vms, packs, chunks };
  } finally {
    db.close();
  }
}

function removeQuietly(path: string): void {
  for (const p of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
    try {
      if (existsSync(p)) unlinkSync(p);
    } catch {
      // a temp file we could not remove is harmless; the next ship uses another name
    }
  }
}

const TEMP_RE = /^\.ship-(\d+)-[0-9a-f]+\.db$/;

/** Removes temporary copies left by ships that were killed (their pid is gone). */
function sweepDeadTemps(root: string): void {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return;
  }
  for (const name of names) {
    const m = TEMP_RE.exec(name);
    if (m && !processAlive(Number(m[1]))) removeQuietly(join(root, name));
  }
}

export function checkKeep(keep: number): void {
  if (!Number.isInteger(keep) || keep < 1 || keep > MAX_KEEP) {
    throw new RangeError(`keep ${keep} is not in 1..${MAX_KEEP}`);
  }
}

/** Ships one copy of the repository's catalog to its target and keeps the last `keep`. */
export async function shipCatalog(repo: Repo, opts: ShipOptions = {}): Promise<ShipResult> {
  const keep = opts.keep ?? DEFAULT_KEEP;
  checkKeep(keep);
  const target = repo.target;
  const configWritten = await ensureTargetConfig(target, repo.settings);
  const nowMs = opts.nowMs ?? Date.now();
  // names must sort in shipping order even if this clock is behind the one that shipped before
  // (a new controller after recovery): recovery takes the copy whose name sorts last
  const base = newBase(Math.max(nowMs, (await newestStampMs(target)) + 1));
  sweepDeadTemps(repo.root);
  const tmp = join(repo.root, `.ship-${process.pid}-${randomBytes(6).toString('hex')}.db`);
  try {
    await repo.catalog.db.backup(tmp);
    const facts = inspectCopy(tmp);
    if (facts.repoId !== repo.settings.repoId) {
      throw errorsFor({ image: repo.catalogPath, layer: 'catalog' }).corrupt(
        'SHIP_REPO_ID',
        `the catalog copy names repository ${facts.repoId}, the repository is ${repo.settings.repoId}`,
      );
    }
    const pieceSize = opts.pieceSize ?? DEFAULT_PIECE_SIZE;
    const stream = compressFrames(tmp, pieceSize, repo.settings.zstdLevel);
    const data = dataName(base);
    await target.putStream(data, stream.frames);
    const z = stream.digest();
    const manifest: CatalogManifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      base,
      data,
      time: new Date(nowMs).toISOString(),
      timeMs: nowMs,
      repoId: facts.repoId,
      schemaVersion: facts.schemaVersion,
      codec: CODEC_ZSTD_FRAMES,
      pieceSize,
      frames: z.frames,
      rawSize: z.rawSize,
      compressedSize: z.compressedSize,
      rawSha256: z.rawSha256,
      compressedSha256: z.compressedSha256,
      backups: facts.backups,
      newestBackupId: facts.backups.length ? facts.backups[facts.backups.length - 1]!.id : null,
      vms: facts.vms,
      packs: facts.packs,
      chunks: facts.chunks,
      host: hostname(),
    };
    const manifestObject = manifestName(base);
    await target.put(manifestObject, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));
    const { deleted, kept } = await pruneCopies(target, keep, base);
    return { manifest, manifestObject, dataObject: data, configWritten, deleted, kept };
  } finally {
    removeQuietly(tmp);
  }
}

/** The stamp of the newest copy (or leftover) on the target, or -Infinity when there is none. */
async function newestStampMs(target: Target): Promise<number> {
  let newest = -Infinity;
  for await (const name of target.list(CATALOG_PREFIX)) {
    const p = parseCopyName(name);
    const t = p ? stampMs(p.base) : undefined;
    if (t !== undefined && t > newest) newest = t;
  }
  return newest;
}

/**
 * Keeps the newest `keep` complete copies (data and manifest both present).
 * Older copies go, manifest first; so do leftovers older than the oldest kept
 * copy (data of an interrupted ship, a manifest whose data vanished). Objects
 * newer than the newest kept copy are left alone: they may be a ship in progress.
 */
export async function pruneCopies(
  target: Target,
  keep: number,
  /** A copy never to delete (the one just shipped, should another share its millisecond). */
  protect?: string,
): Promise<{ deleted: string[]; kept: number }> {
  checkKeep(keep);
  const byBase = new Map<string, { data?: string; manifest?: string }>();
  for await (const name of target.list(CATALOG_PREFIX)) {
    const p = parseCopyName(name);
    if (!p) continue;
    const e = byBase.get(p.base) ?? {};
    e[p.kind] = name;
    byBase.set(p.base, e);
  }
  const bases = [...byBase.keys()].sort().reverse();
  const complete = bases.filter((b) => byBase.get(b)!.data && byBase.get(b)!.manifest);
  let kept = complete.slice(0, keep);
  if (protect !== undefined && complete.includes(protect) && !kept.includes(protect)) {
    kept = [...complete.filter((b) => b !== protect).slice(0, keep - 1), protect].sort().reverse();
  }
  if (kept.length === 0) return { deleted: [], kept: 0 };
  const oldestKept = kept[kept.length - 1]!;
  const deleted: string[] = [];
  for (const b of bases) {
    if (b >= oldestKept || kept.includes(b)) continue;
    const e = byBase.get(b)!;
    for (const name of [e.manifest, e.data]) {
      if (!name) continue;
      await target.delete(name);
      deleted.push(name);
    }
  }
  return { deleted, kept: kept.length };
}
