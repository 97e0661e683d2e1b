/**
 * A raw (flat) image: the file is the device. Holes in a sparse file are not
 * visible through read(2); SEEK_DATA is not exposed by Node, so the whole file
 * is reported as allocated.
 */
import { type ByteRange, checkRead } from '../blockdevice.js';
import { FileSource } from './file.js';
import type { DiskFormat, DiskImage } from './types.js';

export class RawImage implements DiskImage {
  readonly format = 'raw';
  readonly size: number;
  readonly name: string;
  readonly chain;
  private readonly file: FileSource;

  constructor(path: string) {
    this.file = new FileSource(path, 'raw');
    this.size = this.file.size;
    this.name = path;
    this.chain = [{ path, format: 'raw', files: [path] }];
  }
  read(offset: number, length: number): Buffer {
    checkRead(this, offset, length, 'raw');
    return this.file.read(offset, length);
  }
  allocated(offset: number, length: number): ByteRange[] {
    checkRead(this, offset, length, 'raw');
    return length > 0 ? [{ offset, length }] : [];
  }
  close(): void {
    this.file.close();
  }
}

export const rawFormat: DiskFormat = {
  name: 'raw',
  probe: () => true,
  open: (path) => new RawImage(path),
};
