/**
 * One backup of one VM: every disk (its snapshot chain read as one device),
 * every volume, every entry of every filesystem we read, into the catalog;
 * file content (every named stream too) as chunks into packs on the target.
 *
 * The main thread walks the filesystems and is the only catalog writer;
 * reading content, chunking, hashing and compressing run on the pool. A file
 * whose stable id, size, times and runs match the volume's current version is
 * not read: the version stays open and costs no row. Volumes without a
 * filesystem we read are kept as their allocated bytes ("raw"), reported.
 *
 * Whole-VM restore (issue 7) needs the rest of each disk too: after a disk's
 * files are read, its regions (regions.ts: allocated bytes that no stored
 * file content covers, free space left out) become the version
 * REGIONS_PATH of the pseudo-volume `d<disk>` (part REGIONS_PART, mode raw,
 * runs in disk coordinates), read by the pool from the whole disk. Files
 * whose content is not their on-disk bytes (compressed, encrypted) are
 * flagged meta.contentNotOnDisk and stay in the regions. The VM's
 * configuration files (config-files.ts) become the volume `config` of the
 * pseudo-disk CONFIG_SLOT.
 *
 * Crash rules (DESIGN.md): a pack is recorded only after the target stored
 * it; versions written meanwhile are invisible until `completeBackup`; packs
 * stored by a run that died before recording them are adopted at the next
 * start (adopt.ts), so nothing is sent twice.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import type { Catalog } from '../../catalog/catalog.js';
import type { RunRecord, StreamRecord, VersionRecord } from '../../catalog/records.js';
import { sameContent } from '../../catalog/records.js';
import type { ByteRange } from '../../parsers/blockdevice.js';
import { errorsFor, isVdbakError, type SerializedError } from '../../parsers/errors.js';
import type { DataRun, FsEntry, FsInfo } from '../../parsers/fs/types.js';
import { encodeChunk, type EncodedChunk } from '../../transport/codec.js';
import { ContentChunker } from '../chunk/fastcdc.js';
import { packObjectName, PackWriter } from '../../transport/pack.js';
import type { Repo } from '../repo.js';
import { processAlive } from '../repo.js';
import { type DiskStack, type OpenVolume, stackOn } from '../stack.js';
import { openDisk } from '../../parsers/disk/open.js';
import type { DiskImage } from '../../parsers/disk/types.js';
import { adoptOrphanPacks } from './adopt.js';
import { type ConfigFile, configFiles } from './config-files.js';
import { keepable, settledBefore, settleMs, sourceStamp } from './source-stamp.js';
import type { BackupPool } from './pool.js';
import {
  complement,
  deviceAllocated,
  FileRuns,
  merged,
  pieces,
  REGION_CHUNK_SIZES,
  regions,
  shifted,
  subtract,
  trustedUsed,
} from './regions.js';
import { type ItemResult, type ReadTask, type TaskItem, type TaskResult, WHOLE_DISK } from './worker.js';

/** A large stream is read as independent segments of this size (parallelism and bounded task results). */
export const SEGMENT_BYTES = 16 * 1024 * 1024;
/** A task closes at this many bytes of content or items. */
const TASK_BYTES = 8 * 1024 * 1024;
const TASK_ITEMS = 512;
/** Commit the writer's open transaction after this many statements or milliseconds. */
const COMMIT_EVERY_OPS = 5000;
const COMMIT_EVERY_MS = 1000;
/** Unchanged entries between two looks at the clock (commit timer, progress): each look costs more than the entry. */
const CLOCK_EVERY = 64;
/** The walk hands the event loop a turn at least this often. */
const YIELD_EVERY_MS = 50;
/** Warning texts kept per backup (the count is always exact). */
const MAX_WARNING_TEXTS = 1000;
/** Path under which a volume without a readable filesystem keeps its allocated bytes. */
export const RAW_VOLUME_PATH = '/volume.raw';
/** A disk's regions: the pseudo-volume `d<disk>` (part_index REGIONS_PART) holds them at this path. */
export const REGIONS_PATH = '/regions.raw';
export const REGIONS_PART = -1;
/** The VM's configuration files: pseudo-disk slot CONFIG_SLOT (disk_index -1), volume `config` (part 0). */
export const CONFIG_SLOT = 'config';
export const CONFIG_DISK_INDEX = -1;
export const CONFIG_VOLUME = 'config';
/** Host files are read in blocks of this size. */
const CONFIG_READ_BLOCK = 4 * 1024 * 1024;
/** FsEntry flags whose content is not the bytes at the file's runs. */
const NOT_ON_DISK_FLAGS = ['compressed', 'encrypted'];

export interface BackupSource {
  name: string;
  identity: string;
  kind: string;
  configPath?: string;
  disks: { slot: string; path: string; format?: string }[];
  warnings?: string[];
}

export interface LiveStats {
  files: number;
  entries: number;
  bytesScanned: number;
  bytesRead: number;
  newChunks: number;
  bytesSent: number;
  packs: number;
  unchanged: number;
  changed: number;
  warnings: number;
  totalBytes: number;
  currentPath?: string;
}

export interface VolumeSummary {
  name: string;
  fsType: string | null;
  label: string | null;
  mode: 'files' | 'raw';
  entries: number;
  problems: number;
}

export interface RegionSummary {
  disk: number;
  /** Ranges and bytes the disk's regions hold. */
  runs: number;
  bytes: number;
}

