/**
 * A catalog copy's bytes on the target: the database file cut into pieces of
 * `pieceSize` raw bytes, each compressed into one zstd frame that declares its
 * content size, the frames concatenated. Concatenated frames are a valid zstd
 * stream, so `zstd -d` reads a copy too (an administrator's way out, and our
 * test oracle).
 *
 * Why frames: the WebAssembly zstd build we use (@bokuweb/zstd-wasm) has only
 * whole-buffer compress/decompress, and transport/codec.ts caps a frame at
 * MAX_CHUNK_LENGTH (64 MiB); a catalog can be bigger. Cutting it into pieces
 * keeps each frame within that cap, and the manifest lists every frame's
 * compressed length, so a reader fetches and decodes one frame at a time
 * (memory bounded by one piece) with the same checked decoder that reads
 * chunks (decodeChunk: the frame must declare exactly the piece's length).
 *
 * Writing is bounded the same way: compressFrames yields one frame at a time
 * to Target.putStream, so a ship holds one piece and its frame, whatever the
 * catalog's size (the whole compressed copy used to be held: 154 MB for a
 * 325 MB catalog, past the 512 MiB bound of a backup that ships).
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { errorsFor } from '../../parsers/errors.js';
import { CODEC_ZSTD, decodeChunk, DEFAULT_ZSTD_LEVEL, encodeChunk, MAX_CHUNK_LENGTH } from '../../transport/codec.js';
import type { Target } from '../../transport/targets/types.js';
import { wasmCompressor } from '../../transport/zstd-wasm.js';

/**
 * Raw bytes per frame. zstd's fast levels look back well under 1 MiB, so a
 * bigger piece gains little ratio (a 2.4 MB catalog: 1 009 190 bytes in one
 * frame, 1 034 437 in 1 MiB frames), and the piece, its frame and zstd's heap
 * are what a ship holds in memory.
 */
export const DEFAULT_PIECE_SIZE = 4 * 1024 * 1024;
export const MAX_PIECE_SIZE = MAX_CHUNK_LENGTH;
/** Largest copy we accept from a manifest (a guard against a forged size, not a product limit). */
export const MAX_COPY_BYTES = 2 ** 50;

/** What a compressed copy is, known once all its frames were produced. */
export interface CopyDigest {
  /** Compressed length of each frame, in order. */
  frames: number[];
  rawSize: number;
  compressedSize: number;
  rawSha256: string;
  compressedSha256: string;
}

export interface FrameStream {
  /** The frames, one at a time; a frame's buffer is valid until the next is asked for. */
  frames: AsyncIterable<Uint8Array>;
  /** The digest; only once `frames` has been read to its end. */
  digest(): CopyDigest;
}

/** At least ZSTD_compressBound: a piece always fits, even one that does not compress. */
const frameBound = (n: number): number => n + (n >>> 7) + 512;

/**
 * One piece as one zstd frame (with the codec byte in front), by the chunk
 * codec, so that a ship uses the fastest zstd build the backup has (native
 * where there is one, WebAssembly otherwise). The codec stores a chunk that
 * does not compress raw; a copy's frames are zstd whatever they hold, so such
 * a piece (rare: database pages compress) is written by the WebAssembly build,
 * with room for the frame whatever its size.
 */
function framePiece(piece: Uint8Array, level: number): Buffer {
  const enc = encodeChunk({ hash: '', bytes: piece }, { level });
  if (enc.codec === CODEC_ZSTD) return enc.stored;
  const stored = wasmCompressor().compressPrefixed(piece, level, CODEC_ZSTD, frameBound(piece.length));
  if (!stored) throw new RangeError(`zstd frame of ${piece.length} bytes exceeds its bound`); // our bug
  return stored;
}

/**
 * Reads `path` piece by piece and compresses each piece into one zstd frame
 * that declares its content size. The file must not change while it is read
 * (it is the ship's own temporary copy).
 */
