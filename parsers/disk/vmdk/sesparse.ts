/**
 * SEsparse ("space-efficient sparse") extent: the snapshot delta of ESXi 6.5+
 * (createType "seSparse", extent type SESPARSE).
 *
 * Layout, all fields 64-bit little-endian and counted in 512-byte sectors:
 * a 512-byte constant header (magic 0xcafebabe, version 0x200000001) that
 * places every region of the file (volatile header, journal, grain directory,
 * grain tables, free bitmap, back map, grains); a 512-byte volatile header
 * (magic 0xcafecafe). The grain directory (GD) entries are 0 (no table: read
 * the parent) or 0x10000000_xxxxxxxx, xxxxxxxx being the index of a grain
 * table (GT) in the grain-table region. A GT holds 4096 entries of 4 KiB
 * grains (16 MiB per table); the top nibble of an entry says:
 *   0 unallocated (read the parent), 1 SCSI-unmapped and 2 zero (both read
 *   as zeros, as qemu does), 3 allocated: the grain's cluster index in the
 *   grain region is (bits 48..59) | (bits 0..47) << 12.
 * The format is not published by VMware; this follows qemu block/vmdk.c
 * (VMDKSESparseConstHeader, check_se_sparse_const_header,
 * vmdk_open_se_sparse, get_cluster_offset) and checks every region against
 * the file on top of qemu's checks.
 */
import { assertLayout, checkCount, checkRange, MAX_DISK_SIZE, u32le, u64le, u64leNum } from '../../bytes.js';
import { type Errors, errorsFor } from '../../errors.js';
import type { FileSource } from '../file.js';
import type { ExtentReader, ExtentSpan } from './extent.js';
import { GRAIN_ABSENT, GRAIN_ZERO, type GrainGeometry, GrainTableCache, grainRun } from './grain-spans.js';

export const SESPARSE_CONST_MAGIC = 0xcafebaben;
export const SESPARSE_VOLATILE_MAGIC = 0xcafecafen;
export const SESPARSE_VERSION = 0x0000000200000001n;
const SECTOR = 512;
const HEADER_SIZE = 512;
/** The only grain size qemu (and ESXi) use: 8 sectors = 4 KiB. */
export const SESPARSE_GRAIN_SECTORS = 8;
/** The only grain table size: 64 sectors = 4096 entries of 8 bytes. */
export const SESPARSE_GT_SECTORS = 64;
const GRAIN_BYTES = SESPARSE_GRAIN_SECTORS * SECTOR;
const GT_BYTES = SESPARSE_GT_SECTORS * SECTOR;
export const SESPARSE_GT_ENTRIES = GT_BYTES / 8;
/** Virtual bytes one grain table covers (16 MiB). */
const GT_COVER = SESPARSE_GT_ENTRIES * GRAIN_BYTES;
/** A GD entry that points at a table has exactly these top 32 bits (qemu). */
const GD_ALLOCATED_HIGH = 0x10000000;
/** qemu's cap on grain directory entries (32 Mi, enough for 64 TiB at 4 KiB grains… and more). */
const MAX_GD_ENTRIES = 32 * 1024 * 1024;
/** Grain tables kept decoded at once (32 KiB each). */
const GT_CACHE_TABLES = 64;

/** Constant header (sector 0): [offset, size] in bytes, as qemu's VMDKSESparseConstHeader. */
export const SESPARSE_CONST_HEADER = {
  magic: [0, 8],
  version: [8, 8],
  capacity: [16, 8],
  grainSize: [24, 8],
  grainTableSize: [32, 8],
  flags: [40, 8],
  reserved1: [48, 8],
  reserved2: [56, 8],
  reserved3: [64, 8],
  reserved4: [72, 8],
  volatileHeaderOffset: [80, 8],
  volatileHeaderSize: [88, 8],
  journalHeaderOffset: [96, 8],
  journalHeaderSize: [104, 8],
  journalOffset: [112, 8],
  journalSize: [120, 8],
  grainDirOffset: [128, 8],
  grainDirSize: [136, 8],
  grainTablesOffset: [144, 8],
  grainTablesSize: [152, 8],
  freeBitmapOffset: [160, 8],
  freeBitmapSize: [168, 8],
  backmapOffset: [176, 8],
  backmapSize: [184, 8],
  grainsOffset: [192, 8],
  grainsSize: [200, 8],
  pad: [208, 304],
} as const;
assertLayout('SEsparse const header', HEADER_SIZE, SESPARSE_CONST_HEADER);

/** Volatile header, as qemu's VMDKSESparseVolatileHeader. */
export const SESPARSE_VOLATILE_HEADER = {
  magic: [0, 8],
  freeGtNumber: [8, 8],
  nextTxnSeqNumber: [16, 8],
  replayJournal: [24, 8],
  pad: [32, 480],
} as const;
assertLayout('SEsparse volatile header', HEADER_SIZE, SESPARSE_VOLATILE_HEADER);

