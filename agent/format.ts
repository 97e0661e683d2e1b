/** Small formatting helpers for the CLI's human output. */
import type { FsEntry } from '../parsers/fs/types.js';

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** Nanoseconds since the epoch as an ISO-8601 UTC string with all nine fraction digits. */
export function isoNs(ns: bigint): string {
  const ms = ns / 1_000_000n;
  const frac = ((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n;
  const base = new Date(Number(ms)).toISOString(); // 2024-01-02T03:04:05.678Z
  return `${base.slice(0, 19)}.${frac.toString().padStart(9, '0')}Z`;
}

const TYPE_CHAR: Record<string, string> = {
  file: '-',
  dir: 'd',
  symlink: 'l',
  chardev: 'c',
  blockdev: 'b',
  fifo: 'p',
  socket: 's',
  other: '?',
};

/** `ls -l` style mode string, e.g. drwxr-xr-x. */
export function modeString(e: { mode: number; type: string }): string {
  const m = e.mode;
  const bit = (mask: number, c: string) => (m & mask ? c : '-');
  let s = TYPE_CHAR[e.type] ?? '?';
  s += bit(0o400, 'r') + bit(0o200, 'w');
  s += m & 0o4000 ? (m & 0o100 ? 's' : 'S') : bit(0o100, 'x');
  s += bit(0o40, 'r') + bit(0o20, 'w');
  s += m & 0o2000 ? (m & 0o10 ? 's' : 'S') : bit(0o10, 'x');
  s += bit(0o4, 'r') + bit(0o2, 'w');
  s += m & 0o1000 ? (m & 0o1 ? 't' : 'T') : bit(0o1, 'x');
  return s;
}

/** One entry as the JSON object `ls --json` prints (one per line). */
export function entryJson(e: FsEntry): Record<string, unknown> {
  const o: Record<string, unknown> = {
    path: e.path,
    type: e.type,
    size: e.size,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    mtime: isoNs(e.mtimeNs),
    mtimeNs: e.mtimeNs.toString(),
    id: e.id,
    nlink: e.nlink,
  };
  if (e.linkTarget !== undefined) o.linkTarget = e.linkTarget;
  if (e.rdev !== undefined) o.rdev = e.rdev;
  if (e.streams?.length) o.streams = e.streams;
  if (e.flags?.length) o.flags = e.flags;
  if (e.attributes !== undefined) o.attributes = e.attributes;
  if (e.reparseTag !== undefined) o.reparseTag = e.reparseTag;
  if (e.ownerSid !== undefined) o.ownerSid = e.ownerSid;
  if (e.shortName !== undefined) o.shortName = e.shortName;
  return o;
}
