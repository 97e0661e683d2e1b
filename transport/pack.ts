/**
 * Pack format: many stored chunks (transport/codec.ts) in one object of a few
 * to tens of MiB, ending with its own index, so that the catalog can be
 * rebuilt from the target alone. Our own format, version 1:
 *
 *   [stored chunk 0][stored chunk 1]…[index: N entries × 56 bytes][trailer: 64 bytes]
 *
 * Index entry (little-endian), in pack order, contiguous from offset 0:
 *   0  32  SHA-256 of the raw chunk
 *   32  8  offset of the stored chunk in the pack
 *   40  4  stored length (codec byte + payload)
 *   44  4  raw length
 *   48  1  codec (must equal the stored chunk's first byte)
 *   49  7  reserved, zero
 * Trailer (the last 64 bytes):
 *   0   8  magic "VDBAKPK\0"
 *   8   4  version (1)
 *   12  4  entry count N
 *   16  8  data length (= offset of the index = sum of stored lengths)
 *   24  8  index length (= N × 56)
 *   32 32  SHA-256 of the index bytes
 *
 * A pack's id is the SHA-256 of its trailer (which holds the SHA-256 of the
 * index, whose entries hold the SHA-256 of every chunk: the id names the whole
 * content without hashing the data a second time); it is stored as
 * `packs/<id[0..2]>/<id>`. Packs on the target are untrusted input: the reader
 * checks every field against caps and the pack size before allocating, and a
 * chunk is returned only after its SHA-256 matches the index.
 */
import { createHash } from 'node:crypto';
import { assertLayout, checkCount, MiB, u32le, u64leNum } from '../parsers/bytes.js';
import {
  CODEC_RAW,
  CODEC_ZSTD,
  type CodecId,
  decodeChunk,
  type EncodedChunk,
  MAX_CHUNK_LENGTH,
} from './chunk-format.js';
import { transportErrors } from './errors.js';
import type { Target } from './targets/types.js';

export const PACK_MAGIC = Buffer.from('VDBAKPK\0', 'latin1');
export const PACK_VERSION = 1;

export const PACK_TRAILER_SIZE = 64;
const TRAILER = {
  magic: [0, 8],
  version: [8, 4],
  entryCount: [12, 4],
  dataLength: [16, 8],
  indexLength: [24, 8],
  indexSha256: [32, 32],
} as const;
assertLayout('PackTrailer', PACK_TRAILER_SIZE, TRAILER);

export const PACK_ENTRY_SIZE = 56;
const ENTRY = {
  hash: [0, 32],
  offset: [32, 8],
  storedLength: [40, 4],
  rawLength: [44, 4],
  codec: [48, 1],
  reserved: [49, 7],
} as const;
assertLayout('PackEntry', PACK_ENTRY_SIZE, ENTRY);

/** Largest pack a reader accepts. */
export const MAX_PACK_SIZE = 1024 * MiB;
/** Most entries a reader accepts in one pack (an index of 56 MiB). */
export const MAX_PACK_ENTRIES = 1 << 20;
/** Largest stored chunk: the codec byte plus a raw chunk stored as is. */
const MAX_STORED_LENGTH = MAX_CHUNK_LENGTH + 1;

export const DEFAULT_PACK_TARGET_SIZE = 16 * MiB;
/** A pack of tiny chunks closes at this many entries whatever its size. */
export const DEFAULT_PACK_MAX_ENTRIES = 100_000;

/** One chunk's place in a pack: plain data. */
export interface PackEntry {
  /** SHA-256 of the raw chunk, lowercase hex. */
  hash: string;
  offset: number;
  storedLength: number;
  rawLength: number;
  codec: CodecId;
}

export interface PackTrailer {
  version: number;
  entryCount: number;
  dataLength: number;
  indexLength: number;
  /** SHA-256 of the index, lowercase hex. */
  indexSha256: string;
}

/** A finished pack, ready for `target.put(packObjectName(id), bytes)`. */
export interface FinishedPack {
  /** SHA-256 of `bytes`, lowercase hex. */
  id: string;
  bytes: Buffer;
  entries: PackEntry[];
}

