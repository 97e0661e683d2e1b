/**
 * A qcow2 image (versions 2 and 3) as a virtual block device.
 *
 * Spec: qemu docs/interop/qcow2.txt. A guest offset maps through the L1 table
 * (read once at open) to an L2 table (one cluster, cached) to a cluster that
 * is normal (stored at a host offset, in this file or in an external data
 * file), compressed (deflate or zstd, cached once decompressed), zero, or
 * unallocated (read through to the backing file, zeros without one or past
 * its end). Refcounts and internal snapshots play no part in reading the
 * active image and are not read.
 *
 * Reads walk the range once and coalesce runs of clusters that are adjacent
 * in the file (or all zero, or all from the backing file) into one read.
 */
import { constants as bufferConstants } from 'node:buffer';
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { type ByteRange, checkRead } from '../../blockdevice.js';
import { MiB, u64be } from '../../bytes.js';
import { type Errors, errorsFor } from '../../errors.js';
import { FileSource } from '../file.js';
import type { ChainLink, DiskImage, OpenContext } from '../types.js';
import { BufferLru } from './cache.js';
import { decompressCluster } from './decompress.js';
import { type ClusterMapping, decodeL1Entry, decodeL2Entry, type EntryContext } from './entries.js';
import {
  AUTOCLEAR_DATA_FILE_RAW,
  checkFeatures,
  checkHeaderAgainstFile,
  describeCompression,
  extensionAreaEnd,
  HEADER,
  HEADER_READ_LENGTH,
  INCOMPAT_CORRUPT,
  INCOMPAT_DATA_FILE,
  INCOMPAT_DIRTY,
  l1EntriesNeeded,
  l2EntriesPerTable,
  parseExtensions,
  parseHeader,
  type Qcow2Extensions,
  type Qcow2Header,
} from './header.js';

/** Budget for cached L2 tables (at least a few, whatever the cluster size). */
const L2_CACHE_BYTES = 8 * MiB;
const L2_CACHE_MIN_TABLES = 4;
/** Budget for cached decompressed clusters. */
const CLUSTER_CACHE_BYTES = 8 * MiB;
const CLUSTER_CACHE_MIN = 2;

/** One run of guest bytes that is read the same way. */
interface Extent {
  guest: number;
  length: number;
  kind: 'normal' | 'compressed' | 'zero' | 'backing';
  /** normal: host byte offset of `guest`; compressed: host offset of the compressed data. */
  host: number;
  compressedSize: number;
}

/** Merges consecutive extents that one read can serve, and hands each finished run to `fn`. */
class ExtentMerger {
  private current: Extent | null = null;
  constructor(private readonly fn: (e: Extent) => void) {}

  push(e: Extent): void {
    const c = this.current;
    if (
      c &&
      c.kind === e.kind &&
      e.kind !== 'compressed' &&
      c.guest + c.length === e.guest &&
      (e.kind !== 'normal' || c.host + c.length === e.host)
    ) {
      c.length += e.length;
      return;
    }
    this.flush();
    this.current = e;
  }

  /** Extends the current run if it is a backing run ending at `guest`. */
  extendBacking(guest: number, length: number): boolean {
    const c = this.current;
    if (c?.kind !== 'backing' || c.guest + c.length !== guest) return false;
    c.length += length;
    return true;
  }

  flush(): void {
    if (this.current) this.fn(this.current);
    this.current = null;
  }
}

export class Qcow2Image implements DiskImage {
  readonly format = 'qcow2';
  readonly subformat: string;
  readonly size: number;
  readonly name: string;
  readonly chain: ChainLink[];
  private readonly err: Errors;
  private readonly entryCtx: EntryContext;
  private readonly clusterSize: number;
  private readonly l2Entries: number;
  private readonly l2Cache = new BufferLru<number>(L2_CACHE_BYTES, L2_CACHE_MIN_TABLES);
  private readonly clusterCache = new BufferLru<number>(CLUSTER_CACHE_BYTES, CLUSTER_CACHE_MIN);

