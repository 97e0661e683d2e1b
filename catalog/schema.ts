/**
 * The catalog's schema. One SQLite file, WAL mode, one writer (the agent's
 * main thread); readers (restore, ls, find, chunk workers) may run alongside.
 *
 * Growth follows change: an entry version (`versions`) is valid from the
 * backup that first saw it (`first_backup`) until the backup that no longer
 * saw it (`last_backup`, exclusive; NULL while it is current). A backup of a
 * volume that finds a file unchanged writes nothing for it.
 *
 * A version is in backup B of its volume when
 *   first_backup <= B AND (last_backup IS NULL OR last_backup > B)
 * and B is a complete backup that covered the volume (`backup_volumes`).
 * Versions written by a backup that never completed are deleted when the next
 * writer finds it dead (see Catalog.reapDeadBackups).
 *
 * Chunk lists are BLOBs of 32-byte SHA-256 hashes in file order; a chunk's
 * place (pack, offset, lengths) is in `chunks`. Named streams (NTFS ADS) are
 * JSON in `versions.streams`. Data runs are a BLOB (records.ts; long lists in the
 * compact form of runs-compact.ts) in volume
 * coordinates, so a disk can be rebuilt from file chunks plus non-file regions.
 */

export const SCHEMA_VERSION = 3;

export const SCHEMA_SQL = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;

CREATE TABLE vms (
  id INTEGER PRIMARY KEY,
  identity TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  config_path TEXT,
  first_seen_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX vms_name ON vms(name);

CREATE TABLE disks (
  id INTEGER PRIMARY KEY,
  vm_id INTEGER NOT NULL REFERENCES vms(id),
  slot TEXT NOT NULL,
  disk_index INTEGER NOT NULL,
  UNIQUE (vm_id, slot)
) STRICT;

CREATE TABLE volumes (
  id INTEGER PRIMARY KEY,
  disk_id INTEGER NOT NULL REFERENCES disks(id),
  part_index INTEGER NOT NULL,
  name TEXT NOT NULL,
  UNIQUE (disk_id, part_index)
) STRICT;

CREATE TABLE backups (
  id INTEGER PRIMARY KEY,
  vm_id INTEGER NOT NULL REFERENCES vms(id),
  state TEXT NOT NULL CHECK (state IN ('running', 'complete', 'failed')),
  started_ms INTEGER NOT NULL,
  finished_ms INTEGER,
  pid INTEGER,
  host TEXT,
  stats TEXT,
  error TEXT
) STRICT;
CREATE INDEX backups_vm ON backups(vm_id, state, id);

CREATE TABLE backup_disks (
  backup_id INTEGER NOT NULL REFERENCES backups(id),
  disk_id INTEGER NOT NULL REFERENCES disks(id),
  image_path TEXT NOT NULL,
  format TEXT NOT NULL,
  size INTEGER NOT NULL,
  scheme TEXT,
  PRIMARY KEY (backup_id, disk_id)
) STRICT;

CREATE TABLE backup_volumes (
  backup_id INTEGER NOT NULL REFERENCES backups(id),
  volume_id INTEGER NOT NULL REFERENCES volumes(id),
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL,
  fs_type TEXT,
  label TEXT,
  uuid TEXT,
  mode TEXT NOT NULL CHECK (mode IN ('files', 'raw')),
  problems TEXT,
  PRIMARY KEY (backup_id, volume_id)
) STRICT;
CREATE INDEX backup_volumes_volume ON backup_volumes(volume_id, backup_id);

CREATE TABLE dirs (
  id INTEGER PRIMARY KEY,
  volume_id INTEGER NOT NULL REFERENCES volumes(id),
  path TEXT NOT NULL,
  UNIQUE (volume_id, path)
) STRICT;

CREATE TABLE versions (
  id INTEGER PRIMARY KEY,
  volume_id INTEGER NOT NULL,
  dir_id INTEGER NOT NULL,
  name TEXT NOT NULL,
  first_backup INTEGER NOT NULL,
  last_backup INTEGER,
  fs_id TEXT NOT NULL,
  type TEXT NOT NULL,
  size INTEGER NOT NULL,
  mode INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  gid INTEGER NOT NULL,
  nlink INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  atime_ns INTEGER NOT NULL,
  ctime_ns INTEGER NOT NULL,
  btime_ns INTEGER,
  link_target TEXT,
  meta TEXT,
  runs BLOB,
  chunks BLOB,
  streams TEXT
) STRICT;
CREATE INDEX versions_current ON versions(volume_id, dir_id, name) WHERE last_backup IS NULL;
CREATE INDEX versions_dir ON versions(dir_id, name, first_backup);
CREATE INDEX versions_first ON versions(first_backup);

CREATE TABLE packs (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  chunk_count INTEGER NOT NULL,
  created_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE chunks (
  hash BLOB PRIMARY KEY,
  pack_id INTEGER NOT NULL REFERENCES packs(id),
  offset INTEGER NOT NULL,
  stored_len INTEGER NOT NULL,
  raw_len INTEGER NOT NULL,
  codec INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX chunks_pack ON chunks(pack_id);
`;

/**
 * Schema 2: the daemon's state lives in the catalog too, so it is shipped with
 * it and survives a lost controller.
 * - vms: where discovery last saw a VM (datastore, path) and when it vanished
 *   (NULL while present); a VM is tracked by identity, never by path.
 * - jobs: the persistent job queue (restores first, then backups, then
 *   maintenance); params/progress/result are JSON.
 * - schedule_runs: the last time each schedule fired, for catch-up after downtime.
 * - protection_groups / recovery_plans: issue 7 (definitions as JSON).
 */
export const MIGRATE_1_TO_2_SQL = `
ALTER TABLE vms ADD COLUMN datastore TEXT;
ALTER TABLE vms ADD COLUMN vanished_ms INTEGER;

CREATE TABLE jobs (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  priority INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
  params TEXT NOT NULL,
  origin TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  started_ms INTEGER,
  finished_ms INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  progress TEXT,
  result TEXT,
  error TEXT,
  pid INTEGER,
  host TEXT
) STRICT;
CREATE INDEX jobs_queue ON jobs(state, priority, id);

CREATE TABLE schedule_runs (
  name TEXT PRIMARY KEY,
  last_fire_ms INTEGER NOT NULL,
  last_job_id INTEGER
) STRICT;

CREATE TABLE protection_groups (
  name TEXT PRIMARY KEY,
  definition TEXT NOT NULL,
  updated_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE recovery_plans (
  name TEXT PRIMARY KEY,
  definition TEXT NOT NULL,
  updated_ms INTEGER NOT NULL
) STRICT;
`;

/** Upgrades by one version each: MIGRATIONS[v - 1] takes schema v to v + 1. */
/**
 * Schema 3 changes no table: long runs lists may be stored in the compact form
 * (runs-compact.ts), which a vdbak knowing only schema 2 would misread, so the
 * version number keeps it out.
 */
export const MIGRATE_2_TO_3_SQL = '';

export const MIGRATIONS: readonly string[] = [MIGRATE_1_TO_2_SQL, MIGRATE_2_TO_3_SQL];