const HEX64 = /^[0-9a-f]{64}$/;

/** The object name of a pack: `packs/ab/abcdef…`. */
export function packObjectName(id: string): string {
  if (!HEX64.test(id)) throw new RangeError(`pack id ${JSON.stringify(id)} is not a SHA-256 in lowercase hex`);
  return `packs/${id.slice(0, 2)}/${id}`;
}

export interface PackWriterOptions {
  /** The pack is full once its data reaches this many bytes (default 16 MiB). */
  targetSize?: number;
  /** …or holds this many chunks. */
  maxEntries?: number;
  /**
   * Build every pack in one buffer the writer keeps: a finished pack's `bytes`
   * are then valid only until the next `finish()`. For a caller that stores
   * each pack before it finishes the next (the backup job): no fresh 16 MiB
   * allocation, page faults and garbage per pack.
   */
  reuseBuffer?: boolean;
}

/**
 * Collects encoded chunks into one pack. `add` says whether the pack is now
 * full; `finish` returns the pack's bytes, id and index and starts a new one.
 * Memory: the stored chunks of one pack.
 */
export class PackWriter {
  private readonly targetSize: number;
  private readonly maxEntries: number;
  private parts: Buffer[] = [];
  private entries: PackEntry[] = [];
  private hashes = new Set<string>();
  private dataLength = 0;
  private readonly reuse: boolean;
  /** The buffer packs are built in when `reuseBuffer` is set; grown to the largest pack so far. */
  private area: Buffer | undefined;

  constructor(opts: PackWriterOptions = {}) {
    this.reuse = opts.reuseBuffer ?? false;
    this.targetSize = opts.targetSize ?? DEFAULT_PACK_TARGET_SIZE;
    this.maxEntries = opts.maxEntries ?? DEFAULT_PACK_MAX_ENTRIES;
    if (!(this.targetSize > 0 && this.targetSize <= MAX_PACK_SIZE / 2)) {
      throw new RangeError(`pack target size ${this.targetSize} must be in (0, ${MAX_PACK_SIZE / 2}]`);
    }
    if (!(Number.isSafeInteger(this.maxEntries) && this.maxEntries > 0 && this.maxEntries <= MAX_PACK_ENTRIES)) {
      throw new RangeError(`pack max entries ${this.maxEntries} must be in [1, ${MAX_PACK_ENTRIES}]`);
    }
  }

  get count(): number {
    return this.entries.length;
  }

  /** Bytes of stored chunks so far. */
  get size(): number {
    return this.dataLength;
  }

  get full(): boolean {
    return this.dataLength >= this.targetSize || this.entries.length >= this.maxEntries;
  }

  has(hash: string): boolean {
    return this.hashes.has(hash);
  }

  /** Appends a chunk (not already in this pack); returns true when the pack is now full. */
  add(chunk: EncodedChunk): boolean {
    const { hash, rawLength, codec, stored } = chunk;
    if (!HEX64.test(hash)) throw new RangeError(`chunk hash ${JSON.stringify(hash)} is not a SHA-256 in lowercase hex`);
    if (this.hashes.has(hash)) throw new RangeError(`chunk ${hash} is already in this pack`);
    if (stored[0] !== codec || stored.length > MAX_STORED_LENGTH || rawLength > MAX_CHUNK_LENGTH) {
      throw new RangeError(`chunk ${hash}: stored bytes do not match codec ${codec} / sizes`);
    }
    if (this.full) throw new RangeError('pack is full: finish it first');
    this.entries.push({ hash, offset: this.dataLength, storedLength: stored.length, rawLength, codec });
    this.parts.push(stored);
    this.hashes.add(hash);
    this.dataLength += stored.length;
    return this.full;
  }

  private assemble(pieces: Buffer[]): Buffer {
    if (!this.reuse) return Buffer.concat(pieces);
    const total = pieces.reduce((a, b) => a + b.length, 0);
    if (!this.area || this.area.length < total)
      this.area = Buffer.allocUnsafeSlow(Math.max(total, this.targetSize * 2));
    let at = 0;
    for (const p of pieces) {
      this.area.set(p, at);
      at += p.length;
    }
    return this.area.subarray(0, total);
  }

