/**
 * Broken VMDKs: each must give one typed error that names the file, the layer
 * and (where a byte is to blame) the offset, never wrong data and never an
 * untyped exception. Inputs are real qemu-made fixtures and corpus files,
 * copied to a scratch folder and damaged in one place.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDisk } from '../../parsers/disk/open.js';
import { isVdbakError, type VdbakError } from '../../parsers/errors.js';
import { fixture } from '../helpers/fixtures.js';
import { deviceSha256 } from './vmdk-helpers.js';

const qemu = fixture('vmdk-qemu.sh');
const corpus = fixture('vmdk-corpus.sh');
const scratch = mkdtempSync(join(tmpdir(), 'vdbak-vmdk-bad-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let n = 0;
/** Copies `files` (absolute paths) into a fresh scratch folder and returns that folder. */
function copyOf(...files: string[]): string {
  const dir = join(scratch, String(n++));
  mkdirSync(dir);
  for (const f of files) copyFileSync(f, join(dir, f.split('/').pop() ?? ''));
  return dir;
}

function patch(path: string, at: number, bytes: number[] | Buffer): void {
  const b = readFileSync(path);
  Buffer.from(bytes).copy(b, at);
  writeFileSync(path, b);
}

function u64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}
function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}

/** Runs `fn` and returns the typed error it throws (failing on success or an untyped error). */
function typedError(fn: () => void): VdbakError {
  try {
    fn();
  } catch (e) {
    if (isVdbakError(e)) return e;
    throw e;
  }
  throw new Error('expected a typed error, got success');
}

function openAndReadAll(path: string): void {
  const dev = openDisk(path);
  try {
    deviceSha256(dev);
  } finally {
    dev.close();
  }
}

/** Byte offset of grain table entry `i` of the first grain table of a qemu monolithicSparse/streamOptimized file. */
function firstGteOffset(path: string, i: number): number {
  const b = readFileSync(path);
  const gd = Number(b.readBigUInt64LE(56)) * 512;
  return b.readUInt32LE(gd) * 512 + i * 4;
}

const sparse = join(qemu, 'monolithicSparse', 'monolithicSparse.vmdk');
const stream = join(qemu, 'streamOptimized', 'streamOptimized.vmdk');

