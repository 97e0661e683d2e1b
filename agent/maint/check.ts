/**
 * `check`: is every chunk that a backup needs where the catalog says it is?
 *
 * - Always: every chunk a version references is known to the catalog; every
 *   pack the catalog knows exists on the target with its size; its index (read
 *   with two ranged reads) verifies and lists each of the catalog's chunks at
 *   the same place.
 * - With readData: every pack is read whole and every chunk decoded and its
 *   SHA-256 verified.
 * Damage is reported per backup and path: which files of which backups lose
 * content.
 */
import type { Catalog } from '../../catalog/catalog.js';
import { isVdbakError } from '../../parsers/errors.js';
import { PackReader } from '../../transport/pack.js';
import type { Repo } from '../repo.js';

export interface DamagedFile {
  vm: string;
  volume: string;
  path: string;
  stream?: string;
  backups: number[];
}

export interface CheckReport {
  packs: number;
  chunks: number;
  referencedChunks: number;
  bytesRead: number;
  /** Problems with packs or chunks, one line each. */
  errors: string[];
  /** Packs on the target that the catalog does not know (a crashed run's; prune removes them). */
  orphanPacks: string[];
  damaged: DamagedFile[];
  ok: boolean;
}

export interface CheckProgress {
  packsDone: number;
  packs: number;
  bytesRead: number;
}

function describe(e: unknown): string {
  return isVdbakError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
}

/** Files that reference any of the bad chunks, with the backups that hold them. */
function damagedFiles(cat: Catalog, bad: Set<string>): DamagedFile[] {
  if (bad.size === 0) return [];
  const names = cat.volumeNames();
  const out: DamagedFile[] = [];
  for (const v of cat.allVersions()) {
    const hits: (string | undefined)[] = [];
    if (v.chunks?.some((h) => bad.has(h))) hits.push(undefined);
    for (const s of v.streams ?? []) if (s.chunks.some((h) => bad.has(h))) hits.push(s.name);
    if (hits.length === 0) continue;
    const backups = cat.backupsHolding(v);
    if (backups.length === 0) continue;
    const vol = names.get(v.volumeId);
    for (const stream of hits) {
      out.push({ vm: vol?.vmName ?? '?', volume: vol?.name ?? '?', path: v.path, stream, backups });
    }
  }
  return out;
}

export async function checkRepo(
  repo: Repo,
  opts: { readData?: boolean; onProgress?: (p: CheckProgress) => void } = {},
): Promise<CheckReport> {
  const cat = repo.catalog;
  const report: CheckReport = {
    packs: 0,
    chunks: 0,
    referencedChunks: 0,
    bytesRead: 0,
    errors: [],
    orphanPacks: [],
    damaged: [],
    ok: true,
  };
  const bad = new Set<string>();
  report.referencedChunks = cat.collectReferenced();
  for (const h of cat.missingReferenced()) {
    bad.add(h);
    report.errors.push(`chunk ${h} is referenced but unknown to the catalog`);
  }
  const onTarget = new Map<string, boolean>();
  for await (const name of repo.target.list('packs/')) onTarget.set(name, false);
  const packs = cat.packs();
  report.packs = packs.length;
  const progress: CheckProgress = { packsDone: 0, packs: packs.length, bytesRead: 0 };
  for (const p of packs) {
    const rows = cat.packChunks(p.id);
    report.chunks += rows.length;
    const fail = (msg: string) => {
      report.errors.push(`${p.name}: ${msg}`);
      for (const r of rows) bad.add(r.hash);
    };
    if (!onTarget.has(p.name)) {
      fail('missing on the target');
    } else {
      onTarget.set(p.name, true);
      try {
        const { size } = await repo.target.stat(p.name);
        if (size !== p.size) throw new Error(`size ${size}, the catalog says ${p.size}`);
        const reader = opts.readData
          ? await PackReader.fromBytes(await repo.target.get(p.name), p.name)
          : await PackReader.fromTarget(repo.target, p.name);
        report.bytesRead += opts.readData ? size : reader.trailer.indexLength + 64;
        const index = new Map(reader.entries.map((e) => [e.hash, e]));
        for (const r of rows) {
          const e = index.get(r.hash);
          if (!e || e.offset !== r.offset || e.storedLength !== r.storedLength || e.rawLength !== r.rawLength) {
            report.errors.push(`${p.name}: chunk ${r.hash} is not in the pack's index where the catalog says`);
            bad.add(r.hash);
            continue;
          }
          if (opts.readData) {
            try {
              await reader.readChunk(e);
            } catch (err) {
              report.errors.push(`${p.name}: chunk ${r.hash}: ${describe(err)}`);
              bad.add(r.hash);
            }
          }
        }
      } catch (e) {
        fail(describe(e));
      }
    }
    progress.packsDone++;
    progress.bytesRead = report.bytesRead;
    opts.onProgress?.(progress);
  }
  report.orphanPacks = [...onTarget].filter(([, seen]) => !seen).map(([n]) => n);
  // a bad chunk matters only if something references it
  const referencedBad = new Set<string>();
  if (bad.size) {
    const isRef = cat.db.prepare('SELECT 1 FROM temp.referenced WHERE hash = ?');
    for (const h of bad) if (isRef.get(Buffer.from(h, 'hex')) !== undefined) referencedBad.add(h);
  }
  report.damaged = damagedFiles(cat, referencedBad);
  report.ok = report.errors.length === 0;
  return report;
}