/** The constant header's regions, all in sectors. */
export interface SeSparseHeader {
  capacity: number;
  volatileHeaderOffset: number;
  volatileHeaderSize: number;
  grainDirOffset: number;
  grainDirSize: number;
  grainTablesOffset: number;
  grainTablesSize: number;
  grainsOffset: number;
  grainsSize: number;
}

type ConstField = keyof typeof SESPARSE_CONST_HEADER;

/** Decodes and validates the constant header (pure): qemu's checks, then sane region sizes. */
export function parseSeSparseConstHeader(b: Uint8Array, err: Errors): SeSparseHeader {
  if (b.length < HEADER_SIZE) {
    throw err.truncated('VMDK_SESPARSE_HEADER_SHORT', `SEsparse header needs ${HEADER_SIZE} bytes`, { offset: 0 });
  }
  const at = (k: ConstField) => SESPARSE_CONST_HEADER[k][0];
  const raw = (k: ConstField) => u64le(b, at(k));
  const magic = raw('magic');
  if (magic !== SESPARSE_CONST_MAGIC) {
    throw err.corrupt('VMDK_SESPARSE_BAD_MAGIC', `not an SEsparse extent (magic 0x${magic.toString(16)})`, {
      offset: 0,
    });
  }
  const version = raw('version');
  if (version !== SESPARSE_VERSION) {
    throw err.unsupported('VMDK_SESPARSE_VERSION', `SEsparse version 0x${version.toString(16)}`, {
      offset: at('version'),
    });
  }
  const exact = (k: ConstField, want: bigint, code: string, what: string) => {
    const v = raw(k);
    if (v !== want) throw err.unsupported(code, `${what} ${v} (only ${want} is known)`, { offset: at(k) });
  };
  exact('grainSize', BigInt(SESPARSE_GRAIN_SECTORS), 'VMDK_SESPARSE_GRAIN_SIZE', 'grain size in sectors');
  exact('grainTableSize', BigInt(SESPARSE_GT_SECTORS), 'VMDK_SESPARSE_GT_SIZE', 'grain table size in sectors');
  exact('flags', 0n, 'VMDK_SESPARSE_FLAGS', 'flags');
  for (const k of ['reserved1', 'reserved2', 'reserved3', 'reserved4'] as const) {
    exact(k, 0n, 'VMDK_SESPARSE_RESERVED', k);
  }
  const [padAt, padLen] = SESPARSE_CONST_HEADER.pad;
  const nonZero = b.subarray(padAt, padAt + padLen).findIndex((x) => x !== 0);
  if (nonZero >= 0) {
    throw err.unsupported('VMDK_SESPARSE_PADDING', 'non-zero constant header padding', { offset: padAt + nonZero });
  }
  const num = (k: ConstField) => u64leNum(b, at(k), err, 'VMDK_SESPARSE_FIELD', k);
  const h: SeSparseHeader = {
    capacity: num('capacity'),
    volatileHeaderOffset: num('volatileHeaderOffset'),
    volatileHeaderSize: num('volatileHeaderSize'),
    grainDirOffset: num('grainDirOffset'),
    grainDirSize: num('grainDirSize'),
    grainTablesOffset: num('grainTablesOffset'),
    grainTablesSize: num('grainTablesSize'),
    grainsOffset: num('grainsOffset'),
    grainsSize: num('grainsSize'),
  };
  const maxSectors = MAX_DISK_SIZE / SECTOR;
  if (h.capacity === 0 || h.capacity > maxSectors) {
    throw err.limit('VMDK_SESPARSE_CAPACITY', `capacity ${h.capacity} sectors is outside [1, ${maxSectors}]`, {
      offset: at('capacity'),
    });
  }
  checkCount(
    (h.grainDirSize * SECTOR) / 8,
    MAX_GD_ENTRIES,
    err,
    'VMDK_SESPARSE_GD_COUNT',
    'grain directory entries',
    at('grainDirSize'),
  );
  // every region after the constant header, and no region larger than a file we accept can hold
  const regions: [ConstField, ConstField][] = [
    ['volatileHeaderOffset', 'volatileHeaderSize'],
    ['grainDirOffset', 'grainDirSize'],
    ['grainTablesOffset', 'grainTablesSize'],
    ['grainsOffset', 'grainsSize'],
  ];
  for (const [o, s] of regions) {
    const off = num(o);
    const len = num(s);
    if (off < 1 || len < 1 || off > maxSectors || len > maxSectors) {
      throw err.corrupt('VMDK_SESPARSE_REGION', `region ${o}=${off} ${s}=${len} (sectors) is impossible`, {
        offset: at(o),
      });
    }
  }
  return h;
}

