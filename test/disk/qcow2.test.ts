/**
 * The qcow2 reader against qemu: images written by qemu-img / qemu-io
 * (test/fixtures/qcow2-qemu.sh) and the public corpus images
 * (test/fixtures/qcow2-corpus.sh). The whole device must hash like
 * `qemu-img convert -O raw`, and allocated() must equal the data:true ranges
 * of `qemu-img map --output=json`.
 */
import { closeSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { FileSource } from '../../parsers/disk/file.js';
import { openDisk } from '../../parsers/disk/open.js';
import { UnsupportedError } from '../../parsers/errors.js';
import { CORPUS, fixture } from '../helpers/fixtures.js';
import { prng } from '../helpers/fuzz.js';
import { deviceSha256, qemuDataRanges } from './qcow2-helpers.js';

const qemuDir = fixture('qcow2-qemu.sh');
const qemuImages = readdirSync(qemuDir)
  .filter((f) => f.endsWith('.qcow2'))
  .map((f) => f.replace(/\.qcow2$/, ''))
  .sort();

/** Compares `count` random reads of `dev` with the same bytes of a raw file. */
function compareRandomReads(path: string, rawPath: string, count: number, seed: number): void {
  const dev = openDisk(path);
  const fd = openSync(rawPath, 'r');
  try {
    const rnd = prng(seed);
    for (let i = 0; i < count; i++) {
      const len = 1 + Math.floor(rnd() * (i % 4 === 0 ? 3 * 1024 * 1024 : 9000));
      const off = Math.floor(rnd() * (dev.size - len));
      const want = Buffer.alloc(len);
      readSync(fd, want, 0, len, off);
      const got = dev.read(off, len);
      if (!got.equals(want)) expect.fail(`${path}: read(${off}, ${len}) differs from ${rawPath}`);
    }
  } finally {
    closeSync(fd);
    dev.close();
  }
}

describe('qcow2 images written by qemu-img and qemu-io', () => {
  it('made every variant (both versions, deflate and zstd, three cluster sizes, chains)', () => {
    for (const v of ['0.10', '1.1']) {
      for (const cs of ['512', '64k', '2M']) {
        expect(qemuImages).toContain(`v${v}-${cs}`);
        expect(qemuImages).toContain(`v${v}-${cs}-deflate`);
      }
    }
    expect(qemuImages).toEqual(expect.arrayContaining(['chain3-top', 'chain2-top']));
  });

  for (const name of qemuImages) {
    it(`${name}: whole device hashes like qemu-img convert, allocation like qemu-img map`, () => {
      const dev = openDisk(join(qemuDir, `${name}.qcow2`));
      try {
        expect(dev.format).toBe('qcow2');
        expect(deviceSha256(dev)).toBe(readFileSync(join(qemuDir, `${name}.sha256`), 'utf8').trim());
        expect(dev.allocated(0, dev.size)).toEqual(qemuDataRanges(join(qemuDir, `${name}.map.json`)));
      } finally {
        dev.close();
      }
    });
  }

  it('random reads of standalone images equal the source disk', () => {
    for (const name of ['v1.1-512-deflate', 'v0.10-64k', 'v1.1-2M-zstd', 'v1.1-64k-zstd', 'v0.10-2M-deflate']) {
      compareRandomReads(join(qemuDir, `${name}.qcow2`), join(qemuDir, 'src.raw'), 60, name.length);
    }
  });

  it('random reads through a depth-3 chain equal the flattened image', () => {
    compareRandomReads(join(qemuDir, 'chain3-top.qcow2'), join(qemuDir, 'chain3-top.raw'), 200, 7);
  });

  it('a long read over clusters adjacent in the file is one file read; a repeated read hits the caches', () => {
    const dev = openDisk(join(qemuDir, 'v1.1-64k.qcow2'));
    const spy = vi.spyOn(FileSource.prototype, 'readInto');
    try {
      dev.read(0, 512); // loads the L2 table
      spy.mockClear();
      const first = dev.read(0, 1024 * 1024); // 16 clusters of random data, written in order by qemu-img convert
      expect(spy).toHaveBeenCalledTimes(1);
      expect(first.equals(readFileSync(join(qemuDir, 'src.raw')).subarray(0, 1024 * 1024))).toBe(true);
    } finally {
      spy.mockRestore();
      dev.close();
    }
    const packed = openDisk(join(qemuDir, 'v1.1-64k-deflate.qcow2'));
    const spy2 = vi.spyOn(FileSource.prototype, 'readInto');
    try {
      const a = packed.read(12 * 1024 * 1024, 4096); // a compressed cluster of text
      spy2.mockClear();
      expect(packed.read(12 * 1024 * 1024 + 4096, 4096)).toHaveLength(4096);
      expect(spy2).not.toHaveBeenCalled();
      expect(a.toString('latin1')).toContain('qcow2 compressible line of text');
    } finally {
      spy2.mockRestore();
      packed.close();
    }
  });

  it('allocated() of a sub-range is the clipped whole-device map', () => {
    const dev = openDisk(join(qemuDir, 'chain3-top.qcow2'));
    try {
      const whole = qemuDataRanges(join(qemuDir, 'chain3-top.map.json'));
      const [from, to] = [1000, 13 * 1024 * 1024 + 7];
      const clipped = whole
        .map((r) => ({ offset: Math.max(r.offset, from), end: Math.min(r.offset + r.length, to) }))
        .filter((r) => r.end > r.offset)
        .map((r) => ({ offset: r.offset, length: r.end - r.offset }));
      expect(dev.allocated(from, to - from)).toEqual(clipped);
    } finally {
      dev.close();
    }
  });

  it('reports one chain link per file, child first, with its facts', () => {
    const dev = openDisk(join(qemuDir, 'chain3-top.qcow2'));
    try {
      expect(dev.chain.map((l) => l.path.split('/').pop())).toEqual([
        'chain3-top.qcow2',
        'chain3-mid.qcow2',
        'chain3-base.qcow2',
      ]);
      const [top, mid, base] = dev.chain;
      expect(top?.facts).toMatchObject({ version: 3, clusterSize: 65536, backingFormat: 'qcow2', dirty: false });
      expect(top?.facts?.backingFile).toBe('chain3-mid.qcow2');
      expect(mid?.facts).toMatchObject({ clusterSize: 4096, compression: 'zlib' });
      expect(base?.facts?.backingFile).toBeUndefined();
      const mid2 = openDisk(join(qemuDir, 'chain3-mid.qcow2'));
      expect(dev.size).toBeGreaterThan(mid2.size);
      mid2.close();
    } finally {
      dev.close();
    }
    const v2 = openDisk(join(qemuDir, 'chain2-top.qcow2'));
    expect(v2.subformat).toBe('v2');
    expect(v2.chain).toHaveLength(3);
    expect(v2.chain[2]?.facts).toMatchObject({ version: 2, clusterSize: 512 });
    v2.close();
    const zstd = openDisk(join(qemuDir, 'v1.1-64k-zstd.qcow2'));
    expect(zstd.chain[0]?.facts?.compression).toBe('zstd');
    zstd.close();
  });
});

interface Expected {
  name: string;
  size: number;
  sha256: string;
}

/** qcow2 lines of the corpus' container_raw_sha256.txt that qemu-img could flatten (last line per file wins). */
function corpusExpectations(): Expected[] {
  const text = readFileSync(join(CORPUS, 'expected', 'container_raw_sha256.txt'), 'utf8');
  const byName = new Map<string, Expected>();
  for (const line of text.split('\n')) {
    const [path, size, sha] = line.split('|').map((s) => s.trim());
    if (!path?.includes('qcow2/') || !sha || !/^[0-9a-f]{64}$/.test(sha)) continue;
    const name = path.replace(/ .*$/, '').split('/').pop() ?? '';
    byName.set(name, { name, size: Number(size), sha256: sha });
  }
  return [...byName.values()];
}

describe('qcow2 corpus images (dfvfs, keramics, dissect.hypervisor)', () => {
  const dir = fixture('qcow2-corpus.sh');
  const expected = corpusExpectations();

  it('has an expectation for every staged image family', () => {
    expect(expected.map((e) => e.name)).toEqual(
      expect.arrayContaining([
        'ext2.qcow2',
        'fat32.qcow2',
        'basic-zstd.qcow2',
        'backing-chain-1.qcow2',
        'data-file.qcow2',
      ]),
    );
  });

  for (const e of expected) {
    it(`${e.name}: size, raw SHA-256 and allocation agree with qemu-img`, () => {
      const dev = openDisk(join(dir, e.name));
      try {
        expect(dev.size).toBe(e.size);
        expect(deviceSha256(dev, 8 * 1024 * 1024)).toBe(e.sha256);
        expect(dev.allocated(0, dev.size)).toEqual(qemuDataRanges(join(dir, e.name.replace(/\.qcow2$/, '.map.json'))));
      } finally {
        dev.close();
      }
    });
  }

  it('dissect basic images: MiB i is filled with byte i (deflate, zstd, external data file)', () => {
    for (const name of ['basic.qcow2', 'basic-zstd.qcow2', 'data-file.qcow2']) {
      const dev = openDisk(join(dir, name));
      try {
        for (const i of [0, 1, 7, 100, 254]) {
          const mib = dev.read(i * 1024 * 1024, 1024 * 1024);
          expect(mib.every((b) => b === i)).toBe(true);
        }
      } finally {
        dev.close();
      }
    }
  });

  it('records the external data file and the internal snapshots in the facts', () => {
    const withData = openDisk(join(dir, 'data-file.qcow2'));
    expect(withData.chain[0]?.files.map((f) => f.split('/').pop())).toEqual(['data-file.qcow2', 'data-file.bin']);
    withData.close();
    const snap = openDisk(join(dir, 'snapshot.qcow2'));
    expect(snap.chain[0]?.facts?.snapshots).toBe(2);
    snap.close();
    const chain = openDisk(join(dir, 'backing-chain-1.qcow2'));
    expect(chain.chain.map((l) => l.path.split('/').pop())).toEqual([
      'backing-chain-1.qcow2',
      'backing-chain-2.qcow2',
      'backing-chain-3.qcow2',
    ]);
    chain.close();
  });

  it('data-file.qcow2 without its data file is a typed Unsupported error', () => {
    let caught: unknown;
    try {
      openDisk(join(dir, 'nodata', 'data-file.qcow2'));
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(UnsupportedError);
    expect(caught).toMatchObject({ code: 'QCOW2_DATA_FILE_MISSING', layer: 'qcow2' });
    expect((caught as UnsupportedError).image).toContain('nodata/data-file.qcow2');
  });
});
