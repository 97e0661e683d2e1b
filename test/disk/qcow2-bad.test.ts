/**
 * Bad and unusual qcow2 input: images made by qemu-img (test/fixtures/qcow2-bad.sh)
 * and copies of them with one field changed. Every failure must be a typed
 * error naming the file, the layer and the byte offset it concerns.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDisk } from '../../parsers/disk/open.js';
import { HEADER } from '../../parsers/disk/qcow2/header.js';
import {
  ChainError,
  CorruptError,
  LimitError,
  TruncatedError,
  UnsupportedError,
  type VdbakError,
} from '../../parsers/errors.js';
import { fixture, run } from '../helpers/fixtures.js';
import { deviceSha256, qemuDataRanges } from './qcow2-helpers.js';

const dir = fixture('qcow2-bad.sh');
const scratch = mkdtempSync(join(tmpdir(), 'vdbak-qcow2-bad-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let copies = 0;

/** A copy of fixture `name` with `edit` applied to its bytes. */
function patched(name: string, edit: (b: Buffer) => unknown): string {
  const b = readFileSync(join(dir, name));
  const edited = edit(b);
  const out = Buffer.isBuffer(edited) ? edited : b;
  const path = join(scratch, `${copies++}-${name}`);
  writeFileSync(path, out);
  return path;
}

function l1Offset(b: Buffer): number {
  return Number(b.readBigUInt64BE(HEADER.l1TableOffset[0]));
}
function l2Offset(b: Buffer): number {
  return Number(b.readBigUInt64BE(l1Offset(b)) & 0x00ff_ffff_ffff_fe00n);
}

type ErrorClass = abstract new (...args: never[]) => VdbakError;

function expectTyped(fn: () => unknown, cls: ErrorClass, code: string, path: string, offset?: number): VdbakError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(cls);
  const e = caught as VdbakError;
  expect(e.code).toBe(code);
  expect(e.image).toBe(path);
  if (e.code.startsWith('QCOW2_')) expect(e.layer).toBe('qcow2');
  if (offset !== undefined) expect(e.offset).toBe(offset);
  return e;
}

const open = (p: string) => () => openDisk(p);
const readAll = (p: string) => () => {
  const d = openDisk(p);
  try {
    deviceSha256(d);
  } finally {
    d.close();
  }
};

