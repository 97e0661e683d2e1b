/**
 * Catalog shipping and recovery end to end, as an administrator runs it
 * (`node bin/vdbak.js`, needs `npm run build`), on the demo's sample store:
 * back up, ship, back up again, lose the catalog, recover on a "new machine"
 * from the target alone, and restore files compared with the source trees.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture, ROOT, sha256, sha256sumFile } from '../helpers/fixtures.js';
import { type BackupJson, vdbak, vdbakOk } from '../helpers/vdbak.js';
import { openRepo, type Repo } from '../../agent/repo.js';
import { encodeChunk } from '../../transport/codec.js';
import { packObjectName, PackReader, PackWriter } from '../../transport/pack.js';

let store: string;
let lin: string;
let win: string;

beforeAll(() => {
  const script = readFileSync(join(ROOT, 'scripts', 'make-sample-store.sh'));
  store = fixture('sample-store.sh', [createHash('sha256').update(script).digest('hex').slice(0, 16)]);
  lin = join(store, 'lin01');
  win = join(store, 'win01');
});

interface ShipJson {
  dataObject: string;
  manifestObject: string;
  deleted: string[];
  kept: number;
  manifest: { backups: { id: number; vm: string }[]; newestBackupId: number | null; rawSha256: string };
}

interface RecoverJson {
  copy: { name: string; newestBackupId: number | null };
  skipped: { copy: string; reason: string }[];
  backups: { id: number; vm: string }[];
  lostBackups: { id: number; vm: string }[];
  reaped: number[];
  adopted: { packs: number; chunks: number; unreadable: string[] };
}

function newRepo(): { dir: string; repo: string; target: string } {
  const dir = mkdtempSync(join(tmpdir(), 'vdbak-ship-'));
  const repo = join(dir, 'repo');
  vdbakOk(['init', '--repo', repo]);
  return { dir, repo, target: join(repo, 'target') };
}

// these tests ship by hand, at chosen moments: the backup's own shipping is off here
const backup = (repo: string, src: string): BackupJson =>
  vdbakOk(['backup', '--repo', repo, '--json', src], {
    env: { VDBAK_SHIP_AFTER_BACKUP: '0' },
  }).jsonLines<BackupJson>()[0]!;
const ship = (repo: string, ...more: string[]): ShipJson =>
  vdbakOk(['ship-catalog', '--repo', repo, '--json', ...more]).json<ShipJson>();

/** Every chunk hash the files of one backup reference. */
function b1Chunks(r: Repo, backupId: number): Set<string> {
  const out = new Set<string>();
  for (const vol of r.catalog.backupVolumes(backupId)) {
    for (const v of r.catalog.walk(backupId, vol.volumeId)) for (const h of v.chunks ?? []) out.add(h);
  }
  return out;
}

/** The controller dies: its catalog (and WAL) is gone; the target survives. */
function loseCatalog(repo: string): void {
  for (const f of readdirSync(repo)) if (f.startsWith('catalog.db')) rmSync(join(repo, f));
}

