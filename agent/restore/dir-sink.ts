/**
 * DirSink: restores entries into a folder (`vdbak restore … --to DIR`).
 *
 * Never writes outside DIR:
 * - every name goes through PathMapper (safe-name.ts), so no component is
 *   `..`, empty, or holds a `/`; the joined path is checked to stay under DIR;
 * - nothing is written below an entry this restore made as a symlink (the
 *   mapper refuses `a/passwd` after a guest symlink `a -> /etc`), nor below
 *   anything in DIR that is not a real folder: every parent is lstat'ed (not
 *   stat'ed) once and remembered, and a symlink or file in the way blocks the
 *   whole subtree with one note;
 * - files are written to a temporary name opened O_CREAT|O_EXCL|O_NOFOLLOW and
 *   then linked (no overwrite: link() fails if the name exists, atomically)
 *   or renamed (--overwrite: rename() replaces a file or a symlink itself,
 *   never what a symlink points to) into place; symlinks are made the same way
 *   and their target text is never followed.
 * What a guest entry carries and a folder cannot hold exactly is noted:
 * - named streams (NTFS ADS) become sidecar files `<name>:<stream>` beside the
 *   entry (made safe like any name). Linux user.* xattrs were considered:
 *   Node has no xattr API, `setfattr` is a process per stream and not always
 *   installed, and ext4 caps a value at one block, so sidecars are the one
 *   way that keeps every stream whole;
 * - xattrs, devices, fifos and sockets are not restored (noted; the tar output
 *   keeps xattrs and fifos);
 * - setuid/setgid bits are dropped unless `keepSetid` (a guest program must
 *   not become a privileged program on the controller); ownership is restored
 *   only when running as root;
 * - times are set to the microsecond (fs.utimes takes seconds as a double;
 *   times before 1970 work too).
 * Folders are made 0700 while the restore runs and get their own mode and
 * times in finish(), deepest first, after their contents. Files and touched
 * folders are fsync'ed.
 */
import { constants as FS } from 'node:fs';
import {
  type FileHandle,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  realpath,
  rename,
  rm,
  stat,
  symlink,
  unlink,
} from 'node:fs/promises';
import { join, sep } from 'node:path';

import { type Errors, isVdbakError } from '../../parsers/errors.js';
import { PathMapper, type SafeNameOptions } from './safe-name.js';
import {
  type ContentSource,
  describeError,
  errnoOf,
  isValidId,
  isValidSize,
  PERM_BITS,
  type RestoreItem,
  type RestoreNote,
  type RestoreReport,
  type RestoreSink,
  restoreErrors,
  Serial,
  SETID_BITS,
  TallyNotes,
  utimesArg,
} from './sink.js';

export interface DirSinkOptions {
  overwrite: boolean;
  /** Restore setuid/setgid bits on files too (off by default, see SETID_BITS). */
  keepSetid?: boolean;
  safeName?: SafeNameOptions;
}

/** Prefix of the temporary names files are written under before they take their own. */
export const TMP_PREFIX = '.vdbak-restore-';
/** A folder made by this restore stays private until finish() gives it its own mode. */
const DIR_WORK_MODE = 0o700;
/** Mode of a folder made only because something below it was restored. */
const IMPLICIT_DIR_MODE = 0o755;
const TMP_FILE_MODE = 0o600;
/** Errors that say the destination as a whole is unusable: stop instead of noting every later entry. */
const DEST_WIDE_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EIO']);
/** link() refusals that mean "no hard links here" (some network and FAT filesystems), not "name taken". */
const NO_HARDLINK_ERRNOS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EMLINK']);
const OWNER_REFUSED_ERRNOS = new Set(['EPERM', 'EINVAL']);
const WRITE_FLAGS = FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL | FS.O_NOFOLLOW;
const DIR_OPEN_FLAGS = FS.O_RDONLY | FS.O_DIRECTORY | FS.O_NOFOLLOW;

const PATH_ESCAPE = 'RESTORE_PATH_ESCAPE';
const EXISTS_DETAIL = 'already exists in the destination; not overwritten (use --overwrite)';

type Kind = 'missing' | 'dir' | 'other';

interface OwnDir {
  guestPath: string;
  /** The entry that gives the folder its mode and times; none for a folder made only as a parent. */
  item?: RestoreItem;
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i === -1 ? '' : rel.slice(0, i);
}

function depth(rel: string): number {
  let n = 0;
  for (const c of rel) if (c === '/') n++;
  return n;
}

async function writeAll(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.byteLength) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off);
    off += bytesWritten;
  }
}

