/**
 * Puts a stream of stored bytes (verified chunks, in order) on a disk: each
 * piece says which bytes of the stream go to which disk offset. Blocks that
 * are all zeros are not written, so they stay holes of the output (the source
 * reads them as zeros either way).
 */
import { errorsFor } from '../../parsers/errors.js';
import type { DiskWriter } from './writers/types.js';

/** Zero detection granularity, aligned in disk coordinates (a filesystem block). */
export const ZERO_BLOCK = 4096;
const ZEROS = Buffer.alloc(ZERO_BLOCK);

export interface Piece {
  /** Offset in the stored stream. */
  streamOffset: number;
  /** Where those bytes go on the disk. */
  diskOffset: number;
  length: number;
}

export interface PlaceCounters {
  /** Stored bytes placed (zeros included). */
  bytes: number;
  /** Bytes actually written (zero blocks skipped). */
  written: number;
}

function isZero(b: Uint8Array): boolean {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(ZEROS.subarray(0, b.byteLength));
}

/** Writes `bytes` at `offset` except the aligned ZERO_BLOCKs that hold only zeros. Returns bytes written. */
export async function writeNonZero(writer: DiskWriter, offset: number, bytes: Uint8Array): Promise<number> {
  let written = 0;
  let runStart = -1;
  let at = 0;
  while (at < bytes.byteLength) {
    const next = Math.min(bytes.byteLength, (Math.floor((offset + at) / ZERO_BLOCK) + 1) * ZERO_BLOCK - offset);
    const zero = isZero(bytes.subarray(at, next));
    if (!zero && runStart < 0) runStart = at;
    if (zero && runStart >= 0) {
      await writer.write(offset + runStart, bytes.subarray(runStart, at));
      written += at - runStart;
      runStart = -1;
    }
    at = next;
  }
  if (runStart >= 0) {
    await writer.write(offset + runStart, bytes.subarray(runStart));
    written += bytes.byteLength - runStart;
  }
  return written;
}

/**
 * Streams `source` onto the disk through `pieces` (sorted by streamOffset, not
 * overlapping). With `exact`, the stream must hold exactly `exact` bytes;
 * otherwise reading stops once the last piece is written.
 */
export async function placeStream(
  source: AsyncIterable<Uint8Array>,
  pieces: readonly Piece[],
  writer: DiskWriter,
  counters: PlaceCounters,
  what: string,
  check: () => void,
  exact?: number,
): Promise<void> {
  let pos = 0;
  let i = 0;
  for await (const buf of source) {
    check();
    const bufStart = pos;
    const bufEnd = pos + buf.byteLength;
    pos = bufEnd;
    while (i < pieces.length) {
      const p = pieces[i]!;
      const pEnd = p.streamOffset + p.length;
      if (p.streamOffset >= bufEnd) break;
      const from = Math.max(p.streamOffset, bufStart);
      const to = Math.min(pEnd, bufEnd);
      if (to > from) {
        const part = buf.subarray(from - bufStart, to - bufStart);
        counters.written += await writeNonZero(writer, p.diskOffset + (from - p.streamOffset), part);
        counters.bytes += part.byteLength;
      }
      if (pEnd > bufEnd) break;
      i++;
    }
    if (i >= pieces.length && exact === undefined) return;
  }
  const err = errorsFor({ image: what, layer: 'restore' });
  if (i < pieces.length) {
    throw err.corrupt(
      'REBUILD_SHORT_STREAM',
      `the stored bytes end at ${pos}, its runs need ${pieces.at(-1)!.streamOffset + pieces.at(-1)!.length}`,
    );
  }
  if (exact !== undefined && pos !== exact) {
    throw err.corrupt('REBUILD_STREAM_LENGTH', `the stored bytes are ${pos} long, its runs say ${exact}`);
  }
}
