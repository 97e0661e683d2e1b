/**
 * A plain file read with positional, synchronous reads: the bottom of every
 * disk image. It knows its size once (images are opened on a point-in-time
 * view) and turns short reads into typed TruncatedError.
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync } from 'node:fs';
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
    // Only regular files: a FIFO or device named by a hostile descriptor or
    // backing-file field must not block us or read the controller's devices.
    let isFile: boolean;
    try {
      isFile = statSync(path).isFile();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
      if (code === 'ENOENT') throw err.notFound('FILE_NOT_FOUND', `cannot open: ${code}`);
      throw err.io('FILE_OPEN', `cannot open: ${code}`);
    }
    if (!isFile) throw err.unsupported('FILE_NOT_REGULAR', 'not a regular file');
    let fd: number;
    try {
      // O_NONBLOCK: should the path be swapped for a FIFO after the check, open does not hang
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (e) {
      throw err.io('FILE_OPEN', `cannot open: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
    const st = fstatSync(fd);
    if (!st.isFile()) {
      closeSync(fd);
      throw err.unsupported('FILE_NOT_REGULAR', 'not a regular file');
    }
    this.fd = fd;
    this.size = st.size;
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
