/**
 * What the throttle measures: the block devices under a datastore, their
 * counters in /proc/diskstats, the system's io pressure (PSI) and our own
 * I/O (/proc/self/io, every thread of this process, so the piscina workers
 * too). `IoSensor.sample()` reads the counters; `deriveLoad` turns two
 * samples into the numbers the control law uses.
 *
 * Finding the devices: stat(path).st_dev is the filesystem's device; its
 * sysfs entry (/sys/dev/block/M:m) is a partition (we watch its whole disk)
 * or a disk; a device-mapper or md device lists what it is built on in
 * `slaves/`, followed down to the physical disks, since that is where the
 * VMs' I/O and ours meet. A filesystem on an anonymous device (btrfs, NFS:
 * major 0) is looked up in /proc/self/mountinfo by its mount source. When
 * nothing is found the sensor still reports pressure, and says so.
 */
import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { errorsFor } from '../../parsers/errors.js';
import {
  DISKSTATS_SECTOR_BYTES,
  type DiskStat,
  parseDiskstats,
  parsePressure,
  parseSelfIo,
  type Pressure,
  type SelfIo,
} from './parse.js';

export { DISKSTATS_SECTOR_BYTES, parseDiskstats, parsePressure, parseSelfIo };
export type { DiskStat, Pressure, PressureLine, SelfIo } from './parse.js';

/** Where /proc and /sys are (tests point these at a fake tree). */
export interface SysRoots {
  proc: string;
  sys: string;
}
export const LIVE_ROOTS: SysRoots = { proc: '/proc', sys: '/sys' };

/** Depth of dm-on-md-on-dm stacks we follow before calling it a loop. */
const MAX_SLAVE_DEPTH = 16;
/** Below this many foreground requests per second the device counts as idle (latency is noise). */
export const MIN_FOREGROUND_IOPS = 2;

export interface BlockDeviceId {
  major: number;
  minor: number;
  /** Kernel name (sda, nvme0n1, vda, dm-0 …). */
  name: string;
}

/** Linux's dev_t encoding (glibc gnu_dev_major/minor): 12+20 bits of major, 20+12 of minor. */
export function splitDev(dev: bigint): { major: number; minor: number } {
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & 0xffffff00n));
  return { major, minor };
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The sysfs folder of a device number, or undefined. */
function sysfsOf(roots: SysRoots, major: number, minor: number): string | undefined {
  try {
    return realpathSync(join(roots.sys, 'dev', 'block', `${major}:${minor}`));
  } catch {
    return undefined;
  }
}

function idOf(dir: string): BlockDeviceId | undefined {
  const dev = readText(join(dir, 'dev'))?.trim();
  const m = dev ? /^(\d+):(\d+)$/.exec(dev) : null;
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), name: basename(dir) };
}

/** The physical whole disks a sysfs device is made of (itself when it is one). */
function leafDisks(dir: string, depth: number, out: Map<string, BlockDeviceId>, seen: Set<string>): void {
  // a partition's whole disk is its parent folder in sysfs
  const whole = readText(join(dir, 'partition')) !== undefined ? dirname(dir) : dir;
  // a loop in slaves/ (a broken or hostile tree) ends here
  if (depth > MAX_SLAVE_DEPTH || seen.has(whole)) return;
  seen.add(whole);
  let slaves: string[] = [];
  try {
    slaves = readdirSync(join(whole, 'slaves'));
  } catch {
    // no slaves folder: a plain disk
  }
  if (slaves.length === 0) {
    const id = idOf(whole);
    if (id) out.set(id.name, id);
    return;
  }
  for (const s of slaves) {
    try {
      leafDisks(realpathSync(join(whole, 'slaves', s)), depth + 1, out, seen);
    } catch {
      // a slave that vanished meanwhile
    }
  }
}

/** The device number of the mount holding `path` when st_dev is anonymous (major 0): its source's rdev. */
function anonymousSource(roots: SysRoots, major: number, minor: number): { major: number; minor: number } | undefined {
  const text = readText(join(roots.proc, 'self', 'mountinfo'));
  if (!text) return undefined;
  for (const line of text.split('\n')) {
    // id parent major:minor root mountpoint options [optional…] - fstype source superopts
    const f = line.split(' ');
    if (f[2] !== `${major}:${minor}`) continue;
    const dash = f.indexOf('-');
    const source = dash > 0 ? f[dash + 2] : undefined;
    if (!source?.startsWith('/dev/')) continue;
    try {
      const st = statSync(source, { bigint: true });
      if (st.isBlockDevice()) return splitDev(st.rdev);
    } catch {
      // the source is not visible to us
    }
  }
  return undefined;
}

