/**
 * Hosted sparse VMDK extents ("KDMV"): monolithicSparse, twoGbMaxExtentSparse
 * extents and streamOptimized.
 *
 * A 512-byte header (SparseExtentHeader) gives the capacity, the grain size
 * (the allocation unit, in sectors) and the grain directory (GD). Each GD entry
 * points to a grain table (GT) of numGTEsPerGT entries; each GT entry (GTE)
 * holds the sector of one grain in the file: 0 = not in this extent (read
 * through to the parent), 1 = a zero grain. A redundant GD/GT copy may follow
 * the header (flag bit 1). With compressAlgorithm = 1 (deflate) each grain is
 * a zlib stream; with the markers flag (bit 17) it is preceded by a 12-byte
 * grain marker {lba u64, size u32}. streamOptimized files may say
 * gdOffset = GD_AT_END: the real header is then a footer 1 KiB before the end
 * of the file, between a footer marker and an end-of-stream marker.
 *
 * Spec: VMware "Virtual Disk Format 5.0" (Hosted Sparse Extents, Stream-
 * Optimized Compressed Sparse Extents), libyal libvmdk's format document, and
 * qemu block/vmdk.c (vmdk_open_vmdk4, get_cluster_offset, vmdk_read_extent).
 */
import { inflateSync } from 'node:zlib';
import {
  assertLayout,
  checkRange,
  isPowerOfTwo,
  MAX_DISK_SIZE,
  toSafeNumber,
  u8,
  u16le,
  u32le,
  u64le,
} from '../../bytes.js';
import { type Errors, errorsFor, isVdbakError } from '../../errors.js';
import type { FileSource } from '../file.js';
import { MAX_DESCRIPTOR_BYTES, SECTOR } from './descriptor.js';
import type { ExtentReader, ExtentSpan } from './extent.js';

/** "KDMV" as the little-endian u32 at offset 0. */
export const SPARSE_MAGIC = 0x564d444b;
export const SPARSE_HEADER_SIZE = 512;

export const SPARSE_HEADER = {
  magic: [0, 4],
  version: [4, 4],
  flags: [8, 4],
  capacity: [12, 8],
  grainSize: [20, 8],
  descriptorOffset: [28, 8],
  descriptorSize: [36, 8],
  numGTEsPerGT: [44, 4],
  rgdOffset: [48, 8],
  gdOffset: [56, 8],
  overHead: [64, 8],
  uncleanShutdown: [72, 1],
  newlineChars: [73, 4],
  compressAlgorithm: [77, 2],
} as const;
assertLayout('SparseExtentHeader', SPARSE_HEADER_SIZE, SPARSE_HEADER);

/** A stream marker: {val u64, size u32, type u32}, padded to a sector when size = 0. */
export const MARKER = { val: [0, 8], size: [8, 4], type: [12, 4] } as const;
assertLayout('Marker', 16, MARKER);
export const GRAIN_MARKER_SIZE = 12;

export const FLAG_NEWLINE_TEST = 1 << 0;
export const FLAG_REDUNDANT_GT = 1 << 1;
export const FLAG_ZERO_GRAIN = 1 << 2;
export const FLAG_COMPRESSED = 1 << 16;
export const FLAG_MARKERS = 1 << 17;
export const COMPRESS_NONE = 0;
export const COMPRESS_DEFLATE = 1;
export const GD_AT_END = 0xffffffffffffffffn;
export const MARKER_EOS = 0;
export const MARKER_GT = 1;
export const MARKER_GD = 2;
export const MARKER_FOOTER = 3;
/** "\n \r\n": written to catch files mangled by a text-mode transfer. */
const NEWLINE_CHARS = [0x0a, 0x20, 0x0d, 0x0a] as const;
/** GTE values with a meaning of their own. */
const GTE_ABSENT = 0;
const GTE_ZERO = 1;

