import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CorruptError, LimitError, TruncatedError } from '../../parsers/errors.js';
import {
  deriveLoad,
  devicesOf,
  devicesUnder,
  type DiskStat,
  IoSensor,
  LIVE_ROOTS,
  ownIo,
  parseDiskstats,
  parsePressure,
  parseSelfIo,
  type Sample,
  splitDev,
  sumDisks,
} from '../../agent/throttle/sensors.js';
import { ROOT } from '../helpers/fixtures.js';

// Captured on the project machine (kernel 6.18, virtio disk; 17 counters per line).
const LIVE_DISKSTATS = `   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   7       1 loop1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 214607 42333 6969506 50484 853359 338152 49589304 456632 0 88924 551643 822961 32 27928944 43724 4686 802
 253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
`;
// Lines as older kernels print them: 11 counters (before 4.18, Xen guest) and 15 (4.18–5.4, with discards).
const OLD_DISKSTATS = ` 202       1 xvda1 750193 3037 28116978 368712 16600606 7233846 424712632 23987908 0 2355636 24345740
 253       0 dm-0 46095806 0 549095028 2243928 7192424 0 305024576 12521088 0 2728444 14782668
   8       1 sda1 100 200 1600 500 50 100 1200 300 0 100 800 0 0 0 0
`;
const LIVE_PSI = `some avg10=0.31 avg60=0.53 avg300=1.71 total=47609762
full avg10=0.00 avg60=0.08 avg300=1.12 total=38488638
`;
const LIVE_SELF_IO = `rchar: 6976
wchar: 0
syscr: 10
syscw: 0
read_bytes: 0
write_bytes: 0
cancelled_write_bytes: 0
`;

describe('parseDiskstats', () => {
  it('reads the live format (17 counters) field by field', () => {
    const all = parseDiskstats(LIVE_DISKSTATS);
    expect(all.map((d) => d.name)).toEqual(['loop0', 'loop1', 'vda', 'zram0']);
    expect(all[2]).toEqual({
      major: 254,
      minor: 0,
      name: 'vda',
      readsCompleted: 214607,
      sectorsRead: 6969506,
      msReading: 50484,
      writesCompleted: 853359,
      sectorsWritten: 49589304,
      msWriting: 456632,
      inFlight: 0,
      ioTicks: 88924,
      weightedMs: 551643,
    } satisfies DiskStat);
  });

  it('reads the 11- and 15-counter formats of older kernels', () => {
    const [xvda1, dm0, sda1] = parseDiskstats(OLD_DISKSTATS);
    expect(xvda1).toMatchObject({
      major: 202,
      minor: 1,
      readsCompleted: 750193,
      msWriting: 23987908,
      weightedMs: 24345740,
    });
    expect(dm0).toMatchObject({ name: 'dm-0', ioTicks: 2728444 });
    expect(sda1).toMatchObject({ name: 'sda1', sectorsWritten: 1200, ioTicks: 100, weightedMs: 800 });
  });

  it('rejects garbage with typed errors', () => {
    expect(() => parseDiskstats('   8 0 sda 1 2 3\n')).toThrow(CorruptError);
    expect(() => parseDiskstats(' 8 0 sda 1 2 3 4 5 6 7 8 9 10 -11\n')).toThrow(/DISKSTATS|PROC_BAD_NUMBER/);
    expect(() => parseDiskstats(' 8 0 sda 1 2 3 4 5 6 7 8 9 10 1e3\n')).toThrow(CorruptError);
    expect(() => parseDiskstats(' 8 0 s/da 1 2 3 4 5 6 7 8 9 10 11\n')).toThrow(/DISKSTATS_BAD_NAME/);
    expect(() => parseDiskstats('x'.repeat(10) + '\n' + 'y\n'.repeat(70_000))).toThrow(LimitError);
    expect(parseDiskstats('')).toEqual([]);
  });

  it("parses this machine's /proc/diskstats, and its counters only grow", () => {
    const text = readFileSync('/proc/diskstats', 'utf8');
    const a = parseDiskstats(text);
    // oracle: one entry per non-empty line, names as awk sees them
    const names = text
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => l.trim().split(/\s+/)[2]);
    expect(a.map((d) => d.name)).toEqual(names);
    const b = parseDiskstats(readFileSync('/proc/diskstats', 'utf8'));
    for (const d of a) {
      const e = b.find((x) => x.name === d.name);
      if (!e) continue; // a device removed meanwhile
      expect(e.readsCompleted).toBeGreaterThanOrEqual(d.readsCompleted);
      expect(e.ioTicks).toBeGreaterThanOrEqual(d.ioTicks);
    }
  });
});

