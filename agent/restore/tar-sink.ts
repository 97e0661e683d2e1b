/**
 * TarSink: restores entries as a tar stream (`vdbak restore … --tar FILE|-`),
 * written with tar-stream in pax format.
 *
 * - Names go through the same PathMapper as DirSink: relative, no `..`, no
 *   empty or over-long component, collisions suffixed; nothing is written
 *   below an entry this tar holds as a symlink (so an extracting tar cannot be
 *   led through a guest symlink `a -> /etc` into `a/passwd`).
 * - Every entry has a pax header: the full path (no 100-byte limit), the link
 *   target verbatim, mtime and atime with nanoseconds, uid/gid beyond ustar's
 *   6 octal digits, and the entry's xattrs as `SCHILY.xattr.<name>` (the
 *   records GNU tar and bsdtar read with --xattrs) when the value is text that
 *   survives UTF-8 (tar-stream writes pax values as strings) and ≤ 64 KiB.
 * - Named streams (NTFS ADS) are extra file entries `<path>:<stream>`, the
 *   same sidecar names DirSink writes, noted as renamed. Chosen over
 *   `SCHILY.xattr.user.<stream>` because a stream can be any size and binary,
 *   and an xattr value can be neither.
 * - Files, folders, symlinks and fifos are written; devices (the item has no
 *   device numbers), sockets and others are noted as unsupported.
 * - setuid/setgid are dropped unless `keepSetid`: GNU tar run as root restores
 *   them, and a guest program must not become privileged on the controller.
 * - A tar entry's size is fixed in its header: content that fails to read or
 *   runs short is padded with zeros (and noted failed), content that runs long
 *   is cut, so the stream stays a valid tar whatever happens to one file.
 * Backpressure: the pack is pumped into `output` awaiting 'drain', and each
 * entry's writes await the entry's 'drain'; memory stays bounded by the
 * streams' buffers whatever the file sizes. A failing output (EPIPE, disk
 * full) stops the restore with a typed error.
 */
import { once } from 'node:events';
import type { EventEmitter } from 'node:events';
import { finished } from 'node:stream/promises';

import { type Header, pack as tarPack, type Pack } from 'tar-stream';

import type { Errors } from '../../parsers/errors.js';
import { PathMapper, type SafeNameOptions } from './safe-name.js';
import {
  type ContentSource,
  describeError,
  isValidId,
  isValidSize,
  NS_PER_S,
  nsToPaxTime,
  PERM_BITS,
  type RestoreItem,
  type RestoreNote,
  type RestoreReport,
  type RestoreSink,
  restoreErrors,
  Serial,
  SETID_BITS,
  TallyNotes,
} from './sink.js';

export interface TarSinkOptions {
  /** End `output` in finish() and wait for it to flush (default true; pass false for process.stdout). */
  end?: boolean;
  /** Keep setuid/setgid bits (off by default, see SETID_BITS). */
  keepSetid?: boolean;
  safeName?: SafeNameOptions;
}

/** tar-stream writes uid/gid in 6 octal digits; larger ids go in pax. */
const USTAR_ID_MAX = 0o777777;
/** The ustar mtime field holds 11 octal digits of non-negative seconds; the exact time is in pax. */
const USTAR_TIME_MAX = 0o77777777777;
/** Linux XATTR_SIZE_MAX. */
const XATTR_VALUE_MAX = 64 * 1024;
/** Printable ASCII without space and '=' (which ends a pax keyword). */
const XATTR_NAME_OK = /^[\x21-\x3c\x3e-\x7e]+$/;
const PAX_XATTR_PREFIX = 'SCHILY.xattr.';
const ZERO_FILL = Buffer.alloc(64 * 1024);

type TarType = 'file' | 'directory' | 'symlink' | 'fifo';
type PaxHeaders = Partial<Header> & { name: string; size: number; pax: Record<string, string> };

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

export class TarSink implements RestoreSink {
  private readonly pack: Pack;
  private readonly mapper: PathMapper;
  private readonly serial = new Serial();
  private readonly err: Errors;
  private readonly notes: RestoreNote[] = [];
  private readonly tallies = new TallyNotes();
  private readonly counts = { files: 0, dirs: 0, links: 0, bytes: 0 };
  private readonly pumped: Promise<void>;
  /** Rejects when the output fails; raced against every wait so nothing hangs on a dead stream. */
  private readonly failed: Promise<never>;
  private rejectFailed: (e: unknown) => void = () => undefined;
  private failure: unknown;
  private finished = false;

  constructor(
    private readonly output: NodeJS.WritableStream,
    private readonly opts: TarSinkOptions = {},
  ) {
    this.err = restoreErrors('tar output');
    this.mapper = new PathMapper(opts.safeName);
    this.failed = new Promise<never>((_, reject) => (this.rejectFailed = reject));
    this.failed.catch(() => undefined);
    this.pack = tarPack();
    (this.pack as unknown as EventEmitter).on('error', (e: unknown) => this.fail(e));
    output.on('error', (e: unknown) => this.fail(e));
    this.pumped = this.pump();
    this.pumped.catch((e: unknown) => this.fail(e));
  }