export function compressFrames(path: string, pieceSize = DEFAULT_PIECE_SIZE, level = DEFAULT_ZSTD_LEVEL): FrameStream {
  if (!Number.isInteger(pieceSize) || pieceSize < 1 || pieceSize > MAX_PIECE_SIZE) {
    throw new RangeError(`piece size ${pieceSize} is not in 1..${MAX_PIECE_SIZE}`);
  }
  let result: CopyDigest | undefined;
  async function* frames(): AsyncGenerator<Uint8Array> {
    const fh = await open(path, 'r');
    try {
      const size = (await fh.stat()).size;
      const buf = Buffer.allocUnsafe(Math.min(pieceSize, Math.max(size, 1)));
      const rawHash = createHash('sha256');
      const zHash = createHash('sha256');
      const lengths: number[] = [];
      let compressedSize = 0;
      for (let done = 0; done < size;) {
        const want = Math.min(pieceSize, size - done);
        for (let got = 0; got < want;) {
          const { bytesRead } = await fh.read(buf, got, want - got, done + got);
          // the copy is our own temp file: a short read means it changed under us
          if (bytesRead === 0) throw new RangeError(`${path} ended at ${done + got} of ${size} bytes`);
          got += bytesRead;
        }
        const piece = buf.subarray(0, want);
        rawHash.update(piece);
        const frame = framePiece(piece, level).subarray(1);
        zHash.update(frame);
        lengths.push(frame.length);
        compressedSize += frame.length;
        done += want;
        yield frame;
      }
      result = {
        frames: lengths,
        rawSize: size,
        compressedSize,
        rawSha256: rawHash.digest('hex'),
        compressedSha256: zHash.digest('hex'),
      };
    } finally {
      await fh.close();
    }
  }
  return {
    frames: frames(),
    digest() {
      if (!result) throw new RangeError('the frames were not read to their end');
      return result;
    },
  };
}

export interface FramedCopy {
  data: string;
  pieceSize: number;
  frames: readonly number[];
  rawSize: number;
  compressedSize: number;
  rawSha256: string;
  compressedSha256: string;
}

/**
 * Fetches a copy frame by frame from the target, decodes it into `outPath`
 * (created, must not exist) and verifies sizes and both SHA-256s. Throws a
 * typed error (`SHIP_*`, or the codec's `CODEC_*`) on any mismatch; the caller
 * removes the output then.
 */
export async function decodeCopyTo(target: Target, copy: FramedCopy, outPath: string): Promise<void> {
  const err = errorsFor({ image: `${target.location}/${copy.data}`, layer: 'catalog' });
  const { pieceSize, frames, rawSize } = copy;
  if (!Number.isInteger(pieceSize) || pieceSize < 1 || pieceSize > MAX_PIECE_SIZE) {
    throw err.corrupt('SHIP_PIECE_SIZE', `piece size ${pieceSize} is not in 1..${MAX_PIECE_SIZE}`);
  }
  if (!Number.isSafeInteger(rawSize) || rawSize < 0 || rawSize > MAX_COPY_BYTES) {
    throw err.corrupt('SHIP_RAW_SIZE', `raw size ${rawSize} is out of range`);
  }
  if (frames.length !== Math.ceil(rawSize / pieceSize)) {
    throw err.corrupt('SHIP_FRAMES', `${frames.length} frames cannot hold ${rawSize} bytes in pieces of ${pieceSize}`);
  }
  let total = 0;
  for (const f of frames) {
    if (!Number.isSafeInteger(f) || f < 1 || f > MAX_PIECE_SIZE * 2) {
      throw err.corrupt('SHIP_FRAMES', `frame length ${f} is out of range`);
    }
    total += f;
  }
  if (total !== copy.compressedSize) {
    throw err.corrupt('SHIP_FRAMES', `frames add up to ${total} bytes, manifest says ${copy.compressedSize}`);
  }
  const { size } = await target.stat(copy.data);
  if (size !== copy.compressedSize) {
    throw err.corrupt('SHIP_SIZE', `copy holds ${size} bytes, manifest says ${copy.compressedSize}`);
  }
  const zHash = createHash('sha256');
  const rawHash = createHash('sha256');
  const fd = openSync(outPath, 'wx', 0o600);
  try {
    let offset = 0;
    let written = 0;
    for (let i = 0; i < frames.length; i++) {
      const len = frames[i]!;
      const frame = await target.getRange(copy.data, offset, len);
      zHash.update(frame);
      const stored = Buffer.allocUnsafe(1 + len);
      stored[0] = CODEC_ZSTD;
      stored.set(frame, 1);
      const want = Math.min(pieceSize, rawSize - written);
      const raw = decodeChunk(stored, want, { image: `${target.location}/${copy.data}`, offset });
      rawHash.update(raw);
      for (let at = 0; at < raw.length;) at += writeSync(fd, raw, at, raw.length - at, written + at);
      written += raw.length;
      offset += len;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (zHash.digest('hex') !== copy.compressedSha256) {
    throw err.corrupt('SHIP_CHECKSUM', 'compressed copy does not match its SHA-256');
  }
  if (rawHash.digest('hex') !== copy.rawSha256) {
    throw err.corrupt('SHIP_CHECKSUM', 'decompressed catalog does not match its SHA-256');
  }
}
