/**
 * Pure parsers for the kernel files the throttle reads: /proc/diskstats,
 * /proc/pressure/io and /proc/self/io. They take the file's text and return
 * plain numbers, or throw a typed error naming the file and the line; they
 * never touch the filesystem, so tests feed them captured text.
 *
 * Formats (Documentation/admin-guide/iostats.rst, accounting/psi.rst,
 * filesystems/proc.rst): diskstats has 3 identifying fields then 11 (before
 * 4.18), 15 (4.18+: discards) or 17 (5.5+: flushes) counters; pressure has
 * `some` and, for io, `full` lines of key=value pairs; self/io is `key: value`.
 */
import { errorsFor } from '../../parsers/errors.js';

/** Bytes per sector as /proc/diskstats counts them, whatever the device's real sector size. */
export const DISKSTATS_SECTOR_BYTES = 512;
/** Counters after major, minor and name: 11, 15 or 17 depending on the kernel. */
const DISKSTATS_COUNTER_COUNTS = new Set([11, 15, 17]);
/** Lines we accept in one file: a controller has at most a few thousand block devices. */
const MAX_LINES = 65_536;

export interface DiskStat {
  major: number;
  minor: number;
  name: string;
  readsCompleted: number;
  sectorsRead: number;
  /** Milliseconds spent on reads (summed over requests: grows faster than wall time with a queue). */
  msReading: number;
  writesCompleted: number;
  sectorsWritten: number;
  msWriting: number;
  inFlight: number;
  /** Milliseconds during which the device had at least one request in flight (utilisation). */
  ioTicks: number;
  /** In-flight requests × time: the queue's weighted time. */
  weightedMs: number;
}

export interface PressureLine {
  /** Share of wall time (percent) over the last 10, 60, 300 s. */
  avg10: number;
  avg60: number;
  avg300: number;
  /** Microseconds of stall since boot. */
  total: number;
}

export interface Pressure {
  some: PressureLine;
  /** Absent from older kernels' cpu file; io always has it. */
  full?: PressureLine;
}

export interface SelfIo {
  /** Bytes this process (every thread) caused to be fetched from storage. */
  readBytes: number;
  /** Bytes this process caused to be sent to storage (dirtied pages count when written back). */
  writeBytes: number;
  /** rchar/wchar: bytes passed through read/write calls, page-cache hits included. */
  rchar?: number;
  wchar?: number;
}

function lines(text: string, file: string): string[] {
  const out = text.split('\n').filter((l) => l.trim() !== '');
  if (out.length > MAX_LINES) {
    throw errorsFor({ image: file, layer: 'file' }).limit('PROC_TOO_MANY_LINES', `more than ${MAX_LINES} lines`, {
      lines: out.length,
    });
  }
  return out;
}

/** A non-negative integer counter; the kernel prints unsigned decimals. */
function counter(s: string | undefined, file: string, line: number, what: string): number {
  if (s === undefined || !/^\d{1,20}$/.test(s)) {
    throw errorsFor({ image: file, layer: 'file' }).corrupt(
      'PROC_BAD_NUMBER',
      `line ${line}: ${what} is not a counter`,
      {
        line,
        value: s ?? null,
      },
    );
  }
  // above 2^53 precision is lost, not correctness of deltas between close samples
  return Number(s);
}

