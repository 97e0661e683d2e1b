/**
 * FastCDC content-defined chunking (Xia et al., "FastCDC: a Fast and Efficient
 * Content-Defined Chunking Approach for Data Deduplication", USENIX ATC 2016,
 * and its 2020 TPDS extension).
 *
 * A rolling "gear" hash `h = (h << 1) + GEAR[byte]` runs over the data; a chunk
 * ends where the hash has zeros under a mask. Because the hash only depends on
 * the last 32 bytes, an edit moves the cut points near it and nowhere else, so
 * the chunks after an insertion are found again and deduplicated.
 *
 * What we take from the papers:
 * - cut-point skipping: no hashing in the first `minSize` bytes of a chunk;
 * - normalized chunking (level 2): a harder mask (log2(avg)+2 bits) before
 *   `avgSize`, an easier one (log2(avg)-2 bits) after, which packs chunk sizes
 *   closely around the average; a forced cut at `maxSize`.
 * The hash is 32-bit (JS integer arithmetic is fast there); the mask bits are
 * the top bits of the hash, which depend on the whole 32-byte window.
 *
 * The gear table is a constant: GEAR[i] is the first four bytes (big-endian)
 * of SHA-256("vdbak fastcdc gear v1" ‖ u32le(i)). It can be rebuilt in any
 * language, and it must never change: the same data must give the same chunks
 * in every backup, or nothing deduplicates against older backups.
 *
 * `CdcChunker` only finds boundaries, fed buffers of any size (the cut points
 * never depend on how the stream was split); `ContentChunker` also keeps the
 * bytes of the chunk in progress (at most `maxSize`) and gives each finished
 * chunk its SHA-256 identity. Results are plain data, safe to post between
 * worker threads.
 */
import * as crypto from 'node:crypto';
import { createHash } from 'node:crypto';
import { type GearScanner, jsGearScanner, wasmGearScanner } from './gear-scan.js';

