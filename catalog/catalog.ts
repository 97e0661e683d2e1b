/**
 * The catalog: every query the rest of vdbak uses, on one better-sqlite3
 * connection. The agent's main thread is the only writer; readers open their
 * own connection (WAL lets them read while a backup writes).
 *
 * Visibility rule (DESIGN.md): a backup's rows become part of the repository
 * only by the transaction in `completeBackup`. Until then its versions are
 * written in small committed batches that no query shows (every read filters
 * on complete backups), and `reapDeadBackups` removes them if the writer died.
 */
import Database from 'better-sqlite3';
import { MIGRATIONS, SCHEMA_SQL, SCHEMA_VERSION } from './schema.js';
import { sqliteAddonPath } from './sqlite-addon.js';
import {
  type ContentKey,
  decodeHashes,
  decodeRuns,
  encodeHashes,
  encodeRuns,
  encodeRunsTransient,
  runCountOf,
  HASH_BYTES,
  joinPath,
  splitPath,
  type StreamRecord,
  type VersionRecord,
  type VersionRow,
} from './records.js';

export type BackupState = 'running' | 'complete' | 'failed';

export interface VmRow {
  id: number;
  identity: string;
  name: string;
  kind: string;
  configPath: string | null;
}

export interface BackupRow {
  id: number;
  vmId: number;
  vmName: string;
  state: BackupState;
  startedMs: number;
  finishedMs: number | null;
  stats: Record<string, unknown> | null;
  error: string | null;
}

export interface BackupVolumeRow {
  backupId: number;
  volumeId: number;
  /** `d<disk>p<partition>` */
  name: string;
  diskIndex: number;
  partIndex: number;
  offset: number;
  length: number;
  fsType: string | null;
  label: string | null;
  uuid: string | null;
  mode: 'files' | 'raw';
  problems: unknown[];
}

export interface ChunkLocation {
  hash: string;
  packName: string;
  offset: number;
  storedLength: number;
  rawLength: number;
  codec: number;
}

export interface PackChunk {
  hash: string;
  offset: number;
  storedLength: number;
  rawLength: number;
  codec: number;
}

/** Thrown for a catalog that is not ours or is newer than this program. */
export class CatalogFormatError extends Error {
  readonly code = 'CATALOG_FORMAT';
}

type Row = Record<string, unknown>;

function n(v: unknown): number {
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new RangeError(`catalog integer ${v} exceeds 2^53`);
    }
    return Number(v);
  }
  return v as number;
}

function nn(v: unknown): number | null {
  return v === null || v === undefined ? null : n(v);
}

function big(v: unknown): bigint {
  return typeof v === 'bigint' ? v : BigInt(v as number);
}

const VERSION_COLUMNS =
  'v.id, v.volume_id, d.path AS dir, v.name, v.first_backup, v.last_backup, v.fs_id, v.type, v.size, v.mode, v.uid, v.gid, v.nlink, v.mtime_ns, v.atime_ns, v.ctime_ns, v.btime_ns, v.link_target, v.meta, v.runs, v.chunks, v.streams';

function toVersion(r: Row): VersionRow {
  const dir = r.dir as string;
  const name = r.name as string;
  const v: VersionRow = {
    id: n(r.id),
    volumeId: n(r.volume_id),
    dir,
    name,
    path: joinPath(dir, name),
    firstBackup: n(r.first_backup),
    lastBackup: nn(r.last_backup),
    fsId: r.fs_id as string,
    type: r.type as string,
    size: n(r.size),
    mode: n(r.mode),
    uid: n(r.uid),
    gid: n(r.gid),
    nlink: n(r.nlink),
    mtimeNs: big(r.mtime_ns),
    atimeNs: big(r.atime_ns),
    ctimeNs: big(r.ctime_ns),
  };
  if (r.btime_ns !== null && r.btime_ns !== undefined) v.btimeNs = big(r.btime_ns);
  if (r.link_target !== null) v.linkTarget = r.link_target as string;
  if (r.meta !== null) v.meta = JSON.parse(r.meta as string) as Record<string, unknown>;
  if (r.runs !== null) v.runs = decodeRuns(r.runs as Buffer);
  if (r.chunks !== null) v.chunks = decodeHashes(r.chunks as Buffer);
  if (r.streams !== null) v.streams = JSON.parse(r.streams as string) as StreamRecord[];
  return v;
}

/** "version is in backup ?" for a versions row aliased v; binds the backup id twice. */
const IN_BACKUP = 'v.first_backup <= ? AND (v.last_backup IS NULL OR v.last_backup > ?)';
/**
 * FROM and WHERE of a path's current version (parameters: volume id, dir, name).
 * CROSS JOIN keeps SQLite from scanning every open version of the volume (dirs
 * first, then versions_current on all three columns): a lookup must not grow
 * with the volume. Not current: a version whose first backup did not complete.
 */
