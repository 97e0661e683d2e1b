/**
 * Packs on the target that the catalog does not know: a run stored them and
 * died before recording them (or the catalog was lost). Each pack ends with
 * its own index, so its chunks are recorded from that, and a later backup
 * does not send them again. A pack whose index does not verify is left for
 * `check`/`prune` to report.
 */
import { PackReader } from '../../transport/pack.js';
import type { Repo } from '../repo.js';

export async function adoptOrphanPacks(repo: Repo): Promise<{ packs: number; chunks: number; unreadable: string[] }> {
  const cat = repo.catalog;
  let packs = 0;
  let chunks = 0;
  const unreadable: string[] = [];
  for await (const name of repo.target.list('packs/')) {
    if (cat.hasPack(name)) continue;
    try {
      const reader = await PackReader.fromTarget(repo.target, name);
      const { size } = await repo.target.stat(name);
      cat.addPack(name, size, reader.entries);
      packs++;
      chunks += reader.entries.length;
    } catch {
      unreadable.push(name);
    }
  }
  return { packs, chunks, unreadable };
}
