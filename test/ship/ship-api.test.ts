/**
 * shipCatalog / recoverFromTarget in process: a catalog bigger than one zstd
 * frame (checked with the zstd CLI as the oracle), forged manifests, running
 * backups in a copy, a target of another repository, and keep-N leftovers.
 */
import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CATALOG_FILE, initRepo, openRepo, type Repo } from '../../agent/repo.js';
import { shipAfterBackup } from '../../agent/ship/after-backup.js';
import { CONFIG_OBJECT } from '../../agent/ship/config.js';
import { decodeCopyTo, DEFAULT_PIECE_SIZE } from '../../agent/ship/frames.js';
import { dataName, manifestName, parseManifest, stampMs } from '../../agent/ship/manifest.js';
import { recoverFromTarget } from '../../agent/ship/recover.js';
import { pruneCopies, shipCatalog } from '../../agent/ship/ship.js';
import { FaultyTarget } from '../../transport/targets/faulty.js';
import { LocalTarget } from '../../transport/targets/local.js';
import type { Target } from '../../transport/targets/types.js';
import { listAll } from '../transport/target-suite.js';
import { SCHEMA_VERSION } from '../../catalog/schema.js';
import { runBytes } from '../helpers/fixtures.js';

const MiB = 1024 * 1024;
const dirs: string[] = [];
const repos: Repo[] = [];

function scratch(): string {
  const d = mkdtempSync(join(tmpdir(), 'vdbak-ship-api-'));
  dirs.push(d);
  return d;
}

function makeRepo(target?: string): { dir: string; repo: Repo } {
  const dir = scratch();
  initRepo(join(dir, 'repo'), { target });
  const repo = openRepo(join(dir, 'repo'));
  repos.push(repo);
  return { dir, repo };
}

