/**
 * A disk's regions (issue 7 §1): the allocated bytes of the disk that no
 * stored file content covers — partition tables and gaps, boot code,
 * filesystem metadata, inline data, the on-disk bytes of compressed or
 * encrypted files. With them and the files' runs a whole disk can be rebuilt
 * without storing data twice:
 *
 *   regions = disk allocated − raw volumes (stored as volume.raw already)
 *             − per volume read as files: its free space ∪ the runs of the
 *               files whose content was stored and equals their disk bytes
 *
 * Everything here works on sorted streams of ranges, so the whole disk is
 * never held as a bitmap or as one object per block: the filesystems yield
 * their used ranges piece by piece, the files' runs are kept as two
 * Float64Arrays (FileRuns), and the result is capped (MAX_REGION_RUNS) by
 * joining the closest neighbours — storing a little free space or file
 * content twice is always safe, leaving a used byte out never is.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import type { ByteRange } from '../../parsers/blockdevice.js';
import { unionOfIntervals } from '../../parsers/fs/ranges.js';
import type { ChunkSizes } from '../chunk/fastcdc.js';

/** Most runs one disk's regions keep (25 bytes each in the catalog). */
export const MAX_REGION_RUNS = 1 << 18;
/** Most file runs a disk keeps for the subtraction (16 bytes each); beyond, file bytes stay in the regions too. */
export const MAX_FILE_RUNS = 1 << 22;
/** A region read task covers at most this much of the disk, so a change moves the chunk cuts of its window only. */
export const REGION_WINDOW = 256 * 1024 * 1024;
/**
 * Regions are chunked finer than file content: metadata changes are small
 * and scattered (an MFT record here, a bitmap block there). On the NTFS of
 * test/fixtures/backup-chains.sh, after 1 % of the files changed (256 KB),
 * the regions sent 497 KB more with 512 KiB chunks, 179 KB with 64 KiB and
 * 56 KB with 16 KiB; 64 KiB keeps a region's chunk list (and its catalog
 * row, rewritten whenever the metadata changes) 4 times shorter than 16.
 */
export const REGION_CHUNK_SIZES: Readonly<ChunkSizes> = Object.freeze({
  minSize: 16 * 1024,
  avgSize: 64 * 1024,
  maxSize: 256 * 1024,
});
/** Disk allocation is asked in windows of this size (each answer stays bounded). */
const ALLOCATION_WINDOW = 64 * 1024 * 1024 * 1024;
const FIRST_FILE_RUNS = 1024;

/** Bump when what the regions hold changes: a stamp of another format never matches. */
const REGIONS_FORMAT = 1;

/**
 * A fingerprint of the files a disk is read from (every file of every link
 * of its chain: path, device, inode, size, times): equal stamps mean the same
 * bytes, so the previous backup's regions can be kept without reading them.
 * The change time cannot be set back by a writer (`touch -r` sets it to now).
 *
 * Undefined (the disk is read) when a file cannot be stat'ed, or when one
 * was modified at or after `settledBeforeNs` (wall clock, ns): a write in the
 * same timestamp tick as the stamp, after the backup read the bytes, would
 * leave the times as they were (git's "racily clean" files). So the caller
 * passes a time safely before it first read the image.
 */
export function imageStamp(
  chain: readonly { files: readonly string[] }[],
  settledBeforeNs?: bigint,
): string | undefined {
  const h = createHash('sha256').update(`regions ${REGIONS_FORMAT}\0`);
  try {
    for (const link of chain) {
      for (const f of link.files) {
        const st = statSync(f, { bigint: true });
        if (settledBeforeNs !== undefined && (st.mtimeNs >= settledBeforeNs || st.ctimeNs >= settledBeforeNs)) {
          return undefined;
        }
        h.update(`${f}\0${st.dev}\0${st.ino}\0${st.size}\0${st.mtimeNs}\0${st.ctimeNs}\0`);
      }
    }
  } catch {
    return undefined;
  }
  return h.digest('hex');
}

