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

const GEAR_SEED = 'vdbak fastcdc gear v1';

function makeGear(): Int32Array {
  const gear = new Int32Array(256);
  const index = Buffer.alloc(4);
  for (let i = 0; i < 256; i++) {
    index.writeUInt32LE(i, 0);
    gear[i] = createHash('sha256').update(GEAR_SEED).update(index).digest().readInt32BE(0);
  }
  return gear;
}

/** The gear table (256 signed 32-bit values). Exported so tests can pin it. */
export const GEAR: Readonly<Int32Array> = makeGear();

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
    const gear = GEAR;
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
      let j = i;
      let hit = false;
      while (j < end) {
        h = ((h << 1) + gear[data[j]!]!) | 0;
        j++;
        if ((h & mask) === 0) {
          hit = true;
          break;
        }
      }
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

/** A finished chunk with its bytes (a private copy: the caller may keep it). */
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
   * on it instead of a copy. For callers that use each chunk before they
   * touch the buffer again (the backup worker reads into a fresh buffer per
   * call): most chunks then cost no copy at all.
   */
  views?: boolean;
}

/**
 * Streaming chunker that yields whole chunks with their SHA-256. Memory is
 * bounded by `maxSize` (the chunk in progress). Buffers passed to `push` are
 * copied where they must be kept, so the caller may reuse its read buffer
 * (unless it asked for views).
 */
export class ContentChunker {
  private readonly cdc: CdcChunker;
  private readonly views: boolean;
  private pending: Buffer[] = [];
  private pendingLength = 0;
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
    if (pos < data.length) {
      this.pending.push(Buffer.from(data.subarray(pos)));
      this.pendingLength += data.length - pos;
    }
    return out;
  }

  /** Ends the stream and returns its last chunk, if any; the chunker can then start a new stream. */
  end(): Chunk[] {
    const out = this.cdc.finish().map((length) => this.emit(new Uint8Array(0), length));
    this.offset = 0;
    return out;
  }

  private emit(tail: Uint8Array, length: number): Chunk {
    let bytes: Buffer;
    if (this.pending.length === 0) {
      bytes = this.views ? Buffer.from(tail.buffer, tail.byteOffset, tail.byteLength) : Buffer.from(tail);
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
