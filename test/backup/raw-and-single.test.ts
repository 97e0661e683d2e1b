/**
 * Issue 5 §1/§2: a volume vdbak cannot read as files (cramfs, swap) is kept
 * as its allocated bytes, reported, and restores to the partition's exact
 * bytes (checked against dd of the raw disk); unallocated grains are not read
 * (checked against qemu-img map). A single-file restore reads only that file's
 * chunks, and needs neither the VM nor its disk image (both are deleted
 * before restoring).
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { resolveBackup, resolvePath } from '../../agent/browse/refs.js';
import { openRepo } from '../../agent/repo.js';
import { DirSink } from '../../agent/restore/dir-sink.js';
import { restorePath } from '../../agent/restore/engine.js';
import { fixture, run } from '../helpers/fixtures.js';
import type { Target } from '../../transport/targets/types.js';
import { type BackupJson, fileSha, newRepo, vdbakOk } from '../helpers/vdbak.js';

let dir: string;
let repo: string;
let scratch: string;
let backup: BackupJson;
/** The image as qemu-img maps it, taken before the VM was deleted. */
let dataExtents: { start: number; length: number }[];

beforeAll(() => {
  dir = fixture('backup-raw.sh');
  scratch = mkdtempSync(join(tmpdir(), 'vdbak-raw-'));
  const vm = join(scratch, 'vm1');
  mkdirSync(vm);
  copyFileSync(join(dir, 'disk.vmdk'), join(vm, 'vm1.vmdk'));
  dataExtents = (
    JSON.parse(run('qemu-img', ['map', '--output=json', join(vm, 'vm1.vmdk')])) as {
      start: number;
      length: number;
      data: boolean;
    }[]
  ).filter((e) => e.data);
  repo = newRepo('raw');
  backup = vdbakOk(['backup', '--repo', repo, '--json', vm]).jsonLines<BackupJson>()[0]!;
  // the VM is gone: everything below reads the repository only
  rmSync(vm, { recursive: true });
});

describe('volumes without a filesystem vdbak reads', () => {
  test('are kept raw and reported', () => {
    expect(backup.volumes.map((v) => [v.name, v.mode])).toEqual([
      ['d0p1', 'raw'],
      ['d0p2', 'raw'],
      ['d0p3', 'files'],
    ]);
    expect(backup.warningList.filter((w) => /kept as its allocated bytes/.test(w)).length).toBe(2);
  });

  test('only allocated grains are read: raw volumes cost their allocated bytes, the ext volume its files', () => {
    const vols = vdbakOk(['ls', '--repo', repo, 'vm1', '--json']).json<
      { path: string; offset: number; length: number }[]
    >();
    let allocated = 0;
    // partitions only: /d0 (the disk's regions) and /config are pseudo-volumes
    for (const v of vols.filter((x) => /^\/d\d+p\d+$/.test(x.path) && x.path !== '/d0p3')) {
      for (const e of dataExtents) {
        allocated += Math.max(0, Math.min(e.start + e.length, v.offset + v.length) - Math.max(e.start, v.offset));
      }
    }
    const files = ['docs/big.bin', 'docs/small.txt', 'numbers.txt']
      .map((f) => statSync(join(dir, 'src', f)).size)
      .reduce((a, b) => a + b, 0);
    expect(allocated).toBeGreaterThan(1024 * 1024);
    expect(allocated).toBeLessThan(4 * 1024 * 1024);
    // the disk's regions (partition table, fs metadata) are read as well, and counted apart
    expect(backup.bytesRead - backup.regionBytesRead).toBe(allocated + files);
  });

  test('restore and cat give the partitions\u2019 exact bytes', () => {
    const out = join(mkdtempSync(join(scratch, 'r-')), 'out');
    vdbakOk(['restore', '--repo', repo, 'vm1', '/d0p1', '--to', out]);
    expect(statSync(join(out, 'volume.raw')).size).toBe(statSync(join(dir, 'p1.bin')).size);
    expect(fileSha(join(out, 'volume.raw'))).toBe(fileSha(join(dir, 'p1.bin')));
    const swap = vdbakOk(['cat', '--repo', repo, 'vm1', '/d0p2/volume.raw']).bytes;
    expect(swap.equals(readFileSync(join(dir, 'p2.bin')))).toBe(true);
  });
});

/** A target that counts what is read from it. */
function counting(inner: Target): Target & { ranges: number; bytes: number } {
  const t = {
    ranges: 0,
    bytes: 0,
    location: inner.location,
    put: (n: string, b: Uint8Array) => inner.put(n, b),
    putStream: (n: string, s: AsyncIterable<Uint8Array>) => inner.putStream(n, s),
    get: async (n: string) => {
      const b = await inner.get(n);
      t.bytes += b.length;
      return b;
    },
    getRange: async (n: string, o: number, l: number) => {
      t.ranges++;
      const b = await inner.getRange(n, o, l);
      t.bytes += b.length;
      return b;
    },
    stat: (n: string) => inner.stat(n),
    exists: (n: string) => inner.exists(n),
    list: (p: string) => inner.list(p),
    delete: (n: string) => inner.delete(n),
    isNotFound: (e: unknown) => inner.isNotFound(e),
  };
  return t;
}

describe('a single-file restore', () => {
  test('reads only that file\u2019s chunks, without the VM or its disk', async () => {
    const r = openRepo(repo, { readonly: true });
    try {
      const target = counting(r.target);
      const b = resolveBackup(r.catalog, 'vm1');
      const where = resolvePath(r.catalog, b, '/d0p3/docs/big.bin');
      const v = r.catalog.lookup(b.id, where.volume!.volumeId, where.inner)!;
      const chunks = v.chunks ?? [];
      expect(chunks.length).toBeGreaterThan(1);
      const stored = chunks.reduce((a, h) => a + r.catalog.chunkLocation(h)!.storedLength, 0);
      const out = join(mkdtempSync(join(scratch, 's-')), 'out');
      const report = await restorePath(
        r.catalog,
        target,
        b,
        '/d0p3/docs/big.bin',
        new DirSink(out, { overwrite: false }),
      );
      expect(report.files).toBe(1);
      expect(fileSha(join(out, 'big.bin'))).toBe(fileSha(join(dir, 'src', 'docs', 'big.bin')));
      expect(target.ranges).toBe(chunks.length);
      expect(target.bytes).toBe(stored);
    } finally {
      r.close();
    }
  });
});