describe('parsePressure', () => {
  it('reads some and full', () => {
    expect(parsePressure(LIVE_PSI)).toEqual({
      some: { avg10: 0.31, avg60: 0.53, avg300: 1.71, total: 47609762 },
      full: { avg10: 0, avg60: 0.08, avg300: 1.12, total: 38488638 },
    });
    // older kernels' cpu file: no full line
    expect(parsePressure('some avg10=100.00 avg60=0.00 avg300=0.00 total=1\n').full).toBeUndefined();
  });

  it('rejects garbage with typed errors', () => {
    expect(() => parsePressure('')).toThrow(TruncatedError);
    expect(() => parsePressure('some avg10=0.31 avg60=0.53 total=1\n')).toThrow(/PSI_BAD_AVERAGE/);
    expect(() => parsePressure('some avg10=101.00 avg60=0.53 avg300=1.71 total=1\n')).toThrow(/PSI_BAD_AVERAGE/);
    expect(() => parsePressure('some avg10=0.31 avg60=0.53 avg300=1.71 total=-1\n')).toThrow(CorruptError);
    expect(() => parsePressure('some avg10 avg60=0.53 avg300=1.71 total=1\n')).toThrow(/PSI_BAD_FIELD/);
    expect(() => parsePressure(`${LIVE_PSI}${LIVE_PSI}`)).toThrow(/PSI_BAD_LINE/);
    expect(() => parsePressure('partial avg10=0.31\n')).toThrow(/PSI_BAD_LINE/);
  });

  it.runIf(existsSync('/proc/pressure/io'))("parses this machine's /proc/pressure/io", () => {
    let text: string | undefined;
    try {
      text = readFileSync('/proc/pressure/io', 'utf8');
    } catch {
      // listed but disabled (psi=0): nothing to parse
    }
    if (text === undefined) return;
    const p = parsePressure(text);
    expect(p.some.total).toBeGreaterThanOrEqual(0);
    expect(p.full).toBeDefined();
  });
});

describe('parseSelfIo', () => {
  it('reads our own I/O', () => {
    expect(parseSelfIo(LIVE_SELF_IO)).toEqual({ readBytes: 0, writeBytes: 0, rchar: 6976, wchar: 0 });
  });

  it('rejects garbage with typed errors', () => {
    expect(() => parseSelfIo('rchar: 1\n')).toThrow(TruncatedError);
    expect(() => parseSelfIo('read_bytes = 1\nwrite_bytes: 0\n')).toThrow(/SELFIO_BAD_LINE/);
    expect(() => parseSelfIo('read_bytes: x\nwrite_bytes: 0\n')).toThrow(CorruptError);
  });

  it('sees our own reads in the live file (a direct read from storage counts)', () => {
    const before = parseSelfIo(readFileSync('/proc/self/io', 'utf8'));
    // rchar counts every byte through read(2), page cache included
    readFileSync(join(ROOT, 'package.json'));
    const after = parseSelfIo(readFileSync('/proc/self/io', 'utf8'));
    expect(after.rchar ?? 0).toBeGreaterThan(before.rchar ?? 0);
    expect(after.readBytes).toBeGreaterThanOrEqual(before.readBytes);
  });
});