/** Validates the volatile header (pure): qemu refuses a journal to replay. */
export function parseSeSparseVolatileHeader(b: Uint8Array, err: Errors, fileOffset: number): void {
  const magic = u64le(b, SESPARSE_VOLATILE_HEADER.magic[0]);
  if (magic !== SESPARSE_VOLATILE_MAGIC) {
    throw err.corrupt('VMDK_SESPARSE_VOLATILE_MAGIC', `bad volatile header magic 0x${magic.toString(16)}`, {
      offset: fileOffset,
    });
  }
  if (u64le(b, SESPARSE_VOLATILE_HEADER.replayJournal[0]) !== 0n) {
    throw err.unsupported('VMDK_SESPARSE_DIRTY', 'the image is dirty: its journal must be replayed first', {
      offset: fileOffset + SESPARSE_VOLATILE_HEADER.replayJournal[0],
    });
  }
  const [padAt, padLen] = SESPARSE_VOLATILE_HEADER.pad;
  const nonZero = b.subarray(padAt, padAt + padLen).findIndex((x) => x !== 0);
  if (nonZero >= 0) {
    throw err.unsupported('VMDK_SESPARSE_PADDING', 'non-zero volatile header padding', {
      offset: fileOffset + padAt + nonZero,
    });
  }
}

/** Opens an SEsparse extent that covers `size` bytes of the virtual disk. */
export function openSeSparseExtent(file: FileSource, size: number): ExtentReader {
  return new SeSparseExtent(file, size);
}

class SeSparseExtent implements ExtentReader {
  readonly type = 'SESPARSE';
  readonly path: string;
  readonly header: SeSparseHeader;
  private readonly err: Errors;
  /** Byte offset of each needed grain table in the file, 0 = absent. */
  private readonly gd: Float64Array;
  private readonly gtCount: number;
  private readonly grainCount: number;
  private readonly gtCache = new GrainTableCache(GT_CACHE_TABLES, (gdIndex) => this.loadTable(gdIndex));
  private readonly geometry: GrainGeometry;

  constructor(
    private readonly file: FileSource,
    readonly size: number,
  ) {
    this.path = file.path;
    const err = errorsFor({ image: file.path, layer: 'vmdk' });
    this.err = err;
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw err.corrupt('VMDK_SESPARSE_EXTENT_SIZE', `extent size ${size} bytes is not a positive integer`, {
        offset: 0,
      });
    }
    if (file.size < HEADER_SIZE) {
      throw err.truncated('VMDK_SESPARSE_HEADER_SHORT', `file of ${file.size} bytes is shorter than a header`, {
        offset: 0,
      });
    }
    const h = parseSeSparseConstHeader(file.read(0, HEADER_SIZE, 'SEsparse constant header'), err);
    this.header = h;
    const at = (k: ConstField) => SESPARSE_CONST_HEADER[k][0];
    if (h.capacity * SECTOR < size) {
      throw err.corrupt(
        'VMDK_SESPARSE_CAPACITY',
        `capacity ${h.capacity} sectors is smaller than the descriptor's extent (${size} bytes)`,
        { offset: at('capacity'), capacity: h.capacity, extentSize: size },
      );
    }

    const vhOffset = h.volatileHeaderOffset * SECTOR;
    checkRange(
      vhOffset,
      HEADER_SIZE,
      file.size,
      err,
      'VMDK_SESPARSE_VOLATILE_PAST_EOF',
      'volatile header',
      at('volatileHeaderOffset'),
    );
    parseSeSparseVolatileHeader(file.read(vhOffset, HEADER_SIZE, 'SEsparse volatile header'), err, vhOffset);

