import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Catalog } from '../../catalog/catalog.js';
import { SCHEMA_SQL, SCHEMA_VERSION } from '../../catalog/schema.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tables(db: Database.Database): string[] {
  return (
    db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]
  ).map((r) => r.name);
}

describe('catalog schema upgrades', () => {
  it('upgrades a schema-1 catalog in place and keeps its rows', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdbak-migrate-'));
    dirs.push(dir);
    const path = join(dir, 'catalog.db');
    const old = new Database(path);
    old.exec(SCHEMA_SQL);
    old.pragma('user_version = 1');
    old
      .prepare(
        "INSERT INTO vms(identity, name, kind, config_path, first_seen_ms, last_seen_ms) VALUES ('uuid-1', 'web01', 'vmware', NULL, 1, 2)",
      )
      .run();
    old.close();

    const cat = Catalog.open(path);
    try {
      expect(Number(cat.db.pragma('user_version', { simple: true }))).toBe(SCHEMA_VERSION);
      expect(tables(cat.db)).toEqual(
        expect.arrayContaining(['jobs', 'schedule_runs', 'protection_groups', 'recovery_plans']),
      );
      const row = cat.db.prepare('SELECT name, datastore, vanished_ms FROM vms').get() as Record<string, unknown>;
      expect(row).toEqual({ name: 'web01', datastore: null, vanished_ms: null });
    } finally {
      cat.close();
    }
  });

  it('creates the same tables for a new catalog as an upgraded one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdbak-migrate-'));
    dirs.push(dir);
    const fresh = Catalog.open(join(dir, 'new.db'), { create: true });
    const oldPath = join(dir, 'old.db');
    const old = new Database(oldPath);
    old.exec(SCHEMA_SQL);
    old.pragma('user_version = 1');
    old.close();
    const upgraded = Catalog.open(oldPath);
    try {
      const cols = (c: Catalog, t: string) =>
        (c.db.prepare(`PRAGMA table_info(${t})`).all() as { name: string }[]).map((r) => r.name);
      expect(tables(upgraded.db)).toEqual(tables(fresh.db));
      for (const t of tables(fresh.db)) expect(cols(upgraded, t)).toEqual(cols(fresh, t));
    } finally {
      fresh.close();
      upgraded.close();
    }
  });
});

describe('catalog rollback', () => {
  it('forgets directory ids made in a rolled-back transaction (SQLite reuses them for other folders)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdbak-rollback-'));
    dirs.push(dir);
    const cat = Catalog.open(join(dir, 'c.db'), { create: true });
    try {
      const vm = cat.upsertVm({ identity: 'u', name: 'vm', kind: 'image' });
      const vol = cat.upsertVolume(cat.upsertDisk(vm, 'scsi0:0', 0), 1, 'd0p1');
      cat.db.exec('BEGIN');
      const a = cat.dirId(vol, '/a');
      cat.rollback();
      const b = cat.dirId(vol, '/b');
      const a2 = cat.dirId(vol, '/a');
      expect(a2).not.toBe(b);
      const rows = cat.db.prepare('SELECT id, path FROM dirs ORDER BY id').all() as { id: bigint; path: string }[];
      expect(rows.map((r) => [Number(r.id), r.path])).toEqual([
        [b, '/b'],
        [a2, '/a'],
      ]);
      expect(a).toBe(b); // the id really was reused: without the fix /a would resolve to /b's row
    } finally {
      cat.close();
    }
  });
});