export interface ChunkSizes {
  /** No cut before this many bytes (except the last chunk of a stream). */
  minSize: number;
  /** Target average; a power of two. */
  avgSize: number;
  /** A cut is forced here. */
  maxSize: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * Defaults chosen with benchmarks/chunking.ts (1 GiB of mixed data, ~1% of it
 * edited in scattered places): a 512 KiB average sends 7.8% of the data again
 * after the edit, against 11.5% at 1 MiB (256K/1M/8M) and 21% at 2 MiB, for
 * 1 628 chunks per GiB (824 at 1 MiB): about 1.7 M catalog rows per TiB of
 * unique data, which SQLite handles easily. 256 KiB would send 5.3% but needs
 * 3 200 chunks per GiB and hashes more of every chunk (smaller minimum skip).
 */
export const DEFAULT_CHUNK_SIZES: Readonly<ChunkSizes> = Object.freeze({
  minSize: 128 * KiB,
  avgSize: 512 * KiB,
  maxSize: 4 * MiB,
});

/** Smallest accepted minimum: the gear hash window (32 bytes) and then some. */
export const MIN_CHUNK_SIZE_LIMIT = 64;
/** Largest accepted maximum; the pack format and the codec cap a chunk here too. */
export const MAX_CHUNK_SIZE_LIMIT = 64 * MiB;

/**
 * The gear table (256 signed 32-bit values), written out rather than derived
 * at start-up (every CLI command imports this module through the repository
 * settings, and 256 SHA-256s cost a restore a few ms). test/chunk/fastcdc.test.ts
 * derives it again from the seed `vdbak fastcdc gear v1` as documented above.
 * Exported so tests can pin it.
 */
export const GEAR: Readonly<Int32Array> = Int32Array.from([
  0xecbdf1c1, 0x9bb7a3eb, 0xf03869f7, 0xd0d2ef97, 0xa00e657d, 0xde66822b, 0x2ddaa041, 0x4408d4e4, 0x909f9c67,
  0xa5924e71, 0x4e519d31, 0x66dbcee7, 0x3394ab3e, 0x3bac8f2b, 0x811c2215, 0x655be9d5, 0x3f597196, 0x465e299d,
  0xb9045a67, 0xf61851a9, 0x75c3dd06, 0x1472db6c, 0x6508f20a, 0x578089d7, 0x5cce6eb0, 0x2a055212, 0x85aef2e3,
  0x51fe4da8, 0x8933e4d1, 0xe9d62ad3, 0xc7514a43, 0x84f0f5d7, 0xd34d9e8a, 0x6082dbfe, 0xd22ec4cb, 0x2656ed7e,
  0x8d005879, 0xcba20924, 0x23877cdc, 0x30bf93d2, 0xb12cc52d, 0x7ef98bff, 0x2c9f8304, 0x098d2505, 0x1b8ff98b,
  0xddab4b21, 0x4d8743ca, 0x8eca06af, 0x601ad93c, 0x0b728ab0, 0x501c8971, 0x941bbd6a, 0x95790d5f, 0x22dd2b4f,
  0x5347f1c7, 0xdeb5dd60, 0x7ded8c07, 0x3eb73926, 0x884306d1, 0xe203d04f, 0x9136f5d7, 0x5fa4ab12, 0x3e64a6fc,
  0xe39ba82d, 0xff3647af, 0x2a332a57, 0x47382b4b, 0x0393d4d6, 0xbcd9a8a5, 0xbfceb4a7, 0xe00433d2, 0xa6d07e5d,
  0xe69865df, 0x831850d9, 0x0696a7a7, 0x73f7a9a4, 0x19df0092, 0xf3892949, 0xa5104f06, 0x8032e481, 0x88d1087f,
  0x0179e58e, 0x77c7eb8b, 0xb1940602, 0x4664ec22, 0x98f61d8c, 0xe150f551, 0x6f01a183, 0xabdfe530, 0x1b7b5a3b,
  0x4331cc7b, 0xf38d7189, 0x073f2215, 0x14c992ef, 0xa7684412, 0x6d50e7d2, 0x5b52dece, 0x1ddade46, 0xc4a27b76,
  0x300700ad, 0xbdd52df5, 0xb980d4d7, 0x57d1a4e5, 0x095253f1, 0xc815192d, 0x8fc03471, 0x4de66e60, 0x0e3ca8bc,
  0x4ffbc1d8, 0x0ead12d7, 0xfc9c7282, 0xd1fbe5a2, 0xd653cd6c, 0x66d42f1c, 0x06b318c8, 0xdff19f67, 0x1b84c690,
  0x71c4ecaa, 0x00ad3020, 0xfd745029, 0x5020a34d, 0xf761be18, 0xaaaca8b4, 0x0bcd19e1, 0x5983cf2d, 0x54e84837,
  0x1524238d, 0xca11f752, 0xfb73fed2, 0xc4f602d1, 0xef607446, 0x924581f7, 0x93a9087e, 0xd9b0b072, 0xc1636868,
  0x328a405c, 0x5b98f75e, 0x747367c7, 0x73c07df5, 0x00e35479, 0x9b46bdab, 0x677ff448, 0x1365b2c6, 0xcbd65aeb,
  0x9fa5c03c, 0x4eae3576, 0xed9ab17e, 0x52ee4d84, 0x9fe8a6e2, 0x7d16e176, 0x26a20d9a, 0xbbe51d67, 0x755b410c,
  0x357b426b, 0xb89739c7, 0xfb62ba30, 0x7ca3cd14, 0xacf4e413, 0xc3f5adf5, 0x66c7496a, 0xb9764356, 0xdf676947,
  0x23492621, 0x4521182f, 0x42dc7f04, 0x4e5ff699, 0xbda0d4ed, 0x5a17f3dd, 0x141b15da, 0x06c7dfcc, 0x664384c0,
  0xc3fd9aa6, 0x3d1bc42c, 0x39fbe651, 0x15427f33, 0xdc9d04b2, 0x43dbc956, 0xd7ed8470, 0xe6435160, 0x3e6649fa,
  0xfd746480, 0xf8675397, 0x8c9428fe, 0x31d49923, 0x1da6048b, 0x8d8e52fa, 0x6f1c2b01, 0xd3d59233, 0xa39f5a84,
  0xa358785c, 0x0ffc6136, 0xfeab52a7, 0xe4e2b133, 0xa53816d4, 0x1625d085, 0x7a94b836, 0x08a014d2, 0x5f2b125e,
  0x4c778c9e, 0xa0a153d1, 0x4af191e3, 0xba25859d, 0x6f1f1e9e, 0x4c8a5c36, 0x843239b8, 0x9f6eb3de, 0x33c01031,
  0xbed931b1, 0x83c71dcc, 0x40fe6100, 0x8b1215b9, 0xbe2b61cd, 0xed4e3518, 0x1e88fd3e, 0xbd3610e2, 0xdf4516b4,
  0x932ca138, 0x83997845, 0xcbcd89d4, 0x0f0173ea, 0xbe0e1abb, 0x09541acb, 0x9b28b7b3, 0x4be94cee, 0xacc214c6,
  0x1204e61f, 0xfb8c2ce2, 0x2c4d6367, 0x5a88cbcf, 0x0c03ae32, 0x75ac4061, 0x2b18a621, 0x82abbda3, 0x361f71b0,
  0x19a8cf17, 0xfe035024, 0xcbd066dd, 0x3d786462, 0x2c56329c, 0xd27754a9, 0xe9605306, 0x583a6870, 0x8689037b,
  0x3f542ce2, 0x33a0f7dc, 0x6679f24b, 0x88623d1b, 0x26617b81, 0xfdad1fc8, 0xbcce1d34, 0xac5414e7, 0xe0223221,
  0x1b9d1704, 0x15a1650f, 0x699383db, 0x709c0c47,
]);

let scanner: GearScanner | undefined;
/** The thread's gear loop: WebAssembly where there is one (gear-scan.ts), else JavaScript. */
function gearScanner(): GearScanner {
  scanner ??= wasmGearScanner(GEAR) ?? jsGearScanner(GEAR);
  return scanner;
}

/** A mask of `bits` ones in the top bits of a 32-bit word, as a signed int. */
function topMask(bits: number): number {
  return (((1 << bits) - 1) << (32 - bits)) | 0;
}

/** Checks chunk sizes; throws RangeError on a configuration that cannot work. */
export function validateChunkSizes(s: ChunkSizes): void {
  const ok =
    Number.isSafeInteger(s.minSize) &&
    Number.isSafeInteger(s.avgSize) &&
    Number.isSafeInteger(s.maxSize) &&
    s.minSize >= MIN_CHUNK_SIZE_LIMIT &&
    s.minSize < s.avgSize &&
    s.avgSize < s.maxSize &&
    s.maxSize <= MAX_CHUNK_SIZE_LIMIT &&
    (s.avgSize & (s.avgSize - 1)) === 0;
  if (!ok) {
    throw new RangeError(
      `chunk sizes min=${s.minSize} avg=${s.avgSize} max=${s.maxSize}: need ` +
        `${MIN_CHUNK_SIZE_LIMIT} <= min < avg < max <= ${MAX_CHUNK_SIZE_LIMIT}, avg a power of two`,
    );
  }
}

/**
 * Streaming boundary finder. Feed it the stream in buffers of any size with
 * `update`; it returns the lengths of the chunks each feed completed. `finish`
 * returns the last, shorter chunk (if any) and makes the chunker ready for a
 * new stream.
 */
export class CdcChunker {
  readonly sizes: Readonly<ChunkSizes>;
  private readonly maskS: number;
  private readonly maskL: number;
  /** Bytes of the current chunk seen so far. */
  private n = 0;
  /** Gear hash of the current chunk's bytes from `minSize` on. */
  private h = 0;