  constructor(
    readonly path: string,
    private readonly file: FileSource,
    private readonly header: Qcow2Header,
    extensions: Qcow2Extensions,
    private readonly l1: Buffer,
    private readonly dataFile: FileSource | null,
    private readonly backing: DiskImage | null,
    backingName: string | null,
  ) {
    this.err = errorsFor({ image: path, layer: 'qcow2' });
    this.name = path;
    this.size = header.size;
    this.clusterSize = header.clusterSize;
    this.l2Entries = l2EntriesPerTable(header);
    this.subformat = `v${header.version}`;
    this.entryCtx = {
      version: header.version,
      clusterBits: header.clusterBits,
      clusterSize: header.clusterSize,
      externalData: dataFile !== null,
      err: this.err,
    };
    const facts: Record<string, string | number | boolean> = {
      version: header.version,
      clusterSize: header.clusterSize,
      compression: describeCompression(header.compressionType),
      dirty: (header.incompatible & INCOMPAT_DIRTY) !== 0n,
      corrupt: (header.incompatible & INCOMPAT_CORRUPT) !== 0n,
      encrypted: false,
      snapshots: header.nbSnapshots,
    };
    if (backingName !== null) facts.backingFile = backingName;
    if (extensions.backingFormat !== undefined) facts.backingFormat = extensions.backingFormat;
    if (dataFile !== null) {
      facts.dataFile = dataFile.path;
      facts.dataFileRaw = (header.autoclear & AUTOCLEAR_DATA_FILE_RAW) !== 0n;
    }
    const own: ChainLink = {
      path,
      format: 'qcow2',
      subformat: this.subformat,
      files: dataFile ? [path, dataFile.path] : [path],
      facts,
    };
    this.chain = [own, ...(backing?.chain ?? [])];
  }

  read(offset: number, length: number): Buffer {
    checkRead(this, offset, length, 'qcow2');
    if (length > bufferConstants.MAX_LENGTH) {
      throw this.err.limit('QCOW2_READ_TOO_LARGE', `one read of ${length} bytes`, { offset });
    }
    const out = Buffer.alloc(length);
    this.walk(offset, length, (e) => {
      const target = out.subarray(e.guest - offset, e.guest - offset + e.length);
      if (e.kind === 'normal') this.readHost(this.dataFile ?? this.file, e.host, target);
      else if (e.kind === 'compressed') {
        const within = e.guest % this.clusterSize;
        this.decompressed(e.host, e.compressedSize).copy(target, 0, within, within + e.length);
      } else if (e.kind === 'backing' && this.backing) {
        const end = Math.min(e.guest + e.length, this.backing.size);
        if (end > e.guest) this.backing.read(e.guest, end - e.guest).copy(target);
      }
    });
    return out;
  }

  allocated(offset: number, length: number): ByteRange[] {
    checkRead(this, offset, length, 'qcow2');
    const out: ByteRange[] = [];
    const add = (o: number, l: number): void => {
      const last = out[out.length - 1];
      if (last && last.offset + last.length === o) last.length += l;
      else out.push({ offset: o, length: l });
    };
    this.walk(offset, length, (e) => {
      if (e.kind === 'normal' || e.kind === 'compressed') add(e.guest, e.length);
      else if (e.kind === 'backing' && this.backing) {
        const end = Math.min(e.guest + e.length, this.backing.size);
        if (end > e.guest) for (const r of this.backing.allocated(e.guest, end - e.guest)) add(r.offset, r.length);
      }
    });
    return out;
  }

  close(): void {
    this.file.close();
    this.dataFile?.close();
    this.backing?.close();
    this.l2Cache.clear();
    this.clusterCache.clear();
  }

