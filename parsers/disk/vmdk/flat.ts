/**
 * The two VMDK extents without metadata:
 * - FLAT / VMFS / VMFSRDM / VMFSRAW: the extent's bytes lie plainly in a file
 *   from a start offset (the descriptor line's optional last field, in sectors);
 * - ZERO: the extent reads as zeros and has no file.
 * Spec: VMware "Virtual Disk Format 5.0", "Extent Descriptions".
 */
import { checkRange } from '../../bytes.js';
import { errorsFor } from '../../errors.js';
import type { FileSource } from '../file.js';
import type { ExtentReader, ExtentSpan } from './extent.js';

export class FlatExtent implements ExtentReader {
  readonly path: string;
  constructor(
    readonly type: string,
    private readonly file: FileSource,
    private readonly start: number,
    readonly size: number,
  ) {
    this.path = file.path;
    const err = errorsFor({ image: file.path, layer: 'vmdk' });
    if (start + size > file.size) {
      throw err.truncated(
        'VMDK_FLAT_EXTENT_SHORT',
        `flat extent [${start}, +${size}) runs past the end of its file (${file.size} bytes)`,
        { offset: start, length: size, fileSize: file.size },
      );
    }
    checkRange(start, size, file.size, err, 'VMDK_FLAT_EXTENT_RANGE', 'flat extent');
  }
  span(offset: number, maxLength: number): ExtentSpan {
    return {
      kind: 'data',
      length: Math.min(maxLength, this.size - offset),
      file: this.file,
      fileOffset: this.start + offset,
    };
  }
  close(): void {
    this.file.close();
  }
}

export class ZeroExtent implements ExtentReader {
  readonly type = 'ZERO';
  readonly path = '';
  constructor(readonly size: number) {}
  span(offset: number, maxLength: number): ExtentSpan {
    return { kind: 'zero', length: Math.min(maxLength, this.size - offset) };
  }
  close(): void {}
}
