/**
 * One data stream of a file ($DATA, named or not, or any other attribute
 * read as bytes): the pieces of a non-resident attribute (one per extension
 * record when it is spread by an $ATTRIBUTE_LIST) joined into one runlist,
 * and reads that honour sparse runs, the initialized size and LZNT1
 * compression units.
 *
 * Spec: libyal libfsntfs "Data runs", "Compression"; the initialized size is
 * the part that was ever written, bytes past it read as zeros.
 */
import type { BlockDevice } from '../../blockdevice.js';
import { checkRange, MAX_DISK_SIZE } from '../../bytes.js';
import type { Errors } from '../../errors.js';
import type { DataRun } from '../types.js';
import { ATTR_FLAG_COMPRESSION_MASK, ATTR_FLAG_ENCRYPTED, ATTR_FLAG_SPARSE, type Attribute } from './attribute.js';
import { lznt1Decompress } from './lznt1.js';
import { checkRunsDisjoint, decodeRunlist, findRun, type Run } from './runlist.js';

/** Compression units of more than 2^8 clusters are not something NTFS writes. */
export const MAX_COMPRESSION_UNIT_SHIFT = 8;
/** Windows compresses in units of 16 clusters of at most 4 KiB; a unit is decompressed in memory. */
export const MAX_COMPRESSION_UNIT_BYTES = 1024 * 1024;
/** Largest single read we serve in one call. */
export const MAX_READ = 1024 * 1024 * 1024;

export interface Stream {
  record: number;
  name: string;
  size: number;
  initializedSize: number;
  /** Resident content, or null. */
  resident: Buffer | null;
  runs: Run[];
  /** Clusters per compression unit, 0 when not compressed. */
  unitClusters: number;
  compressed: boolean;
  encrypted: boolean;
  sparse: boolean;
}

export interface VolumeGeometry {
  clusterSize: number;
  totalClusters: number;
}

/** Joins the pieces (one or more attributes of one type and name) into a stream. */
export function buildStream(pieces: Attribute[], geo: VolumeGeometry, err: Errors, inode: number): Stream {
  const first = pieces[0];
  if (!first) throw err.notFound('NTFS_NO_STREAM', 'no such stream', { inode });
  const flags = first.flags;
  const encrypted = (flags & ATTR_FLAG_ENCRYPTED) !== 0;
  const sparse = (flags & ATTR_FLAG_SPARSE) !== 0;
  if (first.value) {
    if (pieces.length > 1) {
      throw err.corrupt('NTFS_RESIDENT_PIECES', 'a resident attribute appears more than once', { inode });
    }
    const v = first.value;
    return {
      record: inode,
      name: first.name,
      size: v.length,
      initializedSize: v.length,
      resident: v,
      runs: [],
      unitClusters: 0,
      compressed: false,
      encrypted,
      sparse,
    };
  }
  const sorted = [...pieces].sort((a, b) => a.startVcn - b.startVcn);
  const head = sorted[0]!;
  if (head.startVcn !== 0) {
    throw err.corrupt('NTFS_MISSING_FIRST_PIECE', `first piece starts at VCN ${head.startVcn}`, {
      offset: head.runlistAt,
      inode,
    });
  }
  const { dataSize, allocatedSize } = head;
  let initializedSize = head.initializedSize;
  if (dataSize > MAX_DISK_SIZE || dataSize > allocatedSize || initializedSize > allocatedSize) {
    throw err.corrupt(
      'NTFS_ABSURD_SIZE',
      `data size ${dataSize}, initialized ${initializedSize}, allocated ${allocatedSize}`,
      {
        offset: head.runlistAt,
        inode,
      },
    );
  }
  initializedSize = Math.min(initializedSize, dataSize);
  const runs: Run[] = [];
  let nextVcn = 0;
  for (const p of sorted) {
    if (p.value || p.startVcn !== nextVcn) {
      throw err.corrupt('NTFS_PIECES_GAP', `piece at VCN ${p.startVcn}, expected ${nextVcn}`, {
        offset: p.runlistAt,
        inode: p.record,
      });
    }
    const ctx = { err, at: p.runlistAt, inode: p.record, totalClusters: geo.totalClusters };
    for (const r of decodeRunlist(p.runlist ?? Buffer.alloc(0), p.startVcn, p.lastVcn, ctx)) runs.push(r);
    nextVcn = p.lastVcn + 1;
  }
  if (nextVcn * geo.clusterSize < dataSize) {
    throw err.corrupt('NTFS_RUNLIST_SHORT', `runs cover ${nextVcn} clusters, data size is ${dataSize}`, {
      offset: head.runlistAt,
      inode,
    });
  }
  checkRunsDisjoint(runs, { err, at: head.runlistAt, inode, totalClusters: geo.totalClusters });
  const compressed = (flags & ATTR_FLAG_COMPRESSION_MASK) !== 0;
  let unitClusters = 0;
  if (compressed) {
    if (head.compressionUnit === 0 || head.compressionUnit > MAX_COMPRESSION_UNIT_SHIFT) {
      throw err.unsupported('NTFS_COMPRESSION_UNIT', `compression unit 2^${head.compressionUnit} clusters`, {
        offset: head.runlistAt,
        inode,
      });
    }
    unitClusters = 2 ** head.compressionUnit;
    if (unitClusters * geo.clusterSize > MAX_COMPRESSION_UNIT_BYTES) {
      throw err.unsupported('NTFS_COMPRESSION_UNIT', `compression unit of ${unitClusters * geo.clusterSize} bytes`, {
        offset: head.runlistAt,
        inode,
      });
    }
  }
  return {
    record: inode,
    name: first.name,
    size: dataSize,
    initializedSize,
    resident: null,
    runs,
    unitClusters,
    compressed,
    encrypted,
    sparse,
  };
}