describe('finding the devices under a path', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'vdbak-sysfs-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  /** A fake sysfs: sda (sda1), sdb (sdb1), md0 on sda1+sdb1, dm-0 on md0, dm-1/dm-2 slaves of each other. */
  function fakeSys(): string {
    const sys = join(tmp, 'sys');
    const dev = (path: string, mm: string, partition = false): void => {
      mkdirSync(join(sys, path), { recursive: true });
      writeFileSync(join(sys, path, 'dev'), `${mm}\n`);
      if (partition) writeFileSync(join(sys, path, 'partition'), '1\n');
      const link = join(sys, 'dev', 'block', mm);
      mkdirSync(dirname(link), { recursive: true });
      symlinkSync(relative(dirname(link), join(sys, path)), link);
    };
    const slave = (of: string, target: string): void => {
      const link = join(sys, of, 'slaves', target.split('/').pop() ?? '');
      mkdirSync(dirname(link), { recursive: true });
      symlinkSync(relative(dirname(link), join(sys, target)), link);
    };
    dev('devices/pci/block/sda', '8:0');
    dev('devices/pci/block/sda/sda1', '8:1', true);
    dev('devices/pci/block/sdb', '8:16');
    dev('devices/pci/block/sdb/sdb1', '8:17', true);
    dev('devices/virtual/block/md0', '9:0');
    dev('devices/virtual/block/dm-0', '253:0');
    dev('devices/virtual/block/dm-1', '253:1');
    dev('devices/virtual/block/dm-2', '253:2');
    slave('devices/virtual/block/md0', 'devices/pci/block/sda/sda1');
    slave('devices/virtual/block/md0', 'devices/pci/block/sdb/sdb1');
    slave('devices/virtual/block/dm-0', 'devices/virtual/block/md0');
    slave('devices/virtual/block/dm-1', 'devices/virtual/block/dm-2');
    slave('devices/virtual/block/dm-2', 'devices/virtual/block/dm-1');
    return sys;
  }
  const roots = { proc: join(tmp, 'proc'), sys: fakeSys() };
  const names = (major: number, minor: number): string[] => devicesOf(major, minor, roots).map((d) => d.name);

  it('a partition is watched through its whole disk', () => {
    expect(devicesOf(8, 1, roots)).toEqual([{ major: 8, minor: 0, name: 'sda' }]);
    expect(names(8, 0)).toEqual(['sda']);
  });

  it('dm on md is followed down to the physical disks', () => {
    expect(names(253, 0)).toEqual(['sda', 'sdb']);
    expect(names(9, 0)).toEqual(['sda', 'sdb']);
  });

  it('a loop in slaves/ ends, an unknown device is none', () => {
    expect(names(253, 1)).toEqual([]);
    expect(names(7, 99)).toEqual([]);
  });

  it('splitDev agrees with stat(1)', () => {
    const st = statSync(ROOT, { bigint: true });
    const r = spawnSync('stat', ['-c', '%Hd:%Ld', ROOT], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const { major, minor } = splitDev(st.dev);
    expect(`${major}:${minor}`).toBe(r.stdout.trim());
    // large numbers use the high bits: glibc's makedev()
    const makedev = (ma: bigint, mi: bigint): bigint =>
      ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
    expect(splitDev(makedev(0x12345abcn, 0x89a67n))).toEqual({ major: 0x12345abc, minor: 0x89a67 });
    expect(splitDev(makedev(254n, 0n))).toEqual({ major: 254, minor: 0 });
  });

  it('the live checkout lies on whole disks that /proc/diskstats lists', () => {
    const devs = devicesUnder(ROOT);
    const { major } = splitDev(statSync(ROOT, { bigint: true }).dev);
    // on tmpfs/overlay roots there is no block device: then the answer is empty, not a throw
    if (major === 0 && devs.length === 0) return;
    expect(devs.length).toBeGreaterThan(0);
    const listed = new Set(parseDiskstats(readFileSync('/proc/diskstats', 'utf8')).map((d) => d.name));
    for (const d of devs) {
      expect(listed.has(d.name)).toBe(true);
      expect(existsSync(join(LIVE_ROOTS.sys, 'dev', 'block', `${d.major}:${d.minor}`, 'partition'))).toBe(false);
    }
  });

  it('a missing path is a typed error', () => {
    expect(() => devicesUnder(join(tmp, 'nope'))).toThrow(/THROTTLE_STAT/);
  });
});