export interface BackupResult extends LiveStats {
  backupId: number;
  vm: string;
  durationMs: number;
  warningList: string[];
  volumes: VolumeSummary[];
  /** Per disk, the non-file regions kept (issue 7 §1). */
  regions: RegionSummary[];
  /** Names of the VM's configuration files kept under /config. */
  configFiles: string[];
  /** Of bytesRead: the disks' regions (read at every backup) and the configuration files. */
  regionBytesRead: number;
  configBytesRead: number;
  /** The fingerprint of every file this backup read (source-stamp.ts); absent when one had changed too recently. */
  sourceStamp?: string;
  /** Of warningList: those the same files give again, and the count of the others that concern them (WarningKind). */
  readWarnings?: string[];
  transientWarnings?: number;
  /** Set when no file had changed since backup N, the last that read them: this one keeps its volumes (source-stamp.ts). */
  unchangedSince?: number;
}

export interface BackupOptions {
  pool: BackupPool;
  onProgress?: (s: LiveStats) => void;
  /** Folders a disk's snapshot parents must lie in (the datastores). */
  parentRoots?: string[];
  /** The throttle's shared token bucket (ThrottleLoop.bucket.buffer): the workers' reads take tokens from it. */
  throttle?: SharedArrayBuffer;
  /** Aborting stops the backup at the next entry or task (a CancelledError); the backup is marked failed, nothing stored is lost. */
  signal?: AbortSignal;
  /** Read every disk even when none of the VM's files changed since its latest backup (source-stamp.ts). */
  rescan?: boolean;
  /** Overrides STAMP_SETTLE_MS (source-stamp.ts): how long before the backup a file must have last changed. */
  stampSettleMs?: number;
  /** Test hook: called at the crash-relevant steps (crash tests kill the process there). */
  hook?: (step: BackupStep) => void;
}

export type BackupStep = 'pack-stored' | 'pack-recorded' | 'before-complete';

/**
 * What a warning says about a second reading of the same files, for the
 * unchanged-VM shortcut (source-stamp.ts): `read` — the same bytes give it
 * again (a partition left raw, a partition-table note), so a backup that
 * keeps this one repeats it; `transient` — a second reading might not (a
 * file not read, a filesystem problem, anything not known to be
 * deterministic), so no backup keeps this one; `other` — about this run, not
 * the VM's files (the source listing, packs adopted).
 */
export type WarningKind = 'read' | 'transient' | 'other';

interface Part {
  stream?: string;
  segments: (string[] | undefined)[];
}

/** One disk's file runs, left out of its regions; a file whose read fails gives its runs back. */
interface DiskFiles {
  runs: FileRuns;
  giveBack: ByteRange[];
  /** stats.changed when the disk started: equal at its end means no file of it was read (or failed). */
  changedAtStart: number;
  /** imageStamp() of the disk's files when it started. */
  stamp: string | undefined;
}

interface PendingFile {
  volumeId: number;
  path: string;
  record: VersionRecord;
  parts: Part[];
  remaining: number;
  error?: SerializedError;
  /** Set when the file's runs were left out of the regions: where they go back if the read fails. */
  subtracted?: { disk: DiskFiles; volumeOffset: number; volumeLength: number };
}

/** Volume names as paths show them: d<disk>p<partition>. */
export function volumeName(diskIndex: number, partIndex: number): string {
  return `d${diskIndex}p${partIndex}`;
}

/** A file whose content is not the bytes at its runs (compressed, encrypted). */
function contentNotOnDisk(e: FsEntry): boolean {
  return e.type === 'file' && !!e.flags?.some((f) => NOT_ON_DISK_FLAGS.includes(f));
}

function toRecord(e: FsEntry, runs: DataRun[] | undefined): VersionRecord {
  const meta: Record<string, unknown> = {};
  if (e.flags?.length) meta.flags = e.flags;
  if (e.attributes !== undefined) meta.attributes = e.attributes;
  if (e.ownerSid) meta.ownerSid = e.ownerSid;
  if (e.reparseTag !== undefined) meta.reparseTag = e.reparseTag;
  // the disk rebuild must not write such content over its clusters: their bytes are in the regions
  if (contentNotOnDisk(e)) meta.contentNotOnDisk = true;
  if (e.shortName) meta.shortName = e.shortName;
  if (e.rdev !== undefined) meta.rdev = e.rdev;
  if (e.xattrs?.length) {
    meta.xattrs = e.xattrs.map((x) => ({ name: x.name, value: Buffer.from(x.value).toString('base64') }));
  }
  const r: VersionRecord = {
    fsId: e.id,
    type: e.type,
    size: e.size,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    nlink: e.nlink,
    mtimeNs: e.mtimeNs,
    atimeNs: e.atimeNs,
    ctimeNs: e.ctimeNs,
    meta,
  };
  if (e.birthtimeNs !== undefined) r.btimeNs = e.birthtimeNs;
  if (e.linkTarget !== undefined) r.linkTarget = e.linkTarget;
  if (runs) r.runs = runs.map((x) => ({ ...x }) as RunRecord);
  if (e.streams?.length) r.streams = e.streams.map((s) => ({ name: s.name, size: s.size, chunks: [] }));
  return r;
}

/** The runs whose bytes are the content: not holes, not unwritten (content zeros, disk anything). */
function* onDiskRanges(runs: readonly (DataRun | RunRecord)[]): Generator<ByteRange> {
  for (const r of runs) {
    if (r.volumeOffset !== null && !r.unwritten && r.length > 0) yield { offset: r.volumeOffset, length: r.length };
  }
}

/** A file's on-disk runs into the disk's list, cut to its volume (onDiskRanges + shifted, without their generators: once per file). */
function addRuns(into: FileRuns, runs: readonly DataRun[], volumeOffset: number, volumeLength: number): void {
  for (const r of runs) {
    if (r.volumeOffset === null || r.unwritten || !(r.length > 0)) continue;
    const s = Math.max(0, r.volumeOffset);
    const e = Math.min(volumeLength, r.volumeOffset + r.length);
    if (e > s) into.add(s + volumeOffset, e - s);
  }
}