export class DirSink implements RestoreSink {
  private readonly mapper: PathMapper;
  private readonly serial = new Serial();
  private readonly err: Errors;
  private readonly notes: RestoreNote[] = [];
  private readonly tallies = new TallyNotes();
  private readonly counts = { files: 0, dirs: 0, links: 0, bytes: 0 };
  private readonly asRoot = process.getuid?.() === 0;
  private rootAbs: string | undefined;
  /** Relative paths known to be real folders (lstat, not a symlink) inside the root. */
  private readonly realDirs = new Set<string>(['']);
  /** Folders this restore made or may change: their mode and times are set in finish(). */
  private readonly ownDirs = new Map<string, OwnDir>();
  /** Folders whose entries changed: fsync'ed in finish(). */
  private readonly touched = new Set<string>(['']);
  /** Paths in the way (not a folder): nothing below is written; count of entries refused. */
  private readonly blocked = new Map<string, { guestPath: string; count: number }>();
  private tmpCounter = 0;
  private finished = false;

  constructor(
    private readonly root: string,
    private readonly opts: DirSinkOptions,
  ) {
    this.mapper = new PathMapper(opts.safeName);
    this.err = restoreErrors(root);
  }

  add(item: RestoreItem, content: ContentSource): Promise<void> {
    return this.serial.run(() => this.addOne(item, content));
  }

  finish(): Promise<RestoreReport> {
    return this.serial.run(() => this.finishAll());
  }

  private async addOne(item: RestoreItem, content: ContentSource): Promise<void> {
    if (this.finished) throw this.err.unsupported('RESTORE_SINK_FINISHED', 'add() after finish()');
    await this.ready();
    const m = this.mapper.map(item.path, item.type);
    for (const r of m.renames) this.note(r.guestPath, 'renamed', r.why, r.restoredAs);
    if (!m.ok) return this.note(item.path, 'skipped', m.reason);
    if (m.rel === '') {
      // The destination folder itself: its own mode and times are the administrator's, not the guest's.
      if (item.type !== 'dir') this.note(item.path, 'skipped', 'a non-folder entry cannot be the restore root');
      return;
    }
    for (let i = 1; i < m.parts.length; i++) {
      const b = this.blocked.get(m.parts.slice(0, i).join('/'));
      if (b) {
        b.count++;
        return;
      }
    }
    try {
      if (!(await this.ensureParents(m.parts, item.path))) return;
      switch (item.type) {
        case 'dir':
          if (await this.addDir(item, m.rel)) await this.addStreams(item, content);
          return;
        case 'file':
          if (await this.addFile(item, m.rel, content)) await this.addStreams(item, content);
          return;
        case 'symlink':
          return await this.addSymlink(item, m.rel);
        default:
          return this.note(item.path, 'unsupported', `${item.type} entries are not restored into a folder`);
      }
    } catch (e) {
      this.failed(item.path, e);
    }
  }

  private async ready(): Promise<string> {
    if (this.rootAbs !== undefined) return this.rootAbs;
    try {
      await mkdir(this.root, { recursive: true });
      if (!(await stat(this.root)).isDirectory()) {
        throw this.err.io('RESTORE_DEST_NOT_DIR', 'the restore destination is not a folder');
      }
      this.rootAbs = await realpath(this.root);
    } catch (e) {
      if (isVdbakError(e)) throw e;
      throw this.err.io('RESTORE_DEST_UNUSABLE', `cannot use the restore destination: ${describeError(e)}`, {
        errno: errnoOf(e),
      });
    }
    return this.rootAbs;
  }

  /** Absolute path of a safe relative path; refuses (typed) anything that would land outside the root. */
  private abs(rel: string): string {
    const root = this.rootAbs!;
    if (rel === '') return root;
    const p = join(root, rel);
    const prefix = root.endsWith(sep) ? root : root + sep;
    if (!p.startsWith(prefix) || rel.split('/').some((c) => c === '' || c === '.' || c === '..')) {
      throw this.err.corrupt(PATH_ESCAPE, 'a mapped path would leave the restore folder', { rel });
    }
    return p;
  }

  private async kind(rel: string): Promise<Kind> {
    try {
      const st = await lstat(this.abs(rel));
      return st.isDirectory() ? 'dir' : 'other';
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return 'missing';
      throw e;
    }
  }

  private note(path: string, kind: RestoreNote['kind'], detail: string, restoredAs?: string): void {
    this.notes.push(restoredAs === undefined ? { path, kind, detail } : { path, kind, detail, restoredAs });
  }

