/**
 * LocalTarget: the backup target as a directory (a local disk or a mounted
 * share: NFS, SMB). Object `a/b/c` is the file `ROOT/a/b/c`.
 *
 * Writes are atomic and durable: the bytes go to a hidden temporary file in
 * the final folder (`.tmp-…`, never a valid object name, so never listed),
 * which is fsynced, renamed over the final name, and the folder is fsynced
 * (and so are folders the write created). A crash leaves either the old state
 * or the whole new object, plus at most a stray temporary file.
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { isVdbakError } from '../../parsers/errors.js';
import { isTargetNotFound, TARGET_NOT_FOUND, transportErrors } from '../errors.js';
import {
  checkListPrefix,
  checkObjectName,
  existsByStat,
  markSourceErrors,
  type ObjectInfo,
  SourceError,
  type Target,
} from './types.js';

const TEMP_PREFIX = '.tmp-';
/** errno codes of a directory fsync that some filesystems (CIFS, some FUSE) do not support. */
const DIR_FSYNC_UNSUPPORTED = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EISDIR', 'EBADF']);

export class LocalTarget implements Target {
  readonly location: string;
  private readonly err;

  constructor(readonly root: string) {
    this.location = root;
    this.err = transportErrors(root, 'target');
  }

  private path(name: string): string {
    checkObjectName(name, this.location);
    return join(this.root, ...name.split('/'));
  }

  /** Turns an OS error into a typed target error. */
  private fail(e: unknown, op: string, name: string): Error {
    if (isVdbakError(e)) return e;
    const code = (e as NodeJS.ErrnoException).code ?? 'UNKNOWN';
    const msg = `${op} ${name}: ${(e as Error).message}`;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR')
      return this.err.notFound(TARGET_NOT_FOUND, msg, { name });
    if (code === 'ENOSPC' || code === 'EDQUOT') return this.err.io('TARGET_NO_SPACE', msg, { name, errno: code });
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      return this.err.io('TARGET_ACCESS', msg, { name, errno: code });
    }
    return this.err.io('TARGET_IO', msg, { name, errno: code });
  }

  async put(name: string, bytes: Uint8Array): Promise<void> {
    await this.writeAtomically(name, 'put', (fh) => fh.writeFile(bytes));
  }

  async putStream(name: string, source: AsyncIterable<Uint8Array>): Promise<void> {
    await this.writeAtomically(name, 'putStream', async (fh) => {
      let at = 0;
      for await (const piece of markSourceErrors(source)) {
        for (let done = 0; done < piece.length;) {
          const { bytesWritten } = await fh.write(piece, done, piece.length - done, at);
          done += bytesWritten;
          at += bytesWritten;
        }
      }
    });
  }

  /**
   * Writes a temporary file in the object's folder through `fill`, fsyncs it,
   * renames it over the final name and fsyncs the folder. On any failure the
   * temporary file goes and no object appears; the stream source's own error
   * passes through unchanged.
   */
  private async writeAtomically(name: string, op: string, fill: (fh: FileHandle) => Promise<void>): Promise<void> {
    const final = this.path(name);
    const dir = dirname(final);
    const tmp = join(dir, `${TEMP_PREFIX}${basename(final)}-${randomBytes(6).toString('hex')}`);
    let fh: FileHandle | undefined;
    try {
      const created = await mkdir(dir, { recursive: true });
      if (created !== undefined) await this.syncCreatedDirs(created, dir);
      fh = await open(tmp, 'wx', 0o644);
      await fill(fh);
      await fh.sync();
      await fh.close();
      fh = undefined;
      await rename(tmp, final);
    } catch (e) {
      await fh?.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw e instanceof SourceError ? e.error : this.fail(e, op, name);
    }
    await this.syncDir(dir).catch((e) => {
      throw this.fail(e, `${op} (fsync folder)`, name);
    });
  }

  async get(name: string): Promise<Buffer> {
    const path = this.path(name);
    try {
      return await readFile(path);
    } catch (e) {
      throw this.fail(e, 'get', name);
    }
  }

  async getRange(name: string, offset: number, length: number): Promise<Buffer> {
    const path = this.path(name);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw this.err.corrupt('TARGET_BAD_RANGE', `range [${offset}, +${length}) of ${name}`, { name, offset, length });
    }
    let fh: FileHandle | undefined;
    try {
      fh = await open(path, 'r');
      const buf = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) {
          throw this.err.truncated('TARGET_SHORT_READ', `${name} ends before [${offset}, +${length})`, {
            name,
            offset: offset + done,
            length,
          });
        }
        done += bytesRead;
      }
      return buf;
    } catch (e) {
      throw this.fail(e, 'getRange', name);
    } finally {
      await fh?.close().catch(() => {});
    }
  }

  async stat(name: string): Promise<ObjectInfo> {
    const path = this.path(name);
    try {
      const s = await stat(path);
      if (!s.isFile()) throw this.err.notFound(TARGET_NOT_FOUND, `stat ${name}: not a file`, { name });
      return { name, size: s.size };
    } catch (e) {
      throw this.fail(e, 'stat', name);
    }
  }

  exists(name: string): Promise<boolean> {
    return existsByStat(this, name);
  }

  async *list(prefix: string): AsyncIterable<string> {
    checkListPrefix(prefix, this.location);
    const cut = prefix.lastIndexOf('/');
    const baseName = cut < 0 ? '' : prefix.slice(0, cut);
    yield* this.walk(baseName === '' ? this.root : join(this.root, ...baseName.split('/')), prefix);
  }

  private async *walk(dir: string, prefix: string): AsyncIterable<string> {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      const err = this.fail(e, 'list', relative(this.root, dir));
      if (isTargetNotFound(err)) return;
      throw err;
    }
    for (const ent of entries) {
      if (ent.name.startsWith('.')) continue; // temporary files of writes in progress
      const full = join(dir, ent.name);
      const name = relative(this.root, full).split(sep).join('/');
      if (ent.isDirectory()) {
        // descend only where names under this folder can still match the prefix
        if (`${name}/`.startsWith(prefix) || prefix.startsWith(`${name}/`)) yield* this.walk(full, prefix);
      } else if (ent.isFile() && name.startsWith(prefix)) {
        yield name;
      }
    }
  }

  async delete(name: string): Promise<void> {
    const path = this.path(name);
    try {
      await unlink(path);
    } catch (e) {
      const err = this.fail(e, 'delete', name);
      if (this.isNotFound(err)) return;
      throw err;
    }
    await this.syncDir(dirname(path)).catch((e) => {
      throw this.fail(e, 'delete (fsync folder)', name);
    });
  }

  isNotFound(err: unknown): boolean {
    return isTargetNotFound(err);
  }

  /** fsyncs a folder so that a rename or unlink in it is durable. */
  private async syncDir(dir: string): Promise<void> {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } catch (e) {
      if (!DIR_FSYNC_UNSUPPORTED.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
    } finally {
      await fh.close();
    }
  }

  /** After `mkdir -p` created `first` … `last`, fsyncs each new folder's parent. */
  private async syncCreatedDirs(first: string, last: string): Promise<void> {
    const dirs: string[] = [];
    for (let d = last; d.length >= first.length; d = dirname(d)) {
      dirs.push(dirname(d));
      if (d === first) break;
    }
    for (const d of dirs) await this.syncDir(d);
  }
}