/** Joins touching and overlapping ranges of a stream sorted by offset. */
export function* merged(src: Iterable<ByteRange>): Generator<ByteRange> {
  let cur: ByteRange | undefined;
  for (const r of src) {
    if (r.length <= 0) continue;
    if (cur && r.offset <= cur.offset + cur.length) {
      cur.length = Math.max(cur.length, r.offset + r.length - cur.offset);
      continue;
    }
    if (cur) yield cur;
    cur = { offset: r.offset, length: r.length };
  }
  if (cur) yield cur;
}

/** The union of streams each sorted by offset, sorted and merged. */
export function* union(...srcs: Iterable<ByteRange>[]): Generator<ByteRange> {
  const its = srcs.map((s) => s[Symbol.iterator]());
  const heads = its.map((it) => it.next());
  const next = function* (): Generator<ByteRange> {
    for (;;) {
      let best = -1;
      for (let i = 0; i < heads.length; i++) {
        const h = heads[i]!;
        if (!h.done && (best < 0 || h.value.offset < (heads[best]!.value as ByteRange).offset)) best = i;
      }
      if (best < 0) return;
      yield heads[best]!.value as ByteRange;
      heads[best] = its[best]!.next();
    }
  };
  yield* merged(next());
}

/** `a` without `b`; both sorted and merged. */
export function* subtract(a: Iterable<ByteRange>, b: Iterable<ByteRange>): Generator<ByteRange> {
  const ib = b[Symbol.iterator]();
  let cut = ib.next();
  for (const r of a) {
    let pos = r.offset;
    const end = r.offset + r.length;
    while (pos < end) {
      while (!cut.done && cut.value.offset + cut.value.length <= pos) cut = ib.next();
      if (cut.done || cut.value.offset >= end) {
        yield { offset: pos, length: end - pos };
        break;
      }
      if (cut.value.offset > pos) yield { offset: pos, length: cut.value.offset - pos };
      pos = cut.value.offset + cut.value.length;
    }
  }
}

/** [start, end) without the sorted, merged ranges of `used`, clipped to [start, end). */
export function* complement(used: Iterable<ByteRange>, start: number, end: number): Generator<ByteRange> {
  yield* subtract([{ offset: start, length: end - start }], used);
}

/** Each range moved by `delta` and cut to [0, limit) before moving (volume → disk coordinates). */
export function* shifted(src: Iterable<ByteRange>, delta: number, limit: number): Generator<ByteRange> {
  for (const r of src) {
    const s = Math.max(0, r.offset);
    const e = Math.min(limit, r.offset + r.length);
    if (e > s) yield { offset: s + delta, length: e - s };
  }
}

/** A device's allocated ranges, asked window by window. */
export function* deviceAllocated(dev: {
  size: number;
  allocated(offset: number, length: number): ByteRange[];
}): Generator<ByteRange> {
  for (let off = 0; off < dev.size; off += ALLOCATION_WINDOW) {
    // sorted here: merged() needs it, and the image formats do not promise it
    yield* merged(dev.allocated(off, Math.min(ALLOCATION_WINDOW, dev.size - off)).sort((a, b) => a.offset - b.offset));
  }
}

/**
 * A filesystem's used ranges as it yields them, made safe to subtract from:
 * an error, or a range out of order, ends the stream with "everything from
 * here on is used" (nothing after that point is taken for free space).
 */
export function* trustedUsed(
  used: () => Iterable<ByteRange>,
  end: number,
  onError: (e: unknown) => void,
): Generator<ByteRange> {
  let pos = 0;
  try {
    for (const r of used()) {
      if (r.offset < pos || !(r.length > 0)) throw new RangeError(`used range ${r.offset}+${r.length} out of order`);
      const e = Math.min(end, r.offset + r.length);
      if (r.offset >= end) break;
      yield { offset: r.offset, length: e - r.offset };
      pos = e;
    }
    return;
  } catch (e) {
    onError(e);
  }
  if (pos < end) yield { offset: pos, length: end - pos };
}

/**
 * The file runs one disk's regions leave out (disk coordinates), in any
 * order. Two typed arrays; when full they are folded into their union, and
 * when even that is full, further runs are dropped (their bytes stay in the
 * regions: stored twice, never lost).
 */
export class FileRuns {
  private starts: Float64Array;
  private ends: Float64Array;
  private count = 0;
  /** Folding freed too little last time: from now on runs that do not fit are dropped. */
  private exhausted = false;
  /** Bytes of runs that did not fit. */
  droppedBytes = 0;