  /** One entry failed: noted, unless the destination as a whole is unusable (then a typed error stops the restore). */
  private failed(path: string, e: unknown): void {
    const code = errnoOf(e);
    if (code !== undefined && DEST_WIDE_ERRNOS.has(code)) {
      throw this.err.io('RESTORE_DEST_IO', `writing the restore failed: ${describeError(e)}`, { errno: code, path });
    }
    if (isVdbakError(e) && e.code === PATH_ESCAPE) throw e;
    this.note(path, 'failed', describeError(e));
  }

  private block(rel: string, guestPath: string, kind: RestoreNote['kind'], detail: string): void {
    this.blocked.set(rel, { guestPath, count: 0 });
    this.note(guestPath, kind, detail, rel);
  }

  /** Makes (or checks) every parent folder of `parts`; false when one is in the way (noted). */
  private async ensureParents(parts: string[], guestPath: string): Promise<boolean> {
    for (let i = 1; i < parts.length; i++) {
      const rel = parts.slice(0, i).join('/');
      if (this.realDirs.has(rel)) continue;
      let k = await this.kind(rel);
      if (k === 'missing') {
        k = await this.makeDir(rel);
        if (k === 'dir')
          this.ownDirs.set(rel, { guestPath: guestPath.replace(/^\/+/, '').split('/').slice(0, i).join('/') });
      }
      if (k !== 'dir') {
        this.block(
          rel,
          guestPath,
          'skipped',
          `'${rel}' in the destination is not a folder (a symlink or a file): nothing is written below it`,
        );
        return false;
      }
      this.realDirs.add(rel);
    }
    return true;
  }

  /** mkdir that tolerates a racing creator, and says what is there afterwards. */
  private async makeDir(rel: string): Promise<Kind> {
    try {
      await mkdir(this.abs(rel), DIR_WORK_MODE);
      this.touched.add(parentOf(rel));
      return 'dir';
    } catch (e) {
      if (errnoOf(e) !== 'EEXIST') throw e;
      return this.kind(rel);
    }
  }

  private async addDir(item: RestoreItem, rel: string): Promise<boolean> {
    const k = await this.kind(rel);
    let own = this.ownDirs.has(rel) || this.opts.overwrite;
    if (k === 'missing') {
      if ((await this.makeDir(rel)) !== 'dir') {
        this.block(rel, item.path, 'failed', 'could not make the folder: something else appeared there');
        return false;
      }
      own = true;
    } else if (k === 'other') {
      if (!this.opts.overwrite) {
        this.block(rel, item.path, 'exists', `a non-folder ${EXISTS_DETAIL}; nothing below it is restored`);
        return false;
      }
      await unlink(this.abs(rel)); // a file or a symlink itself, never what it points to
      await mkdir(this.abs(rel), DIR_WORK_MODE);
      own = true;
    }
    this.realDirs.add(rel);
    if (own) this.ownDirs.set(rel, { guestPath: item.path, item });
    this.counts.dirs++;
    this.tallyXattrs(item);
    return true;
  }

  private async addFile(item: RestoreItem, rel: string, content: ContentSource): Promise<boolean> {
    if (!isValidSize(item.size)) {
      this.note(item.path, 'failed', `size ${item.size} is not a byte count`);
      return false;
    }
    if (!(await this.mayPlace(rel, item.path))) return false;
    const n = await this.writeRegular(item, rel, item.path, () => content(undefined), item.size);
    if (n === undefined) return false;
    this.counts.files++;
    this.counts.bytes += n;
    this.tallyXattrs(item);
    return true;
  }

  /** Named streams as sidecar files `<name>:<stream>` beside the entry. */
  private async addStreams(item: RestoreItem, content: ContentSource): Promise<void> {
    for (const s of item.streams ?? []) {
      const notePath = `${item.path}:${s.name}`;
      try {
        const m = this.mapper.sidecar(item.path, s.name);
        if (!m.ok) {
          this.note(notePath, 'skipped', m.reason);
          continue;
        }
        if (!isValidSize(s.size)) {
          this.note(notePath, 'failed', `stream size ${s.size} is not a byte count`);
          continue;
        }
        if (!(await this.mayPlace(m.rel, notePath))) continue;
        const asFile: RestoreItem = { ...item, type: 'file', size: s.size, mode: item.mode & ~SETID_BITS };
        const n = await this.writeRegular(asFile, m.rel, notePath, () => content(s.name), s.size);
        if (n === undefined) continue;
        this.counts.bytes += n;
        this.note(notePath, 'renamed', 'named stream written as a sidecar file beside its entry', m.rel);
      } catch (e) {
        this.failed(notePath, e);
      }
    }
  }