/** Parses /proc/diskstats into one entry per device, in file order. */
export function parseDiskstats(text: string, file = '/proc/diskstats'): DiskStat[] {
  const err = errorsFor({ image: file, layer: 'file' });
  const out: DiskStat[] = [];
  for (const [i, raw] of lines(text, file).entries()) {
    const n = i + 1;
    const f = raw.trim().split(/\s+/);
    const counters = f.length - 3;
    if (!DISKSTATS_COUNTER_COUNTS.has(counters)) {
      throw err.corrupt('DISKSTATS_FIELD_COUNT', `line ${n}: ${f.length} fields, expected 14, 18 or 20`, {
        line: n,
        fields: f.length,
      });
    }
    const name = f[2] ?? '';
    if (!/^[\w.:+-]{1,64}$/.test(name)) {
      throw err.corrupt('DISKSTATS_BAD_NAME', `line ${n}: device name is not a kernel name`, { line: n });
    }
    const c = (k: number, what: string): number => counter(f[k], file, n, what);
    out.push({
      major: c(0, 'major'),
      minor: c(1, 'minor'),
      name,
      readsCompleted: c(3, 'reads completed'),
      sectorsRead: c(5, 'sectors read'),
      msReading: c(6, 'ms reading'),
      writesCompleted: c(7, 'writes completed'),
      sectorsWritten: c(9, 'sectors written'),
      msWriting: c(10, 'ms writing'),
      inFlight: c(11, 'in flight'),
      ioTicks: c(12, 'io ticks'),
      weightedMs: c(13, 'weighted ms'),
    });
  }
  return out;
}

function pressureLine(fields: string[], file: string, line: number): PressureLine {
  const err = errorsFor({ image: file, layer: 'file' });
  const kv = new Map<string, string>();
  for (const f of fields) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw err.corrupt('PSI_BAD_FIELD', `line ${line}: "${f.slice(0, 40)}" is not key=value`, { line });
    kv.set(f.slice(0, eq), f.slice(eq + 1));
  }
  const avg = (k: string): number => {
    const v = kv.get(k);
    if (v === undefined || !/^\d{1,3}\.\d{1,2}$/.test(v) || Number(v) > 100) {
      throw err.corrupt('PSI_BAD_AVERAGE', `line ${line}: ${k} is not a percentage`, { line, value: v ?? null });
    }
    return Number(v);
  };
  return {
    avg10: avg('avg10'),
    avg60: avg('avg60'),
    avg300: avg('avg300'),
    total: counter(kv.get('total'), file, line, 'total'),
  };
}

/** Parses a pressure-stall file (/proc/pressure/io or a cgroup's io.pressure). */
export function parsePressure(text: string, file = '/proc/pressure/io'): Pressure {
  const err = errorsFor({ image: file, layer: 'file' });
  let some: PressureLine | undefined;
  let full: PressureLine | undefined;
  for (const [i, raw] of lines(text, file).entries()) {
    const [kind, ...rest] = raw.trim().split(/\s+/);
    if (kind === 'some' && !some) some = pressureLine(rest, file, i + 1);
    else if (kind === 'full' && !full) full = pressureLine(rest, file, i + 1);
    else throw err.corrupt('PSI_BAD_LINE', `line ${i + 1}: expected one "some" and one "full" line`, { line: i + 1 });
  }
  if (!some) throw err.truncated('PSI_NO_SOME', 'no "some" line');
  return full ? { some, full } : { some };
}

/** Parses /proc/<pid>/io. read_bytes and write_bytes are required; the rest is optional. */
export function parseSelfIo(text: string, file = '/proc/self/io'): SelfIo {
  const err = errorsFor({ image: file, layer: 'file' });
  const kv = new Map<string, number>();
  for (const [i, raw] of lines(text, file).entries()) {
    const m = /^\s*([a-z_]{1,40}):\s*(\S*)\s*$/.exec(raw);
    if (!m?.[1]) throw err.corrupt('SELFIO_BAD_LINE', `line ${i + 1}: not "key: value"`, { line: i + 1 });
    kv.set(m[1], counter(m[2], file, i + 1, m[1]));
  }
  const need = (k: string): number => {
    const v = kv.get(k);
    if (v === undefined) throw err.truncated('SELFIO_MISSING', `no ${k} line`, { key: k });
    return v;
  };
  const out: SelfIo = { readBytes: need('read_bytes'), writeBytes: need('write_bytes') };
  const rchar = kv.get('rchar');
  const wchar = kv.get('wchar');
  if (rchar !== undefined) out.rchar = rchar;
  if (wchar !== undefined) out.wchar = wchar;
  return out;
}
