/**
 * Issue 5 §4: a target that fails (transport/targets/faulty.ts) never
 * corrupts the repository. A backup whose puts fail stops with a typed error,
 * is recorded as failed, leaves no visible backup, and the next clean backup
 * succeeds without storing any chunk twice; every restore then verifies.
 * Restores through short reads, and from a pack with a flipped byte, fail
 * with typed errors and never write wrong bytes.
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { backupVm, type BackupResult, type BackupSource } from '../../agent/backup/job.js';
import { type BackupPool, createPool } from '../../agent/backup/pool.js';
import { resolveBackup, resolvePath } from '../../agent/browse/refs.js';
import { initRepo, lockRepo, openRepo, type Repo } from '../../agent/repo.js';
import { DirSink } from '../../agent/restore/dir-sink.js';
import { restorePath } from '../../agent/restore/engine.js';
import { resolveSources } from '../../agent/source/resolve.js';
import { Catalog } from '../../catalog/catalog.js';
import { isVdbakError } from '../../parsers/errors.js';
import { FaultyTarget, type FaultOptions } from '../../transport/targets/faulty.js';
import { LocalTarget } from '../../transport/targets/local.js';
import { PackReader } from '../../transport/pack.js';
import { chainsFixture, compareTrees, fileSha, sampleStore, snapshotTree, vdbak, vdbakOk } from '../helpers/vdbak.js';

/** Small packs, so one backup stores many and a fault can strike in the middle. */
const PACK_SIZE = 64 * 1024;
const CHUNKS = { minSize: 8 * 1024, avgSize: 16 * 1024, maxSize: 64 * 1024 };
/** A typed error's code, as transport/ and the restore name them. */
const TYPED_READ_ERROR = /\[(CHUNK_HASH_MISMATCH|CODEC_[A-Z_]+|PACK_[A-Z_]+|CONTENT_LENGTH)\]/;

let store: string;
let chains: string;
let scratch: string;
let pool: BackupPool;

beforeAll(() => {
  store = sampleStore();
  chains = chainsFixture();
  scratch = mkdtempSync(join(tmpdir(), 'vdbak-faults-'));
  pool = createPool(2);
});

afterAll(async () => {
  await pool.close();
});

function newRepoDir(name: string): string {
  const root = join(scratch, name);
  initRepo(root, { packTargetSize: PACK_SIZE, chunkSizes: CHUNKS });
  return root;
}

function source(path: string): BackupSource {
  const [s] = resolveSources([path]);
  if (!s) throw new Error(`no VM in ${path}`);
  return s;
}

/** The ext chain's version 1 and version 2, as one VM (same identity, same name). */
const extBase = (): BackupSource => ({ ...source(join(chains, 'ext', 'vm', 'disk.vmdk')), name: 'ext' });
const extLeaf = (): BackupSource => ({ ...source(join(chains, 'ext', 'vm')), name: 'ext' });

async function withRepo<T>(
  root: string,
  faults: FaultOptions | undefined,
  fn: (r: Repo, t?: FaultyTarget) => Promise<T>,
): Promise<T> {
  const settings = openRepo(root, { readonly: true });
  const targetPath = settings.settings.targetPath;
  settings.close();
  const faulty = faults ? new FaultyTarget(new LocalTarget(targetPath), faults) : undefined;
  const repo = openRepo(root, faulty ? { target: faulty } : {});
  try {
    return await fn(repo, faulty);
  } finally {
    repo.close();
  }
}

async function backupWith(
  root: string,
  faults: FaultOptions | undefined,
  src: BackupSource = source(join(store, 'win01')),
): Promise<BackupResult> {
  return withRepo(root, faults, (repo) => backupVm(repo, src, { pool }));
}

/** Every chunk hash stored on the target, from the packs' own indexes: none may appear twice. */
async function storedChunks(root: string): Promise<{ hashes: string[]; packs: number }> {
  const target = new LocalTarget(join(root, 'target'));
  const hashes: string[] = [];
  let packs = 0;
  for await (const name of target.list('packs/')) {
    const r = await PackReader.fromTarget(target, name);
    packs++;
    for (const e of r.entries) hashes.push(e.hash);
  }
  return { hashes, packs };
}

/** Named-stream sidecars, and ext's lost+found, are in a restore but not in a source tree. */
const EXTRA = (p: string): boolean => /:[^/]+$/.test(p) || p === 'lost+found';

function restoreAndCompare(root: string, ref: string, vol: string, src: string): void {
  const out = join(mkdtempSync(join(scratch, 'restore-')), 'out');
  vdbakOk(['restore', '--repo', root, ref, vol, '--to', out]);
  expect(compareTrees(snapshotTree(src), snapshotTree(out), { extra: EXTRA, specialsOptional: true })).toEqual([]);
}