describe('deriveLoad', () => {
  const disk = (o: Partial<DiskStat>): DiskStat => ({
    major: 8,
    minor: 0,
    name: 'sda',
    readsCompleted: 0,
    sectorsRead: 0,
    msReading: 0,
    writesCompleted: 0,
    sectorsWritten: 0,
    msWriting: 0,
    inFlight: 0,
    ioTicks: 0,
    weightedMs: 0,
    ...o,
  });
  const at = (atMs: number, d: Partial<DiskStat>, ownRead = 0, psi = 0): Sample => ({
    atMs,
    devices: 1,
    disk: disk(d),
    self: { readBytes: ownRead, writeBytes: 0 },
    pressure: {
      some: { avg10: 1, avg60: 0, avg300: 0, total: psi },
      full: { avg10: 0, avg60: 0, avg300: 0, total: psi / 2 },
    },
  });

  it('latency, utilisation and pressure over the interval', () => {
    const l = deriveLoad(
      at(0, {}),
      at(
        1000,
        { readsCompleted: 100, msReading: 1500, writesCompleted: 100, msWriting: 2500, ioTicks: 600 },
        0,
        250_000,
      ),
    );
    expect(l.latencyMs).toBeCloseTo(20);
    expect(l.foregroundIops).toBeCloseTo(200);
    expect(l.utilisation).toBeCloseTo(0.6);
    expect(l.pressureSome).toBeCloseTo(25);
    expect(l.pressureFull).toBeCloseTo(12.5);
    expect(l.pressureAvg10).toBe(1);
  });

  it('our own reads alone are not foreground load', () => {
    // 100 MiB read by us, all of the device's reads
    const bytes = 100 * 1024 * 1024;
    const l = deriveLoad(
      at(0, {}),
      at(1000, { readsCompleted: 400, sectorsRead: bytes / 512, msReading: 40_000, ioTicks: 1000 }, bytes),
    );
    expect(l.latencyMs).toBeUndefined();
    expect(l.foregroundIops).toBeCloseTo(0);
    expect(l.ownReadBps).toBe(bytes);
    expect(l.utilisation).toBe(1);
  });

  it('with ours and a foreground, ours is taken out by its share of the bytes', () => {
    // half the bytes read are ours: half of the read requests and read time go; writes are all foreground
    const l = deriveLoad(
      at(0, {}, 0),
      at(
        1000,
        { readsCompleted: 200, sectorsRead: 2000, msReading: 2000, writesCompleted: 50, msWriting: 1500 },
        512_000,
      ),
    );
    expect(l.foregroundIops).toBeCloseTo(150);
    expect(l.latencyMs).toBeCloseTo((1000 + 1500) / 150);
  });

  it('nothing to say without an interval or without devices', () => {
    expect(deriveLoad(at(5, {}), at(5, { readsCompleted: 9 }))).toEqual({ dtMs: 0 });
    const l = deriveLoad({ atMs: 0, devices: 0 }, { atMs: 500, devices: 0 });
    expect(l.latencyMs).toBeUndefined();
    expect(l.utilisation).toBeUndefined();
  });

  it('sums the disks of a datastore', () => {
    const { disk: d, devices } = sumDisks(
      [
        disk({ name: 'sda', readsCompleted: 1, ioTicks: 5 }),
        disk({ name: 'sdb', readsCompleted: 2, ioTicks: 7 }),
        disk({ name: 'sdc' }),
      ],
      new Set(['sda', 'sdb']),
    );
    expect(devices).toBe(2);
    expect(d).toMatchObject({ readsCompleted: 3, ioTicks: 12, name: 'sda+sdb' });
  });
});

describe('our own I/O', () => {
  it('does not take in the I/O of a child we reaped (the kernel adds it to /proc/self/io)', () => {
    const before = ownIo();
    const procBefore = parseSelfIo(readFileSync('/proc/self/io', 'utf8'));
    const tmp = mkdtempSync(join(tmpdir(), 'vdbak-ownio-'));
    try {
      // 8 MiB written by a child, to storage (O_DIRECT, or fsync'd)
      const r = spawnSync('dd', [
        'if=/dev/zero',
        `of=${join(tmp, 'f')}`,
        'bs=1M',
        'count=8',
        'conv=fsync',
        'status=none',
      ]);
      expect(r.status).toBe(0);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    const after = ownIo();
    const procAfter = parseSelfIo(readFileSync('/proc/self/io', 'utf8'));
    // the oracle: the kernel did add the child's writes to the process counters
    expect(procAfter.writeBytes - procBefore.writeBytes).toBeGreaterThanOrEqual(8 * 1024 * 1024);
    expect((after?.writeBytes ?? 0) - (before?.writeBytes ?? 0)).toBeLessThan(1024 * 1024);
  });
});

describe('IoSensor on this machine', () => {
  it('samples the live files', () => {
    const s = new IoSensor([ROOT]);
    const a = s.sample();
    const b = s.sample();
    expect(b.atMs).toBeGreaterThanOrEqual(a.atMs);
    expect(a.self).toBeDefined();
    if (s.devices.length > 0) expect(a.devices).toBe(s.devices.length);
    else expect(s.notes.join()).toMatch(/no block device/);
    if (existsSync('/proc/pressure/io') && a.pressure) expect(a.pressure.some.total).toBeGreaterThanOrEqual(0);
  });
});
