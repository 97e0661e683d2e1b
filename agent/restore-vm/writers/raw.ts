/**
 * A raw disk image: a sparse file of the disk's size where every written
 * range sits at its own offset; what is never written stays a hole.
 */
import type { FileHandle } from 'node:fs/promises';
import {
  checkWrite,
  type DiskWriter,
  OutputFiles,
  readAllAt,
  writeAllAt,
  writerErrors,
  type WriterOptions,
} from './types.js';

/** The raw file under another writer (vmdk-flat's extent is one). */
export class RawFile {
  private fh: FileHandle | undefined;
  constructor(
    readonly path: string,
    readonly size: number,
    private readonly files: OutputFiles,
  ) {}

  async open(overwrite: boolean, length: number): Promise<void> {
    this.fh = await this.files.add(this.path, overwrite);
    try {
      // the whole length at once: a hole where nothing is written
      await this.fh.truncate(length);
    } catch (e) {
      throw writerErrors(this.path).io('RESTORE_VM_TRUNCATE', `cannot size to ${length}: ${(e as Error).message}`);
    }
  }

  async write(offset: number, bytes: Uint8Array): Promise<void> {
    checkWrite(this.path, this.size, offset, bytes.byteLength);
    if (!this.fh) throw writerErrors(this.path).unsupported('RESTORE_VM_CLOSED', 'write to a closed disk');
    await writeAllAt(this.fh, this.path, bytes, offset);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkWrite(this.path, this.size, offset, length);
    if (!this.fh) throw writerErrors(this.path).unsupported('RESTORE_VM_CLOSED', 'read of a closed disk');
    const b = Buffer.alloc(length);
    await readAllAt(this.fh, this.path, b, offset);
    return b;
  }
}

export class RawWriter implements DiskWriter {
  readonly format = 'raw' as const;
  readonly files: readonly string[];
  private readonly out = new OutputFiles();
  private readonly raw: RawFile;

  private constructor(
    path: string,
    readonly size: number,
  ) {
    this.files = [path];
    this.raw = new RawFile(path, size, this.out);
  }

  static async create(path: string, size: number, opts: WriterOptions): Promise<RawWriter> {
    const w = new RawWriter(path, size);
    await w.raw.open(opts.overwrite, size);
    return w;
  }

  write(offset: number, bytes: Uint8Array): Promise<void> {
    return this.raw.write(offset, bytes);
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.raw.read(offset, length);
  }

  finish(): Promise<void> {
    return this.out.syncAndClose();
  }

  abort(): Promise<void> {
    return this.out.removeAll(this.files);
  }
}