// Seeds chosen so that the second pack's write is the one that fails: one pack is stored before.
describe.each<{ kind: string; faults: FaultOptions; code: string }>([
  { kind: 'a write that fails before it stores', faults: { seed: 4, putBefore: 0.3 }, code: 'TARGET_IO' },
  { kind: 'a write that stores, then fails', faults: { seed: 1, putAfter: 0.3 }, code: 'TARGET_IO' },
  { kind: 'a full target', faults: { seed: 3, noSpace: 0.3 }, code: 'TARGET_NO_SPACE' },
])('an incremental backup to a target with $kind', ({ faults, code }) => {
  let root: string;
  let error: unknown;
  let injected: FaultyTarget['injected'] | undefined;
  let first: BackupResult;
  let clean: BackupResult;

  beforeAll(async () => {
    root = newRepoDir(`put-${faults.seed}`);
    // version 1 cleanly, then version 2 (the snapshot delta) through the faults, then again cleanly
    first = await backupWith(root, undefined, extBase());
    try {
      await withRepo(root, faults, async (repo, t) => {
        try {
          await backupVm(repo, extLeaf(), { pool });
        } finally {
          injected = { ...t!.injected };
        }
      });
    } catch (e) {
      error = e;
    }
    clean = await backupWith(root, undefined, extLeaf());
  });

  test('fails with a typed error', () => {
    expect(isVdbakError(error), `${String(error)} ${JSON.stringify(injected)}`).toBe(true);
    expect((error as { code: string }).code).toBe(code);
    expect(Object.values(injected!).reduce((a, b) => a + b, 0)).toBe(1);
  });

  test('is recorded as failed, and nothing of it is visible', () => {
    const all = vdbakOk(['backups', '--repo', root, '--all', '--json']).json<{ id: number; state: string }[]>();
    expect(all.map((b) => b.state)).toEqual(['complete', 'failed', 'complete']);
    const visible = vdbakOk(['backups', '--repo', root, '--json']).json<{ id: number }[]>();
    expect(visible.map((b) => b.id)).toEqual([first.backupId, clean.backupId]);
    // the failed backup cannot be browsed or restored from
    const failedId = String(all[1]!.id);
    expect(vdbak(['ls', '--repo', root, failedId, '/d0p1']).code).toBe(1);
    expect(vdbak(['cat', '--repo', root, failedId, '/d0p1/bulk/added.bin']).code).toBe(1);
    // versions of a replaced file: one per complete backup that changed it
    const v = vdbakOk(['versions', '--repo', root, 'ext', '/d0p1/bulk/f010', '--json']).json<{ backups: number[] }[]>();
    expect(v.map((x) => x.backups)).toEqual([[first.backupId], [clean.backupId]]);
  });

  test('the next clean backup stores no chunk twice; both complete backups restore every file', async () => {
    const { hashes } = await storedChunks(root);
    expect(new Set(hashes).size).toBe(hashes.length);
    const cat = Catalog.open(join(root, 'catalog.db'));
    try {
      cat.collectReferenced();
      expect(cat.missingReferenced()).toEqual([]);
    } finally {
      cat.close();
    }
    restoreAndCompare(root, String(first.backupId), '/d0p1', join(chains, 'ext', 'src'));
    restoreAndCompare(root, String(clean.backupId), '/d0p1', join(chains, 'ext', 'src2'));
    // and check, reading every chunk, agrees
    const check = vdbak(['check', '--repo', root, '--read-data']);
    expect(check.code, check.stdout + check.stderr).toBe(0);
  });
});

describe('a pack stored by a run that failed afterwards', () => {
  test('is adopted by the next run and not sent again', async () => {
    const root = newRepoDir('adopt');
    // every put stores and then reports failure: the first pack is on the target, unrecorded
    await expect(backupWith(root, { seed: 1, putAfter: 1 })).rejects.toMatchObject({ code: 'TARGET_IO' });
    const before = await storedChunks(root);
    expect(before.packs).toBe(1);
    const clean = await backupWith(root, undefined);
    expect(clean.warningList.some((w) => /adopted 1 pack/.test(w))).toBe(true);
    const after = await storedChunks(root);
    expect(new Set(after.hashes).size).toBe(after.hashes.length);
    expect(after.hashes).toEqual(expect.arrayContaining(before.hashes));
    restoreAndCompare(root, 'win01', '/d0p2', join(store, 'sources', 'win01'));
  });
});

describe('a second writer', () => {
  test('is refused with REPO_LOCKED while a backup holds the repository, and works after', () => {
    const root = newRepoDir('locked');
    const release = lockRepo(root, 'a test holding the lock');
    try {
      const r = vdbak(['backup', '--repo', root, join(store, 'lin01')]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/REPO_LOCKED/);
      expect(r.stderr).toMatch(/a test holding the lock/);
    } finally {
      release();
    }
    vdbakOk(['backup', '--repo', root, join(store, 'lin01')]);
    expect(
      vdbakOk(['backups', '--repo', root, '--all', '--json'])
        .json<{ state: string }[]>()
        .map((b) => b.state),
    ).toEqual(['complete']);
  });
});

