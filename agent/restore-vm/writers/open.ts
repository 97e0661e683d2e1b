/** Creates the writer of a format. */
import { Qcow2Writer } from './qcow2.js';
import { RawWriter } from './raw.js';
import type { DiskFormat, DiskWriter, WriterOptions } from './types.js';
import { VmdkFlatWriter } from './vmdk-flat.js';
import { VmdkSparseWriter } from './vmdk-sparse.js';

/** `path` is the file a VM's configuration names (formatFileNames()[0]). */
export function openWriter(format: DiskFormat, path: string, size: number, opts: WriterOptions): Promise<DiskWriter> {
  switch (format) {
    case 'raw':
      return RawWriter.create(path, size, opts);
    case 'vmdk-flat':
      return VmdkFlatWriter.create(path, size, opts);
    case 'vmdk-sparse':
      return VmdkSparseWriter.create(path, size, opts);
    case 'qcow2':
      return Qcow2Writer.create(path, size, opts);
  }
}
