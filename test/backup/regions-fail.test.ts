/**
 * A file whose content could not be read at backup time is not stored, so
 * its clusters must stay in the disk's regions (the rebuild has nothing else
 * to put there); once a later backup reads it, they leave the regions again.
 * The read failure is injected by a pool that answers one file's items with
 * an error, around the real worker pool.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { backupVm, type BackupResult } from '../../agent/backup/job.js';
import { type BackupPool, createPool } from '../../agent/backup/pool.js';
import { openRepo } from '../../agent/repo.js';
import { resolveSources } from '../../agent/source/resolve.js';
import type { RunRecord } from '../../catalog/records.js';
import { errorsFor } from '../../parsers/errors.js';
import { sampleStore, newRepo } from '../helpers/vdbak.js';

const VICTIM = '/home/bob/notes.txt';
const real = createPool(1);
afterAll(() => real.close());

/** The real pool, except that every piece of VICTIM fails to read. */
const failing: BackupPool = {
  threads: 1,
  run: async (task) => {
    const res = await real.run(task);
    task.items.forEach((it, i) => {
      if (it.kind !== 'file' || it.entry.path !== VICTIM) return;
      res.items[i] = {
        key: it.key,
        chunks: [],
        encoded: [],
        bytesRead: 0,
        error: errorsFor({ image: 'test', layer: 'fs' }).corrupt('TEST_READ_FAULT', 'injected').toJSON(),
      };
    });
    return res;
  },
  close: async () => undefined,
};

type R = [number, number];

function facts(root: string, r: BackupResult): { regions: R[]; victim: R[]; readError: boolean } {
  const repo = openRepo(root, { readonly: true });
  try {
    const cat = repo.catalog;
    const vols = cat.backupVolumes(r.backupId);
    const regionsVol = vols.find((v) => v.partIndex === -1)!;
    const fsVol = vols.find((v) => v.name === 'd0p1')!;
    const regions = (cat.lookup(r.backupId, regionsVol.volumeId, '/regions.raw')!.runs ?? []).map((x): R => [
      x.volumeOffset!,
      x.volumeOffset! + x.length,
    ]);
    const v = cat.lookup(r.backupId, fsVol.volumeId, VICTIM)!;
    const victim = (v.runs ?? [])
      .filter((x: RunRecord) => x.volumeOffset !== null)
      .map((x): R => [fsVol.offset + x.volumeOffset!, fsVol.offset + x.volumeOffset! + x.length]);
    return { regions, victim, readError: v.meta?.readError !== undefined };
  } finally {
    repo.catalog.close();
  }
}

const inside = (r: R, list: R[]) => list.some(([a, b]) => a <= r[0] && r[1] <= b);
const overlaps = (r: R, list: R[]) => list.some(([a, b]) => a < r[1] && r[0] < b);

describe('a file that fails to read gives its clusters back to the regions', () => {
  test('failed: its runs lie inside the regions; read again later: outside', async () => {
    const root = newRepo('regions-fail');
    const [source] = resolveSources([join(sampleStore(), 'lin01')]);
    const repo = openRepo(root);
    let first: BackupResult;
    let second: BackupResult;
    try {
      // settled however recently the fixture was built: only the failed read makes the second backup read again
      first = await backupVm(repo, source!, { pool: failing, stampSettleMs: 0 });
      second = await backupVm(repo, source!, { pool: real, stampSettleMs: 0 });
    } finally {
      repo.catalog.close();
    }
    const a = facts(root, first);
    expect(a.readError).toBe(true);
    expect(a.victim.length).toBeGreaterThan(0);
    for (const r of a.victim) expect(inside(r, a.regions)).toBe(true);
    expect(second.unchangedSince).toBeUndefined();
    const b = facts(root, second);
    expect(b.readError).toBe(false);
    for (const r of b.victim) expect(overlaps(r, b.regions)).toBe(false);
  });
});