  add(item: RestoreItem, content: ContentSource): Promise<void> {
    return this.serial.run(() => this.addOne(item, content));
  }

  finish(): Promise<RestoreReport> {
    return this.serial.run(() => this.finishAll());
  }

  private fail(e: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = e ?? new Error('tar output failed');
    this.rejectFailed(this.failure);
    this.pack.destroy(this.failure instanceof Error ? this.failure : undefined);
  }

  private outputError(): Error {
    return this.err.io('RESTORE_TAR_OUTPUT', `writing the tar stream failed: ${describeError(this.failure)}`);
  }

  /** Waits for `p` unless the output fails first. */
  private async guard<T>(p: Promise<T>): Promise<T> {
    try {
      return await Promise.race([p, this.failed]);
    } catch (e) {
      if (this.failure !== undefined) throw this.outputError();
      throw e;
    }
  }

  private async pump(): Promise<void> {
    for await (const buf of this.pack) {
      if (!this.output.write(buf as Buffer)) await this.waitEvent(this.output as unknown as EventEmitter, 'drain');
    }
  }

  /** Waits for `event` on `emitter`, or rejects if the output closes or fails first; leaves no listener behind. */
  private async waitEvent(emitter: EventEmitter, event: string): Promise<void> {
    const ac = new AbortController();
    const out = this.output as unknown as EventEmitter;
    // a 'close' that came while we were not listening is not emitted again: waiting would never end
    if ((this.output as { destroyed?: boolean }).destroyed) throw new Error('output closed');
    try {
      await Promise.race([
        once(emitter, event, { signal: ac.signal }),
        once(out, 'close', { signal: ac.signal }).then(() => {
          throw new Error('output closed');
        }),
        this.failed,
      ]);
    } finally {
      ac.abort();
    }
  }

  private note(path: string, kind: RestoreNote['kind'], detail: string, restoredAs?: string): void {
    this.notes.push(restoredAs === undefined ? { path, kind, detail } : { path, kind, detail, restoredAs });
  }

  private async addOne(item: RestoreItem, content: ContentSource): Promise<void> {
    if (this.finished) throw this.err.unsupported('RESTORE_SINK_FINISHED', 'add() after finish()');
    if (this.failure !== undefined) throw this.outputError();
    const type = this.tarType(item);
    if (type === undefined) return;
    const m = this.mapper.map(item.path, item.type);
    for (const r of m.renames) this.note(r.guestPath, 'renamed', r.why, r.restoredAs);
    if (!m.ok) return this.note(item.path, 'skipped', m.reason);
    if (m.rel === '') {
      if (type !== 'directory') this.note(item.path, 'skipped', 'a non-folder entry cannot be the restore root');
      return;
    }
    if (m.repeat) return this.note(item.path, 'exists', 'the same path is already in this tar', m.rel);

    if (type === 'file') {
      if (!isValidSize(item.size)) return this.note(item.path, 'failed', `size ${item.size} is not a byte count`);
      await this.writeEntry(this.header(item, m.rel, type, item.size), () => content(undefined), item.path);
      this.counts.files++;
      this.counts.bytes += item.size;
    } else {
      const target = item.linkTarget;
      if (type === 'symlink' && (target === undefined || target === '' || target.includes('\0'))) {
        // No system can make such a link; a NUL would also cut the pax record short in some readers.
        return this.note(item.path, 'failed', 'symlink target is missing, empty or holds NUL');
      }
      await this.writeEntry(this.header(item, m.rel, type, 0), undefined, item.path);
      if (type === 'directory') this.counts.dirs++;
      else if (type === 'symlink') this.counts.links++;
    }
    if (type === 'file' || type === 'directory') await this.addStreams(item, content);
  }

  private tarType(item: RestoreItem): TarType | undefined {
    switch (item.type) {
      case 'file':
        return 'file';
      case 'dir':
        return 'directory';
      case 'symlink':
        return 'symlink';
      case 'fifo':
        return 'fifo';
      case 'chardev':
      case 'blockdev':
        this.note(item.path, 'unsupported', 'device entries are not restored (no device numbers in the backup)');
        return undefined;
      default:
        this.note(item.path, 'unsupported', `${item.type} entries are not restored`);
        return undefined;
    }
  }

  private async addStreams(item: RestoreItem, content: ContentSource): Promise<void> {
    for (const s of item.streams ?? []) {
      const notePath = `${item.path}:${s.name}`;
      const m = this.mapper.sidecar(item.path, s.name);
      if (!m.ok) {
        this.note(notePath, 'skipped', m.reason);
        continue;
      }
      if (!isValidSize(s.size)) {
        this.note(notePath, 'failed', `stream size ${s.size} is not a byte count`);
        continue;
      }
      const asFile: RestoreItem = { ...item, type: 'file', size: s.size, mode: item.mode & ~SETID_BITS, xattrs: [] };
      await this.writeEntry(this.header(asFile, m.rel, 'file', s.size), () => content(s.name), notePath);
      this.counts.bytes += s.size;
      this.note(notePath, 'renamed', 'named stream written as a separate tar entry beside its entry', m.rel);
    }
  }

