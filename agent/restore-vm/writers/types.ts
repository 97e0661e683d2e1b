/**
 * A rebuilt disk's output format behind one small interface: the rebuild
 * hands a writer the stored ranges of a disk (in any order, never
 * overlapping) and the writer lays them out. What is never written stays a
 * hole: unallocated grains/clusters in sparse formats, a sparse range of a
 * raw file.
 */
import { constants as FS } from 'node:fs';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { errorsFor, type Errors, isVdbakError } from '../../../parsers/errors.js';

export const DISK_FORMATS = ['vmdk-sparse', 'vmdk-flat', 'qcow2', 'raw'] as const;
export type DiskFormat = (typeof DISK_FORMATS)[number];

export const SECTOR = 512;

export interface DiskWriter {
  readonly format: DiskFormat;
  /** Virtual size in bytes. */
  readonly size: number;
  /** Every file the writer creates, absolute; the first is the one a VM's configuration names. */
  readonly files: readonly string[];
  /** Writes `bytes` at virtual disk offset `offset` (inside the disk). */
  write(offset: number, bytes: Uint8Array): Promise<void>;
  /** Reads back what was written (zeros where nothing was), to check bytes stored twice. */
  read(offset: number, length: number): Promise<Buffer>;
  /** Writes the format's tables, makes everything durable and closes the files. */
  finish(): Promise<void>;
  /** Closes and removes every file written so far (after a failure). */
  abort(): Promise<void>;
}

export interface WriterOptions {
  /** Replace existing files; without it an existing file is an error (O_EXCL). */
  overwrite: boolean;
  /** VMDK ddb.adapterType ("lsilogic", "ide", "pvscsi" …); VMware picks the geometry from it. */
  adapterType?: string;
}

export function isDiskFormat(s: string): s is DiskFormat {
  return (DISK_FORMATS as readonly string[]).includes(s);
}

/** The file name extension of the file a VM's configuration names. */
export function formatExtension(format: DiskFormat): string {
  return format === 'qcow2' ? '.qcow2' : format === 'raw' ? '.raw' : '.vmdk';
}

/** Base names of every file a format writes for a disk called `stem` (the first is the one to configure). */
export function formatFileNames(format: DiskFormat, stem: string): string[] {
  if (format === 'vmdk-flat') return [`${stem}.vmdk`, `${stem}-flat.vmdk`];
  return [`${stem}${formatExtension(format)}`];
}

export function writerErrors(path: string): Errors {
  return errorsFor({ image: path, layer: 'restore' });
}

/**
 * Opens a new output file for writing. O_NOFOLLOW: a symlink planted in the
 * destination is never followed; O_EXCL unless overwriting.
 */
export async function openOutput(path: string, overwrite: boolean): Promise<FileHandle> {
  const flags = FS.O_RDWR | FS.O_CREAT | FS.O_NOFOLLOW | (overwrite ? FS.O_TRUNC : FS.O_EXCL);
  try {
    return await open(path, flags, 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      throw writerErrors(path).unsupported('RESTORE_VM_EXISTS', `${path} exists (use --overwrite)`);
    }
    throw writerErrors(path).io('RESTORE_VM_OPEN', `cannot create: ${(e as Error).message}`, { errno: code });
  }
}

export async function writeAllAt(fh: FileHandle, path: string, bytes: Uint8Array, position: number): Promise<void> {
  let off = 0;
  try {
    while (off < bytes.byteLength) {
      const { bytesWritten } = await fh.write(bytes, off, bytes.byteLength - off, position + off);
      if (bytesWritten === 0) throw new Error('wrote 0 bytes');
      off += bytesWritten;
    }
  } catch (e) {
    if (isVdbakError(e)) throw e;
    throw writerErrors(path).io(
      'RESTORE_VM_WRITE',
      `write of ${bytes.byteLength} bytes failed: ${(e as Error).message}`,
      {
        offset: position + off,
        errno: (e as NodeJS.ErrnoException).code,
      },
    );
  }
}

