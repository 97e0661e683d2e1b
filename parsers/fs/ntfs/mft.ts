/**
 * The $MFT: an array of fixed-size records stored as the $DATA of record 0,
 * read through its own runlist (the MFT is fragmented on real volumes, and a
 * very fragmented MFT keeps the rest of its runlist in extension records
 * named by its $ATTRIBUTE_LIST).
 *
 * Spec: libyal libfsntfs "Master File Table (MFT)".
 */
import type { BlockDevice } from '../../blockdevice.js';
import type { Errors } from '../../errors.js';
import { type Attribute, AttrType, parseAttributes } from './attribute.js';
import { parseAttributeList } from './attrlist.js';
import type { BootSector } from './boot.js';
import { parseRecordHeader, type RecordHeader } from './record.js';
import { findRun } from './runlist.js';
import { buildStream, type Stream, StreamReader } from './stream.js';

/** More records than this is not a volume we back up (2^31 records of 1 KiB = 2 TiB of MFT). */
export const MAX_RECORDS = 2 ** 31 - 1;
/** Records fetched per read when scanning the MFT. */
export const SCAN_BATCH = 256;

export interface LoadedRecord {
  header: RecordHeader;
  buf: Buffer;
  /** Volume offset of the record's first byte (for errors), or -1 when unknown. */
  at: number;
}

export class Mft {
  readonly recordSize: number;
  readonly count: number;
  private readonly reader: StreamReader;

  constructor(
    private readonly dev: BlockDevice,
    private readonly boot: BootSector,
    private readonly err: Errors,
  ) {
    this.recordSize = boot.recordSize;
    const stream = this.bootstrap();
    // NTFS never makes the MFT sparse; refusing holes keeps the record count
    // (and what is allocated per record) bounded by the clusters that exist
    if (stream.resident || stream.compressed || stream.runs.some((r) => r.lcn === null)) {
      throw err.corrupt('NTFS_MFT_NOT_PLAIN', '$MFT data is resident, compressed or sparse', {
        offset: boot.mftOffset,
        inode: 0,
      });
    }
    this.reader = new StreamReader(dev, boot, err, stream);
    this.count = Math.min(Math.floor(stream.size / this.recordSize), MAX_RECORDS);
    if (this.count < 16) {
      throw err.corrupt('NTFS_MFT_TOO_SMALL', `$MFT holds ${this.count} records`, { offset: boot.mftOffset, inode: 0 });
    }
  }

  /** Reads record 0 from the boot sector's MFT cluster and joins the pieces of $MFT:$DATA. */
  private bootstrap(): Stream {
    const { dev, boot, err } = this;
    const rec = dev.read(boot.mftOffset, this.recordSize);
    const header = parseRecordHeader(rec, err, boot.mftOffset, 0);
    const attrs = parseAttributes(rec, header, err, boot.mftOffset, 0);
    const pieces = attrs.filter((a) => a.type === AttrType.Data && a.name === '');
    const list = attrs.find((a) => a.type === AttrType.AttributeList);
    if (list) {
      const listBytes =
        list.value ?? new StreamReader(dev, boot, err, buildStream([list], boot, err, 0)).read(0, list.dataSize);
      const entries = parseAttributeList(listBytes, err, list.value ? boot.mftOffset : list.runlistAt, 0);
      for (const e of entries) {
        if (e.type !== AttrType.Data || e.name !== '' || e.record === 0) continue;
        // read the extension record through the runs known so far (it lives early in the MFT)
        const partial = joinKnown(pieces);
        const reader = new StreamReader(dev, boot, err, buildPartial(partial, boot, err));
        const ext = reader.read(e.record * this.recordSize, this.recordSize);
        const h = parseRecordHeader(ext, err, -1, e.record);
        const found = parseAttributes(ext, h, err, -1, e.record).find((a) => a.type === AttrType.Data && a.id === e.id);
        if (!found) {
          throw err.corrupt('NTFS_ATTRLIST_DANGLING', `$MFT piece ${e.id} not in record ${e.record}`, { inode: 0 });
        }
        pieces.push(found);
      }
    }
    return buildStream(pieces, boot, err, 0);
  }

  /** Raw bytes of records [first, first+n) (fixups not applied). */
  readRaw(first: number, n: number): Buffer {
    return this.reader.read(first * this.recordSize, n * this.recordSize);
  }

  /** Volume offset of a record when it lies inside one run, else -1. */
  offsetOf(n: number): number {
    const runs = this.reader.stream.runs;
    const cs = this.boot.clusterSize;
    const pos = n * this.recordSize;
    const r = runs[findRun(runs, Math.floor(pos / cs))];
    return !r || r.lcn === null ? -1 : r.lcn * cs + (pos - r.vcn * cs);
  }

  /** One record, fixed up and with its header checked. */
  load(n: number): LoadedRecord {
    if (!Number.isSafeInteger(n) || n < 0 || n >= this.count) {
      throw this.err.notFound('NTFS_NO_RECORD', `record ${n} is past the ${this.count} records of the MFT`, {
        inode: n,
      });
    }
    const buf = this.readRaw(n, 1);
    const at = this.offsetOf(n);
    return { header: parseRecordHeader(buf, this.err, at, n), buf, at };
  }
}

/** Pieces known so far, sorted and cut at the first gap, for reading ahead during bootstrap. */
function joinKnown(pieces: Attribute[]): Attribute[] {
  const sorted = [...pieces].sort((a, b) => a.startVcn - b.startVcn);
  const out: Attribute[] = [];
  let next = 0;
  for (const p of sorted) {
    if (p.startVcn !== next) break;
    out.push(p);
    next = p.lastVcn + 1;
  }
  return out;
}

/** A stream over the known pieces whose size is what they cover (the real size is only trusted once complete). */
function buildPartial(pieces: Attribute[], boot: BootSector, err: Errors): Stream {
  const s = buildStream(
    pieces.map((p, i) => (i === 0 ? { ...p, dataSize: 0, initializedSize: 0 } : p)),
    boot,
    err,
    0,
  );
  const last = pieces[pieces.length - 1];
  const covered = last ? (last.lastVcn + 1) * boot.clusterSize : 0;
  return { ...s, size: covered, initializedSize: covered };
}