  constructor(sizes: ChunkSizes = DEFAULT_CHUNK_SIZES) {
    validateChunkSizes(sizes);
    this.sizes = Object.freeze({ ...sizes });
    const bits = Math.log2(sizes.avgSize);
    this.maskS = topMask(bits + 2);
    this.maskL = topMask(bits - 2);
  }

  update(data: Uint8Array): number[] {
    const cuts: number[] = [];
    const { minSize, avgSize, maxSize } = this.sizes;
    const scanner = gearScanner();
    const len = data.length;
    let n = this.n;
    let h = this.h;
    let i = 0;
    while (i < len) {
      if (n < minSize) {
        const skip = Math.min(minSize - n, len - i);
        n += skip;
        i += skip;
        continue;
      }
      const beforeAvg = n < avgSize;
      const mask = beforeAvg ? this.maskS : this.maskL;
      const end = Math.min(len, i + ((beforeAvg ? avgSize : maxSize) - n));
      const cut = scanner.scan(data, i, end, h, mask);
      const hit = cut >= 0;
      const j = hit ? cut : end;
      h = scanner.h;
      n += j - i;
      i = j;
      if (hit || n === maxSize) {
        cuts.push(n);
        n = 0;
        h = 0;
      }
    }
    this.n = n;
    this.h = h;
    return cuts;
  }

  /** Ends the stream: the length of the final chunk, if the stream did not end on a cut. */
  finish(): number[] {
    const last = this.n;
    this.n = 0;
    this.h = 0;
    return last > 0 ? [last] : [];
  }
}

/** A chunk's place in its stream and its identity. */
export interface ChunkRef {
  /** Offset of the chunk in the stream. */
  offset: number;
  length: number;
  /** SHA-256 of the chunk's bytes, lowercase hex. */
  hash: string;
}

/** A finished chunk with its bytes (a private copy the caller may keep, unless it asked for views). */
export interface Chunk extends ChunkRef {
  bytes: Buffer;
}

/** One-shot SHA-256 (Node ≥ 20.12): no Hash object per chunk; a few % faster than createHash. */
const oneShot = typeof crypto.hash === 'function' ? crypto.hash : undefined;

export function sha256Hex(bytes: Uint8Array): string {
  return oneShot ? oneShot('sha256', bytes, 'hex') : createHash('sha256').update(bytes).digest('hex');
}

export interface ContentChunkerOptions {
  /**
   * A chunk that lies wholly inside one pushed buffer is returned as a view
   * on it instead of a copy, and one that spans pushes as a view on the
   * chunker's own area. For callers that use each chunk before they push or
   * end again (the backup worker hashes and encodes every chunk of a read
   * before the next read): no chunk then costs an allocation.
   */
  views?: boolean;
}

/** Smallest carry area (views mode), so short tails do not grow it step by step. */
const MIN_CARRY = 64 * KiB;

/**
 * Streaming chunker that yields whole chunks with their SHA-256. Memory is
 * bounded by `maxSize` (the chunk in progress; twice that with views). Bytes
 * passed to `push` are copied where they must be kept, so the caller may
 * reuse its read buffer.
 */
export class ContentChunker {
  private readonly cdc: CdcChunker;
  private readonly views: boolean;
  /** Copy mode: the kept pieces of the chunk in progress. */
  private pending: Buffer[] = [];
  private pendingLength = 0;
  /**
   * Views mode: the chunk in progress lies in `carry[active]`. Two areas used
   * in turn: a chunk emitted from one stays intact while the tail of the same
   * push is kept in the other.
   */
  private readonly carry: Buffer[] = [Buffer.alloc(0), Buffer.alloc(0)];
  private active = 0;
  /** Stream offset of the chunk in progress. */
  private offset = 0;

