/**
 * Rebuilds one disk of a backup from what the backup stored (issue 7 §2):
 * - the disk's regions (pseudo-volume `d<N>`, `/regions.raw`): partition
 *   tables, boot code, filesystem metadata, every allocated byte that is not
 *   file content;
 * - each file's content, put back at its data runs (volume offset + run);
 * - volumes kept raw (`/dXpY/volume.raw`): their allocated bytes.
 * Free space, holes and unwritten extents are never written: the output
 * keeps them as holes.
 *
 * First a plan walks the catalog without reading any content: it checks every
 * run against its volume and the disk, and that no two files (or raw
 * volumes) claim the same disk bytes (an error in the backup, reported before
 * anything is written). Bytes a file shares with the regions are legitimate
 * (the backup joins region runs across small gaps once it reaches its run
 * cap, and keeps file runs past its cap in the regions too) only if they are
 * the same bytes: they are read back and compared instead of written again.
 * Then the content streams through verified chunks, a few chunks at a time:
 * memory does not grow with a file or a disk.
 *
 * A backup made before regions existed has only file contents: the disk is
 * rebuilt as far as it goes and reported incomplete, never as complete.
 */
import type { BackupRow, BackupVolumeRow, Catalog } from '../../catalog/catalog.js';
import type { RunRecord, VersionRow } from '../../catalog/records.js';
import { errorsFor } from '../../parsers/errors.js';
import type { Target } from '../../transport/targets/types.js';
import { RAW_VOLUME_PATH, REGIONS_PART, REGIONS_PATH } from '../backup/job.js';
import { ChunkStore } from '../restore/chunks.js';
import { type DiskRange, Extents, intersections } from './extents.js';
import { contiguous, type Piece, type PlaceCounters, placeStream, type Segment, type Shared } from './place.js';
import type { DiskWriter } from './writers/types.js';

/** The regions pseudo-volume's fs_type (agent/backup/job.ts writes it). */
const REGIONS_FS_TYPE = 'regions';
/**
 * Files placed at once: their chunk reads overlap, so that a volume of small
 * files is not bound by the target's latency. Each holds a few chunks
 * (ChunkStore's read-ahead), so memory stays a few dozen MiB.
 */
const FILES_IN_FLIGHT = 4;
/** Example paths kept per kind of note (the counts are exact). */
const MAX_EXAMPLES = 5;

export interface RebuildProgress {
  bytesDone: number;
  bytesTotal: number;
  current: string;
}

export interface DiskPlan {
  diskIndex: number;
  slot: string;
  /** The source disk (the leaf of its snapshot chain) at backup time. */
  imagePath: string;
  sourceFormat: string;
  size: number;
  /** Stored bytes the rebuild places (zero blocks among them are skipped when written). */
  bytes: number;
  regions: boolean;
  regionBytes: number;
  files: number;
  fileBytes: number;
  rawVolumes: number;
  rawBytes: number;
  /**
   * Bytes stored both in the regions and as file or raw-volume content (the
   * backup joins region runs across small gaps past its run cap): checked
   * equal when written, an error if not.
   */
  sharedBytes: number;
  /** True only when every allocated byte of the source disk was stored. */
  complete: boolean;
  /** Why not, one sentence each. */
  incomplete: string[];
}

export interface RebuildReport extends DiskPlan {
  /** Bytes written (zero blocks skipped). */
  written: number;
}

type Source =
  | { kind: 'regions'; vol: BackupVolumeRow; version: VersionRow; pieces: Piece[]; stored: number }
  | { kind: 'raw'; vol: BackupVolumeRow; version: VersionRow; pieces: Piece[]; stored: number }
  | { kind: 'files'; vol: BackupVolumeRow };

function diskErrors(backup: BackupRow, diskIndex: number) {
  return errorsFor({ image: `backup ${backup.id} (${backup.vmName}) disk ${diskIndex}`, layer: 'restore' });
}

/**
 * Pieces of a stored stream that is its runs' bytes one after the other
 * (regions, raw volumes): run k's bytes follow run k-1's in the stream.
 */
function packedPieces(
  runs: readonly RunRecord[],
  base: number,
  limit: number,
  what: string,
  err: ReturnType<typeof diskErrors>,
): { pieces: Piece[]; stored: number } {
  const pieces: Piece[] = [];
  let stored = 0;
  for (const r of runs) {
    if (r.volumeOffset === null || r.length <= 0) continue;
    if (r.volumeOffset < 0 || r.volumeOffset + r.length > limit) {
      throw err.corrupt(
        'REBUILD_RUN_OUTSIDE',
        `${what}: a run of ${r.length} bytes at ${r.volumeOffset} falls outside its ${limit}-byte extent`,
        { offset: r.volumeOffset },
      );
    }
    pieces.push({ streamOffset: stored, diskOffset: base + r.volumeOffset, length: r.length });
    stored += r.length;
  }
  return { pieces, stored };
}

