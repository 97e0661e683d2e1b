/**
 * The rebuilt-disk writers against qemu-img: the same scattered writes go to
 * a plain file (the oracle) and to each writer; `qemu-img compare` says the
 * virtual contents are equal, `qemu-img check` passes for qcow2 and sparse
 * VMDK, `qemu-img map` says only the grains/clusters written are allocated,
 * and our own disk reader opens the result with the same bytes.
 */
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openWriter } from '../../agent/restore-vm/writers/open.js';
import { DISK_FORMATS, type DiskFormat, formatFileNames } from '../../agent/restore-vm/writers/types.js';
import { openDisk } from '../../parsers/disk/open.js';
import { prng } from '../helpers/fuzz.js';

const MiB = 1024 * 1024;
const UNIT = 64 * 1024;

function run(cmd: string, args: string[]): { code: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

interface Write {
  offset: number;
  bytes: Buffer;
}

/** Writes that do not overlap: whole units, partial units, ranges across unit and table boundaries. */
function scatteredWrites(size: number, seed: number): Write[] {
  const rnd = prng(seed);
  const taken: [number, number][] = [];
  const out: Write[] = [];
  const add = (offset: number, length: number) => {
    if (offset < 0 || offset + length > size || length <= 0) return;
    if (taken.some(([a, b]) => offset < b && a < offset + length)) return;
    taken.push([offset, offset + length]);
    const bytes = Buffer.alloc(length);
    for (let i = 0; i < length; i += 4096) bytes.writeUInt32LE(Math.floor(rnd() * 0xffffffff), i);
    bytes[length - 1] = 0xa5;
    out.push({ offset, bytes });
  };
  add(0, 512); // like a partition table
  add(size - 4096, 4096); // the last block (a backup GPT)
  add(32 * MiB - 1000, 3000); // across a VMDK grain-table boundary
  add(512 * MiB - 700, 1400); // across a qcow2 L2 boundary
  add(UNIT * 3 + 100, UNIT * 2); // across two units
  for (let i = 0; i < 60; i++) {
    const len = 1 + Math.floor(rnd() * (i % 5 === 0 ? 3 * MiB : 20000));
    add(Math.floor(rnd() * (size - len)), len);
  }
  // written out of order, as the rebuild does (regions, then files)
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function unitsOf(writes: Write[], unit: number): Set<number> {
  const s = new Set<number>();
  for (const w of writes) {
    for (let u = Math.floor(w.offset / unit); u * unit < w.offset + w.bytes.length; u++) s.add(u);
  }
  return s;
}

interface MapEntry {
  start: number;
  length: number;
  data: boolean;
}

function allocatedUnits(path: string, fmt: string, unit: number): Set<number> {
  const r = spawnSync('qemu-img', ['map', '--output=json', '-f', fmt, path], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const s = new Set<number>();
  for (const e of JSON.parse(r.stdout) as MapEntry[]) {
    if (!e.data) continue;
    for (let u = Math.floor(e.start / unit); u * unit < e.start + e.length; u++) s.add(u);
  }
  return s;
}

const QEMU_FORMAT: Record<DiskFormat, string> = {
  raw: 'raw',
  'vmdk-flat': 'vmdk',
  'vmdk-sparse': 'vmdk',
  qcow2: 'qcow2',
};
const SIZE = 600 * MiB;

describe('disk writers', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vdbak-writers-'));
  const writes = scatteredWrites(SIZE, 7);
  const oracle = join(dir, 'oracle.raw');
  const fd = openSync(oracle, 'w');
  for (const w of writes) writeSync(fd, w.bytes, 0, w.bytes.length, w.offset);
  closeSync(fd);
  spawnSync('truncate', ['-s', String(SIZE), oracle]);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const format of DISK_FORMATS) {
    it(`${format}: qemu-img compare equals the plain file; check passes; only written units allocated`, async () => {
      const path = join(dir, formatFileNames(format, `disk-${format}`)[0]!);
      const w = await openWriter(format, path, SIZE, { overwrite: false });
      for (const x of writes) await w.write(x.offset, x.bytes);
      // read back before finishing (the rebuild checks bytes stored twice this way)
      const fdo = openSync(oracle, 'r');
      try {
        for (const x of writes.slice(0, 12)) {
          const off = Math.max(0, x.offset - 5000);
          const len = Math.min(SIZE - off, x.bytes.length + 10000);
          const want = Buffer.alloc(len);
          readSync(fdo, want, 0, len, off);
          expect((await w.read(off, len)).equals(want)).toBe(true);
        }
      } finally {
        closeSync(fdo);
      }
      await w.finish();
      for (const f of w.files) expect(existsSync(f)).toBe(true);
      const qf = QEMU_FORMAT[format];
      const cmp = run('qemu-img', ['compare', '-f', qf, '-F', 'raw', path, oracle]);
      expect(cmp.code, cmp.out).toBe(0);
      const info = JSON.parse(run('qemu-img', ['info', '--output=json', '-f', qf, path]).out) as {
        'virtual-size': number;
        format: string;
        'format-specific'?: { data?: { 'create-type'?: string; compat?: string } };
      };
      expect(info['virtual-size']).toBe(SIZE);
      if (format === 'qcow2') expect(info['format-specific']?.data?.compat).toBe('1.1');
      if (format === 'vmdk-sparse') expect(info['format-specific']?.data?.['create-type']).toBe('monolithicSparse');
      if (format === 'vmdk-flat') expect(info['format-specific']?.data?.['create-type']).toBe('monolithicFlat');
      if (format === 'qcow2' || format === 'vmdk-sparse') {
        const chk = run('qemu-img', ['check', '-f', qf, path]);
        expect(chk.code, chk.out).toBe(0);
        expect(chk.out).toMatch(/No errors were found/);
        expect(allocatedUnits(path, qf, UNIT)).toEqual(unitsOf(writes, UNIT));
      } else {
        // sparse on the host: blocks used stay near what was written, not the disk size
        const data = w.files.at(-1)!;
        const written = writes.reduce((a, x) => a + x.bytes.length, 0);
        expect(statSync(data).blocks * 512).toBeLessThan(written + writes.length * 2 * UNIT);
      }
      // our own reader agrees
      const dev = openDisk(path);
      try {
        expect(dev.size).toBe(SIZE);
        for (const x of writes.slice(0, 20)) expect(dev.read(x.offset, x.bytes.length).equals(x.bytes)).toBe(true);
      } finally {
        dev.close();
      }
    });
  }

  it('refuses an existing file without overwrite, replaces it with', async () => {
    const path = join(dir, 'exists.qcow2');
    writeFileSync(path, 'x');
    await expect(openWriter('qcow2', path, MiB, { overwrite: false })).rejects.toMatchObject({
      code: 'RESTORE_VM_EXISTS',
    });
    const w = await openWriter('qcow2', path, MiB, { overwrite: true });
    await w.write(0, Buffer.alloc(10, 1));
    await w.finish();
    expect(run('qemu-img', ['check', path]).code).toBe(0);
  });

  it('refuses a write outside the disk and removes its files on abort', async () => {
    const path = join(dir, 'bad.vmdk');
    const w = await openWriter('vmdk-flat', path, MiB, { overwrite: false });
    await expect(w.write(MiB - 10, Buffer.alloc(20))).rejects.toMatchObject({ code: 'REBUILD_OUT_OF_DISK' });
    await w.abort();
    for (const f of w.files) expect(existsSync(f)).toBe(false);
  });

  it('an empty disk is valid in every format', async () => {
    for (const format of DISK_FORMATS) {
      const path = join(dir, formatFileNames(format, `empty-${format}`)[0]!);
      const w = await openWriter(format, path, 3 * MiB, { overwrite: false });
      await w.finish();
      const qf = QEMU_FORMAT[format];
      if (format === 'qcow2' || format === 'vmdk-sparse')
        expect(run('qemu-img', ['check', '-f', qf, path]).code).toBe(0);
      expect(run('qemu-img', ['compare', '-f', qf, '-F', 'raw', path, join(dir, 'oracle.raw')]).code).not.toBe(0);
      const zero = join(dir, `zero-${format}.raw`);
      spawnSync('truncate', ['-s', String(3 * MiB), zero]);
      expect(run('qemu-img', ['compare', '-f', qf, '-F', 'raw', path, zero]).code).toBe(0);
    }
  });
});