  finish(): FinishedPack {
    if (this.entries.length === 0) throw new RangeError('cannot finish an empty pack');
    const index = Buffer.alloc(this.entries.length * PACK_ENTRY_SIZE);
    this.entries.forEach((e, i) => {
      const at = i * PACK_ENTRY_SIZE;
      index.write(e.hash, at + ENTRY.hash[0], 'hex');
      index.writeBigUInt64LE(BigInt(e.offset), at + ENTRY.offset[0]);
      index.writeUInt32LE(e.storedLength, at + ENTRY.storedLength[0]);
      index.writeUInt32LE(e.rawLength, at + ENTRY.rawLength[0]);
      index.writeUInt8(e.codec, at + ENTRY.codec[0]);
    });
    const trailer = Buffer.alloc(PACK_TRAILER_SIZE);
    PACK_MAGIC.copy(trailer, TRAILER.magic[0]);
    trailer.writeUInt32LE(PACK_VERSION, TRAILER.version[0]);
    trailer.writeUInt32LE(this.entries.length, TRAILER.entryCount[0]);
    trailer.writeBigUInt64LE(BigInt(this.dataLength), TRAILER.dataLength[0]);
    trailer.writeBigUInt64LE(BigInt(index.length), TRAILER.indexLength[0]);
    createHash('sha256').update(index).digest().copy(trailer, TRAILER.indexSha256[0]);
    const bytes = this.assemble([...this.parts, index, trailer]);
    const pack: FinishedPack = {
      id: createHash('sha256').update(trailer).digest('hex'),
      bytes,
      entries: this.entries,
    };
    this.parts = [];
    this.entries = [];
    this.hashes = new Set();
    this.dataLength = 0;
    return pack;
  }
}

/** Decodes and checks the trailer (the last PACK_TRAILER_SIZE bytes of a pack of `packSize` bytes). */
export function parsePackTrailer(trailer: Uint8Array, packSize: number, image: string): PackTrailer {
  const err = transportErrors(image, 'pack');
  if (!Number.isSafeInteger(packSize) || packSize < PACK_TRAILER_SIZE || trailer.length !== PACK_TRAILER_SIZE) {
    throw err.truncated('PACK_TOO_SHORT', `a pack needs at least a ${PACK_TRAILER_SIZE}-byte trailer`, {
      offset: 0,
      size: packSize,
    });
  }
  if (packSize > MAX_PACK_SIZE) {
    throw err.limit('PACK_TOO_LARGE', `pack of ${packSize} bytes exceeds ${MAX_PACK_SIZE}`, { offset: 0 });
  }
  const base = packSize - PACK_TRAILER_SIZE;
  const at = (field: keyof typeof TRAILER) => base + TRAILER[field][0];
  if (!PACK_MAGIC.equals(trailer.subarray(TRAILER.magic[0], TRAILER.magic[0] + TRAILER.magic[1]))) {
    throw err.corrupt('PACK_BAD_MAGIC', 'not a vdbak pack (trailer magic)', { offset: at('magic') });
  }
  const version = u32le(trailer, TRAILER.version[0]);
  if (version !== PACK_VERSION) {
    throw err.unsupported('PACK_VERSION', `pack version ${version}`, { offset: at('version') });
  }
  const entryCount = u32le(trailer, TRAILER.entryCount[0]);
  checkCount(entryCount, MAX_PACK_ENTRIES, err, 'PACK_ENTRY_COUNT', 'pack entry count', at('entryCount'));
  const dataLength = u64leNum(trailer, TRAILER.dataLength[0], err, 'PACK_DATA_LENGTH', 'data length', at('dataLength'));
  const indexLength = u64leNum(
    trailer,
    TRAILER.indexLength[0],
    err,
    'PACK_INDEX_LENGTH',
    'index length',
    at('indexLength'),
  );
  if (indexLength !== entryCount * PACK_ENTRY_SIZE) {
    throw err.corrupt('PACK_INDEX_LENGTH', `index length ${indexLength} for ${entryCount} entries`, {
      offset: at('indexLength'),
    });
  }
  if (dataLength + indexLength + PACK_TRAILER_SIZE !== packSize) {
    throw err.corrupt('PACK_SIZE_MISMATCH', `data ${dataLength} + index ${indexLength} + trailer ≠ pack ${packSize}`, {
      offset: at('dataLength'),
    });
  }
  if (entryCount === 0 || dataLength < entryCount) {
    throw err.corrupt('PACK_ENTRY_COUNT', `${entryCount} entries in ${dataLength} bytes of data`, {
      offset: at('entryCount'),
    });
  }
  const indexSha256 = Buffer.from(trailer.subarray(TRAILER.indexSha256[0], TRAILER.indexSha256[0] + 32)).toString(
    'hex',
  );
  return { version, entryCount, dataLength, indexLength, indexSha256 };
}