/** Where a file's content goes: its written runs, cut at the file's size, in file order. */
export function filePieces(v: VersionRow, vol: BackupVolumeRow, err: ReturnType<typeof diskErrors>): Piece[] {
  const runs = (v.runs ?? [])
    .filter((r) => r.volumeOffset !== null && !r.unwritten && r.length > 0 && r.fileOffset < v.size)
    .sort((a, b) => a.fileOffset - b.fileOffset);
  const what = `/${vol.name}${v.path}`;
  const pieces: Piece[] = [];
  let end = 0;
  for (const r of runs) {
    const length = Math.min(r.length, v.size - r.fileOffset);
    const vo = r.volumeOffset!;
    if (r.fileOffset < end) {
      throw err.corrupt('REBUILD_RUNS_OVERLAP', `${what}: two runs claim file offset ${r.fileOffset}`, {
        offset: r.fileOffset,
      });
    }
    if (vo < 0 || vo + length > vol.length) {
      throw err.corrupt(
        'REBUILD_RUN_OUTSIDE',
        `${what}: a run of ${length} bytes at volume offset ${vo} falls outside the ${vol.length}-byte volume`,
        { offset: vo },
      );
    }
    pieces.push({ streamOffset: r.fileOffset, diskOffset: vol.offset + vo, length });
    end = r.fileOffset + length;
  }
  return pieces;
}

/**
 * The chunks of a file that hold bytes some piece needs, with their offsets
 * in the content: the chunks of holes (a sparse file's zeros) are not read.
 */
function neededChunks(
  cat: Catalog,
  v: VersionRow,
  pieces: readonly Piece[],
  what: string,
): { hash: string; offset: number; length: number }[] {
  const err = errorsFor({ image: what, layer: 'catalog' });
  const out: { hash: string; offset: number; length: number }[] = [];
  let offset = 0;
  let pi = 0;
  for (const hash of v.chunks ?? []) {
    const loc = cat.chunkLocation(hash);
    if (!loc) throw err.notFound('CHUNK_UNKNOWN', `chunk ${hash} is referenced but not in the catalog`);
    const end = offset + loc.rawLength;
    while (pi < pieces.length && pieces[pi]!.streamOffset + pieces[pi]!.length <= offset) pi++;
    if (pi < pieces.length && pieces[pi]!.streamOffset < end) out.push({ hash, offset, length: loc.rawLength });
    offset = end;
  }
  if (offset !== v.size) {
    throw err.corrupt('CONTENT_LENGTH', `content holds ${offset} bytes, the catalog says ${v.size}`);
  }
  return out;
}

async function* chunkSegments(
  store: ChunkStore,
  chunks: readonly { hash: string; offset: number; length: number }[],
): AsyncGenerator<Segment> {
  let k = 0;
  for await (const bytes of store.stream(chunks.map((c) => c.hash))) {
    yield { offset: chunks[k++]!.offset, bytes };
  }
}

/** Runs up to `max` tasks at once; the first failure stops new ones and is thrown once all have settled. */
class InFlight {
  private readonly running = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;

  constructor(private readonly max: number) {}

  async add(task: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.max) await Promise.race(this.running);
    if (this.failure) return this.drain();
    const p: Promise<void> = task()
      .catch((error: unknown) => {
        this.failure ??= { error };
      })
      .finally(() => this.running.delete(p));
    this.running.add(p);
  }

  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.race(this.running);
    if (this.failure) throw this.failure.error;
  }
}

/** Content that is put back on the disk at its runs (not a raw volume, not bytes kept in the regions). */
function placesContent(v: VersionRow): boolean {
  return v.type === 'file' && !v.meta?.rawVolume && !v.meta?.diskRegions && !v.meta?.contentNotOnDisk;
}

/**
 * Walks one files-volume: yields the versions whose content goes on the disk,
 * once per file (a hard link's other names share its runs).
 */
function* placedFiles(cat: Catalog, backup: BackupRow, vol: BackupVolumeRow): Generator<VersionRow> {
  const seenLinked = new Set<string>();
  for (const v of cat.walk(backup.id, vol.volumeId, '/')) {
    if (!placesContent(v) || !v.runs?.length) continue;
    if (v.nlink > 1) {
      if (seenLinked.has(v.fsId)) continue;
      seenLinked.add(v.fsId);
    }
    yield v;
  }
}

