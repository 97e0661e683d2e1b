/**
 * The writing end of a restore (issue 5 §2): the restore engine reads entries
 * and verified content from the catalog and the target and hands them, one by
 * one, to a RestoreSink, which writes them into a folder (DirSink) or a tar
 * stream (TarSink). A sink never fails the whole restore for one entry: what
 * it could not do exactly is a RestoreNote in the report. It throws only when
 * the destination as a whole is unusable (disk full, read-only, broken output
 * stream), with a typed error.
 */
import { errorsFor, type Errors } from '../../parsers/errors.js';
import type { FsEntry } from '../../parsers/fs/types.js';

/** What a sink writes of one entry: the guest's own fields (parsers/fs/types.ts FsEntry) under a relative path. */
export interface RestoreItem extends Pick<
  FsEntry,
  'type' | 'size' | 'mode' | 'uid' | 'gid' | 'mtimeNs' | 'atimeNs' | 'linkTarget' | 'streams' | 'xattrs'
> {
  /** Path relative to the restore root, '/'-separated, components exactly as the guest named them (hostile). */
  path: string;
}

/** Content of the main stream (stream undefined) or of a named stream; chunks are already hash-verified by the engine. */
export type ContentSource = (stream?: string) => AsyncIterable<Uint8Array>;

export interface RestoreNote {
  path: string;
  kind: 'renamed' | 'skipped' | 'exists' | 'unsupported' | 'failed';
  detail: string;
  restoredAs?: string;
}

export interface RestoreReport {
  files: number;
  dirs: number;
  links: number;
  bytes: number;
  notes: RestoreNote[];
}

export interface RestoreSink {
  add(item: RestoreItem, content: ContentSource): Promise<void>;
  finish(): Promise<RestoreReport>;
}

/** Permission bits a mode may carry (type bits are the sink's business). */
export const PERM_BITS = 0o7777;
/**
 * setuid/setgid on a file. Not restored by default: a guest binary owned by
 * uid 0 with setuid would become a root program on the controller.
 */
export const SETID_BITS = 0o6000;
/** Largest uid/gid a POSIX system takes (uid_t is 32-bit; -1 means "unchanged"). */
export const MAX_ID = 0xfffffffe;
export const NS_PER_S = 1_000_000_000n;

/** Typed errors of the restore writers; the "image" named is the destination. */
export function restoreErrors(destination: string): Errors {
  return errorsFor({ image: destination, layer: 'file' });
}

/** Nanoseconds since the epoch as seconds in a double (what fs.utimes takes; Node keeps microseconds). */
export function nsToSeconds(ns: bigint): number {
  // to the microsecond: a double near 1.8e9 s holds ~0.2 µs, so .999999999 s would round up into the
  // next second (libuv then truncates what it gets, so the result never lands past the true time)
  const us = ns >= 0n ? ns / 1000n : -((-ns + 999n) / 1000n);
  return Number(us / 1_000_000n) + Number(us % 1_000_000n) / 1e6;
}

/**
 * A time for fs.utimes/futimes/lutimes. Node replaces a negative *number*
 * with "now", but takes a numeric string as is, so times before 1970 go as a
 * string.
 */
export function utimesArg(ns: bigint): number | string {
  const s = nsToSeconds(ns);
  return s < 0 ? String(s) : s;
}

/** Nanoseconds as a pax time value, exact: `1700000000.123456789`, `-1.500000000`. */
export function nsToPaxTime(ns: bigint): string {
  const neg = ns < 0n;
  const abs = neg ? -ns : ns;
  return `${neg ? '-' : ''}${abs / NS_PER_S}.${(abs % NS_PER_S).toString().padStart(9, '0')}`;
}

export function isValidSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

export function isValidId(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= MAX_ID;
}

export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

export function errnoOf(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

/** Counts of things worth one note per restore, not one per entry (a Linux root has SELinux xattrs on every file). */
export class TallyNotes {
  private readonly tallies = new Map<
    string,
    { kind: RestoreNote['kind']; detail: string; count: number; first: string }
  >();

  add(key: string, kind: RestoreNote['kind'], detail: string, path: string): void {
    const t = this.tallies.get(key);
    if (t) t.count++;
    else this.tallies.set(key, { kind, detail, count: 1, first: path });
  }

  notes(): RestoreNote[] {
    return [...this.tallies.values()].map((t) => ({
      path: t.first,
      kind: t.kind,
      detail: t.count === 1 ? t.detail : `${t.detail} (${t.count} entries, first shown)`,
    }));
  }
}

/** Runs async jobs one after another: a sink's state (names taken, folders made) changes in call order. */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(job: () => Promise<T>): Promise<T> {
    const next = this.tail.then(job);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