export async function readAllAt(fh: FileHandle, path: string, into: Buffer, position: number): Promise<void> {
  let off = 0;
  try {
    while (off < into.length) {
      const { bytesRead } = await fh.read(into, off, into.length - off, position + off);
      if (bytesRead === 0) break; // past the end: the rest stays zeros
      off += bytesRead;
    }
  } catch (e) {
    throw writerErrors(path).io(
      'RESTORE_VM_READ',
      `read back of ${into.length} bytes failed: ${(e as Error).message}`,
      {
        offset: position + off,
      },
    );
  }
}

/** Refuses a write outside the virtual disk (the rebuild checks first; this is the writer's own guard). */
export function checkWrite(path: string, size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || offset + length > size) {
    throw writerErrors(path).corrupt(
      'REBUILD_OUT_OF_DISK',
      `a write of ${length} bytes at ${offset} falls outside the ${size}-byte disk`,
      { offset },
    );
  }
}

/** Files opened by a writer, closed and removed together on abort. */
export class OutputFiles {
  private readonly open: { path: string; fh: FileHandle }[] = [];

  async add(path: string, overwrite: boolean): Promise<FileHandle> {
    const fh = await openOutput(path, overwrite);
    this.open.push({ path, fh });
    return fh;
  }

  async syncAndClose(): Promise<void> {
    for (const f of this.open) {
      try {
        await f.fh.sync();
        await f.fh.close();
      } catch (e) {
        throw writerErrors(f.path).io('RESTORE_VM_SYNC', `cannot make durable: ${(e as Error).message}`);
      }
    }
    this.open.length = 0;
  }

  async removeAll(paths: readonly string[]): Promise<void> {
    for (const f of this.open) await f.fh.close().catch(() => undefined);
    this.open.length = 0;
    for (const p of paths) await rm(p, { force: true }).catch(() => undefined);
  }
}

/** A VMDK descriptor's geometry for an adapter: VMware checks cylinders × heads × sectors against the capacity. */
export function vmdkGeometry(capacitySectors: number, adapterType: string): { c: number; h: number; s: number } {
  const ide = adapterType === 'ide';
  const h = ide ? 16 : 255;
  const s = 63;
  const c = Math.min(Math.floor(capacitySectors / (h * s)), ide ? 16383 : 65535);
  return { c, h, s };
}

/** A fresh content id for a descriptor (the patcher may regenerate it). */
export function randomCid(): string {
  let cid = 0;
  while (cid === 0 || cid === 0xffffffff) cid = Math.floor(Math.random() * 0x100000000);
  return cid.toString(16).padStart(8, '0');
}

/** A VMDK text descriptor for a single extent. */
export function vmdkDescriptor(o: {
  createType: string;
  capacitySectors: number;
  extent: string;
  extentType: 'SPARSE' | 'FLAT';
  adapterType: string;
}): string {
  const g = vmdkGeometry(o.capacitySectors, o.adapterType);
  const extentLine = `RW ${o.capacitySectors} ${o.extentType} "${o.extent}"${o.extentType === 'FLAT' ? ' 0' : ''}`;
  return [
    '# Disk DescriptorFile',
    'version=1',
    'encoding="UTF-8"',
    `CID=${randomCid()}`,
    'parentCID=ffffffff',
    `createType="${o.createType}"`,
    '',
    '# Extent description',
    extentLine,
    '',
    '# The Disk Data Base',
    '#DDB',
    '',
    'ddb.virtualHWVersion = "4"',
    `ddb.geometry.cylinders = "${g.c}"`,
    `ddb.geometry.heads = "${g.h}"`,
    `ddb.geometry.sectors = "${g.s}"`,
    `ddb.adapterType = "${o.adapterType}"`,
    '',
  ].join('\n');
}

export const DEFAULT_ADAPTER = 'lsilogic';