/**
 * The mapping of stream offsets to volume offsets. Compressed streams have
 * no such mapping (their clusters hold LZNT1 data): they return [].
 * The part past the initialized size is marked `unwritten` (reads as zeros).
 */
export function streamRuns(s: Stream, geo: VolumeGeometry): DataRun[] {
  if (s.resident || s.compressed) return [];
  const out: DataRun[] = [];
  const cs = geo.clusterSize;
  for (const r of s.runs) {
    const start = r.vcn * cs;
    if (start >= s.size) break;
    const end = Math.min(start + r.clusters * cs, s.size);
    const vol = r.lcn === null ? null : r.lcn * cs;
    const initEnd = Math.max(start, Math.min(end, s.initializedSize));
    if (initEnd > start) out.push({ fileOffset: start, volumeOffset: vol, length: initEnd - start });
    if (end > initEnd) {
      const at = vol === null ? null : vol + (initEnd - start);
      out.push({
        fileOffset: initEnd,
        volumeOffset: at,
        length: end - initEnd,
        ...(at === null ? {} : { unwritten: true }),
      });
    }
  }
  return out;
}

/** Reads [offset, offset+length) of a stream: holes and bytes past the initialized size are zeros. */
export class StreamReader {
  private unitIndex = -1;
  private unit: Buffer | null = null;

  constructor(
    private readonly dev: BlockDevice,
    private readonly geo: VolumeGeometry,
    private readonly err: Errors,
    readonly stream: Stream,
  ) {}

  /** Volume offset of a stream offset (for errors), or -1 when it is in a hole or not mapped. */
  volumeOffset(pos: number): number {
    const cs = this.geo.clusterSize;
    const r = this.stream.runs[findRun(this.stream.runs, Math.floor(pos / cs))];
    return !r || r.lcn === null ? -1 : r.lcn * cs + (pos - r.vcn * cs);
  }