/** Largest grain we accept (VMware uses 64 KiB; every inflated grain is allocated whole). */
export const MAX_GRAIN_SECTORS = 32_768;
/** Most entries per grain table (VMware writes 512; qemu refuses more than 512). */
export const MAX_GTES_PER_GT = 4096;
/** Bytes of inflated grains kept for reuse, and of grain tables. */
const GRAIN_CACHE_BYTES = 8 * 1024 * 1024;
/** Compressed grains follow each other in the file: read them through a window this large. */
const READ_WINDOW_BYTES = 1024 * 1024;
const GT_CACHE_BYTES = 8 * 1024 * 1024;

export interface SparseHeader {
  version: number;
  flags: number;
  /** Sectors. */
  capacity: number;
  /** Sectors per grain. */
  grainSize: number;
  descriptorOffset: number;
  descriptorSize: number;
  numGTEsPerGT: number;
  rgdOffset: number;
  /** Sector of the grain directory; `null` for GD_AT_END. */
  gdOffset: number | null;
  overHead: number;
  compressAlgorithm: number;
}

function sectorsField(
  b: Uint8Array,
  field: readonly [number, number],
  err: Errors,
  code: string,
  what: string,
  at: number,
) {
  const v = u64le(b, field[0]);
  if (v > BigInt(Math.floor(Number.MAX_SAFE_INTEGER / SECTOR))) {
    throw err.corrupt(code, `${what} ${v} sectors is impossible`, { offset: at + field[0], value: v.toString() });
  }
  return toSafeNumber(v, err, code, what, at + field[0]);
}

/** Decodes and validates a 512-byte hosted sparse header found at byte `at` of its file. */
export function parseSparseHeader(b: Uint8Array, err: Errors, at = 0): SparseHeader {
  if (b.length < SPARSE_HEADER_SIZE) {
    throw err.truncated('VMDK_SPARSE_HEADER_SHORT', `sparse header needs ${SPARSE_HEADER_SIZE} bytes`, { offset: at });
  }
  const f = SPARSE_HEADER;
  if (u32le(b, f.magic[0]) !== SPARSE_MAGIC) {
    throw err.corrupt('VMDK_BAD_MAGIC', 'not a hosted sparse extent (no "KDMV")', { offset: at });
  }
  const version = u32le(b, f.version[0]);
  if (version < 1 || version > 3) {
    throw err.unsupported('VMDK_SPARSE_VERSION', `sparse extent version ${version}`, { offset: at + f.version[0] });
  }
  const flags = u32le(b, f.flags[0]);
  if (flags & FLAG_NEWLINE_TEST) {
    for (let i = 0; i < NEWLINE_CHARS.length; i++) {
      if (u8(b, f.newlineChars[0] + i) !== NEWLINE_CHARS[i]) {
        throw err.corrupt('VMDK_NEWLINE_MANGLED', 'the newline test bytes are altered (text-mode copy?)', {
          offset: at + f.newlineChars[0] + i,
        });
      }
    }
  }
  const capacity = sectorsField(b, f.capacity, err, 'VMDK_CAPACITY', 'capacity', at);
  if (capacity * SECTOR > MAX_DISK_SIZE) {
    throw err.limit('VMDK_CAPACITY', `capacity ${capacity * SECTOR} bytes exceeds ${MAX_DISK_SIZE}`, {
      offset: at + f.capacity[0],
    });
  }
  const grainSize = sectorsField(b, f.grainSize, err, 'VMDK_GRAIN_SIZE', 'grain size', at);
  if (!isPowerOfTwo(grainSize) || grainSize > MAX_GRAIN_SECTORS) {
    throw err.corrupt('VMDK_GRAIN_SIZE', `grain size ${grainSize} sectors (power of two up to ${MAX_GRAIN_SECTORS})`, {
      offset: at + f.grainSize[0],
    });
  }
  const numGTEsPerGT = u32le(b, f.numGTEsPerGT[0]);
  if (numGTEsPerGT < 1 || numGTEsPerGT > MAX_GTES_PER_GT) {
    throw err.corrupt('VMDK_GTES_PER_GT', `${numGTEsPerGT} entries per grain table (1..${MAX_GTES_PER_GT})`, {
      offset: at + f.numGTEsPerGT[0],
    });
  }
  const compressAlgorithm = u16le(b, f.compressAlgorithm[0]);
  if (compressAlgorithm !== COMPRESS_NONE && compressAlgorithm !== COMPRESS_DEFLATE) {
    throw err.unsupported('VMDK_COMPRESSION', `compression algorithm ${compressAlgorithm}`, {
      offset: at + f.compressAlgorithm[0],
    });
  }
  const gdRaw = u64le(b, f.gdOffset[0]);
  return {
    version,
    flags,
    capacity,
    grainSize,
    descriptorOffset: sectorsField(b, f.descriptorOffset, err, 'VMDK_DESCRIPTOR_OFFSET', 'descriptor offset', at),
    descriptorSize: sectorsField(b, f.descriptorSize, err, 'VMDK_DESCRIPTOR_SIZE', 'descriptor size', at),
    numGTEsPerGT,
    rgdOffset: flags & FLAG_REDUNDANT_GT ? sectorsField(b, f.rgdOffset, err, 'VMDK_RGD_OFFSET', 'rgd offset', at) : 0,
    gdOffset: gdRaw === GD_AT_END ? null : sectorsField(b, f.gdOffset, err, 'VMDK_GD_OFFSET', 'gd offset', at),
    overHead: sectorsField(b, f.overHead, err, 'VMDK_OVERHEAD', 'overhead', at),
    compressAlgorithm,
  };
}