afterEach(() => {
  for (const r of repos.splice(0)) r.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** SHA-256 over a dummy table's rows in id order. */
function tableHash(dbPath: string): string {
  const db = new Database(dbPath, { readonly: true });
  try {
    const h = createHash('sha256');
    for (const r of db.prepare('SELECT id, b FROM dummy ORDER BY id').iterate() as Iterable<{
      id: number;
      b: Buffer;
    }>) {
      h.update(String(r.id)).update(r.b);
    }
    return h.digest('hex');
  } finally {
    db.close();
  }
}

describe('shipCatalog', () => {
  it('ships a catalog bigger than one frame; zstd -d reads it, and recover rebuilds it byte for byte', async () => {
    const { dir, repo } = makeRepo();
    // incompressible rows, so that the copy spans several 16 MiB frames even compressed
    repo.catalog.db.exec('CREATE TABLE dummy (id INTEGER PRIMARY KEY, b BLOB NOT NULL)');
    const ins = repo.catalog.db.prepare('INSERT INTO dummy(id, b) VALUES (?, ?)');
    repo.catalog.tx(() => {
      for (let i = 0; i < 40; i++) ins.run(i, randomBytes(MiB));
    });
    const want = tableHash(repo.catalogPath);
    const r = await shipCatalog(repo);
    const m = r.manifest;
    expect(m.rawSize).toBeGreaterThan(2 * DEFAULT_PIECE_SIZE);
    expect(m.frames.length).toBe(Math.ceil(m.rawSize / DEFAULT_PIECE_SIZE));
    expect(m.frames.length).toBeGreaterThanOrEqual(3);
    expect(r.configWritten).toBe(true);

    const object = join(repo.settings.targetPath, r.dataObject);
    const z = readFileSync(object);
    expect(z.length).toBe(m.compressedSize);
    expect(createHash('sha256').update(z).digest('hex')).toBe(m.compressedSha256);
    const raw = runBytes('zstd', ['-dc', object]);
    expect(raw.length).toBe(m.rawSize);
    expect(createHash('sha256').update(raw).digest('hex')).toBe(m.rawSha256);

    const res = await recoverFromTarget(repo.settings.targetPath, join(dir, 'r2'));
    expect(res.copy.name).toBe(m.base);
    expect(tableHash(join(dir, 'r2', CATALOG_FILE))).toBe(want);
    const r2 = openRepo(join(dir, 'r2'));
    repos.push(r2);
    expect(r2.settings.repoId).toBe(repo.settings.repoId);
    expect(r2.settings.targetPath).toBe(repo.settings.targetPath);
  });

  it('round-trips through many small frames, including a last partial one', async () => {
    const { dir, repo } = makeRepo();
    const r = await shipCatalog(repo, { pieceSize: 4000 });
    expect(r.manifest.frames.length).toBe(Math.ceil(r.manifest.rawSize / 4000));
    expect(r.manifest.rawSize % 4000).not.toBe(0);
    const out = join(dir, 'copy.db');
    await decodeCopyTo(repo.target, r.manifest, out);
    const raw = readFileSync(out);
    expect(createHash('sha256').update(raw).digest('hex')).toBe(r.manifest.rawSha256);
  });

  it('describes what the copy holds and writes config.json with the init settings', async () => {
    const { repo } = makeRepo();
    const vm = repo.catalog.upsertVm({ identity: 'uuid-1', name: 'vm1', kind: 'vmware' });
    const b = repo.catalog.beginBackup(vm, process.pid, hostname());
    repo.catalog.startSeen();
    repo.catalog.completeBackup(b, { files: 0 });
    const r = await shipCatalog(repo);
    expect(r.manifest.backups).toEqual([
      expect.objectContaining({ id: b, vm: 'vm1', vmIdentity: 'uuid-1' }) as unknown,
    ]);
    expect(r.manifest.newestBackupId).toBe(b);
    expect(r.manifest.vms).toEqual([{ name: 'vm1', identity: 'uuid-1', backups: 1 }]);
    expect(r.manifest.schemaVersion).toBe(SCHEMA_VERSION);
    const m = parseManifest(await repo.target.get(r.manifestObject), r.manifestObject);
    expect(m.rawSha256).toBe(r.manifest.rawSha256);
    const config = JSON.parse((await repo.target.get(CONFIG_OBJECT)).toString()) as Record<string, unknown>;
    expect(config).toMatchObject({
      repoId: repo.settings.repoId,
      chunkSizes: repo.settings.chunkSizes,
      zstdLevel: repo.settings.zstdLevel,
      packTargetSize: repo.settings.packTargetSize,
    });
    // written once: a second ship does not rewrite it
    expect((await shipCatalog(repo)).configWritten).toBe(false);
    // no temporary copy stays behind, and one left by a killed ship (a dead pid) is swept
    const dead = join(repo.root, '.ship-999999999-abcdef.db');
    writeFileSync(dead, 'left by a killed ship');
    const mine = join(repo.root, `.ship-${process.pid}-abcdef.db`);
    writeFileSync(mine, 'a ship of a live process');
    await shipCatalog(repo);
    expect(readdirSync(repo.root).filter((f) => f.startsWith('.ship-'))).toEqual([`.ship-${process.pid}-abcdef.db`]);
  });

  it('refuses a target that belongs to another repository; after a backup that is a warning', async () => {
    const first = makeRepo();
    await shipCatalog(first.repo);
    const second = makeRepo(first.repo.settings.targetPath);
    await expect(shipCatalog(second.repo)).rejects.toMatchObject({ code: 'SHIP_OTHER_REPO' });
    const warnings: string[] = [];
    expect(await shipAfterBackup(second.repo, (l) => warnings.push(l))).toBeUndefined();
    expect(warnings.join('')).toMatch(/backup is complete.*SHIP_OTHER_REPO/);
    expect(await shipAfterBackup(first.repo, (l) => warnings.push(l))).toBeDefined();
    expect(warnings).toHaveLength(1);
  });

  it('after a backup ships with VDBAK_SHIP_KEEP copies, or not at all with VDBAK_SHIP_AFTER_BACKUP=0', async () => {
    const { repo } = makeRepo();
    const copies = async () => {
      const names: string[] = [];
      for await (const n of repo.target.list('catalog/')) names.push(n);
      return names.length / 2;
    };
    const saved = { ...process.env };
    try {
      process.env.VDBAK_SHIP_KEEP = '2';
      for (let i = 0; i < 3; i++) expect(await shipAfterBackup(repo)).toBeDefined();
      expect(await copies()).toBe(2);
      process.env.VDBAK_SHIP_AFTER_BACKUP = '0';
      expect(await shipAfterBackup(repo)).toBeUndefined();
      expect(await copies()).toBe(2);
    } finally {
      process.env.VDBAK_SHIP_KEEP = saved.VDBAK_SHIP_KEEP;
      process.env.VDBAK_SHIP_AFTER_BACKUP = saved.VDBAK_SHIP_AFTER_BACKUP;
      if (saved.VDBAK_SHIP_KEEP === undefined) delete process.env.VDBAK_SHIP_KEEP;
      if (saved.VDBAK_SHIP_AFTER_BACKUP === undefined) delete process.env.VDBAK_SHIP_AFTER_BACKUP;
    }
  });
});

/** A target that records how objects reach it. */
class Recording implements Target {
  readonly location: string;
  readonly puts: string[] = [];
  readonly streamed = new Map<string, number[]>();
  constructor(readonly inner: Target) {
    this.location = inner.location;
  }
  put(name: string, bytes: Uint8Array): Promise<void> {
    this.puts.push(name);
    return this.inner.put(name, bytes);
  }
  putStream(name: string, source: AsyncIterable<Uint8Array>): Promise<void> {
    const sizes: number[] = [];
    this.streamed.set(name, sizes);
    const inner = this.inner;
    return inner.putStream(
      name,
      (async function* () {
        for await (const piece of source) {
          sizes.push(piece.length);
          yield piece;
        }
      })(),
    );
  }
  get = (n: string) => this.inner.get(n);
  getRange = (n: string, o: number, l: number) => this.inner.getRange(n, o, l);
  stat = (n: string) => this.inner.stat(n);
  exists = (n: string) => this.inner.exists(n);
  list = (p: string) => this.inner.list(p);
  delete = (n: string) => this.inner.delete(n);
  isNotFound = (e: unknown) => this.inner.isNotFound(e);
}

describe('shipCatalog streams', () => {
  it('hands the copy to the target one frame at a time, never whole', async () => {
    const { repo } = makeRepo();
    repo.catalog.db.exec('CREATE TABLE dummy (id INTEGER PRIMARY KEY, b BLOB NOT NULL)');
    const ins = repo.catalog.db.prepare('INSERT INTO dummy(id, b) VALUES (?, ?)');
    repo.catalog.tx(() => {
      for (let i = 0; i < 12; i++) ins.run(i, randomBytes(100_000));
    });
    const rec = new Recording(repo.target);
    const streaming = openRepo(repo.root, { target: rec });
    repos.push(streaming);
    const pieceSize = 64 * 1024;
    const r = await shipCatalog(streaming, { pieceSize });
    expect(rec.puts).toEqual([CONFIG_OBJECT, r.manifestObject]);
    const sizes = rec.streamed.get(r.dataObject)!;
    expect(sizes).toEqual(r.manifest.frames);
    expect(sizes.length).toBeGreaterThan(18);
    // incompressible pieces: a frame is its piece plus zstd's few bytes of framing
    expect(Math.max(...sizes)).toBeLessThan(pieceSize + 1024);
  });

  it('leaves no copy and no temporary file when the streamed put fails, and ships on the next try', async () => {
    const { dir, repo } = makeRepo();
    await shipCatalog(repo); // config.json and one copy
    const before = (await listAll(repo.target, 'catalog/')).sort();
    const faulty = new FaultyTarget(repo.target, { seed: 1, putBefore: 1 });
    const failing = openRepo(repo.root, { target: faulty });
    repos.push(failing);
    await expect(shipCatalog(failing, { pieceSize: 4096 })).rejects.toMatchObject({ code: 'TARGET_IO' });
    expect(faulty.injected.putBefore).toBe(1);
    expect((await listAll(repo.target, 'catalog/')).sort()).toEqual(before);
    const hidden = (d: string) => readdirSync(d).filter((f) => f.startsWith('.'));
    expect(hidden(join(repo.settings.targetPath, 'catalog'))).toEqual([]);
    expect(hidden(repo.root).filter((f) => f.startsWith('.ship-'))).toEqual([]);
    faulty.enabled = false;
    const r = await shipCatalog(failing, { pieceSize: 4096 });
    const res = await recoverFromTarget(repo.settings.targetPath, join(dir, 'r2'));
    expect(res.copy.name).toBe(r.manifest.base);
  });

  it('reads copies of any piece size, such as one zstd frame the zstd CLI wrote for the whole catalog', async () => {
    const { dir, repo } = makeRepo();
    repo.catalog.db.exec('CREATE TABLE dummy (id INTEGER PRIMARY KEY, b BLOB NOT NULL)');
    const ins = repo.catalog.db.prepare('INSERT INTO dummy(id, b) VALUES (?, ?)');
    repo.catalog.tx(() => {
      for (let i = 0; i < 50; i++) ins.run(i, Buffer.from(`row ${i} `.repeat(500)));
    });
    const want = tableHash(repo.catalogPath);
    const shipped = await shipCatalog(repo);
    const raw = join(dir, 'raw.db');
    await decodeCopyTo(repo.target, shipped.manifest, raw);
    const z = runBytes('zstd', ['-1', '-c', raw]);
    const base = '20991231T000000000Z-0000cafe';
    const m = {
      ...shipped.manifest,
      base,
      data: dataName(base),
      pieceSize: shipped.manifest.rawSize,
      frames: [z.length],
      compressedSize: z.length,
      compressedSha256: createHash('sha256').update(z).digest('hex'),
    };
    await repo.target.put(dataName(base), z);
    await repo.target.put(manifestName(base), Buffer.from(JSON.stringify(m)));
    const res = await recoverFromTarget(repo.settings.targetPath, join(dir, 'r2'));
    expect(res.copy.name).toBe(base);
    expect(res.skipped).toEqual([]);
    expect(tableHash(join(dir, 'r2', CATALOG_FILE))).toBe(want);
    const r2 = openRepo(join(dir, 'r2'));
    repos.push(r2);
    expect(r2.settings.repoId).toBe(repo.settings.repoId);
  });
});

describe('copy names', () => {
  it('sort after every copy already on the target, even when this clock is behind', async () => {
    const { repo } = makeRepo();
    const first = await shipCatalog(repo);
    // a copy stamped by a controller whose clock ran ahead
    const future = '20991231T235959999Z-0000abcd';
    await repo.target.put(dataName(future), Buffer.from('d'));
    await repo.target.put(manifestName(future), Buffer.from('m'));
    const now = Date.UTC(2026, 10, 23, 12);
    const next = await shipCatalog(repo, { nowMs: now });
    expect(next.manifest.base > future).toBe(true);
    expect(next.manifest.base > first.manifest.base).toBe(true);
    expect(stampMs(next.manifest.base)).toBe(Date.UTC(2100, 0, 1));
    // the manifest still tells the real time
    expect(next.manifest.timeMs).toBe(now);
    expect(next.manifest.time).toBe('2026-11-23T12:00:00.000Z');
    expect(stampMs('20261323T000000000Z-00000000')).toBeUndefined();
  });
});

describe('recoverFromTarget', () => {
  it('reaps a backup that was running when the copy was taken, and drops packs gone from the target', async () => {
    const { dir, repo } = makeRepo();
    const vm = repo.catalog.upsertVm({ identity: 'uuid-2', name: 'vm2', kind: 'vmware' });
    // still running, by a live process of this host: only recovery knows it can never finish
    const running = repo.catalog.beginBackup(vm, process.pid, hostname());
    const gone = `packs/ab/${'ab'.repeat(32)}`;
    repo.catalog.addPack(gone, 1234, [{ hash: 'cd'.repeat(32), offset: 0, storedLength: 10, rawLength: 10, codec: 0 }]);
    await shipCatalog(repo);
    const r = await recoverFromTarget(repo.settings.targetPath, join(dir, 'r2'));
    expect(r.reaped).toEqual([running]);
    expect(r.missingPacks).toEqual([gone]);
    expect(r.warnings.join(' ')).toMatch(/gone from the target/);
    const r2 = openRepo(join(dir, 'r2'));
    repos.push(r2);
    expect(r2.catalog.backup(running)?.state).toBe('failed');
    expect(r2.catalog.hasPack(gone)).toBe(false);
    expect(r2.catalog.hasChunk('cd'.repeat(32))).toBe(false);
  });

  it('fails with SHIP_NO_CONFIG on a target where nothing was shipped', async () => {
    const { dir, repo } = makeRepo();
    await expect(recoverFromTarget(repo.settings.targetPath, join(dir, 'r2'))).rejects.toMatchObject({
      code: 'SHIP_NO_CONFIG',
    });
    expect(existsSync(join(dir, 'r2', CATALOG_FILE))).toBe(false);
  });
});

describe('decodeCopyTo on forged manifests', () => {
  it('refuses frame lists, piece sizes and frame headers that do not fit', async () => {
    const { dir, repo } = makeRepo();
    const r = await shipCatalog(repo, { pieceSize: 8192 });
    const m = r.manifest;
    let n = 0;
    const attempt = (forged: Partial<typeof m>) => decodeCopyTo(repo.target, { ...m, ...forged }, join(dir, `o${n++}`));
    await expect(attempt({ pieceSize: 2 ** 40 })).rejects.toMatchObject({ code: 'SHIP_PIECE_SIZE' });
    await expect(attempt({ frames: m.frames.slice(1) })).rejects.toMatchObject({ code: 'SHIP_FRAMES' });
    await expect(attempt({ compressedSize: m.compressedSize + 1 })).rejects.toMatchObject({ code: 'SHIP_FRAMES' });
    // the same frames read as bigger pieces: each frame declares 8192 bytes, not 16384
    await expect(
      attempt({ pieceSize: 16384, frames: m.frames.slice(0, Math.ceil(m.rawSize / 16384)) }),
    ).rejects.toMatchObject({ code: expect.stringMatching(/SHIP_FRAMES|CODEC_ZSTD_SIZE/) as unknown });
    const [a, b, ...rest] = m.frames;
    await expect(attempt({ frames: [a! + 1, b! - 1, ...rest] })).rejects.toMatchObject({
      code: expect.stringMatching(/^CODEC_/) as unknown,
    });
    await expect(attempt({ rawSha256: '0'.repeat(64) })).rejects.toMatchObject({ code: 'SHIP_CHECKSUM' });
  });
});

describe('pruneCopies', () => {
  it('keeps the newest N complete copies and removes older leftovers, never newer ones', async () => {
    const dir = scratch();
    const target = new LocalTarget(dir);
    const base = (s: number) => `2026112${s}T000000000Z-0000000${s}`;
    for (const s of [1, 2, 3, 4]) {
      await target.put(dataName(base(s)), Buffer.from('d'));
      await target.put(manifestName(base(s)), Buffer.from('m'));
    }
    await target.put(dataName(base(0)), Buffer.from('interrupted ship, old'));
    await target.put(manifestName(base(5)), Buffer.from('manifest without data, newest'));
    await target.put(dataName(base(6)), Buffer.from('a ship in progress'));
    await target.put('catalog/notes.txt', Buffer.from('not ours'));
    const r = await pruneCopies(target, 2);
    expect(r.kept).toBe(2);
    expect(r.deleted).toEqual([
      manifestName(base(2)),
      dataName(base(2)),
      manifestName(base(1)),
      dataName(base(1)),
      dataName(base(0)),
    ]);
    const left: string[] = [];
    for await (const name of target.list('catalog/')) left.push(name);
    expect(left.sort()).toEqual(
      [
        dataName(base(3)),
        manifestName(base(3)),
        dataName(base(4)),
        manifestName(base(4)),
        manifestName(base(5)),
        dataName(base(6)),
        'catalog/notes.txt',
      ].sort(),
    );
    // a copy that sorts below another of the same millisecond survives when protected
    const twin = '20261124T000000000Z-00000003';
    await target.put(dataName(twin), Buffer.from('d'));
    await target.put(manifestName(twin), Buffer.from('m'));
    const r2 = await pruneCopies(target, 1, twin);
    expect(r2.kept).toBe(1);
    // older copies go; the twin that sorts above it is left for the next prune
    expect(r2.deleted).toEqual([manifestName(base(3)), dataName(base(3))]);
    expect(await target.exists(manifestName(twin))).toBe(true);
  });
});