describe('vdbak ship-catalog and recover', () => {
  it('recovers a working repository from the target after the catalog is lost, and restores from it', () => {
    const { dir, repo, target } = newRepo();
    const b1 = backup(repo, lin);
    const b2 = backup(repo, lin);
    const shipped = ship(repo);
    expect(shipped.manifest.backups.map((b) => b.id)).toEqual([b1.backupId, b2.backupId]);
    expect(shipped.manifest.newestBackupId).toBe(b2.backupId);
    // a backup after the last ship: its packs reach the target, its file list only the (lost) catalog
    const b3 = backup(repo, win);
    expect(b3.packs).toBeGreaterThan(0);
    loseCatalog(repo);
    expect(vdbak(['backups', '--repo', repo]).code).toBe(1);

    const repo2 = join(dir, 'new-controller');
    const r = vdbakOk(['recover', '--from-target', target, '--repo', repo2, '--json']).json<RecoverJson>();
    expect(r.backups.map((b) => b.id)).toEqual([b1.backupId, b2.backupId]);
    expect(r.skipped).toEqual([]);
    expect(r.adopted.packs).toBe(b3.packs);
    expect(r.adopted.unreadable).toEqual([]);
    const text = vdbakOk(['backups', '--repo', repo2, '--json']).json<{ id: number; vmName: string }[]>();
    expect(text.map((b) => [b.id, b.vmName])).toEqual([
      [b1.backupId, 'lin01'],
      [b2.backupId, 'lin01'],
    ]);

    // restore from the newest shipped backup, compared with the tree the guest's files came from
    const out = join(dir, 'restored');
    vdbakOk(['restore', '--repo', repo2, String(b2.backupId), '/d0p1/var/log/syslog', '--to', out]);
    expect(sha256sumFile(join(out, 'syslog'))).toBe(sha256sumFile(join(store, 'sources/lin01/var/log/syslog')));
    const cat = vdbakOk(['cat', '--repo', repo2, 'lin01', '/d0p1/home/bob/notes.txt']);
    expect(cat.stdout).toBe('remember the milk\n');
    vdbakOk(['check', '--repo', repo2, '--read-data']);

    // the lost backup's data is known again: backing the VM up anew sends no chunk twice
    const again = backup(repo2, win);
    expect(again.newChunks).toBe(0);
    const photo = vdbakOk(['cat', '--repo', repo2, 'win01', '/WINDOWS/Users/ana/Documents/photo.jpg']);
    expect(sha256(photo.bytes)).toBe(sha256sumFile(join(store, 'sources/win01/Users/ana/Documents/photo.jpg')));
    vdbakOk(['check', '--repo', repo2, '--read-data']);
    rmSync(dir, { recursive: true, force: true });
  });

  it('says in words which backups it recovered and that later ones are lost', () => {
    const { dir, repo, target } = newRepo();
    backup(repo, lin);
    ship(repo);
    backup(repo, win);
    ship(repo);
    // the newest copy is damaged: recovery falls back to the older one and names what is lost
    const copies = readdirSync(join(target, 'catalog'))
      .filter((f) => f.endsWith('.db.zst'))
      .sort();
    const newest = join(target, 'catalog', copies[copies.length - 1]!);
    const bytes = readFileSync(newest);
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
    writeFileSync(newest, bytes);
    loseCatalog(repo);
    const r = vdbakOk(['recover', '--from-target', target, '--repo', join(dir, 'r2')]);
    expect(r.stdout).toMatch(/backups\s+1 recovered/);
    expect(r.stdout).toMatch(/lin01: 1/);
    expect(r.stdout).toMatch(/skipped copy/);
    expect(r.stdout).toMatch(/not recoverable/);
    expect(r.stdout).toMatch(/lost backups\s+2 \(win01\)/);
    rmSync(dir, { recursive: true, force: true });
  });

  it('falls back to an older copy when the newest does not verify', () => {
    const { dir, repo, target } = newRepo();
    const b1 = backup(repo, lin);
    const older = ship(repo);
    const b2 = backup(repo, lin);
    const newer = ship(repo);
    expect(newer.manifest.newestBackupId).toBe(b2.backupId);
    const data = join(target, newer.dataObject);
    const bytes = readFileSync(data);
    bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0x01;
    writeFileSync(data, bytes);
    loseCatalog(repo);

    const r = vdbakOk(['recover', '--from-target', target, '--repo', join(dir, 'r2'), '--json']).json<RecoverJson>();
    expect(r.copy.name).toBe(older.dataObject.replace(/^catalog\//, '').replace(/\.db\.zst$/, ''));
    expect(r.skipped.map((s) => s.copy)).toEqual([newer.manifestObject]);
    expect(r.skipped[0]!.reason).toMatch(/SHIP_CHECKSUM|CODEC_/);
    expect(r.backups.map((b) => b.id)).toEqual([b1.backupId]);
    expect(r.lostBackups).toEqual([{ id: b2.backupId, vm: 'lin01' }]);
    vdbakOk(['check', '--repo', join(dir, 'r2'), '--read-data']);

    // a manifest that is not JSON is skipped the same way
    writeFileSync(join(target, newer.manifestObject), '{ not json');
    const r3 = vdbakOk(['recover', '--from-target', target, '--repo', join(dir, 'r3'), '--json']).json<RecoverJson>();
    expect(r3.skipped[0]!.reason).toMatch(/SHIP_MANIFEST_JSON/);
    expect(r3.backups.map((b) => b.id)).toEqual([b1.backupId]);

    // when no copy verifies, recover fails with a typed error and leaves no catalog behind
    const olderData = join(target, older.dataObject);
    const ob = readFileSync(olderData);
    writeFileSync(olderData, ob.subarray(0, ob.length - 1));
    const bad = vdbak(['recover', '--from-target', target, '--repo', join(dir, 'r4')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/SHIP_NO_COPY/);
    expect(readdirSync(join(dir, 'r4'))).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the last N copies, deleting older data and manifests', () => {
    const { dir, repo, target } = newRepo();
    backup(repo, lin);
    const ships = [ship(repo, '--keep', '2'), ship(repo, '--keep', '2'), ship(repo, '--keep', '2')];
    const last = ship(repo, '--keep', '2');
    ships.push(last);
    const left = readdirSync(join(target, 'catalog')).sort();
    const want = ships
      .slice(-2)
      .flatMap((s) => [s.dataObject, s.manifestObject].map((n) => n.slice('catalog/'.length)));
    expect(left).toEqual(want.sort());
    expect(last.kept).toBe(2);
    expect(last.deleted).toEqual([ships[1]!.manifestObject, ships[1]!.dataObject]);
    expect(vdbak(['ship-catalog', '--repo', repo, '--keep', '0']).code).toBe(2);
    rmSync(dir, { recursive: true, force: true });
  });

  it('follows chunks that a prune moved to new packs after the copy, and names backups whose data is gone', async () => {
    const { dir, repo, target } = newRepo();
    const b1 = backup(repo, lin);
    const b2 = backup(repo, win);
    ship(repo);
    // after the copy: lin01's packs are rewritten under new names (what prune's repack does),
    // and win01's packs are deleted (as if its backups were forgotten and pruned)
    const r = openRepo(repo);
    const moved: string[] = [];
    const deleted: string[] = [];
    try {
      const linPacks = new Set(
        r.catalog
          .packs()
          .filter((p) => r.catalog.packChunks(p.id).length > 0)
          .map((p) => p.name),
      );
      for (const p of r.catalog.packs()) {
        const bytes = await r.target.get(p.name);
        const reader = await PackReader.fromBytes(bytes, p.name);
        const isLin = reader.entries.some((e) => b1Chunks(r, b1.backupId).has(e.hash));
        if (!isLin) {
          await r.target.delete(p.name);
          deleted.push(p.name);
          continue;
        }
        const w = new PackWriter();
        for (const e of reader.entries) {
          w.add({
            hash: e.hash,
            rawLength: e.rawLength,
            codec: e.codec,
            stored: bytes.subarray(e.offset, e.offset + e.storedLength),
          });
        }
        // one more chunk, so that the new pack differs from the old (a pack's name is its content's hash)
        const extra = randomBytes(1000);
        w.add(encodeChunk({ hash: sha256(extra), bytes: extra }));
        const fin = w.finish();
        expect(packObjectName(fin.id)).not.toBe(p.name);
        const name = packObjectName(fin.id);
        await r.target.put(name, fin.bytes);
        r.catalog.replacePackChunks([p.id], { name, size: fin.bytes.length, entries: fin.entries });
        await r.target.delete(p.name);
        moved.push(p.name);
      }
      expect(linPacks.size).toBeGreaterThan(0);
      expect(moved.length).toBeGreaterThan(0);
      expect(deleted.length).toBeGreaterThan(0);
    } finally {
      r.close();
    }
    loseCatalog(repo);
    const repo2 = join(dir, 'r2');
    const res = vdbakOk(['recover', '--from-target', target, '--repo', repo2, '--json']).json<
      RecoverJson & { missingPacks: string[]; missingChunks: number; damagedBackups: number[] }
    >();
    expect(res.missingPacks.sort()).toEqual([...moved, ...deleted].sort());
    expect(res.adopted.packs).toBe(moved.length);
    expect(res.damagedBackups).toEqual([b2.backupId]);
    expect(res.missingChunks).toBeGreaterThan(0);
    // lin01's backup reads from the new packs
    const out = join(dir, 'restored');
    vdbakOk(['restore', '--repo', repo2, String(b1.backupId), '/d0p1/var/log/syslog', '--to', out]);
    expect(sha256sumFile(join(out, 'syslog'))).toBe(sha256sumFile(join(store, 'sources/lin01/var/log/syslog')));
    // check names the damage in win01's backup
    const check = vdbak(['check', '--repo', repo2, '--json']);
    expect(check.code).toBe(1);
    const report = check.json<{ damaged: { vm: string; backups: number[] }[] }>();
    expect(report.damaged.length).toBeGreaterThan(0);
    expect(report.damaged.every((d) => d.vm === 'win01' && d.backups.includes(b2.backupId))).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses to recover into a folder that already holds a repository', () => {
    const { dir, repo, target } = newRepo();
    backup(repo, lin);
    ship(repo);
    const r = vdbak(['recover', '--from-target', target, '--repo', repo]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/REPO_EXISTS/);
    const none = vdbak(['recover', '--from-target', join(dir, 'nowhere'), '--repo', join(dir, 'x')]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/SHIP_NO_TARGET/);
    expect(vdbak(['recover', '--repo', join(dir, 'x')]).code).toBe(2);
    rmSync(dir, { recursive: true, force: true });
  });
});
