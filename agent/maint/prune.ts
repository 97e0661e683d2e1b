/**
 * `prune`: removes chunks no backup references, by deleting packs that hold
 * none that are live and rewriting packs that hold mostly dead ones.
 *
 * Crash safety, in this order:
 * 1. a new pack (live chunks copied from old ones) is stored on the target;
 * 2. one catalog transaction points the moved chunks at it and drops the old
 *    packs' rows;
 * 3. the old pack objects are deleted from the target.
 * A kill between 1 and 2 leaves an extra pack the catalog does not know; a
 * kill between 2 and 3 leaves old packs the catalog does not know. Either is
 * adopted by the next prune (its chunks are already known elsewhere or dead)
 * and removed. The catalog never points at a pack that is gone.
 */
import type { PackChunk } from '../../catalog/catalog.js';
import { packObjectName, PackReader, PackWriter } from '../../transport/pack.js';
import { adoptOrphanPacks } from '../backup/adopt.js';
import { processAlive, type Repo } from '../repo.js';

/** A pack is rewritten when at least this share of its bytes is dead. */
export const REPACK_DEAD_SHARE = 0.2;

export interface PruneReport {
  reapedBackups: number[];
  adoptedPacks: number;
  packsDeleted: number;
  packsRewritten: number;
  packsWritten: number;
  bytesFreed: number;
  chunksRemoved: number;
  dryRun: boolean;
}

/** Test hook: called between the steps above, so a test can kill the process there. */
export type PruneHook = (step: 'stored-new-pack' | 'committed' | 'deleted-old') => Promise<void> | void;

export async function pruneRepo(repo: Repo, opts: { dryRun?: boolean; hook?: PruneHook } = {}): Promise<PruneReport> {
  const cat = repo.catalog;
  const report: PruneReport = {
    reapedBackups: [],
    adoptedPacks: 0,
    packsDeleted: 0,
    packsRewritten: 0,
    packsWritten: 0,
    bytesFreed: 0,
    chunksRemoved: 0,
    dryRun: !!opts.dryRun,
  };
  if (!opts.dryRun) {
    report.reapedBackups = cat.reapDeadBackups((pid, host) => processAlive(pid, host));
    report.adoptedPacks = (await adoptOrphanPacks(repo)).packs;
  }
  cat.collectReferenced();
  const usage = cat.packUsage();
  const dead = usage.filter((p) => p.liveChunks === 0);
  const sparse = usage.filter(
    (p) =>
      p.liveChunks > 0 && p.liveChunks < p.chunks && p.storedBytes - p.liveBytes >= p.storedBytes * REPACK_DEAD_SHARE,
  );
  if (opts.dryRun) {
    report.packsDeleted = dead.length;
    report.packsRewritten = sparse.length;
    report.bytesFreed =
      dead.reduce((a, p) => a + p.size, 0) + sparse.reduce((a, p) => a + (p.storedBytes - p.liveBytes), 0);
    report.chunksRemoved = usage.reduce((a, p) => a + p.chunks - p.liveChunks, 0);
    return report;
  }
  const isLive = cat.db.prepare('SELECT 1 FROM temp.referenced WHERE hash = ?');

  // packs with nothing live: catalog first, then the target
  for (const p of dead) {
    report.chunksRemoved += p.chunks;
    cat.replacePackChunks([p.id], null);
    await opts.hook?.('committed');
    await repo.target.delete(p.name);
    report.packsDeleted++;
    report.bytesFreed += p.size;
  }

  // packs mostly dead: copy their live chunks into new packs
  const writer = new PackWriter({ targetSize: repo.settings.packTargetSize });
  let drained: typeof sparse = [];
  const flush = async () => {
    let newPack: { name: string; size: number; entries: PackChunk[] } | null = null;
    if (writer.count > 0) {
      const fin = writer.finish();
      const name = packObjectName(fin.id);
      await repo.target.put(name, fin.bytes);
      report.packsWritten++;
      await opts.hook?.('stored-new-pack');
      newPack = { name, size: fin.bytes.length, entries: fin.entries };
    }
    // one transaction: moved chunks point at the new pack, the drained packs' rows go
    cat.replacePackChunks(
      drained.map((p) => p.id),
      newPack,
    );
    await opts.hook?.('committed');
    for (const p of drained) {
      await repo.target.delete(p.name);
      report.bytesFreed += p.size;
      report.packsRewritten++;
    }
    await opts.hook?.('deleted-old');
    drained = [];
  };
  for (const p of sparse) {
    const bytes = await repo.target.get(p.name);
    const reader = await PackReader.fromBytes(bytes, p.name);
    // only the chunks the catalog places in this pack: a prune killed half way may have
    // moved some of them already, and copying those again would store them twice
    const here = new Set(cat.packChunks(p.id).map((c) => c.hash));
    for (const e of reader.entries) {
      if (!here.has(e.hash)) continue;
      if (isLive.get(Buffer.from(e.hash, 'hex')) === undefined) {
        report.chunksRemoved++;
        continue;
      }
      if (writer.has(e.hash)) continue;
      // readChunk verifies the SHA-256: a damaged chunk must not be laundered into a new pack
      await reader.readChunk(e);
      const stored = bytes.subarray(e.offset, e.offset + e.storedLength);
      if (writer.full) await flush();
      writer.add({ hash: e.hash, rawLength: e.rawLength, codec: e.codec, stored: Buffer.from(stored) });
    }
    drained.push(p);
  }
  if (drained.length || writer.count) await flush();
  cat.checkpoint();
  return report;
}