/**
 * The physical block devices holding `path` (a datastore folder). Empty when
 * they cannot be found (tmpfs, overlay, NFS, no sysfs): the caller then has
 * only pressure to go on.
 */
export function devicesUnder(path: string, roots: SysRoots = LIVE_ROOTS): BlockDeviceId[] {
  let st;
  try {
    st = statSync(path, { bigint: true });
  } catch (e) {
    throw errorsFor({ image: path, layer: 'file' }).io('THROTTLE_STAT', `cannot stat: ${(e as Error).message}`);
  }
  let { major, minor } = splitDev(st.dev);
  if (major === 0) {
    const src = anonymousSource(roots, major, minor);
    if (!src) return [];
    ({ major, minor } = src);
  }
  return devicesOf(major, minor, roots);
}

/** The physical whole disks under device major:minor (itself, its disk, or what a dm/md device is built on). */
export function devicesOf(major: number, minor: number, roots: SysRoots = LIVE_ROOTS): BlockDeviceId[] {
  const dir = sysfsOf(roots, major, minor);
  if (!dir) return [];
  const out = new Map<string, BlockDeviceId>();
  leafDisks(dir, 0, out, new Set());
  return [...out.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/** One reading of every counter, at one time. */
export interface Sample {
  /** Monotonic milliseconds. */
  atMs: number;
  /** The watched devices' counters, summed. Undefined when no device is watched or diskstats is unreadable. */
  disk?: DiskStat;
  /** How many devices were summed (utilisation is divided by it). */
  devices: number;
  pressure?: Pressure;
  self?: SelfIo;
}

/** Sums the counters of `names` (a datastore on several disks). */
export function sumDisks(stats: DiskStat[], names: Set<string>): { disk?: DiskStat; devices: number } {
  let disk: DiskStat | undefined;
  let devices = 0;
  for (const s of stats) {
    if (!names.has(s.name)) continue;
    devices++;
    if (!disk) {
      disk = { ...s, name: [...names].sort().join('+') };
      continue;
    }
    disk.readsCompleted += s.readsCompleted;
    disk.sectorsRead += s.sectorsRead;
    disk.msReading += s.msReading;
    disk.writesCompleted += s.writesCompleted;
    disk.sectorsWritten += s.sectorsWritten;
    disk.msWriting += s.msWriting;
    disk.inFlight += s.inFlight;
    disk.ioTicks += s.ioTicks;
    disk.weightedMs += s.weightedMs;
  }
  return disk ? { disk, devices } : { devices };
}

/** The load between two samples, as the control law sees it. */
export interface Load {
  /** Length of the interval. */
  dtMs: number;
  /** Mean latency of the foreground's requests (ms), undefined when the foreground is idle or unknown. */
  latencyMs?: number;
  /** Foreground requests per second (ours removed). */
  foregroundIops?: number;
  /** Share of the interval the devices were busy, 0..1 (ours included: the kernel cannot tell). */
  utilisation?: number;
  /** io pressure "some" over the interval, percent (from the µs totals, not the 10 s average). */
  pressureSome?: number;
  pressureFull?: number;
  /** io pressure "some" avg10 as the kernel reports it. */
  pressureAvg10?: number;
  /** Our own bytes per second read from / written to storage. */
  ownReadBps?: number;
  ownWriteBps?: number;
}

const nonNeg = (x: number): number => (x > 0 ? x : 0);
const clamp01 = (x: number): number => Math.min(1, Math.max(0, x));

/**
 * The load between `a` and `b` (b later).
 *
 * Our share is removed by bytes: of the device's Δsectors read, the part our
 * process read (Δread_bytes) is ours, and that share of the read requests and
 * of the read time is taken away (likewise for writes). diskstats has no
 * per-process counters, so this assumes our requests wait as long per request
 * as the others do; what it achieves is that our own reads alone never look
 * like foreground load, and that a foreground needing the disk shows its
 * latency. Utilisation includes us (a device we keep busy is busy).
 */
export function deriveLoad(a: Sample, b: Sample): Load {
  const dtMs = b.atMs - a.atMs;
  const load: Load = { dtMs };
  if (!(dtMs > 0)) return load;
  const dtS = dtMs / 1000;
  let ownRead = 0;
  let ownWrite = 0;
  if (a.self && b.self) {
    ownRead = nonNeg(b.self.readBytes - a.self.readBytes);
    ownWrite = nonNeg(b.self.writeBytes - a.self.writeBytes);
    load.ownReadBps = ownRead / dtS;
    load.ownWriteBps = ownWrite / dtS;
  }
  if (a.disk && b.disk && a.devices === b.devices && b.devices > 0) {
    const d = (k: keyof Omit<DiskStat, 'name'>): number => nonNeg((b.disk?.[k] ?? 0) - (a.disk?.[k] ?? 0));
    const readBytes = d('sectorsRead') * DISKSTATS_SECTOR_BYTES;
    const writeBytes = d('sectorsWritten') * DISKSTATS_SECTOR_BYTES;
    const fgRead = readBytes > 0 ? 1 - clamp01(ownRead / readBytes) : 1;
    const fgWrite = writeBytes > 0 ? 1 - clamp01(ownWrite / writeBytes) : 1;
    const ios = d('readsCompleted') * fgRead + d('writesCompleted') * fgWrite;
    const ms = d('msReading') * fgRead + d('msWriting') * fgWrite;
    load.foregroundIops = ios / dtS;
    if (load.foregroundIops >= MIN_FOREGROUND_IOPS && ios > 0) load.latencyMs = ms / ios;
    load.utilisation = clamp01(d('ioTicks') / dtMs / b.devices);
  }
  if (b.pressure) {
    load.pressureAvg10 = b.pressure.some.avg10;
    if (a.pressure) {
      const us = dtMs * 1000;
      load.pressureSome = Math.min(100, (nonNeg(b.pressure.some.total - a.pressure.some.total) / us) * 100);
      if (a.pressure.full && b.pressure.full)
        load.pressureFull = Math.min(100, (nonNeg(b.pressure.full.total - a.pressure.full.total) / us) * 100);
    }
  }
  return load;
}

/** Reads a kernel file and parses it; a missing file is undefined, garbage is a typed error. */
function readParsed<T>(path: string, parse: (text: string, file: string) => T): T | undefined {
  const text = readText(path);
  return text === undefined ? undefined : parse(text, path);
}

/** Samples the devices under some paths, the io pressure and our own I/O. */
export class IoSensor {
  /** The devices watched (whole physical disks). */
  readonly devices: BlockDeviceId[];
  /** Why the sensor sees less than it would like (no devices, no PSI), for status. */
  readonly notes: string[] = [];
  private readonly names: Set<string>;

  constructor(
    paths: string[],
    private readonly roots: SysRoots = LIVE_ROOTS,
    private readonly clock: () => number = () => performance.now(),
  ) {
    const found = new Map<string, BlockDeviceId>();
    for (const p of paths) {
      const devs = devicesUnder(p, roots);
      if (devs.length === 0) this.notes.push(`${p}: no block device found (latency unknown, pressure only)`);
      for (const d of devs) found.set(d.name, d);
    }
    this.devices = [...found.values()];
    this.names = new Set(this.devices.map((d) => d.name));
    if (readText(join(roots.proc, 'pressure', 'io')) === undefined) this.notes.push('no /proc/pressure/io (PSI off)');
  }

  sample(): Sample {
    const atMs = this.clock();
    const s: Sample = { atMs, devices: 0 };
    if (this.names.size > 0) {
      const stats = readParsed(join(this.roots.proc, 'diskstats'), parseDiskstats);
      if (stats) Object.assign(s, sumDisks(stats, this.names));
    }
    // PSI can be listed yet refuse reads (psi=0 on the command line: EOPNOTSUPP): readText gives undefined
    const pressure = readParsed(join(this.roots.proc, 'pressure', 'io'), parsePressure);
    if (pressure) s.pressure = pressure;
    const self = ownIo(this.roots);
    if (self) s.self = self;
    return s;
  }
}

/**
 * Our own I/O: the sum over our live threads' /proc/self/task/<tid>/io.
 * Not /proc/self/io: when the kernel reaps a child process it adds the
 * child's whole I/O to the parent's counters there, so a `dd` we spawned
 * and waited for would look like our own reads and writes all at once, and
 * the foreground it made would vanish from the sample. A thread that exits
 * takes its counts with it; the caller clamps the negative delta to 0.
 */
export function ownIo(roots: SysRoots = LIVE_ROOTS): SelfIo | undefined {
  const dir = join(roots.proc, 'self', 'task');
  let tids: string[];
  try {
    tids = readdirSync(dir);
  } catch {
    return readParsed(join(roots.proc, 'self', 'io'), parseSelfIo);
  }
  let sum: SelfIo | undefined;
  for (const tid of tids) {
    // a thread can end between readdir and read: skip it
    const io = readParsed(join(dir, tid, 'io'), parseSelfIo);
    if (!io) continue;
    sum = sum
      ? { readBytes: sum.readBytes + io.readBytes, writeBytes: sum.writeBytes + io.writeBytes }
      : { readBytes: io.readBytes, writeBytes: io.writeBytes };
  }
  return sum ?? readParsed(join(roots.proc, 'self', 'io'), parseSelfIo);
}