  constructor(private readonly cap = MAX_FILE_RUNS) {
    this.starts = new Float64Array(Math.min(FIRST_FILE_RUNS, cap));
    this.ends = new Float64Array(Math.min(FIRST_FILE_RUNS, cap));
  }

  add(offset: number, length: number): void {
    if (!(length > 0)) return;
    if (this.count === this.starts.length && !this.grow()) {
      this.droppedBytes += length;
      return;
    }
    this.starts[this.count] = offset;
    this.ends[this.count] = offset + length;
    this.count++;
  }

  private grow(): boolean {
    if (this.starts.length < this.cap) {
      const n = Math.min(this.cap, this.starts.length * 2);
      const s = new Float64Array(n);
      const e = new Float64Array(n);
      s.set(this.starts);
      e.set(this.ends);
      this.starts = s;
      this.ends = e;
      return true;
    }
    if (this.exhausted) return false;
    this.fold();
    // folding again soon would sort the whole list for little: drop instead
    if (this.count > this.cap / 2) this.exhausted = true;
    return this.count < this.starts.length;
  }

  /** Replaces the runs by their union (in place). */
  private fold(): void {
    let k = 0;
    const s = this.starts.slice(0, this.count);
    const e = this.ends.slice(0, this.count);
    for (const [a, b] of unionOfIntervals(s, e)) {
      this.starts[k] = a;
      this.ends[k] = b;
      k++;
    }
    this.count = k;
  }

  /** The union, sorted and merged. Sorts the lists in place (no copy): only their multisets matter. */
  *ranges(): Generator<ByteRange> {
    for (const [a, b] of unionOfIntervals(this.starts.subarray(0, this.count), this.ends.subarray(0, this.count))) {
      yield { offset: a, length: b - a };
    }
  }
}

export interface RegionResult {
  runs: ByteRange[];
  bytes: number;
  /** The gap below which neighbours were joined to stay under the cap (0: none were). */
  joinedGap: number;
}

/**
 * `allocated` minus the union of `excluded` (each sorted), kept under
 * `cap` runs: whenever the list reaches the cap, neighbours closer than a
 * growing gap are joined.
 */
export function regions(
  allocated: Iterable<ByteRange>,
  excluded: Iterable<ByteRange>[],
  cap = MAX_REGION_RUNS,
): RegionResult {
  const runs: ByteRange[] = [];
  let gap = 0;
  const join = (): void => {
    gap = gap === 0 ? 4096 : gap * 2;
    let k = 0;
    for (const r of runs) {
      const last = k > 0 ? runs[k - 1]! : undefined;
      if (last && r.offset - (last.offset + last.length) < gap) last.length = r.offset + r.length - last.offset;
      else runs[k++] = r;
    }
    runs.length = k;
  };
  for (const r of subtract(merged(allocated), union(...excluded))) {
    const last = runs[runs.length - 1];
    if (last && r.offset - (last.offset + last.length) < gap) {
      last.length = r.offset + r.length - last.offset;
      continue;
    }
    runs.push({ ...r });
    while (runs.length >= cap) join();
  }
  return { runs, bytes: runs.reduce((a, r) => a + r.length, 0), joinedGap: gap };
}

/**
 * The regions cut into read pieces: a piece never crosses a REGION_WINDOW
 * boundary of the disk and holds at most `maxBytes`, so the chunk cuts of
 * one window do not depend on what changed in another.
 */
export function pieces(runs: readonly ByteRange[], maxBytes: number, window = REGION_WINDOW): ByteRange[][] {
  const out: ByteRange[][] = [];
  let cur: ByteRange[] = [];
  let curBytes = 0;
  let curWindow = -1;
  for (const r of runs) {
    let off = r.offset;
    let left = r.length;
    while (left > 0) {
      const w = Math.floor(off / window);
      if (cur.length > 0 && (w !== curWindow || curBytes === maxBytes)) {
        out.push(cur);
        cur = [];
        curBytes = 0;
      }
      curWindow = w;
      const take = Math.min(left, (w + 1) * window - off, maxBytes - curBytes);
      cur.push({ offset: off, length: take });
      curBytes += take;
      off += take;
      left -= take;
    }
  }
  if (cur.length > 0) out.push(cur);
  return out;
}