function examples(paths: string[], total: number): string {
  return `${paths.slice(0, MAX_EXAMPLES).join(', ')}${total > MAX_EXAMPLES ? `, … (${total} in all)` : ''}`;
}

interface Planned {
  plan: DiskPlan;
  sources: Source[];
  /** Per version id (file or raw volume): its disk ranges the regions hold too. */
  shared: Map<number, DiskRange[]>;
  regionsName: string;
}

function planSources(cat: Catalog, backup: BackupRow, diskIndex: number): Planned {
  const err = diskErrors(backup, diskIndex);
  const disk = cat.backupDisks(backup.id).find((d) => d.diskIndex === diskIndex);
  if (!disk || diskIndex < 0) {
    throw err.notFound('REBUILD_NO_DISK', `backup ${backup.id} has no disk ${diskIndex}`);
  }
  const plan: DiskPlan = {
    diskIndex,
    slot: disk.slot,
    imagePath: disk.imagePath,
    sourceFormat: disk.format,
    size: disk.size,
    bytes: 0,
    regions: false,
    regionBytes: 0,
    files: 0,
    fileBytes: 0,
    rawVolumes: 0,
    rawBytes: 0,
    sharedBytes: 0,
    complete: false,
    incomplete: [],
  };
  /** Content (files, raw volumes): no two may share a byte. */
  const extents = new Extents();
  const regionRanges: DiskRange[] = [];
  let regionsName = '';
  const names = new Map<number, string>();
  const sources: Source[] = [];
  const unread: string[] = [];
  let unreadCount = 0;
  const vols = cat.backupVolumes(backup.id).filter((v) => v.diskIndex === diskIndex);
  for (const vol of vols) {
    if (vol.offset < 0 || vol.length < 0 || vol.offset + vol.length > disk.size) {
      throw err.corrupt(
        'REBUILD_VOLUME_OUTSIDE',
        `volume ${vol.name} (${vol.length} bytes at ${vol.offset}) falls outside the ${disk.size}-byte disk`,
      );
    }
    const isRegions = vol.partIndex === REGIONS_PART || vol.fsType === REGIONS_FS_TYPE;
    if (isRegions || vol.mode === 'raw') {
      const path = isRegions ? REGIONS_PATH : RAW_VOLUME_PATH;
      const version = cat.lookup(backup.id, vol.volumeId, path);
      const what = `/${vol.name}${path}`;
      if (!version || version.meta?.readError) {
        plan.incomplete.push(`${what} was not stored (${version ? 'unreadable at backup time' : 'missing'})`);
        continue;
      }
      const { pieces, stored } = packedPieces(version.runs ?? [], vol.offset, vol.length, what, err);
      names.set(version.id, what);
      if (isRegions) {
        for (const p of pieces) regionRanges.push({ start: p.diskOffset, end: p.diskOffset + p.length });
        regionsName = what;
      } else {
        for (const p of pieces) extents.add(p.diskOffset, p.diskOffset + p.length, version.id);
      }
      if (isRegions) {
        plan.regions = true;
        plan.regionBytes += stored;
        sources.unshift({ kind: 'regions', vol, version, pieces, stored });
      } else {
        plan.rawVolumes++;
        plan.rawBytes += stored;
        sources.push({ kind: 'raw', vol, version, pieces, stored });
      }
      continue;
    }
    sources.push({ kind: 'files', vol });
    for (const v of placedFiles(cat, backup, vol)) {
      const pieces = filePieces(v, vol, err);
      if (pieces.length === 0) continue;
      if (v.meta?.readError) {
        if (unread.length < MAX_EXAMPLES) unread.push(`/${vol.name}${v.path}`);
        unreadCount++;
        continue;
      }
      plan.files++;
      for (const p of pieces) {
        extents.add(p.diskOffset, p.diskOffset + p.length, v.id);
        plan.fileBytes += p.length;
      }
    }
  }
  plan.bytes = plan.regionBytes + plan.fileBytes + plan.rawBytes;
  regionRanges.sort((a, b) => a.start - b.start);
  for (let i = 1; i < regionRanges.length; i++) {
    if (regionRanges[i]!.start < regionRanges[i - 1]!.end) {
      throw err.corrupt('REBUILD_OVERLAP', `${regionsName} holds disk byte ${regionRanges[i]!.start} twice`, {
        offset: regionRanges[i]!.start,
      });
    }
  }
  const overlap = extents.firstOverlap();
  if (overlap) {
    const name = (id: number) => names.get(id) ?? findName(cat, backup, vols, id);
    throw err.corrupt(
      'REBUILD_OVERLAP',
      `${name(overlap.a)} and ${name(overlap.b)} both claim disk bytes ${overlap.start}..${overlap.end}: the backup is inconsistent`,
      { offset: overlap.start },
    );
  }
  if (!plan.regions) {
    plan.incomplete.unshift(
      'the backup holds no disk regions (it was made before vdbak kept them): the partition table, boot code and filesystem metadata are missing, only file contents are at their places',
    );
  }
  if (unreadCount > 0) {
    plan.incomplete.push(`${unreadCount} file(s) could not be read at backup time: ${examples(unread, unreadCount)}`);
  }
  plan.complete = plan.incomplete.length === 0;
  const shared = intersections(extents, regionRanges);
  for (const list of shared.values()) for (const r of list) plan.sharedBytes += r.end - r.start;
  return { plan, sources, shared, regionsName };
}

