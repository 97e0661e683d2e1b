/**
 * A hosted monolithicSparse VMDK (one "KDMV" file), laid out as VMware and
 * qemu write it: the 512-byte header, the embedded descriptor (20 sectors, so
 * the patcher can rewrite it in place), the redundant grain directory and its
 * grain tables, the grain directory and its grain tables, then the grains.
 * Every grain table is preallocated (VMware expects every GD entry set) but
 * only tables that map something are written: the others stay holes of the
 * file and read as "not allocated". Grains (64 KiB) are allocated at the end
 * of the file in the order they are first written; unwritten grains stay
 * unallocated (GTE 0).
 *
 * Spec: VMware "Virtual Disk Format 5.0" (Hosted Sparse Extent Header), libyal
 * libvmdk "VMware Virtual Disk (VMDK) format", qemu block/vmdk.c
 * (vmdk_init_extent); the reader is parsers/disk/vmdk/sparse.ts.
 */
import type { FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import {
  FLAG_NEWLINE_TEST,
  FLAG_REDUNDANT_GT,
  SPARSE_HEADER,
  SPARSE_HEADER_SIZE,
  SPARSE_MAGIC,
} from '../../../parsers/disk/vmdk/sparse.js';
import { readUnits, SparseMap, writeUnits } from './sparse-map.js';
import {
  checkWrite,
  DEFAULT_ADAPTER,
  type DiskWriter,
  OutputFiles,
  SECTOR,
  vmdkDescriptor,
  readAllAt,
  writeAllAt,
  writerErrors,
  type WriterOptions,
} from './types.js';

export const GRAIN_SECTORS = 128;
const GRAIN_BYTES = GRAIN_SECTORS * SECTOR;
export const GTES_PER_GT = 512;
const GTE_BYTES = 4;
const GT_SECTORS = (GTES_PER_GT * GTE_BYTES) / SECTOR;
export const DESCRIPTOR_OFFSET_SECTORS = 1;
export const DESCRIPTOR_SECTORS = 20;
const SPARSE_VERSION = 1;
/** "\n \r\n": lets a reader detect a file mangled by a text-mode transfer. */
const NEWLINE_CHARS = [0x0a, 0x20, 0x0d, 0x0a];
/** A GTE holds a sector number in 32 bits: the file cannot grow past 2 TiB, so neither can the disk. */
const MAX_FILE_SECTORS = 0xffffffff;

export class VmdkSparseWriter implements DiskWriter {
  readonly format = 'vmdk-sparse' as const;
  readonly files: readonly string[];
  private readonly out = new OutputFiles();
  private fh: FileHandle | undefined;
  private readonly capacitySectors: number;
  private readonly gtCount: number;
  private readonly gdSectors: number;
  private readonly rgdOffset: number;
  private readonly gdOffset: number;
  private readonly overHead: number;
  private readonly grains = new SparseMap(GRAIN_BYTES, GTES_PER_GT);
  /** Sector where the next new grain goes. */
  private nextGrain: number;

  private constructor(
    private readonly path: string,
    readonly size: number,
    private readonly adapterType: string,
  ) {
    this.files = [path];
    this.capacitySectors = Math.ceil(size / SECTOR);
    const grainCount = Math.ceil(this.capacitySectors / GRAIN_SECTORS);
    this.gtCount = Math.max(1, Math.ceil(grainCount / GTES_PER_GT));
    this.gdSectors = Math.ceil((this.gtCount * GTE_BYTES) / SECTOR);
    this.rgdOffset = DESCRIPTOR_OFFSET_SECTORS + DESCRIPTOR_SECTORS;
    this.gdOffset = this.rgdOffset + this.gdSectors + this.gtCount * GT_SECTORS;
    const end = this.gdOffset + this.gdSectors + this.gtCount * GT_SECTORS;
    this.overHead = Math.ceil(end / GRAIN_SECTORS) * GRAIN_SECTORS;
    this.nextGrain = this.overHead;
    if (this.overHead + grainCount * GRAIN_SECTORS > MAX_FILE_SECTORS) {
      throw writerErrors(path).limit('VMDK_SPARSE_TOO_BIG', `a ${size}-byte disk does not fit a sparse VMDK (2 TiB)`);
    }
  }

  static async create(path: string, size: number, opts: WriterOptions): Promise<VmdkSparseWriter> {
    const w = new VmdkSparseWriter(path, size, opts.adapterType ?? DEFAULT_ADAPTER);
    w.fh = await w.out.add(path, opts.overwrite);
    return w;
  }

  async write(offset: number, bytes: Uint8Array): Promise<void> {
    checkWrite(this.path, this.size, offset, bytes.byteLength);
    const fh = this.fh;
    if (!fh) throw writerErrors(this.path).unsupported('RESTORE_VM_CLOSED', 'write to a closed disk');
    await writeUnits(
      offset,
      bytes,
      GRAIN_BYTES,
      (grain) => {
        let sector = this.grains.get(grain);
        if (sector === 0) {
          sector = this.nextGrain;
          this.nextGrain += GRAIN_SECTORS;
          this.grains.set(grain, sector);
        }
        return sector * SECTOR;
      },
      (pos, b) => writeAllAt(fh, this.path, b, pos),
    );
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkWrite(this.path, this.size, offset, length);
    const fh = this.fh;
    if (!fh) throw writerErrors(this.path).unsupported('RESTORE_VM_CLOSED', 'read of a closed disk');
    return readUnits(
      offset,
      length,
      GRAIN_BYTES,
      (u) => {
        const at = this.grains.get(u);
        return at === 0 ? -1 : at * SECTOR;
      },
      (pos, into) => readAllAt(fh, this.path, into, pos),
    );
  }

  private header(): Buffer {
    const b = Buffer.alloc(SPARSE_HEADER_SIZE);
    const f = SPARSE_HEADER;
    b.writeUInt32LE(SPARSE_MAGIC, f.magic[0]);
    b.writeUInt32LE(SPARSE_VERSION, f.version[0]);
    b.writeUInt32LE(FLAG_NEWLINE_TEST | FLAG_REDUNDANT_GT, f.flags[0]);
    b.writeBigUInt64LE(BigInt(this.capacitySectors), f.capacity[0]);
    b.writeBigUInt64LE(BigInt(GRAIN_SECTORS), f.grainSize[0]);
    b.writeBigUInt64LE(BigInt(DESCRIPTOR_OFFSET_SECTORS), f.descriptorOffset[0]);
    b.writeBigUInt64LE(BigInt(DESCRIPTOR_SECTORS), f.descriptorSize[0]);
    b.writeUInt32LE(GTES_PER_GT, f.numGTEsPerGT[0]);
    b.writeBigUInt64LE(BigInt(this.rgdOffset), f.rgdOffset[0]);
    b.writeBigUInt64LE(BigInt(this.gdOffset), f.gdOffset[0]);
    b.writeBigUInt64LE(BigInt(this.overHead), f.overHead[0]);
    NEWLINE_CHARS.forEach((c, i) => b.writeUInt8(c, f.newlineChars[0] + i));
    return b;
  }

  /** A grain directory whose first table starts right after it. */
  private directory(gdSector: number): Buffer {
    const b = Buffer.alloc(this.gdSectors * SECTOR);
    const first = gdSector + this.gdSectors;
    for (let i = 0; i < this.gtCount; i++) b.writeUInt32LE(first + i * GT_SECTORS, i * GTE_BYTES);
    return b;
  }

  async finish(): Promise<void> {
    const fh = this.fh;
    if (!fh) throw writerErrors(this.path).unsupported('RESTORE_VM_CLOSED', 'finish twice');
    const text = vmdkDescriptor({
      createType: 'monolithicSparse',
      capacitySectors: this.capacitySectors,
      extent: basename(this.path),
      extentType: 'SPARSE',
      adapterType: this.adapterType,
    });
    const desc = Buffer.from(text, 'utf8');
    if (desc.length > DESCRIPTOR_SECTORS * SECTOR) {
      throw writerErrors(this.path).limit('VMDK_DESCRIPTOR_TOO_BIG', `descriptor of ${desc.length} bytes`);
    }
    // the file covers every grain whole, and at least the metadata
    await fh.truncate(this.nextGrain * SECTOR);
    for (const gd of [this.rgdOffset, this.gdOffset]) {
      await writeAllAt(fh, this.path, this.directory(gd), gd * SECTOR);
      const firstGt = gd + this.gdSectors;
      for (const [t, table] of this.grains.entries()) {
        const b = Buffer.alloc(GT_SECTORS * SECTOR);
        table.forEach((sector, i) => b.writeUInt32LE(sector, i * GTE_BYTES));
        await writeAllAt(fh, this.path, b, (firstGt + t * GT_SECTORS) * SECTOR);
      }
    }
    await writeAllAt(fh, this.path, desc, DESCRIPTOR_OFFSET_SECTORS * SECTOR);
    // the header last: a file cut short before this point is not a VMDK at all
    await writeAllAt(fh, this.path, this.header(), 0);
    this.fh = undefined;
    await this.out.syncAndClose();
  }

  abort(): Promise<void> {
    this.fh = undefined;
    return this.out.removeAll(this.files);
  }
}