  /** Calls `fn` with the extents of [offset, offset+length), in order, merged where one read serves. */
  private walk(offset: number, length: number, fn: (e: Extent) => void): void {
    const cs = this.clusterSize;
    const span = cs * this.l2Entries;
    const end = offset + length;
    const runs = new ExtentMerger(fn);
    let pos = offset;
    while (pos < end) {
      const l1Index = Math.floor(pos / span);
      const tableEnd = Math.min(end, (l1Index + 1) * span);
      const l2Offset = decodeL1Entry(
        u64be(this.l1, l1Index * 8),
        this.entryCtx,
        this.header.l1TableOffset + l1Index * 8,
      );
      if (l2Offset === 0) {
        runs.push({ guest: pos, length: tableEnd - pos, kind: 'backing', host: 0, compressedSize: 0 });
        pos = tableEnd;
        continue;
      }
      const table = this.l2Table(l2Offset, l1Index);
      const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
      while (pos < tableEnd) {
        const cluster = Math.floor(pos / cs);
        const within = pos - cluster * cs;
        const len = Math.min(tableEnd, (cluster + 1) * cs) - pos;
        const index = cluster % this.l2Entries;
        const entry = view.getBigUint64(index * 8); // big-endian
        // an unallocated entry that continues a backing run needs no decoding (sparse images)
        if (entry !== 0n || !runs.extendBacking(pos, len)) {
          const at = l2Offset + index * 8;
          runs.push(this.extentOf(decodeL2Entry(entry, this.entryCtx, at), pos, len, within, at));
        }
        pos += len;
      }
    }
    runs.flush();
  }

  private extentOf(m: ClusterMapping, guest: number, length: number, within: number, at: number): Extent {
    switch (m.kind) {
      case 'unallocated':
        return { guest, length, kind: 'backing', host: 0, compressedSize: 0 };
      case 'zero':
        return { guest, length, kind: 'zero', host: 0, compressedSize: 0 };
      case 'normal': {
        const src = this.dataFile ?? this.file;
        if (m.host >= src.size) {
          throw this.err.corrupt('QCOW2_CLUSTER_PAST_EOF', `cluster at ${m.host} lies past the end of ${src.path}`, {
            offset: at,
            host: m.host,
            fileSize: src.size,
          });
        }
        return { guest, length, kind: 'normal', host: m.host + within, compressedSize: 0 };
      }
      case 'compressed':
        if (m.host >= this.file.size) {
          throw this.err.corrupt('QCOW2_CLUSTER_PAST_EOF', `compressed cluster at ${m.host} lies past the end`, {
            offset: at,
            host: m.host,
            fileSize: this.file.size,
          });
        }
        return { guest, length, kind: 'compressed', host: m.host, compressedSize: m.compressedSize };
    }
  }

  /** The L2 table at `l2Offset`, from the cache or the file (it must lie wholly inside the file). */
  private l2Table(l2Offset: number, l1Index: number): Buffer {
    const hit = this.l2Cache.get(l2Offset);
    if (hit) return hit;
    if (l2Offset + this.clusterSize > this.file.size) {
      throw this.err.corrupt('QCOW2_L2_OUT_OF_FILE', `L2 table at ${l2Offset} runs past the end of the file`, {
        offset: this.header.l1TableOffset + l1Index * 8,
        l2Offset,
        fileSize: this.file.size,
      });
    }
    const table = this.file.read(l2Offset, this.clusterSize, 'L2 table');
    this.l2Cache.set(l2Offset, table);
    return table;
  }

  /**
   * Reads host bytes starting inside `src`; bytes past its end read as zeros,
   * as in qemu (the last cluster of an image is often written only in part).
   */
  private readHost(src: FileSource, host: number, target: Buffer): void {
    const avail = Math.min(target.length, src.size - host);
    src.readInto(target.subarray(0, avail), host, 'cluster');
    target.fill(0, avail);
  }

  private decompressed(host: number, compressedSize: number): Buffer {
    const hit = this.clusterCache.get(host);
    if (hit) return hit;
    const packed = this.file.read(host, Math.min(compressedSize, this.file.size - host), 'compressed cluster');
    const data = decompressCluster(packed, this.header.compressionType, this.clusterSize, this.err, host);
    this.clusterCache.set(host, data);
    return data;
  }
}

