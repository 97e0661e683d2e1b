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
 * The whole compressed copy is held in memory while it is written, because
 * Target.put takes whole objects.
 */
import { compress } from '@bokuweb/zstd-wasm';
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, writeSync, fsyncSync } from 'node:fs';
import { errorsFor } from '../../parsers/errors.js';
import { CODEC_ZSTD, decodeChunk, DEFAULT_ZSTD_LEVEL, MAX_CHUNK_LENGTH } from '../../transport/codec.js';
import type { Target } from '../../transport/targets/types.js';

/** Raw bytes per frame: big enough for a good ratio, small enough to hold a few in memory. */
export const DEFAULT_PIECE_SIZE = 16 * 1024 * 1024;
export const MAX_PIECE_SIZE = MAX_CHUNK_LENGTH;
/** Largest copy we accept from a manifest (a guard against a forged size, not a product limit). */
export const MAX_COPY_BYTES = 2 ** 50;

export interface Compressed {
  bytes: Buffer;
  /** Compressed length of each frame, in order. */
  frames: number[];
  rawSize: number;
  rawSha256: string;
  compressedSha256: string;
}

/** Reads `path` piece by piece and compresses each piece into one zstd frame. */
export function compressFile(path: string, pieceSize = DEFAULT_PIECE_SIZE, level = DEFAULT_ZSTD_LEVEL): Compressed {
  if (!Number.isInteger(pieceSize) || pieceSize < 1 || pieceSize > MAX_PIECE_SIZE) {
    throw new RangeError(`piece size ${pieceSize} is not in 1..${MAX_PIECE_SIZE}`);
  }
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const buf = Buffer.allocUnsafe(Math.min(pieceSize, Math.max(size, 1)));
    const rawHash = createHash('sha256');
    const parts: Buffer[] = [];
    const frames: number[] = [];
    let done = 0;
    while (done < size) {
      const want = Math.min(pieceSize, size - done);
      let got = 0;
      while (got < want) {
        const n = readSync(fd, buf, got, want - got, done + got);
        // the copy is our own temp file: a short read means it changed under us
        if (n === 0) throw new RangeError(`${path} ended at ${done + got} of ${size} bytes`);
        got += n;
      }
      const piece = buf.subarray(0, want);
      rawHash.update(piece);
      const z = Buffer.from(compress(piece, level));
      parts.push(z);
      frames.push(z.length);
      done += want;
    }
    const bytes = Buffer.concat(parts);
    return {
      bytes,
      frames,
      rawSize: size,
      rawSha256: rawHash.digest('hex'),
      compressedSha256: createHash('sha256').update(bytes).digest('hex'),
    };
  } finally {
    closeSync(fd);
  }
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