/**
 * Reads the header, and for GD_AT_END the footer that replaces it (qemu
 * vmdk_open_vmdk4: footer marker, footer header, end-of-stream marker in the
 * last three sectors).
 */
export function readSparseHeader(file: FileSource): { header: SparseHeader; footer: boolean } {
  const err = errorsFor({ image: file.path, layer: 'vmdk' });
  const header = parseSparseHeader(file.read(0, Math.min(SPARSE_HEADER_SIZE, file.size), 'sparse header'), err, 0);
  if (header.gdOffset !== null) return { header, footer: false };
  const tail = 3 * SECTOR;
  if (file.size < SPARSE_HEADER_SIZE + tail) {
    throw err.truncated('VMDK_FOOTER_MISSING', 'GD_AT_END but the file is too short for a footer', {
      offset: file.size,
    });
  }
  const at = file.size - tail;
  const b = file.read(at, tail, 'footer');
  const footerMarkerOk = u32le(b, MARKER.size[0]) === 0 && u32le(b, MARKER.type[0]) === MARKER_FOOTER;
  const eos = 2 * SECTOR;
  const eosOk =
    u64le(b, eos + MARKER.val[0]) === 0n &&
    u32le(b, eos + MARKER.size[0]) === 0 &&
    u32le(b, eos + MARKER.type[0]) === MARKER_EOS;
  if (!footerMarkerOk || !eosOk) {
    throw err.corrupt('VMDK_FOOTER_MARKERS', 'GD_AT_END but no footer/end-of-stream markers at the end of the file', {
      offset: at,
    });
  }
  const footer = parseSparseHeader(b.subarray(SECTOR, 2 * SECTOR), err, at + SECTOR);
  if (footer.gdOffset === null) {
    throw err.corrupt('VMDK_FOOTER_GD', 'the footer does not say where the grain directory is', {
      offset: at + SECTOR + SPARSE_HEADER.gdOffset[0],
    });
  }
  return { header: footer, footer: true };
}

/** The embedded descriptor bytes of a sparse extent, or null when it has none. */
export function readEmbeddedDescriptor(file: FileSource, h: SparseHeader): { bytes: Buffer; at: number } | null {
  if (h.descriptorOffset === 0 || h.descriptorSize === 0) return null;
  const err = errorsFor({ image: file.path, layer: 'vmdk' });
  const at = h.descriptorOffset * SECTOR;
  const len = h.descriptorSize * SECTOR;
  if (len > MAX_DESCRIPTOR_BYTES) {
    throw err.limit('VMDK_DESCRIPTOR_TOO_LARGE', `embedded descriptor of ${len} bytes`, {
      offset: SPARSE_HEADER.descriptorSize[0],
      cap: MAX_DESCRIPTOR_BYTES,
    });
  }
  checkRange(
    at,
    len,
    file.size,
    err,
    'VMDK_DESCRIPTOR_RANGE',
    'embedded descriptor',
    SPARSE_HEADER.descriptorOffset[0],
  );
  return { bytes: file.read(at, len, 'embedded descriptor'), at };
}