const CURRENT_VERSION = `FROM dirs d CROSS JOIN versions v ON v.dir_id = d.id
  WHERE d.volume_id = ? AND d.path = ? AND v.volume_id = d.volume_id AND v.name = ? AND v.last_backup IS NULL
    AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.id = v.first_backup AND b.state <> 'complete')`;

/** A statement shape for st(): the first column only, as a number (ids stay far below 2^53). */
const ID_ONLY = 'id-only';
/** Seen ids gathered before one insert writes them. */
const SEEN_FLUSH = 4096;

export interface OpenCatalogOptions {
  readonly?: boolean;
  /** Create the schema when the file is new. */
  create?: boolean;
}

export class Catalog {
  readonly db: Database.Database;
  private dirCache = new Map<string, number>();
  /** Seen version ids not yet in temp.seen (markSeen). */
  private seenIds: number[] = [];
  /** Prepared statements by SQL text: preparing costs more than running most of these queries. */
  private readonly stmts = new Map<string, Database.Statement>();

  private constructor(
    readonly path: string,
    db: Database.Database,
  ) {
    this.db = db;
  }

  static open(path: string, opts: OpenCatalogOptions = {}): Catalog {
    const db = new Database(path, {
      readonly: !!opts.readonly,
      fileMustExist: !opts.create,
      nativeBinding: sqliteAddonPath(),
    });
    db.defaultSafeIntegers(true);
    if (!opts.readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
    }
    db.pragma('busy_timeout = 10000');
    db.pragma('foreign_keys = ON');
    const cat = new Catalog(path, db);
    const version = n(db.pragma('user_version', { simple: true }));
    if (version === 0) {
      if (opts.readonly || !opts.create) {
        db.close();
        throw new CatalogFormatError(`${path} is not a vdbak catalog (no schema)`);
      }
      db.transaction(() => {
        db.exec(SCHEMA_SQL);
        for (const step of MIGRATIONS) db.exec(step);
        db.pragma(`user_version = ${SCHEMA_VERSION}`);
      })();
    } else if (version > SCHEMA_VERSION) {
      db.close();
      throw new CatalogFormatError(`${path} has schema ${version}; this vdbak knows up to ${SCHEMA_VERSION}`);
    } else if (version < SCHEMA_VERSION && !opts.readonly) {
      // An older catalog is upgraded in one transaction the first time a writer opens it.
      db.transaction(() => {
        for (let v = version; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v - 1] ?? '');
        db.pragma(`user_version = ${SCHEMA_VERSION}`);
      })();
    }
    return cat;
  }

  private st(sql: string, shape?: typeof ID_ONLY): Database.Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      // one small integer back, no BigInt and no row object per call
      if (shape === ID_ONLY) s.pluck().safeIntegers(false);
      this.stmts.set(sql, s);
    }
    return s;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  tx<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  // ---- meta ---------------------------------------------------------------------------------

  getMeta(key: string): string | undefined {
    const r = this.st('SELECT value FROM meta WHERE key = ?').get(key) as Row | undefined;
    return r ? (r.value as string) : undefined;
  }

  setMeta(key: string, value: string): void {
    this.st('INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(
      key,
      value,
    );
  }

  // ---- VMs, disks, volumes --------------------------------------------------------------------

  upsertVm(v: { identity: string; name: string; kind: string; configPath?: string }, nowMs = Date.now()): number {
    const r = this.st(
      `INSERT INTO vms(identity, name, kind, config_path, first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(identity) DO UPDATE SET name = excluded.name, kind = excluded.kind, config_path = excluded.config_path, last_seen_ms = excluded.last_seen_ms
         RETURNING id`,
    ).get(v.identity, v.name, v.kind, v.configPath ?? null, nowMs, nowMs) as Row;
    return n(r.id);
  }

  vms(): VmRow[] {
    return (this.st('SELECT id, identity, name, kind, config_path FROM vms ORDER BY name, id').all() as Row[]).map(
      (r) => ({
        id: n(r.id),
        identity: r.identity as string,
        name: r.name as string,
        kind: r.kind as string,
        configPath: (r.config_path as string | null) ?? null,
      }),
    );
  }

  /** VMs called `name` (a name may repeat when two VMs share a display name), or whose identity is `name`. */
  findVms(name: string): VmRow[] {
    return this.vms().filter((v) => v.name === name || v.identity === name || String(v.id) === name);
  }

  upsertDisk(vmId: number, slot: string, diskIndex: number): number {
    const r = this.st(
      `INSERT INTO disks(vm_id, slot, disk_index) VALUES (?, ?, ?)
         ON CONFLICT(vm_id, slot) DO UPDATE SET disk_index = excluded.disk_index RETURNING id`,
    ).get(vmId, slot, diskIndex) as Row;
    return n(r.id);
  }

  upsertVolume(diskId: number, partIndex: number, name: string): number {
    const r = this.st(
      `INSERT INTO volumes(disk_id, part_index, name) VALUES (?, ?, ?)
         ON CONFLICT(disk_id, part_index) DO UPDATE SET name = excluded.name RETURNING id`,
    ).get(diskId, partIndex, name) as Row;
    return n(r.id);
  }

  // ---- backups ----------------------------------------------------------------------------------

  beginBackup(vmId: number, pid: number, host: string, nowMs = Date.now()): number {
    const r = this.st(
      `INSERT INTO backups(vm_id, state, started_ms, pid, host) VALUES (?, 'running', ?, ?, ?) RETURNING id`,
    ).get(vmId, nowMs, pid, host) as Row;
    return n(r.id);
  }

  addBackupDisk(
    backupId: number,
    diskId: number,
    d: { imagePath: string; format: string; size: number; scheme?: string },
  ): void {
    this.st(
      'INSERT INTO backup_disks(backup_id, disk_id, image_path, format, size, scheme) VALUES (?, ?, ?, ?, ?, ?)',
    ).run(backupId, diskId, d.imagePath, d.format, d.size, d.scheme ?? null);
  }

  addBackupVolume(
    backupId: number,
    volumeId: number,
    v: { offset: number; length: number; fsType?: string; label?: string; uuid?: string; mode: 'files' | 'raw' },
  ): void {
    this.st(
      'INSERT INTO backup_volumes(backup_id, volume_id, offset, length, fs_type, label, uuid, mode) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ).run(backupId, volumeId, v.offset, v.length, v.fsType ?? null, v.label ?? null, v.uuid ?? null, v.mode);
  }

  setVolumeProblems(backupId: number, volumeId: number, problems: unknown[]): void {
    this.st('UPDATE backup_volumes SET problems = ? WHERE backup_id = ? AND volume_id = ?').run(
      problems.length ? JSON.stringify(problems) : null,
      backupId,
      volumeId,
    );
  }

  /**
   * The one transaction that makes a backup visible: versions of its volumes
   * that it did not see (seen ids are in temp.seen) are closed, and its state
   * becomes complete.
   */
  completeBackup(backupId: number, stats: Record<string, unknown>, nowMs = Date.now()): void {
    this.tx(() => {
      this.flushSeen();
      this.st(
        `UPDATE versions SET last_backup = ?
           WHERE last_backup IS NULL AND first_backup < ?
             AND volume_id IN (SELECT volume_id FROM backup_volumes WHERE backup_id = ?)
             AND id NOT IN (SELECT id FROM temp.seen)`,
      ).run(backupId, backupId, backupId);
      this.st(`UPDATE backups SET state = 'complete', finished_ms = ?, stats = ?, pid = NULL WHERE id = ?`).run(
        nowMs,
        JSON.stringify(stats),
        backupId,
      );
    });
    this.db.exec('DELETE FROM temp.seen');
    this.seenIds = [];
  }

  /** The VM's latest complete backup: its versions are the VM's current ones. */
  latestCompleteBackup(vmId: number): BackupRow | undefined {
    const r = this.st(
      `SELECT b.*, m.name AS vm_name FROM backups b JOIN vms m ON m.id = b.vm_id
         WHERE b.vm_id = ? AND b.state = 'complete' ORDER BY b.id DESC LIMIT 1`,
    ).get(vmId) as Row | undefined;
    return r ? this.backupFromRow(r) : undefined;
  }

  /**
   * Completes running backup `backupId` as a copy of complete backup
   * `fromId` of the same VM (its disks and volumes, hence every version
   * current in them) when `fromId` is still the VM's latest complete backup;
   * false (nothing written) otherwise. One transaction, like completeBackup.
   */
  completeKept(backupId: number, fromId: number, stats: Record<string, unknown>, nowMs = Date.now()): boolean {
    return this.tx(() => {
      const latest = this.st(
        `SELECT max(l.id) AS id FROM backups l JOIN backups b ON b.vm_id = l.vm_id
           WHERE b.id = ? AND l.state = 'complete'`,
        ID_ONLY,
      ).get(backupId) as number | null | undefined;
      if (latest !== fromId) return false;
      this.st(
        `INSERT INTO backup_disks(backup_id, disk_id, image_path, format, size, scheme)
           SELECT ?, disk_id, image_path, format, size, scheme FROM backup_disks WHERE backup_id = ?`,
      ).run(backupId, fromId);
      this.st(
        `INSERT INTO backup_volumes(backup_id, volume_id, offset, length, fs_type, label, uuid, mode, problems)
           SELECT ?, volume_id, offset, length, fs_type, label, uuid, mode, problems FROM backup_volumes WHERE backup_id = ?`,
      ).run(backupId, fromId);
      this.st(`UPDATE backups SET state = 'complete', finished_ms = ?, stats = ?, pid = NULL WHERE id = ?`).run(
        nowMs,
        JSON.stringify(stats),
        backupId,
      );
      return true;
    });
  }

  /** Marks a backup failed and drops what it wrote (nothing of it was ever visible). */
  failBackup(backupId: number, error: string, nowMs = Date.now()): void {
    this.tx(() => {
      this.st('DELETE FROM versions WHERE first_backup = ?').run(backupId);
      this.st('DELETE FROM backup_volumes WHERE backup_id = ?').run(backupId);
      this.st('DELETE FROM backup_disks WHERE backup_id = ?').run(backupId);
      this.st(`UPDATE backups SET state = 'failed', finished_ms = ?, error = ?, pid = NULL WHERE id = ?`).run(
        nowMs,
        error,
        backupId,
      );
    });
  }

  /** Running backups whose writer is gone (killed, crashed): failed, their rows removed. Returns their ids. */
  reapDeadBackups(isAlive: (pid: number, host: string) => boolean): number[] {
    const dead = (this.st(`SELECT id, pid, host FROM backups WHERE state = 'running'`).all() as Row[]).filter(
      (r) => r.pid === null || !isAlive(n(r.pid), (r.host as string) ?? ''),
    );
    for (const r of dead) this.failBackup(n(r.id), 'interrupted: the process that ran it is gone');
    return dead.map((r) => n(r.id));
  }

  private backupFromRow(r: Row): BackupRow {
    return {
      id: n(r.id),
      vmId: n(r.vm_id),
      vmName: r.vm_name as string,
      state: r.state as BackupState,
      startedMs: n(r.started_ms),
      finishedMs: nn(r.finished_ms),
      stats: r.stats ? (JSON.parse(r.stats as string) as Record<string, unknown>) : null,
      error: (r.error as string | null) ?? null,
    };
  }

  backups(opts: { vmId?: number; states?: BackupState[] } = {}): BackupRow[] {
    const states = opts.states ?? ['complete'];
    const rows = this.st(
      `SELECT b.*, m.name AS vm_name FROM backups b JOIN vms m ON m.id = b.vm_id
         WHERE (? IS NULL OR b.vm_id = ?) AND b.state IN (SELECT value FROM json_each(?)) ORDER BY b.id`,
    ).all(opts.vmId ?? null, opts.vmId ?? null, JSON.stringify(states)) as Row[];
    return rows.map((r) => this.backupFromRow(r));
  }

  backup(id: number): BackupRow | undefined {
    const r = this.st('SELECT b.*, m.name AS vm_name FROM backups b JOIN vms m ON m.id = b.vm_id WHERE b.id = ?').get(
      id,
    ) as Row | undefined;
    return r ? this.backupFromRow(r) : undefined;
  }

  backupDisks(backupId: number): {
    diskId: number;
    slot: string;
    diskIndex: number;
    imagePath: string;
    format: string;
    size: number;
    scheme: string | null;
  }[] {
    return (
      this.st(
        `SELECT bd.*, d.slot, d.disk_index FROM backup_disks bd JOIN disks d ON d.id = bd.disk_id WHERE bd.backup_id = ? ORDER BY d.disk_index`,
      ).all(backupId) as Row[]
    ).map((r) => ({
      diskId: n(r.disk_id),
      slot: r.slot as string,
      diskIndex: n(r.disk_index),
      imagePath: r.image_path as string,
      format: r.format as string,
      size: n(r.size),
      scheme: (r.scheme as string | null) ?? null,
    }));
  }

  backupVolumes(backupId: number): BackupVolumeRow[] {
    return (
      this.st(
        `SELECT bv.*, v.name, v.part_index, d.disk_index FROM backup_volumes bv
           JOIN volumes v ON v.id = bv.volume_id JOIN disks d ON d.id = v.disk_id
           WHERE bv.backup_id = ? ORDER BY d.disk_index, v.part_index`,
      ).all(backupId) as Row[]
    ).map((r) => ({
      backupId: n(r.backup_id),
      volumeId: n(r.volume_id),
      name: r.name as string,
      diskIndex: n(r.disk_index),
      partIndex: n(r.part_index),
      offset: n(r.offset),
      length: n(r.length),
      fsType: (r.fs_type as string | null) ?? null,
      label: (r.label as string | null) ?? null,
      uuid: (r.uuid as string | null) ?? null,
      mode: r.mode as 'files' | 'raw',
      problems: r.problems ? (JSON.parse(r.problems as string) as unknown[]) : [],
    }));
  }

  // ---- versions (writer) ----------------------------------------------------------------------

  /**
   * Runs `fn` in a transaction of its own, outside the batch a running backup
   * keeps open on this connection (job.ts Writer): the batch so far is
   * committed (its rows stay invisible until the backup completes), `fn`
   * commits on its own, and a new batch is opened. So a backup that fails and
   * rolls back never takes a job submit, a schedule run or discovery's rows with it.
   */
  writeOutsideBatch<T>(fn: () => T): T {
    const hadBatch = this.db.inTransaction;
    if (hadBatch) this.db.exec('COMMIT');
    try {
      return this.db.transaction(fn)();
    } finally {
      if (hadBatch) this.db.exec('BEGIN');
    }
  }

  /**
   * Rolls back the open write transaction, if any. Directory ids created in it
   * are forgotten too: SQLite hands the same ids to the next new folders, and a
   * cached stale id would file versions under the wrong folder.
   */
  rollback(): void {
    if (this.db.inTransaction) this.db.exec('ROLLBACK');
    this.dirCache.clear();
    // as temp.seen's rows of the rolled-back batch are gone
    this.seenIds = [];
  }

  /** The id of a directory path of a volume, created on first use. */
  dirId(volumeId: number, dir: string): number {
    const key = `${volumeId}\0${dir}`;
    const hit = this.dirCache.get(key);
    if (hit !== undefined) return hit;
    const r = this.st(
      `INSERT INTO dirs(volume_id, path) VALUES (?, ?) ON CONFLICT(volume_id, path) DO UPDATE SET path = excluded.path RETURNING id`,
    ).get(volumeId, dir) as Row;
    const id = n(r.id);
    if (this.dirCache.size > 100_000) this.dirCache.clear();
    this.dirCache.set(key, id);
    return id;
  }

  /** The current (latest, still open) version of a path, as the next backup compares against it. */
  currentVersion(volumeId: number, path: string): VersionRow | undefined {
    const { dir, name } = splitPath(path);
    const r = this.st(`SELECT ${VERSION_COLUMNS} ${CURRENT_VERSION}`).get(volumeId, dir, name) as Row | undefined;
    return r ? toVersion(r) : undefined;
  }

  /** The current version of a path as currentVersion finds it, without its runs and chunks decoded: id, meta, run count. */
  currentVersionMeta(
    volumeId: number,
    path: string,
  ): { id: number; meta: Record<string, unknown> | undefined; runCount: number } | undefined {
    const { dir, name } = splitPath(path);
    const r = this.st(`SELECT v.id, v.meta, v.runs ${CURRENT_VERSION}`).get(volumeId, dir, name) as Row | undefined;
    if (!r) return undefined;
    return {
      id: n(r.id),
      meta: r.meta === null ? undefined : (JSON.parse(r.meta as string) as Record<string, unknown>),
      runCount: r.runs === null ? 0 : runCountOf(r.runs as Buffer),
    };
  }

  /**
   * Marks the current version of `path` seen when it holds what `key` says
   * (records.ts sameContent), was read without error and has no named
   * streams; true when it did. The comparison runs in SQLite and only the
   * id comes back: this is the inner loop of a backup of an unchanged volume.
   */
  keepIfSame(volumeId: number, path: string, key: ContentKey): boolean {
    const { dir, name } = splitPath(path);
    const id = this.st(
      `SELECT v.id ${CURRENT_VERSION}
           AND v.fs_id = ? AND v.type = ? AND v.size = ? AND v.mtime_ns = ? AND v.ctime_ns = ? AND v.btime_ns IS ?
           AND v.link_target IS ? AND v.runs IS ? AND v.streams IS NULL
           AND (v.meta IS NULL OR json_extract(v.meta, '$.readError') IS NULL)`,
      ID_ONLY,
    ).get(
      volumeId,
      dir,
      name,
      key.fsId,
      key.type,
      key.size,
      key.mtimeNs,
      key.ctimeNs,
      key.btimeNs ?? null,
      key.linkTarget ?? null,
      key.runs && key.runs.length ? encodeRunsTransient(key.runs) : null,
    ) as number | undefined;
    if (id === undefined) return false;
    this.markSeen(id);
    return true;
  }

  /** Records that backup in progress saw an unchanged version (it stays open). */
  markSeen(versionId: number): void {
    this.seenIds.push(versionId);
    if (this.seenIds.length >= SEEN_FLUSH) this.flushSeen();
  }

  /** Writes the seen ids gathered so far into temp.seen: one statement for many (a statement per id costs more than the check). */
  private flushSeen(): void {
    if (this.seenIds.length === 0) return;
    this.st('INSERT OR IGNORE INTO temp.seen(id) SELECT value FROM json_each(?)').run(JSON.stringify(this.seenIds));
    this.seenIds = [];
  }

  /** Prepares the per-connection scratch table of seen versions for one backup. */
  startSeen(): void {
    this.seenIds = [];
    this.db.exec('CREATE TEMP TABLE IF NOT EXISTS seen (id INTEGER PRIMARY KEY); DELETE FROM temp.seen;');
  }

  insertVersion(volumeId: number, path: string, backupId: number, v: VersionRecord): number {
    const { dir, name } = splitPath(path);
    const dirId = this.dirId(volumeId, dir);
    const r = this.st(
      `INSERT INTO versions(volume_id, dir_id, name, first_backup, fs_id, type, size, mode, uid, gid, nlink,
           mtime_ns, atime_ns, ctime_ns, btime_ns, link_target, meta, runs, chunks, streams)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
    ).get(
      volumeId,
      dirId,
      name,
      backupId,
      v.fsId,
      v.type,
      v.size,
      v.mode,
      v.uid,
      v.gid,
      v.nlink,
      v.mtimeNs,
      v.atimeNs,
      v.ctimeNs,
      v.btimeNs ?? null,
      v.linkTarget ?? null,
      v.meta && Object.keys(v.meta).length ? JSON.stringify(v.meta) : null,
      v.runs && v.runs.length ? encodeRuns(v.runs) : null,
      v.chunks ? encodeHashes(v.chunks) : null,
      v.streams && v.streams.length ? JSON.stringify(v.streams) : null,
    ) as Row;
    return n(r.id);
  }

  // ---- versions (readers) ---------------------------------------------------------------------

  /** One path of one volume as it was in a backup. */
  lookup(backupId: number, volumeId: number, path: string): VersionRow | undefined {
    const { dir, name } = splitPath(path);
    const r = this.st(
      `SELECT ${VERSION_COLUMNS} FROM dirs d CROSS JOIN versions v ON v.dir_id = d.id
         WHERE d.volume_id = ? AND d.path = ? AND v.name = ? AND ${IN_BACKUP}`,
    ).get(volumeId, dir, name, backupId, backupId) as Row | undefined;
    return r ? toVersion(r) : undefined;
  }

  /** The entries of one directory of a volume in a backup, by name. */
  list(backupId: number, volumeId: number, dirPath: string): VersionRow[] {
    const dir = dirPath === '/' ? '/' : dirPath.replace(/\/+$/, '');
    return (
      this.st(
        `SELECT ${VERSION_COLUMNS} FROM versions v JOIN dirs d ON d.id = v.dir_id
           WHERE d.volume_id = ? AND d.path = ? AND ${IN_BACKUP} ORDER BY v.name`,
      ).all(volumeId, dir, backupId, backupId) as Row[]
    ).map(toVersion);
  }

  /** Every entry of a volume in a backup whose path is `prefix` or below it, in path order. */
  *walk(backupId: number, volumeId: number, prefix = '/'): Generator<VersionRow> {
    const p = prefix.replace(/\/+$/, '');
    const stmt =
      p === ''
        ? this.db
            .prepare(
              `SELECT ${VERSION_COLUMNS} FROM versions v JOIN dirs d ON d.id = v.dir_id
               WHERE d.volume_id = ? AND ${IN_BACKUP} ORDER BY d.path, v.name`,
            )
            .bind(volumeId, backupId, backupId)
        : this.db
            .prepare(
              `SELECT ${VERSION_COLUMNS} FROM versions v JOIN dirs d ON d.id = v.dir_id
               WHERE d.volume_id = ? AND (d.path = ? OR substr(d.path, 1, ?) = ?) AND ${IN_BACKUP} ORDER BY d.path, v.name`,
            )
            .bind(volumeId, p, p.length + 1, `${p}/`, backupId, backupId);
    for (const r of stmt.iterate() as Iterable<Row>) yield toVersion(r);
  }

  /** Every version of a path of a volume, oldest first, with the complete backups that hold it. */
  history(volumeId: number, path: string): { version: VersionRow; backups: number[] }[] {
    const { dir, name } = splitPath(path);
    const rows = (
      this.st(
        `SELECT ${VERSION_COLUMNS} FROM versions v JOIN dirs d ON d.id = v.dir_id
           WHERE d.volume_id = ? AND d.path = ? AND v.name = ? ORDER BY v.first_backup`,
      ).all(volumeId, dir, name) as Row[]
    ).map(toVersion);
    return rows
      .map((version) => ({ version, backups: this.backupsHolding(version) }))
      .filter((h) => h.backups.length > 0);
  }

  /** The complete backups of a version's volume that hold this version. */
  backupsHolding(v: { volumeId: number; firstBackup: number; lastBackup: number | null }): number[] {
    return (
      this.st(
        `SELECT bv.backup_id FROM backup_volumes bv JOIN backups b ON b.id = bv.backup_id
           WHERE bv.volume_id = ? AND b.state = 'complete' AND bv.backup_id >= ? AND (? IS NULL OR bv.backup_id < ?)
           ORDER BY bv.backup_id`,
      ).all(v.volumeId, v.firstBackup, v.lastBackup, v.lastBackup) as Row[]
    ).map((r) => n(r.backup_id));
  }

  /** Iterates every version (any backup) of the given volumes, or of all volumes; the caller filters. */
  *allVersions(volumeIds?: number[]): Generator<VersionRow> {
    const stmt = this.st(
      `SELECT ${VERSION_COLUMNS} FROM versions v JOIN dirs d ON d.id = v.dir_id
       WHERE (? IS NULL OR v.volume_id IN (SELECT value FROM json_each(?)))
         AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.id = v.first_backup AND b.state <> 'complete')`,
    );
    const ids = volumeIds ? JSON.stringify(volumeIds) : null;
    for (const r of stmt.iterate(ids, ids) as Iterable<Row>) yield toVersion(r);
  }

  /** Volumes with their VM and disk, for naming search results. */
  volumeNames(): Map<number, { vmId: number; vmName: string; name: string }> {
    const m = new Map<number, { vmId: number; vmName: string; name: string }>();
    for (const r of this.st(
      'SELECT v.id, v.name, d.vm_id, m.name AS vm_name FROM volumes v JOIN disks d ON d.id = v.disk_id JOIN vms m ON m.id = d.vm_id',
    ).all() as Row[]) {
      m.set(n(r.id), { vmId: n(r.vm_id), vmName: r.vm_name as string, name: r.name as string });
    }
    return m;
  }

  /** Volume ids of a VM's disks. */
  vmVolumes(vmId: number): { id: number; name: string }[] {
    return (
      this.st(
        'SELECT v.id, v.name FROM volumes v JOIN disks d ON d.id = v.disk_id WHERE d.vm_id = ? ORDER BY v.name',
      ).all(vmId) as Row[]
    ).map((r) => ({ id: n(r.id), name: r.name as string }));
  }

  // ---- chunks and packs -----------------------------------------------------------------------

  hasChunk(hash: string): boolean {
    return this.st('SELECT 1 FROM chunks WHERE hash = ?').get(Buffer.from(hash, 'hex')) !== undefined;
  }

  hasPack(name: string): boolean {
    return this.st('SELECT 1 FROM packs WHERE name = ?').get(name) !== undefined;
  }

  /**
   * Records a pack the target has durably stored, and its chunks. A chunk
   * already known elsewhere keeps its first place (packs written by a
   * crashed run and adopted later may repeat chunks).
   */
  addPack(name: string, size: number, entries: readonly PackChunk[], nowMs = Date.now()): number {
    return this.tx(() => {
      const packId = this.upsertPack(name, size, entries.length, nowMs);
      const ins = this.st(
        'INSERT OR IGNORE INTO chunks(hash, pack_id, offset, stored_len, raw_len, codec) VALUES (?, ?, ?, ?, ?, ?)',
      );
      for (const e of entries) {
        ins.run(Buffer.from(e.hash, 'hex'), packId, e.offset, e.storedLength, e.rawLength, e.codec);
      }
      return packId;
    });
  }

  private upsertPack(name: string, size: number, chunkCount: number, nowMs: number): number {
    const r = this.st(
      `INSERT INTO packs(name, size, chunk_count, created_ms) VALUES (?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET size = excluded.size RETURNING id`,
    ).get(name, size, chunkCount, nowMs) as Row;
    return n(r.id);
  }

  packs(): { id: number; name: string; size: number; chunkCount: number }[] {
    return (this.st('SELECT id, name, size, chunk_count FROM packs ORDER BY id').all() as Row[]).map((r) => ({
      id: n(r.id),
      name: r.name as string,
      size: n(r.size),
      chunkCount: n(r.chunk_count),
    }));
  }

  chunkLocation(hash: string): ChunkLocation | undefined {
    const r = this.st(
      `SELECT c.offset, c.stored_len, c.raw_len, c.codec, p.name FROM chunks c JOIN packs p ON p.id = c.pack_id WHERE c.hash = ?`,
    ).get(Buffer.from(hash, 'hex')) as Row | undefined;
    if (!r) return undefined;
    return {
      hash,
      packName: r.name as string,
      offset: n(r.offset),
      storedLength: n(r.stored_len),
      rawLength: n(r.raw_len),
      codec: n(r.codec),
    };
  }

  /** Chunks stored in one pack, as the catalog knows them. */
  packChunks(packId: number): PackChunk[] {
    return (
      this.st('SELECT hash, offset, stored_len, raw_len, codec FROM chunks WHERE pack_id = ?').all(packId) as Row[]
    ).map((r) => ({
      hash: (r.hash as Buffer).toString('hex'),
      offset: n(r.offset),
      storedLength: n(r.stored_len),
      rawLength: n(r.raw_len),
      codec: n(r.codec),
    }));
  }

  /**
   * Fills temp.referenced with every chunk hash that a version of a complete
   * or running backup references (running: a backup in progress must not
   * lose chunks it already counts on). Returns how many.
   */
  collectReferenced(): number {
    this.db.exec(
      'CREATE TEMP TABLE IF NOT EXISTS referenced (hash BLOB PRIMARY KEY) WITHOUT ROWID; DELETE FROM temp.referenced;',
    );
    // in SQL: better-sqlite3 cannot write while a query iterates on the same connection
    this.tx(() => {
      this.db.exec(`
        WITH RECURSIVE parts(blob, at) AS (
          SELECT chunks, 0 FROM versions WHERE chunks IS NOT NULL AND length(chunks) >= ${HASH_BYTES}
          UNION ALL SELECT blob, at + ${HASH_BYTES} FROM parts WHERE at + ${HASH_BYTES} < length(blob))
        INSERT OR IGNORE INTO temp.referenced(hash) SELECT substr(blob, at + 1, ${HASH_BYTES}) FROM parts;
        INSERT OR IGNORE INTO temp.referenced(hash)
          SELECT unhex(c.value) FROM versions v, json_each(v.streams) s, json_each(s.value, '$.chunks') c
          WHERE v.streams IS NOT NULL;`);
    });
    return n((this.st('SELECT count(*) AS c FROM temp.referenced').get() as Row).c);
  }

  // ---- forget ---------------------------------------------------------------------------------

  /**
   * Removes backups from the catalog, and every version no remaining backup
   * holds. Chunks stay until prune.
   */
  forgetBackups(ids: readonly number[]): { versionsRemoved: number } {
    return this.tx(() => {
      const vols = new Set<number>();
      for (const id of ids) {
        for (const r of this.st('SELECT volume_id FROM backup_volumes WHERE backup_id = ?').all(id) as Row[]) {
          vols.add(n(r.volume_id));
        }
        this.st('DELETE FROM backup_volumes WHERE backup_id = ?').run(id);
        this.st('DELETE FROM backup_disks WHERE backup_id = ?').run(id);
        this.st('DELETE FROM backups WHERE id = ?').run(id);
      }
      let removed = 0;
      const del = this.st(
        `DELETE FROM versions AS v WHERE v.volume_id = ?
           AND v.first_backup NOT IN (SELECT id FROM backups WHERE state = 'running')
           AND NOT EXISTS (SELECT 1 FROM backup_volumes bv JOIN backups b ON b.id = bv.backup_id
                           WHERE bv.volume_id = v.volume_id AND b.state = 'complete'
                             AND bv.backup_id >= v.first_backup AND (v.last_backup IS NULL OR bv.backup_id < v.last_backup))`,
      );
      for (const vol of vols) removed += del.run(vol).changes;
      return { versionsRemoved: removed };
    });
  }

  /** Points chunks at a new pack (after a repack stored it) and drops the old packs and their remaining chunk rows. */
  replacePackChunks(
    oldPackIds: readonly number[],
    newPack: { name: string; size: number; entries: readonly PackChunk[] } | null,
  ): void {
    this.tx(() => {
      if (newPack) {
        const newId = this.upsertPack(newPack.name, newPack.size, newPack.entries.length, Date.now());
        const upd = this.st(
          'UPDATE chunks SET pack_id = ?, offset = ?, stored_len = ?, raw_len = ?, codec = ? WHERE hash = ?',
        );
        for (const e of newPack.entries) {
          upd.run(newId, e.offset, e.storedLength, e.rawLength, e.codec, Buffer.from(e.hash, 'hex'));
        }
      }
      for (const id of oldPackIds) {
        this.st('DELETE FROM chunks WHERE pack_id = ?').run(id);
        this.st('DELETE FROM packs WHERE id = ?').run(id);
      }
    });
  }

  /** Per pack: chunks and stored bytes still referenced (needs collectReferenced first). */
  packUsage(): {
    id: number;
    name: string;
    size: number;
    chunks: number;
    storedBytes: number;
    liveChunks: number;
    liveBytes: number;
  }[] {
    return (
      this.st(
        `SELECT p.id, p.name, p.size, count(c.hash) AS chunks, sum(c.stored_len) AS stored,
                  sum(CASE WHEN r.hash IS NOT NULL THEN 1 ELSE 0 END) AS live,
                  sum(CASE WHEN r.hash IS NOT NULL THEN c.stored_len ELSE 0 END) AS live_bytes
           FROM packs p LEFT JOIN chunks c ON c.pack_id = p.id LEFT JOIN temp.referenced r ON r.hash = c.hash
           GROUP BY p.id ORDER BY p.id`,
      ).all() as Row[]
    ).map((r) => ({
      id: n(r.id),
      name: r.name as string,
      size: n(r.size),
      chunks: n(r.chunks),
      storedBytes: nn(r.stored) ?? 0,
      liveChunks: nn(r.live) ?? 0,
      liveBytes: nn(r.live_bytes) ?? 0,
    }));
  }

  /** Chunks referenced by versions but unknown to the catalog (a broken repository). */
  missingReferenced(): string[] {
    return (
      this.st(
        'SELECT r.hash FROM temp.referenced r LEFT JOIN chunks c ON c.hash = r.hash WHERE c.hash IS NULL',
      ).all() as Row[]
    ).map((r) => (r.hash as Buffer).toString('hex'));
  }

  checkpoint(): void {
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }
}