/** Decodes and checks the index against its trailer: checksum, contiguity, lengths, codecs, duplicates. */
export function parsePackIndex(index: Uint8Array, trailer: PackTrailer, image: string): PackEntry[] {
  const err = transportErrors(image, 'pack');
  const base = trailer.dataLength;
  if (index.length !== trailer.indexLength) {
    throw err.truncated('PACK_INDEX_SHORT', `index holds ${index.length} of ${trailer.indexLength} bytes`, {
      offset: base,
    });
  }
  if (createHash('sha256').update(index).digest('hex') !== trailer.indexSha256) {
    throw err.corrupt('PACK_INDEX_CHECKSUM', 'index SHA-256 does not match the trailer', { offset: base });
  }
  const entries: PackEntry[] = [];
  const seen = new Set<string>();
  let expectOffset = 0;
  for (let i = 0; i < trailer.entryCount; i++) {
    const at = i * PACK_ENTRY_SIZE;
    const where = { offset: base + at, entry: i };
    const hash = Buffer.from(index.subarray(at, at + ENTRY.hash[1])).toString('hex');
    const offset = u64leNum(index, at + ENTRY.offset[0], err, 'PACK_ENTRY_OFFSET', 'chunk offset', base + at);
    const storedLength = u32le(index, at + ENTRY.storedLength[0]);
    const rawLength = u32le(index, at + ENTRY.rawLength[0]);
    const codec = index[at + ENTRY.codec[0]]!;
    if (index.subarray(at + ENTRY.reserved[0], at + PACK_ENTRY_SIZE).some((b) => b !== 0)) {
      throw err.corrupt('PACK_ENTRY_RESERVED', 'reserved bytes of an index entry are not zero', where);
    }
    if (offset !== expectOffset) {
      throw err.corrupt(
        'PACK_ENTRY_OFFSET',
        `chunk at ${offset}, expected ${expectOffset} (chunks are contiguous)`,
        where,
      );
    }
    if (storedLength < 1 || storedLength > MAX_STORED_LENGTH || offset + storedLength > trailer.dataLength) {
      throw err.corrupt('PACK_ENTRY_LENGTH', `stored length ${storedLength} at ${offset}`, where);
    }
    if (rawLength > MAX_CHUNK_LENGTH) {
      throw err.limit('PACK_ENTRY_RAW_LENGTH', `raw length ${rawLength} exceeds ${MAX_CHUNK_LENGTH}`, where);
    }
    if (codec !== CODEC_RAW && codec !== CODEC_ZSTD) {
      throw err.unsupported('PACK_ENTRY_CODEC', `unknown codec ${codec}`, where);
    }
    if (codec === CODEC_RAW && storedLength !== rawLength + 1) {
      throw err.corrupt('PACK_ENTRY_LENGTH', `raw chunk stored in ${storedLength} bytes for ${rawLength}`, where);
    }
    if (seen.has(hash)) throw err.corrupt('PACK_DUPLICATE_CHUNK', `chunk ${hash} appears twice`, where);
    seen.add(hash);
    entries.push({ hash, offset, storedLength, rawLength, codec });
    expectOffset = offset + storedLength;
  }
  if (expectOffset !== trailer.dataLength) {
    throw err.corrupt('PACK_DATA_LENGTH', `chunks end at ${expectOffset}, data length is ${trailer.dataLength}`, {
      offset: base,
    });
  }
  return entries;
}