/** What a sparse extent says about a range without reading grain data (for allocation maps). */
export interface AllocationSpanner {
  allocationSpan(offset: number, maxLength: number): { kind: 'data' | 'zero' | 'absent'; length: number };
}

type Located =
  | { kind: 'absent' | 'zero'; length: number }
  | { kind: 'data'; length: number; fileOffset: number }
  | { kind: 'compressed'; length: number; grain: number; sector: number; gteAt: number };

export class SparseExtent implements ExtentReader, AllocationSpanner {
  readonly type = 'SPARSE';
  readonly path: string;
  readonly size: number;
  readonly header: SparseHeader;
  readonly compressed: boolean;
  readonly markers: boolean;
  /** Which grain directory is used: 'primary', or 'redundant (…why…)'. */
  readonly grainDirectory: string;
  readonly footer: boolean;
  private readonly err: Errors;
  private readonly grainBytes: number;
  private readonly gtBytes: number;
  private readonly capacityBytes: number;
  private readonly gd: Uint32Array;
  private readonly gtCache = new Map<number, Uint32Array>();
  private readonly grainCache = new Map<number, Buffer>();
  private grainCacheBytes = 0;
  private window: { at: number; bytes: Buffer } | null = null;

  /** `size`: the bytes the descriptor gives this extent (default: the header's capacity). */
  constructor(
    private readonly file: FileSource,
    size?: number,
  ) {
    this.path = file.path;
    this.err = errorsFor({ image: file.path, layer: 'vmdk' });
    const { header, footer } = readSparseHeader(file);
    this.header = header;
    this.footer = footer;
    this.compressed = header.compressAlgorithm === COMPRESS_DEFLATE;
    this.markers = (header.flags & FLAG_MARKERS) !== 0;
    this.grainBytes = header.grainSize * SECTOR;
    this.gtBytes = header.numGTEsPerGT * 4;
    this.capacityBytes = header.capacity * SECTOR;
    this.size = size ?? this.capacityBytes;
    if (this.size > this.capacityBytes) {
      throw this.err.corrupt(
        'VMDK_EXTENT_CAPACITY',
        `the descriptor gives this extent ${this.size} bytes but its header holds ${this.capacityBytes}`,
        { offset: SPARSE_HEADER.capacity[0] },
      );
    }
    const gtSpan = header.numGTEsPerGT * header.grainSize;
    const gdEntries = Math.ceil(header.capacity / gtSpan);
    let gd: Uint32Array;
    let which = 'primary';
    try {
      gd = this.loadGd(header.gdOffset ?? 0, gdEntries, footer ? 'footer' : 'header');
    } catch (e) {
      if (!isVdbakError(e) || !(header.flags & FLAG_REDUNDANT_GT) || header.rgdOffset === 0) throw e;
      try {
        gd = this.loadGd(header.rgdOffset, gdEntries, 'redundant');
      } catch {
        throw e; // both unusable: report the primary's problem
      }
      which = `redundant (primary unusable: ${e.code})`;
    }
    this.gd = gd;
    this.grainDirectory = which;
  }