describe('qcow2 header errors', () => {
  it('a file shorter than its header is truncated', () => {
    const p = patched('v3.qcow2', (b) => b.subarray(0, 50));
    expectTyped(open(p), TruncatedError, 'QCOW2_HEADER_TRUNCATED', p, 0);
    const q = patched('v3.qcow2', (b) => b.subarray(0, 100));
    expectTyped(open(q), TruncatedError, 'QCOW2_HEADER_TRUNCATED', q, 0);
  });

  it('versions other than 2 and 3 are unsupported', () => {
    for (const v of [1, 4, 0xffffffff]) {
      const p = patched('v3.qcow2', (b) => void b.writeUInt32BE(v, HEADER.version[0]));
      expectTyped(open(p), UnsupportedError, 'QCOW2_VERSION', p, HEADER.version[0]);
    }
  });

  it('cluster_bits outside 9..21 is refused', () => {
    for (const bits of [0, 8, 22, 63]) {
      const p = patched('v2.qcow2', (b) => void b.writeUInt32BE(bits, HEADER.clusterBits[0]));
      expectTyped(open(p), CorruptError, 'QCOW2_CLUSTER_BITS', p, HEADER.clusterBits[0]);
    }
  });

  it('absurd virtual sizes and L1 sizes are refused before anything is allocated', () => {
    const huge = patched('v3.qcow2', (b) => void b.writeBigUInt64BE(1n << 50n, HEADER.size[0]));
    expectTyped(open(huge), LimitError, 'QCOW2_SIZE', huge, HEADER.size[0]);
    const unsafe = patched('v3.qcow2', (b) => void b.writeBigUInt64BE(0xffff_ffff_ffff_ffffn, HEADER.size[0]));
    expectTyped(open(unsafe), LimitError, 'QCOW2_FIELD_RANGE', unsafe, HEADER.size[0]);
    const bigL1 = patched('v3.qcow2', (b) => void b.writeUInt32BE(0xffffffff, HEADER.l1Size[0]));
    expectTyped(open(bigL1), LimitError, 'QCOW2_L1_TOO_LARGE', bigL1, HEADER.l1Size[0]);
    const noL1 = patched('v3.qcow2', (b) => void b.writeUInt32BE(0, HEADER.l1Size[0]));
    expectTyped(open(noL1), CorruptError, 'QCOW2_L1_TOO_SMALL', noL1, HEADER.l1Size[0]);
    // a size the L1 table is too small for (4k clusters: one L1 entry maps 2 MiB)
    const grown = patched('v3.qcow2', (b) => void b.writeBigUInt64BE(1n << 40n, HEADER.size[0]));
    expectTyped(open(grown), CorruptError, 'QCOW2_L1_TOO_SMALL', grown, HEADER.l1Size[0]);
  });

  it('an L1 table outside the file or unaligned is refused', () => {
    let end = 0;
    const p = patched('v3.qcow2', (b) => {
      end = Math.ceil(b.length / 4096) * 4096;
      b.writeBigUInt64BE(BigInt(end), HEADER.l1TableOffset[0]);
    });
    expectTyped(open(p), CorruptError, 'QCOW2_L1_OUT_OF_FILE', p, end);
    const q = patched('v3.qcow2', (b) => void b.writeBigUInt64BE(BigInt(l1Offset(b) + 512), HEADER.l1TableOffset[0]));
    expectTyped(open(q), CorruptError, 'QCOW2_L1_UNALIGNED', q, HEADER.l1TableOffset[0]);
  });

  it('a bad header_length, an unknown compression type or an unknown incompatible feature is refused', () => {
    const len = patched('v3.qcow2', (b) => void b.writeUInt32BE(105, HEADER.headerLength[0]));
    expectTyped(open(len), CorruptError, 'QCOW2_HEADER_LENGTH', len, HEADER.headerLength[0]);
    const ctype = patched('v3-zstd.qcow2', (b) => void b.writeUInt8(2, HEADER.compressionType[0]));
    expectTyped(open(ctype), UnsupportedError, 'QCOW2_COMPRESSION_TYPE', ctype, HEADER.compressionType[0]);
    const nobit = patched('v3-zstd.qcow2', (b) => void b.writeBigUInt64BE(0n, HEADER.incompatibleFeatures[0]));
    expectTyped(open(nobit), CorruptError, 'QCOW2_COMPRESSION_BIT', nobit, HEADER.compressionType[0]);
    const feat = patched('v3.qcow2', (b) => void b.writeBigUInt64BE(1n << 5n, HEADER.incompatibleFeatures[0]));
    const e = expectTyped(open(feat), UnsupportedError, 'QCOW2_INCOMPATIBLE_FEATURES', feat);
    expect(e.offset).toBe(HEADER.incompatibleFeatures[0]);
  });

  it('encryption and extended L2 entries (made by qemu-img) are typed Unsupported errors', () => {
    const luks = join(dir, 'luks.qcow2');
    expectTyped(open(luks), UnsupportedError, 'QCOW2_ENCRYPTED', luks, HEADER.cryptMethod[0]);
    const ext = join(dir, 'extl2.qcow2');
    expectTyped(open(ext), UnsupportedError, 'QCOW2_EXTENDED_L2', ext, HEADER.incompatibleFeatures[0]);
  });
});

describe('qcow2 table and cluster errors', () => {
  it('an L2 table past the end of the file, or unaligned, names the L1 entry', () => {
    const p = patched('v3.qcow2', (b) => void b.writeBigUInt64BE((1n << 63n) | (1n << 40n), l1Offset(b)));
    const at = l1Offset(readFileSync(p));
    expectTyped(readAll(p), CorruptError, 'QCOW2_L2_OUT_OF_FILE', p, at);
    const q = patched('v3.qcow2', (b) => void b.writeBigUInt64BE(BigInt(l2Offset(b) + 512), l1Offset(b)));
    expectTyped(readAll(q), CorruptError, 'QCOW2_L2_UNALIGNED', q, at);
  });

  it('a data cluster past the end of the file names the L2 entry', () => {
    let at = 0;
    const p = patched('v3.qcow2', (b) => {
      at = l2Offset(b);
      b.writeBigUInt64BE((1n << 63n) | (1n << 40n), at);
    });
    expectTyped(readAll(p), CorruptError, 'QCOW2_CLUSTER_PAST_EOF', p, at);
  });

  it('a file cut in half fails on read with a typed error, never with zeros', () => {
    const p = patched('v3.qcow2', (b) => b.subarray(0, b.length >> 1));
    const dev = openDisk(p);
    let caught: unknown;
    try {
      deviceSha256(dev);
    } catch (e) {
      caught = e;
    }
    dev.close();
    expect(caught).toBeInstanceOf(CorruptError);
    expect((caught as VdbakError).offset).toBeGreaterThan(0);
  });

  it('the zero flag in a version 2 image is corrupt, as in qemu', () => {
    let at = 0;
    const p = patched('v2.qcow2', (b) => {
      at = l2Offset(b);
      b.writeBigUInt64BE(b.readBigUInt64BE(at) | 1n, at);
    });
    expectTyped(readAll(p), CorruptError, 'QCOW2_ZERO_IN_V2', p, at);
  });

  it('damaged compressed clusters (deflate and zstd) are CorruptErrors at their host offset', () => {
    for (const [name, code] of [
      ['v3-deflate.qcow2', 'QCOW2_DECOMPRESS'],
      ['v3-zstd.qcow2', 'QCOW2_ZSTD_FRAME'],
    ] as const) {
      let host = 0;
      let guest = -1;
      const p = patched(name, (b) => {
        const table = l2Offset(b);
        // the first compressed entry of the first L2 table (4k clusters: 512 entries)
        for (let i = 0; i < 512 && guest < 0; i++) {
          const entry = b.readBigUInt64BE(table + i * 8);
          if (entry & (1n << 62n)) {
            guest = i * 4096;
            host = Number(entry & ((1n << 53n) - 1n));
          }
        }
        b.fill(0xff, host, host + 64);
      });
      expect(guest).toBeGreaterThan(0);
      const dev = openDisk(p);
      expectTyped(() => dev.read(guest, 4096), CorruptError, code, p, host);
      dev.close();
    }
  });
});