/**
 * Decodes one stored chunk read from a pack at `entry`: codec byte as indexed,
 * decompressed to the indexed raw length, SHA-256 equal to the indexed hash.
 */
export function decodePackChunk(stored: Uint8Array, entry: PackEntry, image: string): Buffer {
  const err = transportErrors(image, 'pack');
  const where = { offset: entry.offset };
  if (stored.length !== entry.storedLength) {
    throw err.truncated('PACK_SHORT_READ', `read ${stored.length} of ${entry.storedLength} bytes of a chunk`, where);
  }
  if (stored[0] !== entry.codec) {
    throw err.corrupt('PACK_CODEC_MISMATCH', `chunk codec byte ${stored[0]}, index says ${entry.codec}`, where);
  }
  const raw = decodeChunk(stored, entry.rawLength, { image, offset: entry.offset });
  if (createHash('sha256').update(raw).digest('hex') !== entry.hash) {
    throw err.corrupt('PACK_CHUNK_HASH', `chunk ${entry.hash} does not match its SHA-256`, where);
  }
  return raw;
}

/** Where a PackReader gets its bytes: a whole pack in memory or an object on a target. */
interface PackSource {
  size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

/**
 * Reads a pack whose bytes are untrusted: the trailer and index are checked on
 * open; `readChunk` returns a chunk's raw bytes only after its SHA-256 matches.
 */
export class PackReader {
  private constructor(
    readonly name: string,
    readonly trailer: PackTrailer,
    readonly entries: readonly PackEntry[],
    private readonly source: PackSource,
  ) {}

  /** Opens a pack held in memory. */
  static fromBytes(bytes: Uint8Array, name: string): Promise<PackReader> {
    return PackReader.open(
      { size: bytes.length, read: async (o, l) => bytes.subarray(o, Math.min(bytes.length, o + l)) },
      name,
    );
  }

  /** Opens a pack on a target with two ranged reads (trailer, index); chunks are then read one by one. */
  static async fromTarget(target: Target, name: string): Promise<PackReader> {
    const { size } = await target.stat(name);
    return PackReader.open({ size, read: (o, l) => target.getRange(name, o, l) }, name);
  }

  private static async open(source: PackSource, name: string): Promise<PackReader> {
    const err = transportErrors(name, 'pack');
    const size = source.size;
    if (size < PACK_TRAILER_SIZE) {
      throw err.truncated('PACK_TOO_SHORT', `pack of ${size} bytes has no trailer`, { offset: 0, size });
    }
    const tail = await source.read(size - PACK_TRAILER_SIZE, PACK_TRAILER_SIZE);
    if (tail.length !== PACK_TRAILER_SIZE) {
      throw err.truncated('PACK_SHORT_READ', `read ${tail.length} of ${PACK_TRAILER_SIZE} trailer bytes`, {
        offset: size - PACK_TRAILER_SIZE,
      });
    }
    const trailer = parsePackTrailer(tail, size, name);
    const index = await source.read(trailer.dataLength, trailer.indexLength);
    const entries = parsePackIndex(index, trailer, name);
    return new PackReader(name, trailer, entries, source);
  }

  /** The raw bytes of one chunk of this pack, verified. */
  async readChunk(entry: PackEntry): Promise<Buffer> {
    const { offset, storedLength } = entry;
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(storedLength) ||
      offset < 0 ||
      storedLength < 1 ||
      storedLength > MAX_STORED_LENGTH ||
      offset + storedLength > this.trailer.dataLength
    ) {
      throw transportErrors(this.name, 'pack').corrupt(
        'PACK_ENTRY_RANGE',
        `chunk [${offset}, +${storedLength}) lies outside the pack's data`,
        { offset },
      );
    }
    const stored = await this.source.read(entry.offset, entry.storedLength);
    return decodePackChunk(stored, entry, this.name);
  }
}