/** Volumes that share bytes with another (a hostile or broken partition table). */
function overlappingVolumes(vols: readonly OpenVolume[]): Set<OpenVolume> {
  const out = new Set<OpenVolume>();
  const sorted = [...vols].sort((a, b) => a.volume.offset - b.volume.offset);
  let reach: OpenVolume | undefined;
  for (const v of sorted) {
    if (reach && v.volume.offset < reach.volume.offset + reach.volume.length) {
      out.add(v);
      out.add(reach);
    }
    if (!reach || v.volume.offset + v.volume.length > reach.volume.offset + reach.volume.length) reach = v;
  }
  return out;
}

function describe(e: unknown): string {
  if (isVdbakError(e)) return `${e.code}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

/** Batches the writer's statements into transactions (one fsync per batch, not per row). */
class Writer {
  private ops = 0;
  /** tick(0) calls since the clock was last read. */
  private idle = 0;
  private since = Date.now();
  constructor(private readonly cat: Catalog) {}
  begin(): void {
    if (!this.cat.db.inTransaction) this.cat.db.exec('BEGIN');
    this.ops = 0;
    this.since = Date.now();
  }
  tick(n = 1): void {
    this.ops += n;
    // a tick(0) per unchanged entry: the clock is read every CLOCK_EVERY of them (a commit is at most that late)
    if (n === 0 && ++this.idle < CLOCK_EVERY) return;
    this.idle = 0;
    if (this.ops >= COMMIT_EVERY_OPS || Date.now() - this.since >= COMMIT_EVERY_MS) {
      this.commit();
      this.begin();
    }
  }
  commit(): void {
    if (this.cat.db.inTransaction) this.cat.db.exec('COMMIT');
  }
  rollback(): void {
    this.cat.rollback();
  }
}

class BackupRun {
  readonly stats: LiveStats = {
    files: 0,
    entries: 0,
    bytesScanned: 0,
    bytesRead: 0,
    newChunks: 0,
    bytesSent: 0,
    packs: 0,
    unchanged: 0,
    changed: 0,
    warnings: 0,
    totalBytes: 0,
  };
  readonly warnings: string[] = [];
  /** Of the warnings: those the same bytes give again, and how many others a second reading might not (WarningKind). */
  readonly readWarnings: string[] = [];
  transientWarnings = 0;
  private readonly cat: Catalog;
  private readonly writer: Writer;
  private readonly pack: PackWriter;
  /** Pieces handed to the workers, by key: which file, part and segment, and how many bytes it must come back with. */
  private readonly pieces = new Map<number, { file: PendingFile; part: number; seg: number; bytes: number }>();
  private nextKey = 1;
  private batch: { base: Omit<ReadTask, 'items'>; items: TaskItem[]; bytes: number } | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private chain: Promise<void> = Promise.resolve();
  private failure: unknown;
  private lastProgress = 0;
  /** The disk being walked: its files' runs, for its regions. */
  private diskFiles: DiskFiles | undefined;
  /** Parts of stats.bytesRead (BackupResult). */
  regionBytesRead = 0;
  configBytesRead = 0;

  constructor(
    private readonly repo: Repo,
    private readonly backupId: number,
    private readonly opts: BackupOptions,
  ) {
    this.cat = repo.catalog;
    this.writer = new Writer(this.cat);
    this.pack = new PackWriter({ targetSize: repo.settings.packTargetSize, reuseBuffer: true });
  }

  warn(msg: string, kind: WarningKind = 'transient'): void {
    // the count is exact; the texts are capped (a broken filesystem can report millions)
    if (this.warnings.length < MAX_WARNING_TEXTS) this.warnings.push(msg);
    this.stats.warnings++;
    if (kind === 'read' && this.readWarnings.length < MAX_WARNING_TEXTS) this.readWarnings.push(msg);
    else if (kind !== 'other') this.transientWarnings++; // (a read warning past the cap: not repeatable either)
  }

  progress(force = false): void {
    const now = Date.now();
    if (!this.opts.onProgress || (!force && now - this.lastProgress < 100)) return;
    this.lastProgress = now;
    this.opts.onProgress({ ...this.stats });
  }

  /** What every read task of one volume carries. */
  private taskBase(diskPath: string, format: string | undefined, volumeIndex: number): Omit<ReadTask, 'items'> {
    return {
      image: diskPath,
      throttle: this.opts.throttle,
      openOptions: { format, parentRoots: this.opts.parentRoots },
      volumeIndex,
      catalogPath: this.repo.catalogPath,
      chunkSizes: { ...this.repo.settings.chunkSizes },
      zstdLevel: this.repo.settings.zstdLevel,
    };
  }

  // ---- the walk ---------------------------------------------------------------------------

  async volume(diskPath: string, format: string | undefined, ov: OpenVolume, volumeId: number): Promise<number> {
    const fs = ov.fs;
    if (!fs) throw new Error('volume() needs an open filesystem');
    const base = this.taskBase(diskPath, format, ov.volume.index);
    const disk = this.diskFiles;
    let entries = 0;
    let lastYield = Date.now();
    for (const e of fs.walk()) {
      this.check();
      entries++;
      if (Date.now() - lastYield >= YIELD_EVERY_MS) {
        // unchanged files need no await: let signals, worker results and progress through
        await new Promise<void>((r) => setImmediate(r));
        lastYield = Date.now();
      }
      this.stats.entries++;
      this.stats.currentPath = e.path;
      let runs: DataRun[] | undefined;
      if (e.type === 'file') {
        this.stats.files++;
        this.stats.bytesScanned += e.size;
        try {
          runs = fs.runs(e);
        } catch (err) {
          this.warn(`${ov.device.name}:${e.path}: runs: ${describe(err)}`);
        }
      }
      // content stored that equals the bytes at its runs: those runs are no region
      const onDisk = disk && runs && !contentNotOnDisk(e) ? runs : undefined;
      // the record is built only for an entry that is written (most of an unchanged volume is not)
      let record: VersionRecord | undefined;
      let same: boolean;
      if (e.streams?.length) {
        record = toRecord(e, runs);
        same = this.keepIfSameRecord(volumeId, e.path, record);
      } else {
        same = this.cat.keepIfSame(volumeId, e.path, {
          fsId: e.id,
          type: e.type,
          size: e.size,
          mtimeNs: e.mtimeNs,
          ctimeNs: e.ctimeNs,
          btimeNs: e.birthtimeNs,
          linkTarget: e.linkTarget,
          runs,
        });
      }
      if (same) {
        if (onDisk) addRuns(disk!.runs, onDisk, ov.volume.offset, ov.volume.length);
        this.stats.unchanged++;
        // only temp.seen was written: no reason to commit (an fsync) sooner than by time
        this.writer.tick(0);
        if (this.stats.unchanged % CLOCK_EVERY === 0) this.progress();
        continue;
      }
      record ??= toRecord(e, runs);
      this.stats.changed++;
      const parts: { stream?: string; size: number }[] = [];
      if (e.type === 'file' && e.size > 0) parts.push({ size: e.size });
      for (const s of e.streams ?? []) if (s.size > 0) parts.push({ stream: s.name, size: s.size });
      if (parts.length === 0) {
        if (record.type === 'file') record.chunks = [];
        this.cat.insertVersion(volumeId, e.path, this.backupId, record);
        this.writer.tick();
        continue;
      }
      const file: PendingFile = { volumeId, path: e.path, record, parts: [], remaining: 0 };
      if (onDisk && disk && e.size > 0) {
        addRuns(disk.runs, onDisk, ov.volume.offset, ov.volume.length);
        file.subtracted = { disk, volumeOffset: ov.volume.offset, volumeLength: ov.volume.length };
      }
      for (const p of parts) {
        const nseg = Math.ceil(p.size / SEGMENT_BYTES);
        file.parts.push({ stream: p.stream, segments: new Array<string[] | undefined>(nseg) });
        file.remaining += nseg;
      }
      for (const [pi, p] of parts.entries()) {
        for (let s = 0; s * SEGMENT_BYTES < p.size; s++) {
          const key = this.nextKey++;
          const start = s * SEGMENT_BYTES;
          const end = Math.min(p.size, start + SEGMENT_BYTES);
          this.pieces.set(key, { file, part: pi, seg: s, bytes: end - start });
          await this.addItem(base, { kind: 'file', key, entry: e, stream: p.stream, start, end }, end - start);
        }
      }
      this.progress();
    }
    for (const p of fs.problems) {
      this.warn(`${ov.device.name}${p.path ? `:${p.path}` : ''}: ${p.error.code}: ${p.error.message}`);
    }
    return entries;
  }

  /** A volume we cannot read as files: its allocated bytes, as one stream with runs. */
  async rawVolume(diskPath: string, format: string | undefined, ov: OpenVolume, volumeId: number): Promise<void> {
    const base = this.taskBase(diskPath, format, ov.volume.index);
    const ranges = ov.device.allocated(0, ov.device.size);
    const runs: RunRecord[] = ranges.map((r) => ({ fileOffset: r.offset, volumeOffset: r.offset, length: r.length }));
    const total = ranges.reduce((a, r) => a + r.length, 0);
    this.stats.bytesScanned += total;
    this.stats.totalBytes += total;
    const record: VersionRecord = {
      fsId: 'volume',
      type: 'file',
      size: ov.device.size,
      mode: 0o600,
      uid: 0,
      gid: 0,
      nlink: 1,
      mtimeNs: 0n,
      atimeNs: 0n,
      ctimeNs: 0n,
      runs,
      meta: { rawVolume: true, allocatedBytes: total },
      chunks: [],
    };
    // segments of at most SEGMENT_BYTES of allocated data each
    const segs: { offset: number; length: number }[][] = [];
    let cur: { offset: number; length: number }[] = [];
    let curLen = 0;
    for (const r of ranges) {
      let off = r.offset;
      let left = r.length;
      while (left > 0) {
        const take = Math.min(left, SEGMENT_BYTES - curLen);
        cur.push({ offset: off, length: take });
        curLen += take;
        off += take;
        left -= take;
        if (curLen === SEGMENT_BYTES) {
          segs.push(cur);
          cur = [];
          curLen = 0;
        }
      }
    }
    if (cur.length) segs.push(cur);
    await this.storeRanges(base, volumeId, RAW_VOLUME_PATH, record, segs);
  }

  /** One version whose content is the bytes of `segs` (device ranges) one after the other, read by the pool. */
  private async storeRanges(
    base: Omit<ReadTask, 'items'>,
    volumeId: number,
    path: string,
    record: VersionRecord,
    segs: ByteRange[][],
  ): Promise<void> {
    if (segs.length === 0) {
      this.writeFile({ volumeId, path, record, parts: [], remaining: 0 });
      return;
    }
    const file: PendingFile = {
      volumeId,
      path,
      record,
      parts: [{ segments: new Array<string[] | undefined>(segs.length) }],
      remaining: segs.length,
    };
    for (const [s, ranges] of segs.entries()) {
      this.check();
      const key = this.nextKey++;
      const bytes = ranges.reduce((a, r) => a + r.length, 0);
      this.pieces.set(key, { file, part: 0, seg: s, bytes });
      await this.addItem(base, { kind: 'raw', key, ranges }, bytes);
    }
  }

  // ---- regions and configuration files -------------------------------------------------------

  /** Starts a disk (`stamp`: imageStamp of its files): the runs of the files about to be walked are collected for its regions. */
  beginDisk(stamp: string | undefined): void {
    this.diskFiles = { runs: new FileRuns(), giveBack: [], changedAtStart: this.stats.changed, stamp };
  }

  /**
   * The disk's regions (regions.ts) as the version REGIONS_PATH of the
   * pseudo-volume `d<disk>`. Call after settle(): every file of the disk has
   * been read, so a file that failed has given its runs back.
   */
  async diskRegions(
    diskPath: string,
    format: string | undefined,
    stack: DiskStack,
    volumeId: number,
    fsInfo: Map<OpenVolume, FsInfo>,
  ): Promise<{ runs: number; bytes: number }> {
    const files = this.diskFiles ?? { runs: new FileRuns(), giveBack: [], changedAtStart: -1, stamp: undefined };
    this.diskFiles = undefined;
    const name = stack.disk.name;
    // the same image files as when the current regions were read, and no file of the disk read again: same regions
    // its meta only: the runs and chunk list of a large disk's regions are long, and not needed to keep them
    const cur = this.cat.currentVersionMeta(volumeId, REGIONS_PATH);
    if (
      files.stamp !== undefined &&
      files.changedAtStart === this.stats.changed &&
      cur?.meta?.diskRegions &&
      !cur.meta.readError &&
      cur.meta.imageStamp === files.stamp
    ) {
      const bytes = Number(cur.meta.allocatedBytes ?? 0);
      this.cat.markSeen(cur.id);
      this.writer.tick();
      this.stats.bytesScanned += bytes;
      this.stats.totalBytes += bytes;
      return { runs: cur.runCount, bytes };
    }
    const excluded: Iterable<ByteRange>[] = [];
    const overlapping = overlappingVolumes(stack.volumes);
    for (const ov of stack.volumes) {
      const { offset, length } = ov.volume;
      if (!ov.fs) {
        excluded.push([{ offset, length }]); // kept whole as volume.raw
        continue;
      }
      const fs = ov.fs;
      const info = fsInfo.get(ov);
      // free space is only free when no other volume claims the same bytes
      if (!fs.allocated || !info || overlapping.has(ov)) continue;
      const fsBytes = Math.min(length, info.totalBytes);
      const used = trustedUsed(
        () => fs.allocated!(),
        fsBytes,
        (e) => this.warn(`${ov.device.name}: free space: ${describe(e)}; the rest of the volume is kept as used`),
      );
      excluded.push(shifted(complement(used, 0, fsBytes), offset, length));
    }
    if (files.runs.droppedBytes > 0) {
      this.warn(
        `${name}: ${files.runs.droppedBytes} bytes of file runs past the cap are kept in the regions too`,
        'read',
      );
    }
    const giveBack = [...merged(files.giveBack.sort((a, b) => a.offset - b.offset))];
    excluded.push(subtract(files.runs.ranges(), giveBack));
    const res = regions(deviceAllocated(stack.disk), excluded);
    if (res.joinedGap > 0) {
      this.warn(`${name}: regions joined across gaps under ${res.joinedGap} bytes to stay under their run cap`, 'read');
    }
    this.stats.bytesScanned += res.bytes;
    this.stats.totalBytes += res.bytes;
    const record: VersionRecord = {
      fsId: 'regions',
      type: 'file',
      size: stack.disk.size,
      mode: 0o600,
      uid: 0,
      gid: 0,
      nlink: 1,
      mtimeNs: 0n,
      atimeNs: 0n,
      ctimeNs: 0n,
      runs: res.runs.map((r) => ({ fileOffset: r.offset, volumeOffset: r.offset, length: r.length })),
      meta: { diskRegions: true, allocatedBytes: res.bytes, ...(files.stamp ? { imageStamp: files.stamp } : {}) },
      chunks: [],
    };
    const base = { ...this.taskBase(diskPath, format, WHOLE_DISK), chunkSizes: { ...REGION_CHUNK_SIZES } };
    await this.storeRanges(base, volumeId, REGIONS_PATH, record, pieces(res.runs, SEGMENT_BYTES));
    return { runs: res.runs.length, bytes: res.bytes };
  }

  /** The VM's configuration files as versions `/<name>` of the config volume; unchanged ones are not read. */
  async configFiles(volumeId: number, files: ConfigFile[]): Promise<void> {
    const root: VersionRecord = {
      fsId: 'config',
      type: 'dir',
      size: 0,
      mode: 0o755,
      uid: 0,
      gid: 0,
      nlink: 1,
      mtimeNs: 0n,
      atimeNs: 0n,
      ctimeNs: 0n,
      meta: {},
    };
    this.keepOrInsert(volumeId, '/', root);
    for (const f of files) {
      this.check();
      const path = `/${f.name}`;
      const record: VersionRecord = {
        fsId: String(f.ino),
        type: 'file',
        size: f.size,
        mode: f.mode,
        uid: f.uid,
        gid: f.gid,
        nlink: 1,
        mtimeNs: f.mtimeNs,
        atimeNs: f.atimeNs,
        ctimeNs: f.ctimeNs,
        meta: { hostPath: f.path },
      };
      if (f.btimeNs > 0n) record.btimeNs = f.btimeNs;
      this.stats.entries++;
      this.stats.files++;
      this.stats.bytesScanned += f.size;
      if (this.keepIfSameRecord(volumeId, path, record)) {
        this.stats.unchanged++;
        this.writer.tick();
        continue;
      }
      this.stats.changed++;
      try {
        record.chunks = await this.hostFileChunks(f);
      } catch (e) {
        this.warn(`${f.path}: not read: ${describe(e)}`);
        record.meta = { ...record.meta, readError: { code: 'CONFIG_READ', message: describe(e) } };
      }
      this.cat.insertVersion(volumeId, path, this.backupId, record);
      this.writer.tick();
    }
  }

  /** A host file's chunks, the new ones packed; exactly f.size bytes or an error (it changed under us). */
  private async hostFileChunks(f: ConfigFile): Promise<string[]> {
    const chunker = new ContentChunker(this.repo.settings.chunkSizes);
    const hashes: string[] = [];
    const take = async (list: ReturnType<ContentChunker['push']>): Promise<void> => {
      for (const c of list) {
        hashes.push(c.hash);
        if (!this.pack.has(c.hash) && !this.cat.hasChunk(c.hash)) {
          await this.addChunk(encodeChunk(c, { level: this.repo.settings.zstdLevel }));
        }
      }
    };
    const fd = openSync(f.path, 'r');
    try {
      const buf = Buffer.alloc(Math.min(CONFIG_READ_BLOCK, Math.max(1, f.size)));
      let pos = 0;
      while (pos < f.size) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, f.size - pos), pos);
        if (n === 0) {
          throw errorsFor({ image: f.path, layer: 'file' }).truncated(
            'CONFIG_SHRANK',
            `file ended at ${pos} of ${f.size} bytes while being read`,
          );
        }
        pos += n;
        this.stats.bytesRead += n;
        this.configBytesRead += n;
        await take(chunker.push(buf.subarray(0, n)));
      }
      await take(chunker.end());
    } finally {
      closeSync(fd);
    }
    return hashes;
  }

  /** Marks the current version seen when it holds the same content as `record` and was read without error. */
  private keepIfSameRecord(volumeId: number, path: string, record: VersionRecord): boolean {
    const cur = this.cat.currentVersion(volumeId, path);
    if (!cur || cur.meta?.readError || !sameContent(cur, record)) return false;
    this.cat.markSeen(cur.id);
    return true;
  }

  /** Marks the current version seen when it is the same, else inserts the record. */
  private keepOrInsert(volumeId: number, path: string, record: VersionRecord): void {
    const cur = this.cat.currentVersion(volumeId, path);
    if (cur && sameContent(cur, record)) this.cat.markSeen(cur.id);
    else this.cat.insertVersion(volumeId, path, this.backupId, record);
    this.writer.tick();
  }

  // ---- tasks --------------------------------------------------------------------------------

  private check(): void {
    if (this.failure) throw this.failure;
    if (this.opts.signal?.aborted) {
      const why = this.opts.signal.reason instanceof Error ? this.opts.signal.reason.message : 'cancelled';
      throw errorsFor({ image: `backup ${this.backupId}`, layer: 'job' }).cancelled('BACKUP_CANCELLED', why);
    }
  }

  private async addItem(base: Omit<ReadTask, 'items'>, item: TaskItem, bytes: number): Promise<void> {
    if (this.batch && (this.batch.base.image !== base.image || this.batch.base.volumeIndex !== base.volumeIndex)) {
      await this.submit();
    }
    this.batch ??= { base, items: [], bytes: 0 };
    this.batch.items.push(item);
    this.batch.bytes += bytes;
    if (this.batch.bytes >= TASK_BYTES || this.batch.items.length >= TASK_ITEMS) await this.submit();
  }

  private async submit(): Promise<void> {
    const b = this.batch;
    this.batch = undefined;
    if (!b || b.items.length === 0) return;
    while (this.inFlight.size >= this.opts.pool.threads * 2) {
      await Promise.race(this.inFlight);
      this.check();
    }
    const p: Promise<void> = this.opts.pool
      .run({ ...b.base, items: b.items })
      .then((res) => {
        this.chain = this.chain.then(() => this.consume(res));
        return this.chain;
      })
      .catch((e: unknown) => {
        this.failure ??= e;
      })
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
    this.writer.tick(0);
  }

  /** Waits for every task submitted so far and for their results to be recorded. */
  async settle(): Promise<void> {
    await this.submit();
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    await this.chain;
    this.check();
  }

  /** Waits for every task, then stores the last pack. */
  async drain(): Promise<void> {
    await this.settle();
    if (this.pack.count > 0) await this.flushPack();
  }

  private async consume(res: TaskResult): Promise<void> {
    for (const item of res.items) {
      for (const enc of item.encoded) await this.addChunk(enc);
      this.stats.bytesRead += item.bytesRead;
      if (this.pieces.get(item.key)?.file.record.meta?.diskRegions) this.regionBytesRead += item.bytesRead;
      this.finishPiece(item);
    }
    this.progress();
  }

  private async addChunk(enc: EncodedChunk): Promise<void> {
    if (this.pack.has(enc.hash) || this.cat.hasChunk(enc.hash)) return;
    // the worker sends a Uint8Array after structured cloning
    const u8 = enc.stored as Uint8Array;
    const stored = Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
    this.stats.newChunks++;
    if (this.pack.add({ ...enc, stored })) await this.flushPack();
  }

  private async flushPack(): Promise<void> {
    const finished = this.pack.finish();
    const name = packObjectName(finished.id);
    await this.repo.target.put(name, finished.bytes);
    this.opts.hook?.('pack-stored');
    this.cat.addPack(name, finished.bytes.length, finished.entries);
    this.writer.tick();
    this.opts.hook?.('pack-recorded');
    this.stats.bytesSent += finished.bytes.length;
    this.stats.packs++;
  }

  private finishPiece(item: ItemResult): void {
    const piece = this.pieces.get(item.key);
    if (!piece) return;
    this.pieces.delete(item.key);
    const { file } = piece;
    const got = item.error ? 0 : item.chunks.reduce((a, c) => a + c.length, 0);
    if (item.error) {
      file.error ??= item.error;
    } else if (got !== piece.bytes) {
      // never store a file whose chunks do not add up to its size (a reader that lost bytes, an image that changed)
      file.error ??= errorsFor({ image: file.path, layer: 'fs' })
        .corrupt('BACKUP_LENGTH_MISMATCH', `read ${got} bytes where ${piece.bytes} were expected`, {
          offset: piece.seg * SEGMENT_BYTES,
        })
        .toJSON();
    } else {
      const part = file.parts[piece.part];
      if (part) part.segments[piece.seg] = item.chunks.map((c) => c.hash);
    }
    file.remaining--;
    if (file.remaining === 0) this.writeFile(file);
  }

  private writeFile(file: PendingFile): void {
    const rec = file.record;
    if (file.error) {
      if (file.subtracted) {
        // its content is not stored: its clusters go back into the regions
        const { disk, volumeOffset, volumeLength } = file.subtracted;
        for (const r of shifted(onDiskRanges(rec.runs ?? []), volumeOffset, volumeLength)) disk.giveBack.push(r);
      }
      this.warn(`${file.path}: not read: ${file.error.code}: ${file.error.message}`);
      rec.meta = { ...rec.meta, readError: { code: file.error.code, message: file.error.message } };
      delete rec.chunks;
      if (rec.streams) rec.streams = rec.streams.map((s) => ({ ...s, chunks: [] }));
    } else {
      const byStream = new Map<string | undefined, string[]>();
      for (const p of file.parts)
        byStream.set(
          p.stream,
          p.segments.flatMap((s) => s ?? []),
        );
      if (rec.type === 'file') rec.chunks = byStream.get(undefined) ?? [];
      if (rec.streams) {
        rec.streams = rec.streams.map((s): StreamRecord => ({
          name: s.name,
          size: s.size,
          chunks: byStream.get(s.name) ?? [],
        }));
      }
    }
    if ((rec.meta?.rawVolume || rec.meta?.diskRegions) && !file.error) {
      // a raw volume or a disk's regions are read when no stamp says they are unchanged; same bytes → same
      // version, unless the image stamp differs: kept, the old stamp would never match again and the
      // regions would be read at every backup after a change that left them as they were (a chmod, touch -r)
      const cur = this.cat.currentVersion(file.volumeId, file.path);
      if (
        cur &&
        cur.size === rec.size &&
        (cur.chunks ?? []).join() === (rec.chunks ?? []).join() &&
        cur.meta?.imageStamp === rec.meta?.imageStamp &&
        sameContent(cur, rec)
      ) {
        this.cat.markSeen(cur.id);
        this.writer.tick();
        return;
      }
    }
    this.cat.insertVersion(file.volumeId, file.path, this.backupId, rec);
    this.writer.tick();
  }

  beginWrites(): void {
    this.cat.startSeen();
    this.writer.begin();
  }

  endWrites(): void {
    this.writer.commit();
  }

  abortWrites(): void {
    this.writer.rollback();
  }
}

/**
 * The backup as a copy of the VM's latest complete one, when that one read
 * exactly these files (`stamp`) and warned of nothing (source-stamp.ts);
 * undefined when it may not be kept, nothing written.
 */
function keepUnchanged(
  repo: Repo,
  run: BackupRun,
  source: BackupSource,
  vmId: number,
  backupId: number,
  stamp: string,
  t0: number,
  opts: BackupOptions,
): BackupResult | undefined {
  const cat = repo.catalog;
  const prev = cat.latestCompleteBackup(vmId);
  const k = prev && keepable(prev, stamp);
  if (!prev || !k) return undefined;
  // what reading these files said, said again
  for (const w of k.readWarnings) run.warn(w, 'read');
  Object.assign(run.stats, {
    files: k.files,
    entries: k.entries,
    bytesScanned: k.bytesScanned,
    totalBytes: k.totalBytes,
    unchanged: k.unchanged + k.changed,
  });
  const result: BackupResult = {
    ...run.stats,
    backupId,
    vm: source.name,
    durationMs: Date.now() - t0,
    warningList: run.warnings,
    volumes: k.volumes as VolumeSummary[],
    regions: k.regions as RegionSummary[],
    configFiles: k.configFiles,
    regionBytesRead: 0,
    configBytesRead: 0,
    sourceStamp: stamp,
    readWarnings: run.readWarnings,
    transientWarnings: run.transientWarnings,
    // the backup that last read the files, while it exists (forget may have removed it)
    unchangedSince: k.readBy === prev.id || cat.backup(k.readBy) ? k.readBy : prev.id,
  };
  delete result.currentPath;
  opts.hook?.('before-complete');
  const { warningList, ...stats } = result;
  if (!cat.completeKept(backupId, prev.id, { ...stats, warnings: warningList.slice(0, MAX_WARNING_TEXTS) })) {
    return undefined;
  }
  run.progress(true);
  return result;
}

/** Backs up one VM. The caller holds the repository lock. */
export async function backupVm(repo: Repo, source: BackupSource, opts: BackupOptions): Promise<BackupResult> {
  const t0 = Date.now();
  const cat = repo.catalog;
  cat.reapDeadBackups((pid, host) => processAlive(pid, host));
  const adopted = await adoptOrphanPacks(repo);
  const vmId = cat.upsertVm({
    identity: source.identity,
    name: source.name,
    kind: source.kind,
    configPath: source.configPath,
  });
  const backupId = cat.beginBackup(vmId, process.pid, hostname());
  const run = new BackupRun(repo, backupId, opts);
  for (const w of source.warnings ?? []) run.warn(w, 'other');
  if (adopted.packs > 0) run.warn(`adopted ${adopted.packs} pack(s) an interrupted run had stored`, 'other');
  if (adopted.unreadable.length > 0) {
    run.warn(
      `${adopted.unreadable.length} pack(s) on the target are unknown to the catalog and do not verify (e.g. ${adopted.unreadable[0]}); 'vdbak check' lists them`,
      'other',
    );
  }
  const volumes: VolumeSummary[] = [];
  const regionSummaries: RegionSummary[] = [];
  const stacks: DiskStack[] = [];
  /** The VM's disk images, each until a stack takes it. */
  const images: (DiskImage | undefined)[] = [];
  const config = configFiles(source);
  for (const w of config.warnings) run.warn(w);
  try {
    // the images alone first (no partition table, no filesystem): which files each disk is read from;
    // the walk below builds its stacks on these same images
    for (const d of source.disks) images.push(openDisk(d.path, { format: d.format, parentRoots: opts.parentRoots }));
    // every file must have last changed well before this backup first read it (source-stamp.ts)
    const stamps = sourceStamp(
      { identity: source.identity, parentRoots: opts.parentRoots },
      source.disks.map((d, i) => ({ ...d, chain: images[i]!.chain })),
      config.files,
      settledBefore(t0, settleMs(opts.stampSettleMs)),
    );
    if (stamps.stamp !== undefined && !opts.rescan) {
      const kept = keepUnchanged(repo, run, source, vmId, backupId, stamps.stamp, t0, opts);
      if (kept) return kept;
    }
    run.beginWrites();
    for (const [diskIndex, d] of source.disks.entries()) {
      const image = images[diskIndex]!;
      images[diskIndex] = undefined; // the stack owns it now (and closes it if its volumes cannot be read)
      const stack = stackOn(image);
      stacks.push(stack);
      const diskId = cat.upsertDisk(vmId, d.slot, diskIndex);
      cat.addBackupDisk(backupId, diskId, {
        imagePath: d.path,
        format: stack.disk.format,
        size: stack.disk.size,
        scheme: stack.map.scheme,
      });
      for (const w of stack.map.warnings ?? []) run.warn(`${d.path}: ${String(w)}`, 'read');
      run.beginDisk(stamps.disks[diskIndex]);
      const fsInfo = new Map<OpenVolume, FsInfo>();
      for (const ov of stack.volumes) {
        const name = volumeName(diskIndex, ov.volume.index);
        const volumeId = cat.upsertVolume(diskId, ov.volume.index, name);
        let label: string | undefined;
        let uuid: string | undefined;
        if (ov.fs) {
          try {
            const info = ov.fs.info();
            fsInfo.set(ov, info);
            label = info.label || undefined;
            run.stats.totalBytes += info.usedBytes;
            uuid = info.uuid || undefined;
          } catch (e) {
            run.warn(`${ov.device.name}: filesystem summary: ${describe(e)}`);
          }
        }
        const mode = ov.fs ? 'files' : 'raw';
        cat.addBackupVolume(backupId, volumeId, {
          offset: ov.volume.offset,
          length: ov.volume.length,
          fsType: ov.fsType,
          label,
          uuid,
          mode,
        });
        let entries = 0;
        if (ov.fs) {
          entries = await run.volume(d.path, d.format, ov, volumeId);
          cat.setVolumeProblems(
            backupId,
            volumeId,
            ov.fs.problems.map((p) => ({ path: p.path, code: p.error.code, message: p.error.message })),
          );
        } else {
          run.warn(
            `${name} (${ov.volume.typeName || ov.volume.type}): ${
              ov.fsError
                ? `filesystem failed to open (${ov.fsError.code}: ${ov.fsError.message})`
                : 'no filesystem vdbak reads'
            }; kept as its allocated bytes`,
            ov.fsError ? 'transient' : 'read',
          );
          await run.rawVolume(d.path, d.format, ov, volumeId);
          entries = 1;
        }
        volumes.push({
          name,
          fsType: ov.fsType ?? null,
          label: label ?? null,
          mode,
          entries,
          problems: ov.fs?.problems.length ?? 0,
        });
      }
      // the disk's files are all read (or failed) before its regions are known
      await run.settle();
      const regionsId = cat.upsertVolume(diskId, REGIONS_PART, `d${diskIndex}`);
      cat.addBackupVolume(backupId, regionsId, { offset: 0, length: stack.disk.size, fsType: 'regions', mode: 'raw' });
      const r = await run.diskRegions(d.path, d.format, stack, regionsId, fsInfo);
      regionSummaries.push({ disk: diskIndex, runs: r.runs, bytes: r.bytes });
    }
    if (config.files.length > 0) {
      const diskId = cat.upsertDisk(vmId, CONFIG_SLOT, CONFIG_DISK_INDEX);
      const bytes = config.files.reduce((a, f) => a + f.size, 0);
      cat.addBackupDisk(backupId, diskId, { imagePath: dirname(config.files[0]!.path), format: 'host', size: bytes });
      const volumeId = cat.upsertVolume(diskId, 0, CONFIG_VOLUME);
      cat.addBackupVolume(backupId, volumeId, { offset: 0, length: bytes, fsType: 'host', mode: 'files' });
      await run.settle();
      await run.configFiles(volumeId, config.files);
    }
    await run.drain();
    run.endWrites();
    const result: BackupResult = {
      ...run.stats,
      backupId,
      vm: source.name,
      durationMs: Date.now() - t0,
      warningList: run.warnings,
      volumes,
      regions: regionSummaries,
      configFiles: config.files.map((f) => f.name),
      regionBytesRead: run.regionBytesRead,
      configBytesRead: run.configBytesRead,
    };
    if (stamps.stamp !== undefined) result.sourceStamp = stamps.stamp;
    result.readWarnings = run.readWarnings;
    result.transientWarnings = run.transientWarnings;
    delete result.currentPath;
    opts.hook?.('before-complete');
    const { warningList, ...stats } = result;
    cat.completeBackup(backupId, { ...stats, warnings: warningList.slice(0, 1000) });
    run.progress(true);
    return result;
  } catch (e) {
    run.abortWrites();
    try {
      cat.failBackup(backupId, describe(e));
    } catch {
      // the catalog itself failed: the next writer reaps this backup
    }
    throw e;
  } finally {
    for (const s of stacks) s.close();
    for (const image of images) image?.close();
  }
}