  read(offset: number, length: number): Buffer {
    const s = this.stream;
    checkRange(offset, length, s.size, this.err, 'NTFS_READ_PAST_END', 'read', offset);
    if (length > MAX_READ) throw this.err.limit('NTFS_READ_TOO_LARGE', `read of ${length} bytes`, { inode: s.record });
    if (s.resident) return Buffer.from(s.resident.subarray(offset, offset + length));
    if (!s.compressed && offset + length <= s.initializedSize) {
      // the common case: the whole request inside one allocated run, read straight from the device
      const cs = this.geo.clusterSize;
      const r = s.runs[findRun(s.runs, Math.floor(offset / cs))];
      if (r && r.lcn !== null && offset + length <= (r.vcn + r.clusters) * cs) {
        return this.dev.read(r.lcn * cs + (offset - r.vcn * cs), length);
      }
    }
    const out = Buffer.alloc(length);
    const end = Math.min(offset + length, s.initializedSize);
    if (end <= offset) return out;
    if (s.compressed) this.readCompressed(out, offset, end);
    else this.readPlain(out, offset, end, offset);
    return out;
  }

  /** Copies stream bytes [from, to) into out at (from - outBase), run by run. */
  private readPlain(out: Buffer, from: number, to: number, outBase: number): void {
    const cs = this.geo.clusterSize;
    const runs = this.stream.runs;
    let i = findRun(runs, Math.floor(from / cs));
    let pos = from;
    while (pos < to) {
      const r = runs[i];
      if (!r) {
        throw this.err.corrupt('NTFS_VCN_UNMAPPED', `stream offset ${pos} is not covered by a run`, {
          inode: this.stream.record,
        });
      }
      const runEnd = Math.min((r.vcn + r.clusters) * cs, to);
      if (r.lcn !== null) {
        const chunk = this.dev.read(r.lcn * cs + (pos - r.vcn * cs), runEnd - pos);
        chunk.copy(out, pos - outBase);
      }
      pos = runEnd;
      i++;
    }
  }

  private readCompressed(out: Buffer, from: number, to: number): void {
    const unitBytes = this.stream.unitClusters * this.geo.clusterSize;
    let pos = from;
    while (pos < to) {
      const u = Math.floor(pos / unitBytes);
      const unit = this.loadUnit(u, unitBytes);
      const inUnit = pos - u * unitBytes;
      const n = Math.min(unitBytes - inUnit, to - pos);
      unit.copy(out, pos - from, inUnit, inUnit + n);
      pos += n;
    }
  }

  /** One compression unit, decompressed: all sparse → zeros; all allocated → stored; else LZNT1. */
  private loadUnit(u: number, unitBytes: number): Buffer {
    if (this.unitIndex === u && this.unit) return this.unit;
    const cs = this.geo.clusterSize;
    const s = this.stream;
    const firstVcn = u * s.unitClusters;
    let allocated = 0;
    let holes = 0;
    let i = findRun(s.runs, firstVcn);
    let vcn = firstVcn;
    const lastVcn = firstVcn + s.unitClusters;
    while (vcn < lastVcn && i >= 0 && i < s.runs.length) {
      const r = s.runs[i]!;
      const n = Math.min(r.vcn + r.clusters, lastVcn) - vcn;
      if (r.lcn !== null) allocated += n;
      else holes += n;
      vcn += n;
      i++;
    }
    const unitStart = u * unitBytes;
    let unit: Buffer;
    if (allocated === 0) {
      unit = Buffer.alloc(unitBytes);
    } else {
      // a compressed unit stores its LZNT1 data in the first clusters, the rest is a hole
      const raw = Buffer.alloc(unitBytes);
      this.readPlain(raw, unitStart, unitStart + allocated * cs, unitStart);
      unit = holes === 0 ? raw : lznt1Decompress(raw.subarray(0, allocated * cs), unitBytes, this.err, 0, s.record);
    }
    this.unitIndex = u;
    this.unit = unit;
    return unit;
  }
}