  private header(item: RestoreItem, rel: string, type: TarType, size: number): PaxHeaders {
    const pax: Record<string, string> = { mtime: nsToPaxTime(item.mtimeNs), atime: nsToPaxTime(item.atimeNs) };
    const uid = isValidId(item.uid) ? item.uid : 0;
    const gid = isValidId(item.gid) ? item.gid : 0;
    if (uid > USTAR_ID_MAX) pax.uid = String(uid);
    if (gid > USTAR_ID_MAX) pax.gid = String(gid);
    for (const x of item.xattrs ?? []) this.addXattr(pax, x.name, x.value, item.path);
    let mode = item.mode & PERM_BITS;
    if (type !== 'directory' && !this.opts.keepSetid && (mode & SETID_BITS) !== 0) {
      mode &= ~SETID_BITS;
      this.tallies.add(
        'setid',
        'unsupported',
        'setuid/setgid bits not kept (a guest program must not become privileged where the tar is extracted)',
        item.path,
      );
    }
    const secs = item.mtimeNs / NS_PER_S;
    const ustarSecs = secs < 0n ? 0 : secs > BigInt(USTAR_TIME_MAX) ? USTAR_TIME_MAX : Number(secs);
    const h: PaxHeaders = {
      name: type === 'directory' ? `${rel}/` : rel,
      type,
      mode,
      uid: Math.min(uid, USTAR_ID_MAX),
      gid: Math.min(gid, USTAR_ID_MAX),
      size,
      mtime: new Date(ustarSecs * 1000),
      pax,
    };
    if (type === 'symlink') h.linkname = item.linkTarget ?? '';
    return h;
  }

  private addXattr(pax: Record<string, string>, name: string, value: Uint8Array, path: string): void {
    const text = Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
    const ok =
      XATTR_NAME_OK.test(name) &&
      value.byteLength <= XATTR_VALUE_MAX &&
      Buffer.from(text, 'utf8').equals(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
    if (ok) pax[PAX_XATTR_PREFIX + name] = text;
    else
      this.tallies.add(
        'xattr',
        'unsupported',
        'an extended attribute with a binary value or odd name was left out',
        path,
      );
  }

  /** Writes one entry; its body (when given) is exactly `header.size` bytes whatever the source does. */
  private async writeEntry(
    header: PaxHeaders,
    source: (() => AsyncIterable<Uint8Array>) | undefined,
    notePath: string,
  ): Promise<void> {
    let resolve: () => void = () => undefined;
    let reject: (e: unknown) => void = () => undefined;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    done.catch(() => undefined);
    let entry: ReturnType<Pack['entry']>;
    try {
      entry = this.pack.entry(header, (e) => (e ? reject(e) : resolve()));
      // a destroyed pack (the reader went away) makes its entries emit 'error': it is ours to report
      (entry as unknown as EventEmitter).on('error', (e: unknown) => this.fail(e));
    } catch (e) {
      if (this.failure !== undefined) throw this.outputError();
      throw e;
    }
    if (source !== undefined) {
      const size = header.size;
      let n = 0;
      let problem: string | undefined;
      const write = async (buf: Buffer) => {
        if (!entry.write(buf)) await this.guard(this.waitEvent(entry as unknown as EventEmitter, 'drain'));
      };
      try {
        for await (const chunk of source()) {
          const buf = toBuffer(chunk);
          if (n + buf.byteLength > size) {
            await write(buf.subarray(0, size - n));
            n = size;
            problem = `content is longer than its recorded size ${size}; cut`;
            break;
          }
          await write(buf);
          n += buf.byteLength;
        }
      } catch (e) {
        if (this.failure !== undefined) throw this.outputError();
        problem = `reading the backup failed: ${describeError(e)}`;
      }
      if (n < size) {
        problem = `${problem ?? `content is ${n} bytes, its recorded size is ${size}`}; the tar entry holds zeros from byte ${n}`;
      }
      while (n < size) {
        const fill = ZERO_FILL.subarray(0, Math.min(ZERO_FILL.byteLength, size - n));
        await write(fill);
        n += fill.byteLength;
      }
      if (problem !== undefined) this.note(notePath, 'failed', problem);
      entry.end(undefined);
    }
    await this.guard(done);
  }

  private async finishAll(): Promise<RestoreReport> {
    if (this.finished) throw this.err.unsupported('RESTORE_SINK_FINISHED', 'finish() called twice');
    this.finished = true;
    if (this.failure !== undefined) throw this.outputError();
    this.pack.finalize();
    await this.guard(this.pumped);
    if (this.opts.end !== false) {
      this.output.end();
      await this.guard(finished(this.output));
    }
    return { ...this.counts, notes: [...this.notes, ...this.tallies.notes()] };
  }
}