  /** Reads one grain directory and checks that every table it names lies inside the file. */
  private loadGd(sector: number, entries: number, what: string): Uint32Array {
    const at = sector * SECTOR;
    const bytes = entries * 4;
    if (entries > 0 && sector === 0) {
      throw this.err.corrupt('VMDK_GD_OFFSET', `the ${what} grain directory offset is 0`, {
        offset: SPARSE_HEADER.gdOffset[0],
      });
    }
    checkRange(at, bytes, this.file.size, this.err, 'VMDK_GD_RANGE', `${what} grain directory (${entries} entries)`);
    const raw = this.file.read(at, bytes, 'grain directory');
    const gd = new Uint32Array(entries);
    for (let i = 0; i < entries; i++) {
      const gt = raw.readUInt32LE(i * 4);
      if (gt !== 0 && gt * SECTOR + this.gtBytes > this.file.size) {
        throw this.err.corrupt('VMDK_GT_RANGE', `${what} GD entry ${i} points to a grain table past the end`, {
          offset: at + i * 4,
          sector: gt,
        });
      }
      gd[i] = gt;
    }
    return gd;
  }

  private gt(index: number): Uint32Array {
    const hit = this.gtCache.get(index);
    if (hit) return hit;
    const sector = this.gd[index] ?? 0;
    const raw = this.file.read(sector * SECTOR, this.gtBytes, 'grain table');
    const table = new Uint32Array(this.header.numGTEsPerGT);
    for (let i = 0; i < table.length; i++) table[i] = raw.readUInt32LE(i * 4);
    if ((this.gtCache.size + 1) * this.gtBytes > GT_CACHE_BYTES) this.gtCache.clear();
    this.gtCache.set(index, table);
    return table;
  }

  /** Looks up what lies at `offset`, merging equal neighbours up to `maxLength`. */
  private locate(offset: number, maxLength: number): Located {
    const limit = Math.min(maxLength, this.size - offset);
    const gb = this.grainBytes;
    const n = this.header.numGTEsPerGT;
    const grain = Math.floor(offset / gb);
    const gdi = Math.floor(grain / n);
    const gtSpanBytes = n * gb;
    if (offset >= this.capacityBytes || gdi >= this.gd.length) return { kind: 'absent', length: limit };
    if (this.gd[gdi] === 0) {
      let end = (gdi + 1) * gtSpanBytes;
      for (let i = gdi + 1; end - offset < limit && i < this.gd.length && this.gd[i] === 0; i++) end += gtSpanBytes;
      return { kind: 'absent', length: Math.min(limit, end - offset) };
    }
    const table = this.gt(gdi);
    const gti = grain % n;
    const entry = table[gti] ?? 0;
    const inGrain = offset - grain * gb;
    let end = (grain + 1) * gb;
    if (entry === GTE_ABSENT || entry === GTE_ZERO) {
      for (let i = gti + 1; end - offset < limit && i < n && table[i] === entry; i++) end += gb;
      return { kind: entry === GTE_ABSENT ? 'absent' : 'zero', length: Math.min(limit, end - offset) };
    }
    const gteAt = (this.gd[gdi] ?? 0) * SECTOR + gti * 4;
    if (this.compressed) {
      return { kind: 'compressed', length: Math.min(limit, gb - inGrain), grain, sector: entry, gteAt };
    }
    for (
      let i = gti + 1;
      end - offset < limit && i < n && table[i] === entry + (i - gti) * this.header.grainSize;
      i++
    ) {
      end += gb;
    }
    const length = Math.min(limit, end - offset);
    const fileOffset = entry * SECTOR + inGrain;
    if (fileOffset + length > this.file.size) {
      throw this.err.corrupt('VMDK_GRAIN_RANGE', `grain table entry ${entry} points past the end of the file`, {
        offset: gteAt,
        sector: entry,
        fileSize: this.file.size,
      });
    }
    return { kind: 'data', length, fileOffset };
  }

  span(offset: number, maxLength: number): ExtentSpan {
    const l = this.locate(offset, maxLength);
    if (l.kind === 'data') return { kind: 'data', length: l.length, file: this.file, fileOffset: l.fileOffset };
    if (l.kind !== 'compressed') return l;
    const bytes = this.inflateGrain(l.grain, l.sector, l.gteAt);
    const inGrain = offset - l.grain * this.grainBytes;
    return { kind: 'bytes', length: l.length, bytes: bytes.subarray(inGrain, inGrain + l.length) };
  }