describe('vmdk: broken input gives typed errors', () => {
  it('a file cut inside its header', () => {
    const p = join(copyOf(sparse), 'monolithicSparse.vmdk');
    truncateSync(p, 300);
    const e = typedError(() => openDisk(p));
    expect(e).toMatchObject({ kind: 'TruncatedError', code: 'VMDK_SPARSE_HEADER_SHORT', layer: 'vmdk', image: p });
    expect(e.offset).toBe(0);
  });

  it('a file cut before its grain tables', () => {
    const p = join(copyOf(sparse), 'monolithicSparse.vmdk');
    truncateSync(p, 12_000); // after the descriptor, before both grain directories
    const e = typedError(() => openDisk(p));
    expect(e).toMatchObject({ code: 'VMDK_GD_RANGE', layer: 'vmdk', image: p });
    expect(e.offset).toBeGreaterThan(0);
  });

  it('a file cut inside its grains: opens, and the read of a lost grain names the grain table entry', () => {
    const p = join(copyOf(sparse), 'monolithicSparse.vmdk');
    const size = readFileSync(p).length;
    truncateSync(p, size - 128 * 1024);
    const e = typedError(() => openAndReadAll(p));
    expect(e).toMatchObject({ kind: 'CorruptError', code: 'VMDK_GRAIN_RANGE', layer: 'vmdk', image: p });
    expect(e.offset).toBeGreaterThan(512);
  });

  it('a grain table entry pointing past the end of the file', () => {
    const p = join(copyOf(sparse), 'monolithicSparse.vmdk');
    const at = firstGteOffset(p, 3);
    patch(p, at, u32(0x7fffff00));
    const dev = openDisk(p);
    try {
      expect(() => dev.read(2 * 65536, 4096)).not.toThrow();
      const e = typedError(() => dev.read(3 * 65536, 4096));
      expect(e).toMatchObject({ code: 'VMDK_GRAIN_RANGE', layer: 'vmdk', image: p, offset: at });
    } finally {
      dev.close();
    }
  });

  it('a SPARSE extent file with the wrong magic names that extent file', () => {
    const src = join(qemu, 'twoGbMaxExtentSparse');
    const dir = copyOf(join(src, 'twoGbMaxExtentSparse.vmdk'), join(src, 'twoGbMaxExtentSparse-s001.vmdk'));
    patch(join(dir, 'twoGbMaxExtentSparse-s001.vmdk'), 0, Buffer.from('KDMX'));
    const e = typedError(() => openDisk(join(dir, 'twoGbMaxExtentSparse.vmdk')));
    expect(e).toMatchObject({ code: 'VMDK_BAD_MAGIC', layer: 'vmdk', offset: 0 });
    expect(e.image).toBe(join(dir, 'twoGbMaxExtentSparse-s001.vmdk'));
  });

  it('absurd capacity, grain size and grain table size in the header', () => {
    const cases: [number, Buffer, string][] = [
      [12, u64(1n << 50n), 'VMDK_CAPACITY'],
      [12, u64(0xffffffffffffffffn), 'VMDK_CAPACITY'],
      [20, u64(3n), 'VMDK_GRAIN_SIZE'],
      [20, u64(1n << 20n), 'VMDK_GRAIN_SIZE'],
      [20, u64(0n), 'VMDK_GRAIN_SIZE'],
      [44, u32(0), 'VMDK_GTES_PER_GT'],
      [44, u32(1_000_000), 'VMDK_GTES_PER_GT'],
      [4, u32(9), 'VMDK_SPARSE_VERSION'],
      [77, Buffer.from([7, 0]), 'VMDK_COMPRESSION'],
    ];
    for (const [at, bytes, code] of cases) {
      const p = join(copyOf(sparse), 'monolithicSparse.vmdk');
      patch(p, at, bytes);
      const e = typedError(() => openDisk(p));
      expect(e).toMatchObject({ code, layer: 'vmdk', image: p, offset: at });
    }
  });

  it('a descriptor with an absurd extent, too many lines, or too many bytes', () => {
    const dir = copyOf(join(qemu, 'monolithicFlat', 'monolithicFlat.vmdk'));
    const p = join(dir, 'monolithicFlat.vmdk');
    const text = readFileSync(p, 'utf8').replace(/\0+$/, ''); // qemu pads the descriptor with NULs
    writeFileSync(p, text.replace(/^RW \d+ FLAT/m, 'RW 99999999999999999 FLAT'));
    const e1 = typedError(() => openDisk(p));
    expect(e1).toMatchObject({ kind: 'LimitError', code: 'VMDK_EXTENT_SECTORS', image: p });
    expect(e1.offset).toBe(text.indexOf('RW '));
    writeFileSync(p, `${text}${'# filler\n'.repeat(30_000)}`);
    expect(typedError(() => openDisk(p))).toMatchObject({ code: 'VMDK_DESCRIPTOR_LINES', image: p });
    writeFileSync(p, `${text}${'#'.repeat(2 * 1024 * 1024)}\n`);
    expect(typedError(() => openDisk(p))).toMatchObject({ code: 'VMDK_DESCRIPTOR_TOO_LARGE', image: p });
    writeFileSync(p, text.replace(/^RW (\d+) FLAT "([^"]+)" 0/m, 'RW $1 FLAT "$2" 0 junk'));
    expect(typedError(() => openDisk(p))).toMatchObject({ code: 'VMDK_DESCRIPTOR_EXTENT_LINE', image: p });
    writeFileSync(p, text.replace(/^RW /m, 'NOACCESS '));
    expect(typedError(() => openDisk(p))).toMatchObject({ code: 'VMDK_EXTENT_NOACCESS', image: p });
  });

  it('a parent loop: two descriptors naming each other', () => {
    const dir = join(scratch, 'loop');
    mkdirSync(dir);
    const desc = (cid: string, parentCid: string, parent: string) =>
      `# Disk DescriptorFile\nversion=1\nCID=${cid}\nparentCID=${parentCid}\ncreateType="monolithicFlat"\nparentFileNameHint="${parent}"\nRW 2048 ZERO\n`;
    writeFileSync(join(dir, 'a.vmdk'), desc('0000000a', '0000000b', 'b.vmdk'));
    writeFileSync(join(dir, 'b.vmdk'), desc('0000000b', '0000000a', 'a.vmdk'));
    const e = typedError(() => openDisk(join(dir, 'a.vmdk')));
    expect(e).toMatchObject({ kind: 'ChainError', code: 'CHAIN_LOOP' });
    expect(e.message).toMatch(/a\.vmdk -> .*b\.vmdk -> .*a\.vmdk/);
  });

  it("a parent whose CID is not the child's parentCID", () => {
    const src = join(qemu, 'chain');
    const dir = copyOf(join(src, 'base.vmdk'), join(src, 'd1.vmdk'));
    const base = join(dir, 'base.vmdk');
    const b = readFileSync(base);
    // qemu writes the CID unpadded (CID=%x): change its first digit, keep its length
    const at = b.indexOf('CID=', 0, 'latin1');
    const first = String.fromCharCode(b[at + 4]!);
    b.write(first === '1' ? '2' : '1', at + 4, 'latin1');
    writeFileSync(base, b);
    const e = typedError(() => openDisk(join(dir, 'd1.vmdk')));
    expect(e).toMatchObject({ kind: 'ChainError', code: 'VMDK_PARENT_CID_MISMATCH', layer: 'vmdk' });
    expect(e.image).toBe(join(dir, 'd1.vmdk'));
  });

  it('a missing parent', () => {
    const dir = copyOf(join(qemu, 'chain', 'd1.vmdk'));
    expect(typedError(() => openDisk(join(dir, 'd1.vmdk')))).toMatchObject({
      kind: 'ChainError',
      code: 'CHAIN_PARENT_MISSING',
    });
  });

  it('an unusable primary grain directory falls back to the redundant one, and says so', () => {
    const p = join(copyOf(sparse), 'monolithicSparse.vmdk');
    patch(p, 56, u64(1n << 40n));
    const dev = openDisk(p);
    try {
      expect(String(dev.chain[0]?.facts?.['grainDirectory'])).toMatch(/^redundant \(primary unusable: VMDK_GD_RANGE\)/);
      expect(deviceSha256(dev)).toBe(
        readFileSync(join(qemu, 'monolithicSparse', 'monolithicSparse.sha256'), 'utf8').trim(),
      );
    } finally {
      dev.close();
    }
  });

  it('streamOptimized: broken footer markers, absurd and undecodable compressed grains', () => {
    const dal = join(copyOf(join(corpus, 'diskaccesslibrary', 'StreamOptimized.vmdk')), 'StreamOptimized.vmdk');
    const size = readFileSync(dal).length;
    patch(dal, size - 512 + 12, u32(7));
    expect(typedError(() => openDisk(dal))).toMatchObject({
      code: 'VMDK_FOOTER_MARKERS',
      image: dal,
      offset: size - 1536,
    });

    const p = join(copyOf(stream), 'streamOptimized.vmdk');
    const grain = readFileSync(p).readUInt32LE(firstGteOffset(p, 0)) * 512;
    patch(p, grain + 8, u32(0x7fffffff));
    const e = typedError(() => openAndReadAll(p));
    expect(e).toMatchObject({ code: 'VMDK_COMPRESSED_SIZE', image: p, offset: grain + 8 });

    const q = join(copyOf(stream), 'streamOptimized.vmdk');
    patch(q, grain + 12, Buffer.alloc(64, 0xee));
    expect(typedError(() => openAndReadAll(q))).toMatchObject({
      code: 'VMDK_GRAIN_INFLATE',
      image: q,
      offset: grain + 12,
    });
  });
});