  constructor(sizes: ChunkSizes = DEFAULT_CHUNK_SIZES, opts: ContentChunkerOptions = {}) {
    this.cdc = new CdcChunker(sizes);
    this.views = opts.views ?? false;
  }

  get sizes(): Readonly<ChunkSizes> {
    return this.cdc.sizes;
  }

  push(data: Uint8Array): Chunk[] {
    const out: Chunk[] = [];
    let pos = 0;
    for (const length of this.cdc.update(data)) {
      const take = length - this.pendingLength;
      out.push(this.emit(data.subarray(pos, pos + take), length));
      pos += take;
    }
    if (pos < data.length) this.keep(data.subarray(pos));
    return out;
  }

  /** Ends the stream and returns its last chunk, if any; the chunker can then start a new stream. */
  end(): Chunk[] {
    const out = this.cdc.finish().map((length) => this.emit(new Uint8Array(0), length));
    this.offset = 0;
    return out;
  }

  /** Drops the stream in progress (after a failed read): the next push starts a new stream. */
  reset(): void {
    this.cdc.finish();
    this.pending = [];
    this.pendingLength = 0;
    this.offset = 0;
  }

  private keep(bytes: Uint8Array): void {
    if (this.views) {
      this.area(this.pendingLength + bytes.length).set(bytes, this.pendingLength);
    } else {
      this.pending.push(Buffer.from(bytes));
    }
    this.pendingLength += bytes.length;
  }

  /** The active carry area, grown (keeping the bytes in progress) to hold `need` bytes; never past `maxSize`. */
  private area(need: number): Buffer {
    const a = this.carry[this.active]!;
    if (a.length >= need) return a;
    const grown = Buffer.allocUnsafeSlow(Math.min(this.cdc.sizes.maxSize, Math.max(need, 2 * a.length, MIN_CARRY)));
    a.copy(grown, 0, 0, this.pendingLength);
    this.carry[this.active] = grown;
    return grown;
  }

  private emit(tail: Uint8Array, length: number): Chunk {
    let bytes: Buffer;
    if (this.pendingLength === 0) {
      bytes = this.views ? Buffer.from(tail.buffer, tail.byteOffset, tail.byteLength) : Buffer.from(tail);
    } else if (this.views) {
      const a = this.area(length);
      a.set(tail, this.pendingLength);
      bytes = a.subarray(0, length);
      this.active ^= 1; // this chunk's bytes stay put until the next push
    } else if (this.pending.length === 1 && tail.length === 0) {
      bytes = this.pending[0]!; // already a private copy
    } else {
      bytes = Buffer.concat([...this.pending, tail], length);
    }
    this.pending = [];
    this.pendingLength = 0;
    const chunk: Chunk = { offset: this.offset, length, hash: sha256Hex(bytes), bytes };
    this.offset += length;
    return chunk;
  }
}

/** Chunk lengths of one whole buffer (same cut points as streaming it). */
export function chunkLengths(data: Uint8Array, sizes: ChunkSizes = DEFAULT_CHUNK_SIZES): number[] {
  const cdc = new CdcChunker(sizes);
  return [...cdc.update(data), ...cdc.finish()];
}

/** Chunks of one whole buffer, with their SHA-256 (the bytes are `data.subarray(offset, offset + length)`). */
export function chunkBuffer(data: Uint8Array, sizes: ChunkSizes = DEFAULT_CHUNK_SIZES): ChunkRef[] {
  const refs: ChunkRef[] = [];
  let offset = 0;
  for (const length of chunkLengths(data, sizes)) {
    refs.push({ offset, length, hash: sha256Hex(data.subarray(offset, offset + length)) });
    offset += length;
  }
  return refs;
}