/** Opens the qcow2 image at `path` (and, through `ctx`, its backing chain). */
export function openQcow2(path: string, ctx: OpenContext): Qcow2Image {
  const err = errorsFor({ image: path, layer: 'qcow2' });
  const file = new FileSource(path, 'qcow2');
  let dataFile: FileSource | null = null;
  let backing: DiskImage | null = null;
  try {
    const header = parseHeader(file.read(0, Math.min(HEADER_READ_LENGTH, file.size), 'header'), err);
    const areaEnd = Math.min(extensionAreaEnd(header), file.size);
    const area =
      areaEnd > header.headerLength
        ? file.read(header.headerLength, areaEnd - header.headerLength, 'header extensions')
        : Buffer.alloc(0);
    const extensions = parseExtensions(area, header, err);
    checkFeatures(header, extensions, err);
    checkHeaderAgainstFile(header, file.size, err);
    if (header.incompatible & INCOMPAT_DATA_FILE) dataFile = openDataFile(path, extensions, err);
    const l1 = file.read(header.l1TableOffset, l1EntriesNeeded(header) * 8, 'L1 table');
    let backingName: string | null = null;
    if (header.backingFileOffset !== 0) {
      // read as a C string, as qemu does: an empty name means no backing file
      const raw = file.read(header.backingFileOffset, header.backingFileSize, 'backing file name');
      const nul = raw.indexOf(0);
      backingName = (nul >= 0 ? raw.subarray(0, nul) : raw).toString('utf8') || null;
    }
    if (backingName !== null) backing = openBacking(path, backingName, extensions.backingFormat, header, ctx, err);
    return new Qcow2Image(path, file, header, extensions, l1, dataFile, backing, backingName);
  } catch (e) {
    file.close();
    dataFile?.close();
    backing?.close();
    throw e;
  }
}

function openDataFile(path: string, ext: Qcow2Extensions, err: Errors): FileSource {
  const at = HEADER.incompatibleFeatures[0];
  if (ext.dataFile === undefined || ext.dataFile === '') {
    throw err.unsupported('QCOW2_DATA_FILE_UNNAMED', 'external data file with no name in the header', { offset: at });
  }
  const full = isAbsolute(ext.dataFile) ? ext.dataFile : resolve(dirname(path), ext.dataFile);
  if (!existsSync(full)) {
    throw err.unsupported('QCOW2_DATA_FILE_MISSING', `external data file ${ext.dataFile} (${full}) is not present`, {
      offset: at,
      dataFile: full,
    });
  }
  return new FileSource(full, 'qcow2');
}

/**
 * Opens the backing file, resolved relative to the child's folder. A backing
 * format named in the header is obeyed as qemu obeys it: "raw" is opened as
 * raw without probing (a raw disk's guest may have written any header into
 * it), and any other named format must be what the file turns out to be.
 */
function openBacking(
  path: string,
  name: string,
  format: string | undefined,
  h: Qcow2Header,
  ctx: OpenContext,
  err: Errors,
): DiskImage {
  const at = h.backingFileOffset;
  if (/^[a-z][a-z0-9+.-]*:/i.test(name) && !name.startsWith('file:')) {
    throw err.unsupported('QCOW2_BACKING_PROTOCOL', `backing file ${name} is not a plain file`, { offset: at });
  }
  const plain = name.startsWith('file:') ? name.slice('file:'.length) : name;
  const full = isAbsolute(plain) ? plain : resolve(dirname(path), plain);
  if (!existsSync(full)) {
    throw err.chain('QCOW2_BACKING_MISSING', `backing file ${name} (${full}) not found`, {
      offset: at,
      backingFile: full,
    });
  }
  // a backing file declared raw is never probed: its guest's bytes stay data
  const parent = ctx.openParent(full, path, format === 'raw' ? 'raw' : undefined);
  if (format !== undefined && parent.format !== format) {
    parent.close();
    throw err.chain('QCOW2_BACKING_FORMAT', `backing file ${full} is ${parent.format}, the header says ${format}`, {
      offset: at,
      backingFile: full,
    });
  }
  return parent;
}
