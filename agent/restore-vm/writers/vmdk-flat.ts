/**
 * A hosted flat VMDK: a text descriptor (`NAME.vmdk`) and one raw extent
 * (`NAME-flat.vmdk`), sparse on the host filesystem. VMware takes a flat
 * extent only in whole sectors: the extent is the disk rounded up to 512.
 */
import type { FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { RawFile } from './raw.js';
import {
  DEFAULT_ADAPTER,
  type DiskWriter,
  OutputFiles,
  SECTOR,
  vmdkDescriptor,
  writeAllAt,
  writerErrors,
  type WriterOptions,
} from './types.js';

export class VmdkFlatWriter implements DiskWriter {
  readonly format = 'vmdk-flat' as const;
  readonly files: readonly string[];
  private readonly out = new OutputFiles();
  private readonly extent: RawFile;
  private readonly capacitySectors: number;
  private descriptor: FileHandle | undefined;

  private constructor(
    private readonly descriptorPath: string,
    extentPath: string,
    readonly size: number,
    private readonly adapterType: string,
  ) {
    this.files = [descriptorPath, extentPath];
    this.extent = new RawFile(extentPath, size, this.out);
    this.capacitySectors = Math.ceil(size / SECTOR);
  }

  /** `descriptorPath` is NAME.vmdk; the extent is NAME-flat.vmdk beside it. */
  static async create(descriptorPath: string, size: number, opts: WriterOptions): Promise<VmdkFlatWriter> {
    const extentPath = descriptorPath.replace(/\.vmdk$/, '') + '-flat.vmdk';
    const w = new VmdkFlatWriter(descriptorPath, extentPath, size, opts.adapterType ?? DEFAULT_ADAPTER);
    // the descriptor is claimed first (O_EXCL), so an existing one is refused before any extent byte
    w.descriptor = await w.out.add(descriptorPath, opts.overwrite);
    await w.extent.open(opts.overwrite, w.capacitySectors * SECTOR);
    return w;
  }

  write(offset: number, bytes: Uint8Array): Promise<void> {
    return this.extent.write(offset, bytes);
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.extent.read(offset, length);
  }

  async finish(): Promise<void> {
    const text = vmdkDescriptor({
      createType: 'monolithicFlat',
      capacitySectors: this.capacitySectors,
      extent: basename(this.files[1]!),
      extentType: 'FLAT',
      adapterType: this.adapterType,
    });
    if (!this.descriptor) throw writerErrors(this.descriptorPath).unsupported('RESTORE_VM_CLOSED', 'finish twice');
    await writeAllAt(this.descriptor, this.descriptorPath, Buffer.from(text, 'utf8'), 0);
    await this.out.syncAndClose();
  }

  abort(): Promise<void> {
    return this.out.removeAll(this.files);
  }
}
