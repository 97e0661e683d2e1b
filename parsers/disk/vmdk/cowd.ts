/**
 * ESX "COWD" sparse extent (createType "vmfsSparse", extent type VMFSSPARSE):
 * the snapshot delta ("-delta.vmdk") of ESX/ESXi before 6.5.
 *
 * Layout: a 2048-byte header ("COWD", version 1, 32-bit little-endian fields
 * counted in 512-byte sectors), a grain directory (GD) of 32-bit sector
 * offsets of grain tables (GT), each GT holding 4096 32-bit sector offsets of
 * grains. A GD or GT entry of 0 means "not in this delta": read the parent.
 * There is no zero-grain marker in COWD.
 *
 * Specs: libyal libvmdk "VMWare Virtual Disk Format (VMDK)", section "The
 * COWD sparse extent data file"; qemu block/vmdk.c (VMDK3Header,
 * vmdk_open_vmfs_sparse, get_cluster_offset).
 */
import { assertLayout, checkCount, checkRange, u32le } from '../../bytes.js';
import { type Errors, errorsFor } from '../../errors.js';
import type { FileSource } from '../file.js';
import type { ExtentReader, ExtentSpan } from './extent.js';
import { GRAIN_ABSENT, type GrainGeometry, GrainTableCache, grainRun } from './grain-spans.js';

export const COWD_MAGIC = 0x44574f43; // "COWD" read as a little-endian u32
export const COWD_VERSION = 1;
export const COWD_HEADER_SIZE = 2048;
/** Grain table entries per grain table (fixed in COWD). */
export const COWD_GT_ENTRIES = 4096;
const SECTOR = 512;
const GT_BYTES = COWD_GT_ENTRIES * 4;
/** qemu refuses grains over 0x200000 sectors (1 GiB). */
const MAX_GRAIN_SECTORS = 0x200000;
/** qemu's cap on grain directory entries (32 Mi). */
const MAX_GD_ENTRIES = 32 * 1024 * 1024;
/** Grain tables kept decoded at once (16 KiB each). */
const GT_CACHE_TABLES = 64;

/** Header fields: [offset, size] in bytes (libyal; qemu's VMDK3Header follows the magic). */
export const COWD_HEADER = {
  magic: [0, 4],
  version: [4, 4],
  flags: [8, 4],
  numSectors: [12, 4],
  grainSize: [16, 4],
  gdOffset: [20, 4],
  numGDEntries: [24, 4],
  freeSector: [28, 4],
} as const;
assertLayout('COWD header', COWD_HEADER_SIZE, COWD_HEADER);

export interface CowdHeader {
  version: number;
  flags: number;
  /** Virtual size of the extent in sectors. */
  numSectors: number;
  /** Grain size in sectors. */
  grainSectors: number;
  /** Grain directory position in sectors. */
  gdSector: number;
  numGDEntries: number;
  freeSector: number;
}

/** Decodes and validates the 2048-byte COWD header (pure). */
export function parseCowdHeader(b: Uint8Array, err: Errors): CowdHeader {
  if (b.length < COWD_HEADER_SIZE) {
    throw err.truncated('VMDK_COWD_HEADER_SHORT', `COWD header needs ${COWD_HEADER_SIZE} bytes, got ${b.length}`, {
      offset: 0,
    });
  }
  const f = (k: keyof typeof COWD_HEADER) => u32le(b, COWD_HEADER[k][0]);
  const magic = f('magic');
  if (magic !== COWD_MAGIC) {
    throw err.corrupt('VMDK_COWD_BAD_MAGIC', `not a COWD extent (magic 0x${magic.toString(16)})`, { offset: 0 });
  }
  const h: CowdHeader = {
    version: f('version'),
    flags: f('flags'),
    numSectors: f('numSectors'),
    grainSectors: f('grainSize'),
    gdSector: f('gdOffset'),
    numGDEntries: f('numGDEntries'),
    freeSector: f('freeSector'),
  };
  if (h.version !== COWD_VERSION) {
    throw err.unsupported('VMDK_COWD_VERSION', `COWD version ${h.version} (only ${COWD_VERSION} is known)`, {
      offset: COWD_HEADER.version[0],
    });
  }
  if (h.grainSectors === 0 || h.grainSectors > MAX_GRAIN_SECTORS) {
    throw err.corrupt(
      'VMDK_COWD_GRAIN_SIZE',
      `grain size ${h.grainSectors} sectors is outside [1, ${MAX_GRAIN_SECTORS}]`,
      {
        offset: COWD_HEADER.grainSize[0],
      },
    );
  }
  if (h.numSectors === 0) {
    throw err.corrupt('VMDK_COWD_CAPACITY', 'COWD capacity is 0 sectors', { offset: COWD_HEADER.numSectors[0] });
  }
  checkCount(
    h.numGDEntries,
    MAX_GD_ENTRIES,
    err,
    'VMDK_COWD_GD_COUNT',
    'grain directory entries',
    COWD_HEADER.numGDEntries[0],
  );
  if (h.gdSector * SECTOR < COWD_HEADER_SIZE) {
    throw err.corrupt('VMDK_COWD_GD_OFFSET', `grain directory at sector ${h.gdSector} overlaps the header`, {
      offset: COWD_HEADER.gdOffset[0],
    });
  }
  return h;
}