  allocationSpan(offset: number, maxLength: number): { kind: 'data' | 'zero' | 'absent'; length: number } {
    const l = this.locate(offset, maxLength);
    return { kind: l.kind === 'compressed' ? 'data' : l.kind, length: l.length };
  }

  /** Inflates (or finds in the cache) the compressed grain number `grain` stored at `sector`. */
  private inflateGrain(grain: number, sector: number, gteAt: number): Buffer {
    const hit = this.grainCache.get(grain);
    if (hit) {
      this.grainCache.delete(grain);
      this.grainCache.set(grain, hit);
      return hit;
    }
    const gb = this.grainBytes;
    const at = sector * SECTOR;
    let dataAt = at;
    let dataLen: number;
    if (this.markers) {
      checkRange(at, GRAIN_MARKER_SIZE, this.file.size, this.err, 'VMDK_GRAIN_RANGE', 'grain marker', gteAt);
      const marker = this.readThroughWindow(at, GRAIN_MARKER_SIZE);
      dataLen = marker.readUInt32LE(MARKER.size[0]);
      dataAt = at + GRAIN_MARKER_SIZE;
      if (dataLen === 0 || dataLen > 2 * gb) {
        throw this.err.corrupt('VMDK_COMPRESSED_SIZE', `compressed grain of ${dataLen} bytes (grain is ${gb})`, {
          offset: at + MARKER.size[0],
        });
      }
      checkRange(dataAt, dataLen, this.file.size, this.err, 'VMDK_GRAIN_RANGE', 'compressed grain', at);
    } else {
      if (at >= this.file.size) {
        throw this.err.corrupt('VMDK_GRAIN_RANGE', `grain table entry ${sector} points past the end of the file`, {
          offset: gteAt,
        });
      }
      dataLen = Math.min(2 * gb, this.file.size - at);
    }
    const packed = this.readThroughWindow(dataAt, dataLen);
    let out: Buffer;
    try {
      out = inflateSync(packed, { maxOutputLength: gb, chunkSize: Math.max(gb, 64) });
    } catch (e) {
      throw this.err.corrupt('VMDK_GRAIN_INFLATE', `compressed grain does not inflate: ${(e as Error).message}`, {
        offset: dataAt,
      });
    }
    const need = Math.min(gb, this.capacityBytes - grain * gb);
    if (out.length < need) {
      throw this.err.corrupt('VMDK_GRAIN_SHORT', `compressed grain inflates to ${out.length} bytes, not ${need}`, {
        offset: dataAt,
      });
    }
    this.grainCache.set(grain, out);
    this.grainCacheBytes += out.length;
    for (const [k, v] of this.grainCache) {
      if (this.grainCacheBytes <= GRAIN_CACHE_BYTES) break;
      this.grainCache.delete(k);
      this.grainCacheBytes -= v.length;
    }
    return out;
  }

  /** Bytes [at, at+length) of the file (range-checked by the caller), served from a read-ahead window. */
  private readThroughWindow(at: number, length: number): Buffer {
    const w = this.window;
    if (w && at >= w.at && at + length <= w.at + w.bytes.length) return w.bytes.subarray(at - w.at, at - w.at + length);
    const size = Math.min(Math.max(length, READ_WINDOW_BYTES), this.file.size - at);
    const bytes = this.file.read(at, size, 'compressed grain');
    this.window = { at, bytes };
    return bytes.subarray(0, length);
  }

  /** Facts for `inspect`. */
  facts(): Record<string, string | number | boolean> {
    return {
      sparseVersion: this.header.version,
      grainSize: this.grainBytes,
      gtesPerGt: this.header.numGTEsPerGT,
      compressed: this.compressed,
      markers: this.markers,
      grainDirectory: this.grainDirectory,
      ...(this.footer ? { headerFrom: 'footer' } : {}),
    };
  }

  close(): void {
    this.file.close();
    this.gtCache.clear();
    this.grainCache.clear();
    this.window = null;
  }
}