describe('restores through faults and damage', () => {
  let root: string;

  beforeAll(async () => {
    root = newRepoDir('restore');
    await backupWith(root, undefined);
    await backupWith(root, undefined, source(join(store, 'lin01')));
  });

  test('short reads: every file is either restored exactly or reported failed with a typed error', async () => {
    const out = join(mkdtempSync(join(scratch, 'short-')), 'out');
    const report = await withRepo(root, { seed: 3, shortRead: 0.2 }, async (repo, faulty) => {
      const b = resolveBackup(repo.catalog, 'win01');
      const r = await restorePath(repo.catalog, repo.target, b, '/d0p2', new DirSink(out, { overwrite: false }));
      expect(faulty!.injected.shortRead).toBeGreaterThan(0);
      return r;
    });
    const failed = report.notes.filter((n) => n.kind === 'failed');
    expect(failed.length).toBeGreaterThan(0);
    for (const n of failed) expect(n.detail).toMatch(TYPED_READ_ERROR);
    const src = snapshotTree(join(store, 'sources', 'win01'));
    const got = snapshotTree(out);
    for (const [p, e] of got) {
      if (e.type !== 'file' || /:[^/]+$/.test(p)) continue;
      expect(e.sha256, p).toBe(src.get(p)?.sha256);
    }
    for (const n of failed) expect(got.has(n.path), n.path).toBe(false);
  });

  /** A copy of the repository with one byte flipped in the middle of the stored first chunk of `path`. */
  function corruptCopy(name: string, path: string): string {
    const copy = join(scratch, name);
    cpSync(root, copy, { recursive: true });
    // the catalog names its target by absolute path: point the copy at its own
    const cat = Catalog.open(join(copy, 'catalog.db'));
    try {
      cat.setMeta('target', JSON.stringify({ type: 'local', path: join(copy, 'target') }));
      const b = resolveBackup(cat, 'win01');
      const where = resolvePath(cat, b, path);
      const v = cat.lookup(b.id, where.volume!.volumeId, where.inner);
      const loc = cat.chunkLocation(v!.chunks![0]!)!;
      const file = join(copy, 'target', loc.packName);
      const bytes = readFileSync(file);
      const at = loc.offset + Math.floor(loc.storedLength / 2);
      bytes[at] = bytes[at]! ^ 0x40;
      writeFileSync(file, bytes);
    } finally {
      cat.close();
    }
    return copy;
  }

  test.each([
    ['random data (stored raw)', '/d0p2/Users/ana/Documents/photo.jpg', 'Users/ana/Documents/photo.jpg'],
    ['text (stored zstd)', '/d0p2/Users/ana/Documents/report.docx', 'Users/ana/Documents/report.docx'],
  ])('a flipped byte in a pack under %s: restore fails for that file only, cat stops', (what, path, rel) => {
    const copy = corruptCopy(`corrupt-${rel.length}`, path);
    const out = join(mkdtempSync(join(scratch, 'corrupt-')), 'out');
    const r = vdbak(['restore', '--repo', copy, 'win01', '/d0p2', '--to', out, '--json']);
    expect(r.code).toBe(1);
    const report = r.json<{ notes: { path: string; kind: string; detail: string }[] }>();
    const failed = report.notes.filter((n) => n.kind === 'failed');
    expect(failed.map((n) => n.path)).toEqual([rel]);
    expect(failed[0]!.detail).toMatch(TYPED_READ_ERROR);
    // nothing at the damaged file's name, every other file exact
    expect(existsSync(join(out, rel))).toBe(false);
    expect(readdirSync(join(out, rel, '..')).filter((n) => n.startsWith('.vdbak-restore-'))).toEqual([]);
    const diffs = compareTrees(snapshotTree(join(store, 'sources', 'win01')), snapshotTree(out), {
      extra: (p) => /:[^/]+$/.test(p),
    });
    expect(diffs).toEqual([`${rel}: missing (a file in the source)`]);
    // cat writes only verified bytes: what it printed before failing is a prefix of the file
    const c = vdbak(['cat', '--repo', copy, 'win01', path]);
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(TYPED_READ_ERROR);
    const truth = readFileSync(join(store, 'sources', 'win01', rel));
    expect(c.bytes.length).toBeLessThan(truth.length);
    expect(truth.subarray(0, c.bytes.length).equals(c.bytes)).toBe(true);
    // check --read-data names the damaged file and the backup holding it
    const check = vdbak(['check', '--repo', copy, '--read-data']);
    expect(check.code).toBe(1);
    expect(check.stdout).toContain(`damaged: win01 ${path} in backup(s)`);
    // a tar stream cannot leave an entry out once its header is written: it says so and exits 1
    const t = vdbak(['restore', '--repo', copy, 'win01', '/d0p2', '--tar', '-']);
    expect(t.code).toBe(1);
    expect(t.stderr).toContain(`failed: ${rel}: `);
    expect(t.stderr).toMatch(TYPED_READ_ERROR);
    // the undamaged repository still restores that file
    expect(statSync(join(store, 'sources', 'win01', rel)).size).toBe(truth.length);
    const good = join(mkdtempSync(join(scratch, 'good-')), 'out');
    vdbakOk(['restore', '--repo', root, 'win01', path, '--to', good]);
    expect(fileSha(join(good, rel.slice(rel.lastIndexOf('/') + 1)))).toBe(
      fileSha(join(store, 'sources', 'win01', rel)),
    );
    void what;
  });
});