    this.gtCount = Math.floor(h.grainTablesSize / SESPARSE_GT_SECTORS);
    this.grainCount = Math.floor(h.grainsSize / SESPARSE_GRAIN_SECTORS);
    const needed = Math.ceil(size / GT_COVER);
    const gdEntries = (h.grainDirSize * SECTOR) / 8;
    if (gdEntries < needed) {
      throw err.corrupt(
        'VMDK_SESPARSE_GD_TOO_SMALL',
        `grain directory has ${gdEntries} entries, ${needed} are needed to cover ${size} bytes`,
        { offset: at('grainDirSize') },
      );
    }
    const gdOffset = h.grainDirOffset * SECTOR;
    checkRange(
      gdOffset,
      needed * 8,
      file.size,
      err,
      'VMDK_SESPARSE_GD_PAST_EOF',
      'grain directory',
      at('grainDirOffset'),
    );
    const raw = file.read(gdOffset, needed * 8, 'SEsparse grain directory');
    this.gd = new Float64Array(needed);
    for (let i = 0; i < needed; i++) {
      const lo = u32le(raw, i * 8);
      const hi = u32le(raw, i * 8 + 4);
      const entryAt = gdOffset + i * 8;
      if (lo === 0 && hi === 0) {
        continue;
      }
      if (hi !== GD_ALLOCATED_HIGH) {
        throw err.corrupt(
          'VMDK_SESPARSE_GD_ENTRY',
          `grain directory entry ${i} is 0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')}`,
          {
            offset: entryAt,
          },
        );
      }
      const gtSector = h.grainTablesOffset + lo * SESPARSE_GT_SECTORS;
      // qemu keeps grain table positions in 32 bits of sectors
      if (lo >= this.gtCount || gtSector > 0xffffffff) {
        throw err.corrupt('VMDK_SESPARSE_GT_INDEX', `grain table index ${lo} outside the ${this.gtCount} tables`, {
          offset: entryAt,
        });
      }
      checkRange(
        gtSector * SECTOR,
        GT_BYTES,
        file.size,
        err,
        'VMDK_SESPARSE_GT_PAST_EOF',
        `grain table ${lo}`,
        entryAt,
      );
      this.gd[i] = gtSector * SECTOR;
    }
    this.geometry = {
      size,
      grainBytes: GRAIN_BYTES,
      gtCover: GT_COVER,
      gd: this.gd,
      dataStep: 1,
      grain: (gdIndex, index) => this.grain(gdIndex, index),
    };
  }

  span(offset: number, maxLength: number): ExtentSpan {
    const run = grainRun(this.geometry, this.err, offset, maxLength);
    if (run.kind !== 'data') return run;
    // a data run: clusters first…last follow each other in the grain region
    const { length, first, last, gdIndex, index } = run;
    const fileOffset = this.header.grainsOffset * SECTOR + first * GRAIN_BYTES + (offset % GRAIN_BYTES);
    if (fileOffset + length > this.file.size) {
      throw this.err.corrupt(
        'VMDK_SESPARSE_GRAIN_PAST_EOF',
        `grain cluster ${last} (virtual offset ${offset}) lies past the end of the file (${this.file.size} bytes)`,
        { offset: (this.gd[gdIndex] ?? 0) + index * 8, fileOffset, length },
      );
    }
    return { kind: 'data', length, file: this.file, fileOffset };
  }

  /**
   * Decodes entry `index` of grain table `gdIndex` (qemu get_cluster_offset):
   * GRAIN_ABSENT, GRAIN_ZERO or the grain's cluster index in the grain region.
   */
  private grain(gdIndex: number, index: number): number {
    const gt = this.gtCache.get(gdIndex);
    const lo = gt[index * 2] ?? 0;
    const hi = gt[index * 2 + 1] ?? 0;
    const entryAt = (this.gd[gdIndex] ?? 0) + index * 8;
    switch (hi >>> 28) {
      case 0:
        if (lo !== 0 || hi !== 0) {
          throw this.err.corrupt('VMDK_SESPARSE_GT_ENTRY', 'unallocated grain entry with non-zero bits', {
            offset: entryAt,
          });
        }
        return GRAIN_ABSENT;
      case 1: // SCSI-unmapped: qemu reads zeros, not the parent
      case 2:
        return GRAIN_ZERO;
      case 3: {
        // cluster = bits 48..59 | bits 0..47 << 12; check the high part before it can overflow
        const high = (hi & 0xffff) * 0x100000000 + lo;
        const cluster = high * 4096 + ((hi >>> 16) & 0xfff);
        if (high >= Math.ceil(this.grainCount / 4096) || cluster >= this.grainCount) {
          throw this.err.corrupt(
            'VMDK_SESPARSE_GRAIN_INDEX',
            `grain entry 0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')} points outside the ${this.grainCount} grains of the grain region`,
            { offset: entryAt },
          );
        }
        return cluster;
      }
      default:
        throw this.err.corrupt('VMDK_SESPARSE_GT_ENTRY', `grain entry type ${hi >>> 28} is unknown`, {
          offset: entryAt,
        });
    }
  }

  /** Reads the grain table behind GD entry `gdIndex`, as little-endian u32 pairs (lo, hi). */
  private loadTable(gdIndex: number): Uint32Array {
    const raw = this.file.read(this.gd[gdIndex] ?? 0, GT_BYTES, 'SEsparse grain table');
    const gt = new Uint32Array(SESPARSE_GT_ENTRIES * 2);
    for (let i = 0; i < gt.length; i++) gt[i] = u32le(raw, i * 4);
    return gt;
  }

  close(): void {
    this.gtCache.clear();
    this.file.close();
  }
}