describe('qcow2 backing chains and header flags', () => {
  it('a backing loop (a -> b -> a) is a ChainError', () => {
    const p = join(dir, 'loop-a.qcow2');
    const e = expectTyped(open(p), ChainError, 'CHAIN_LOOP', join(dir, 'loop-a.qcow2'));
    expect(e.message).toContain('loop-b.qcow2');
  });

  it('a missing backing file is a ChainError naming the file and the name field offset', () => {
    const p = join(dir, 'orphan.qcow2');
    const at = Number(readFileSync(p).readBigUInt64BE(HEADER.backingFileOffset[0]));
    const e = expectTyped(open(p), ChainError, 'QCOW2_BACKING_MISSING', p, at);
    expect(e.message).toContain('never-made.qcow2');
  });

  it('an absolute backing path stays absolute', () => {
    const d = mkdtempSync(join(scratch, 'abs-'));
    const child = join(d, 'child', 'top.qcow2');
    run('mkdir', ['-p', join(d, 'child')]);
    copyFileSync(join(dir, 'chain-base.qcow2'), join(d, 'base.qcow2'));
    copyFileSync(join(dir, 'chain-top.qcow2'), child);
    run('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', join(d, 'base.qcow2'), '-F', 'qcow2', child]);
    const dev = openDisk(child);
    try {
      expect(dev.chain[1]?.path).toBe(join(d, 'base.qcow2'));
      expect(deviceSha256(dev)).toBe(readFileSync(join(dir, 'chain-top.sha256'), 'utf8').trim());
    } finally {
      dev.close();
    }
  });

  it('a backing file whose format is named raw is read raw, never probed (as qemu does)', () => {
    for (const name of ['raw-backed', 'raw-backed-trap']) {
      const dev = openDisk(join(dir, `${name}.qcow2`));
      try {
        expect(dev.chain.map((l) => l.format)).toEqual(['qcow2', 'raw']);
        expect(dev.chain[0]?.facts?.backingFormat).toBe('raw');
        expect(deviceSha256(dev)).toBe(readFileSync(join(dir, `${name}.sha256`), 'utf8').trim());
      } finally {
        dev.close();
      }
    }
  });

  it('a backing file that is not the format the header names is a ChainError', () => {
    const p = join(dir, 'raw-backed-wrongfmt.qcow2');
    const at = Number(readFileSync(p).readBigUInt64BE(HEADER.backingFileOffset[0]));
    expectTyped(open(p), ChainError, 'QCOW2_BACKING_FORMAT', p, at);
  });

  it('dirty and corrupt bits are recorded in the facts and the image still reads as qemu reads it', () => {
    const p = patched('v3.qcow2', (b) => void b.writeBigUInt64BE(3n, HEADER.incompatibleFeatures[0]));
    const dev = openDisk(p);
    try {
      expect(dev.chain[0]?.facts).toMatchObject({ dirty: true, corrupt: true });
      expect(deviceSha256(dev)).toBe(readFileSync(join(dir, 'v3.sha256'), 'utf8').trim());
    } finally {
      dev.close();
    }
  });
});

describe('qcow2 huge sparse image', () => {
  it('a 200 TiB image with two writes maps like qemu-img map and reads its data, quickly', () => {
    const TiB = 2 ** 40;
    const started = Date.now();
    const dev = openDisk(join(dir, 'huge.qcow2'));
    try {
      expect(dev.size).toBe(200 * TiB);
      expect(dev.allocated(0, dev.size)).toEqual(qemuDataRanges(join(dir, 'huge.map.json')));
      expect(dev.read(TiB, 4096).every((b) => b === 0x61)).toBe(true);
      expect(dev.read(199 * TiB, 65536).every((b) => b === 0x62)).toBe(true);
      expect(dev.read(199 * TiB - 100, 100).every((b) => b === 0)).toBe(true);
    } finally {
      dev.close();
    }
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