  private async addSymlink(item: RestoreItem, rel: string): Promise<void> {
    const target = item.linkTarget;
    if (target === undefined || target === '' || target.includes('\0')) {
      return this.note(item.path, 'failed', 'symlink target is missing, empty or holds NUL');
    }
    if (!(await this.mayPlace(rel, item.path))) return;
    const tmp = this.tmpPath(parentOf(rel));
    await symlink(target, tmp);
    try {
      await this.setOwner(item, item.path, () => lchown(tmp, item.uid, item.gid));
      await this.setTimes(item.path, () => lutimes(tmp, utimesArg(item.atimeNs), utimesArg(item.mtimeNs)));
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
    if (!(await this.place(tmp, rel, item.path))) return;
    this.counts.links++;
    this.tallyXattrs(item);
  }

  /** Whether `rel` may take a new non-folder entry: free, or taken by a non-folder and --overwrite. */
  private async mayPlace(rel: string, notePath: string): Promise<boolean> {
    const k = await this.kind(rel);
    if (k === 'missing') return true;
    if (k === 'dir') {
      this.note(notePath, 'exists', `a folder ${EXISTS_DETAIL}`, rel);
      return false;
    }
    if (!this.opts.overwrite) {
      this.note(notePath, 'exists', EXISTS_DETAIL, rel);
      return false;
    }
    return true;
  }

  private tmpPath(parentRel: string): string {
    // Short fixed-size name: the real name may already be 255 bytes long.
    return join(this.abs(parentRel), `${TMP_PREFIX}${process.pid}-${++this.tmpCounter}`);
  }

  /**
   * Writes one stream to a temporary file beside `rel`, with mode, owner and
   * times, fsyncs it and puts it in place. Returns the bytes written, or
   * undefined when it was noted instead.
   */
  private async writeRegular(
    item: RestoreItem,
    rel: string,
    notePath: string,
    source: () => AsyncIterable<Uint8Array>,
    size: number,
  ): Promise<number | undefined> {
    const tmp = this.tmpPath(parentOf(rel));
    const fh = await open(tmp, WRITE_FLAGS, TMP_FILE_MODE);
    let complete = false;
    try {
      if (!(await this.copyIn(fh, source, size, notePath))) return undefined;
      await this.setOwner(item, notePath, () => fh.chown(item.uid, item.gid));
      // After chown: chown clears setuid/setgid on Linux, even for root.
      await fh.chmod(this.fileMode(item, notePath));
      await this.setTimes(notePath, () => fh.utimes(utimesArg(item.atimeNs), utimesArg(item.mtimeNs)));
      await fh.sync();
      complete = true;
    } finally {
      await fh.close();
      if (!complete) await rm(tmp, { force: true });
    }
    return (await this.place(tmp, rel, notePath)) ? size : undefined;
  }

  /**
   * Copies the content into `fh`. A failure to read the backup (missing pack,
   * bad hash) or a size that does not match is noted and gives false; a
   * failure to write goes up (it may mean the destination is full).
   */
  private async copyIn(
    fh: FileHandle,
    source: () => AsyncIterable<Uint8Array>,
    size: number,
    notePath: string,
  ): Promise<boolean> {
    let it: AsyncIterator<Uint8Array>;
    try {
      it = source()[Symbol.asyncIterator]();
    } catch (e) {
      this.note(notePath, 'failed', `reading the backup failed: ${describeError(e)}`);
      return false;
    }
    let n = 0;
    let done = false;
    try {
      while (true) {
        let r: IteratorResult<Uint8Array>;
        try {
          r = await it.next();
        } catch (e) {
          done = true; // a throwing iterator is finished
          this.note(notePath, 'failed', `reading the backup failed: ${describeError(e)}`);
          return false;
        }
        if (r.done) {
          done = true;
          break;
        }
        if (n + r.value.byteLength > size) {
          this.note(notePath, 'failed', `content is longer than its recorded size ${size}`);
          return false;
        }
        await writeAll(fh, r.value);
        n += r.value.byteLength;
      }
    } finally {
      if (!done) await it.return?.();
    }
    if (n !== size) {
      this.note(notePath, 'failed', `content is ${n} bytes, its recorded size is ${size}`);
      return false;
    }
    return true;
  }

  private fileMode(item: RestoreItem, notePath: string): number {
    let mode = item.mode & PERM_BITS;
    if (!this.opts.keepSetid && (mode & SETID_BITS) !== 0) {
      mode &= ~SETID_BITS;
      this.tallies.add(
        'setid',
        'unsupported',
        'setuid/setgid bits not restored (a guest program must not become privileged here)',
        notePath,
      );
    }
    return mode;
  }

  private async setOwner(item: RestoreItem, notePath: string, chown: () => Promise<void>): Promise<void> {
    if (!this.asRoot) return;
    if (!isValidId(item.uid) || !isValidId(item.gid)) {
      this.tallies.add('owner-range', 'unsupported', 'ownership not restored: uid/gid out of range', notePath);
      return;
    }
    try {
      await chown();
    } catch (e) {
      const code = errnoOf(e);
      if (code === undefined || !OWNER_REFUSED_ERRNOS.has(code)) throw e;
      this.tallies.add(
        'owner',
        'unsupported',
        `ownership not restored: the destination refused it (${code})`,
        notePath,
      );
    }
  }

  private async setTimes(notePath: string, utimes: () => Promise<void>): Promise<void> {
    try {
      await utimes();
    } catch (e) {
      const code = errnoOf(e);
      if (code !== undefined && DEST_WIDE_ERRNOS.has(code)) throw e;
      this.note(notePath, 'failed', `times not restored: ${describeError(e)}`);
    }
  }

  private tallyXattrs(item: RestoreItem): void {
    if (item.xattrs && item.xattrs.length > 0) {
      this.tallies.add(
        'xattrs',
        'unsupported',
        'extended attributes are not restored into a folder (the tar output keeps them)',
        item.path,
      );
    }
  }

  /**
   * Puts a finished temporary file or symlink at `rel`. Without --overwrite,
   * link() then unlink(): link fails if the name was taken meanwhile, so
   * nothing is ever replaced. With --overwrite, rename().
   */
  private async place(tmp: string, rel: string, notePath: string): Promise<boolean> {
    const dest = this.abs(rel);
    try {
      if (this.opts.overwrite) {
        await rename(tmp, dest);
      } else {
        try {
          await link(tmp, dest);
          await unlink(tmp);
        } catch (e) {
          const code = errnoOf(e);
          if (code === 'EEXIST') {
            await rm(tmp, { force: true });
            this.note(notePath, 'exists', EXISTS_DETAIL, rel);
            return false;
          }
          if (code === undefined || !NO_HARDLINK_ERRNOS.has(code)) throw e;
          // No hard links on this filesystem: check, then rename (a narrow race only another local writer can use).
          if ((await this.kind(rel)) !== 'missing') {
            await rm(tmp, { force: true });
            this.note(notePath, 'exists', EXISTS_DETAIL, rel);
            return false;
          }
          await rename(tmp, dest);
        }
      }
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
    this.touched.add(parentOf(rel));
    return true;
  }

  private async finishAll(): Promise<RestoreReport> {
    if (this.finished) throw this.err.unsupported('RESTORE_SINK_FINISHED', 'finish() called twice');
    this.finished = true;
    await this.ready();
    // Deepest first: a folder's times change when entries are made in it, and a read-only folder must be last.
    const own = [...this.ownDirs.entries()].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [rel, d] of own) {
      try {
        await this.settleDir(rel, d);
      } catch (e) {
        this.failed(d.guestPath, e);
      }
    }
    for (const rel of this.touched) {
      if (this.ownDirs.has(rel)) continue;
      try {
        await this.syncDir(rel);
      } catch (e) {
        this.failed(rel, e);
      }
    }
    for (const [rel, b] of this.blocked) {
      if (b.count > 0) this.note(b.guestPath, 'skipped', `${b.count} entries below it were not restored`, rel);
    }
    return { ...this.counts, notes: [...this.notes, ...this.tallies.notes()] };
  }

  /** Mode, owner and times of a folder, through a handle opened without following a symlink. */
  private async settleDir(rel: string, d: OwnDir): Promise<void> {
    const fh = await open(this.abs(rel), DIR_OPEN_FLAGS);
    try {
      const item = d.item;
      if (item) {
        await this.setOwner(item, item.path, () => fh.chown(item.uid, item.gid));
        // setgid and sticky on a folder grant nothing to a program: all permission bits are kept.
        await fh.chmod(item.mode & PERM_BITS);
        await this.setTimes(item.path, () => fh.utimes(utimesArg(item.atimeNs), utimesArg(item.mtimeNs)));
      } else {
        await fh.chmod(IMPLICIT_DIR_MODE);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  private async syncDir(rel: string): Promise<void> {
    const fh = await open(this.abs(rel), DIR_OPEN_FLAGS);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}