/** Opens a COWD extent that covers `size` bytes of the virtual disk. */
export function openCowdExtent(file: FileSource, size: number): ExtentReader {
  return new CowdExtent(file, size);
}

class CowdExtent implements ExtentReader {
  readonly type = 'VMFSSPARSE';
  readonly path: string;
  readonly header: CowdHeader;
  private readonly err: Errors;
  private readonly grainBytes: number;
  private readonly gtCover: number;
  /** Byte offset of each needed grain table in the file, 0 = absent. */
  private readonly gd: Float64Array;
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
      throw err.corrupt('VMDK_COWD_EXTENT_SIZE', `extent size ${size} bytes is not a positive integer`, { offset: 0 });
    }
    if (file.size < COWD_HEADER_SIZE) {
      throw err.truncated('VMDK_COWD_HEADER_SHORT', `file of ${file.size} bytes is shorter than a COWD header`, {
        offset: 0,
      });
    }
    const h = parseCowdHeader(file.read(0, COWD_HEADER_SIZE, 'COWD header'), err);
    this.header = h;
    if (h.numSectors * SECTOR < size) {
      throw err.corrupt(
        'VMDK_COWD_CAPACITY',
        `COWD capacity ${h.numSectors} sectors is smaller than the descriptor's extent (${size} bytes)`,
        { offset: COWD_HEADER.numSectors[0], capacity: h.numSectors, extentSize: size },
      );
    }
    this.grainBytes = h.grainSectors * SECTOR;
    this.gtCover = COWD_GT_ENTRIES * this.grainBytes;
    const needed = Math.ceil(size / this.gtCover);
    if (h.numGDEntries < needed) {
      throw err.corrupt(
        'VMDK_COWD_GD_TOO_SMALL',
        `grain directory has ${h.numGDEntries} entries, ${needed} are needed to cover ${size} bytes`,
        { offset: COWD_HEADER.numGDEntries[0] },
      );
    }
    const gdOffset = h.gdSector * SECTOR;
    checkRange(
      gdOffset,
      needed * 4,
      file.size,
      err,
      'VMDK_COWD_GD_PAST_EOF',
      'grain directory',
      COWD_HEADER.gdOffset[0],
    );
    const raw = file.read(gdOffset, needed * 4, 'COWD grain directory');
    this.gd = new Float64Array(needed);
    for (let i = 0; i < needed; i++) {
      const gtSector = u32le(raw, i * 4);
      const gtOffset = gtSector * SECTOR;
      if (gtSector !== 0) {
        checkRange(gtOffset, GT_BYTES, file.size, err, 'VMDK_COWD_GT_PAST_EOF', `grain table ${i}`, gdOffset + i * 4);
      }
      this.gd[i] = gtOffset;
    }
    this.geometry = {
      size,
      grainBytes: this.grainBytes,
      gtCover: this.gtCover,
      gd: this.gd,
      dataStep: h.grainSectors,
      grain: (gdIndex, index) => this.grain(gdIndex, index),
    };
  }

  span(offset: number, maxLength: number): ExtentSpan {
    const run = grainRun(this.geometry, this.err, offset, maxLength);
    if (run.kind !== 'data') return run;
    const { length, first, last, gdIndex, index } = run;
    const fileOffset = first * SECTOR + (offset % this.grainBytes);
    if (fileOffset + length > this.file.size) {
      throw this.err.corrupt(
        'VMDK_COWD_GRAIN_PAST_EOF',
        `grain at sector ${last} (virtual offset ${offset}) lies past the end of the file (${this.file.size} bytes)`,
        { offset: (this.gd[gdIndex] ?? 0) + index * 4, fileOffset, length },
      );
    }
    return { kind: 'data', length, file: this.file, fileOffset };
  }

  /** Entry `index` of grain table `gdIndex`: the grain's sector, 0 = absent. */
  private grain(gdIndex: number, index: number): number {
    const sector = this.gtCache.get(gdIndex)[index] ?? 0;
    return sector === 0 ? GRAIN_ABSENT : sector;
  }

  /** Reads and decodes the grain table behind GD entry `gdIndex` (present). */
  private loadTable(gdIndex: number): Uint32Array {
    const raw = this.file.read(this.gd[gdIndex] ?? 0, GT_BYTES, 'COWD grain table');
    const gt = new Uint32Array(COWD_GT_ENTRIES);
    for (let i = 0; i < COWD_GT_ENTRIES; i++) gt[i] = u32le(raw, i * 4);
    return gt;
  }

  close(): void {
    this.gtCache.clear();
    this.file.close();
  }
}
