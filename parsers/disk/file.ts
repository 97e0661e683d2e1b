/**
 * A plain file read with positional, synchronous reads: the bottom of every
 * disk image. It knows its size once (images are opened on a point-in-time
 * view) and turns short reads into typed TruncatedError.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { checkRange } from '../bytes.js';
import { errorsFor, type Layer } from '../errors.js';

export class FileSource {
  readonly size: number;
  private fd: number | null;

  constructor(
    readonly path: string,
    private readonly layer: Layer = 'file',
  ) {
    const err = errorsFor({ image: path, layer });
    try {
      this.fd = openSync(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
      if (code === 'ENOENT') throw err.notFound('FILE_NOT_FOUND', `cannot open: ${code}`);
      throw err.io('FILE_OPEN', `cannot open: ${code}`);
    }
    this.size = fstatSync(this.fd).size;
  }

  /** Reads exactly `length` bytes at `offset` into a new Buffer; short input is a TruncatedError. */
  read(offset: number, length: number, what = 'data'): Buffer {
    const buf = Buffer.allocUnsafe(length);
    this.readInto(buf, offset, what);
    return buf;
  }

  /** Fills `target` from `offset`; short input is a TruncatedError. */
  readInto(target: Uint8Array, offset: number, what = 'data'): void {
    const err = errorsFor({ image: this.path, layer: this.layer });
    if (this.fd === null) throw err.io('FILE_CLOSED', 'read after close', { offset });
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw err.corrupt('FILE_BAD_OFFSET', `${what} at an impossible offset ${offset}`, { offset });
    }
    if (offset + target.length > this.size) {
      throw err.truncated(
        'FILE_TRUNCATED',
        `${what} [${offset}, +${target.length}) runs past the end of the file (${this.size} bytes)`,
        {
          offset,
          length: target.length,
          fileSize: this.size,
        },
      );
    }
    let done = 0;
    while (done < target.length) {
      let n: number;
      try {
        n = readSync(this.fd, target, done, target.length - done, offset + done);
      } catch (e) {
        throw err.io('FILE_READ', `read failed: ${(e as NodeJS.ErrnoException).code ?? e}`, { offset: offset + done });
      }
      if (n === 0) {
        throw err.truncated('FILE_TRUNCATED', `${what} ended early (file shrank?)`, { offset: offset + done });
      }
      done += n;
    }
  }

  /** Checks that [offset, +length) is inside the file without reading it. */
  check(offset: number, length: number, code: string, what: string): void {
    checkRange(offset, length, this.size, errorsFor({ image: this.path, layer: this.layer }), code, what);
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }
}