/** The path of a version id (only to name the culprits of an overlap). */
function findName(cat: Catalog, backup: BackupRow, vols: BackupVolumeRow[], id: number): string {
  for (const vol of vols) {
    for (const v of cat.walk(backup.id, vol.volumeId, '/')) if (v.id === id) return `/${vol.name}${v.path}`;
  }
  return `version ${id}`;
}

/** What a rebuild of one disk would write, and whether the result would be complete. Reads no content. */
export function planDisk(cat: Catalog, backup: BackupRow, diskIndex: number): DiskPlan {
  return planSources(cat, backup, diskIndex).plan;
}

/** The disks of a backup a restore rebuilds (the configuration pseudo-disk is not one). */
export function backupDiskIndexes(cat: Catalog, backup: BackupRow): number[] {
  return cat
    .backupDisks(backup.id)
    .filter((d) => d.diskIndex >= 0)
    .map((d) => d.diskIndex);
}

/**
 * Writes disk `diskIndex` of `backup` through `writer` and finishes it. The
 * caller aborts the writer when this throws.
 */
export async function rebuildDisk(
  cat: Catalog,
  target: Target,
  backup: BackupRow,
  diskIndex: number,
  writer: DiskWriter,
  signal?: AbortSignal,
  onProgress?: (p: RebuildProgress) => void,
): Promise<RebuildReport> {
  const err = diskErrors(backup, diskIndex);
  const { plan, sources, shared, regionsName } = planSources(cat, backup, diskIndex);
  const sharedOf = (id: number): Shared | undefined => {
    const ranges = shared.get(id);
    return ranges ? { ranges, regions: regionsName } : undefined;
  };
  if (writer.size !== plan.size) {
    throw err.unsupported('REBUILD_SIZE', `the writer is ${writer.size} bytes, the disk ${plan.size}`);
  }
  const store = new ChunkStore(cat, target);
  const counters: PlaceCounters = { bytes: 0, written: 0, verified: 0 };
  let current = '';
  const check = () => {
    if (signal?.aborted) {
      const why = signal.reason instanceof Error ? signal.reason.message : 'cancelled';
      throw err.cancelled('RESTORE_CANCELLED', why);
    }
    onProgress?.({ bytesDone: counters.bytes, bytesTotal: plan.bytes, current });
  };
  for (const s of sources) {
    check();
    if (s.kind !== 'files') {
      current = `/${s.vol.name}${s.version.path}`;
      const source = contiguous(store.stream(s.version.chunks ?? []));
      // the regions go first (sources start with them): what content shares with them is then checked, not rewritten
      await placeStream(source, s.pieces, writer, counters, current, check, s.stored, sharedOf(s.version.id));
      continue;
    }
    const files = new InFlight(FILES_IN_FLIGHT);
    for (const v of placedFiles(cat, backup, s.vol)) {
      if (v.meta?.readError) continue;
      const pieces = filePieces(v, s.vol, err);
      if (pieces.length === 0) continue;
      const what = `/${s.vol.name}${v.path}`;
      current = what;
      check();
      const chunks = neededChunks(cat, v, pieces, what);
      // files never share disk bytes (the plan checked), so they may be written in any order
      const sh = sharedOf(v.id);
      await files.add(() =>
        placeStream(chunkSegments(store, chunks), pieces, writer, counters, what, check, undefined, sh),
      );
    }
    await files.drain();
  }
  check();
  await writer.finish();
  return { ...plan, written: counters.written };
}
