/**
 * Puts a stream of stored bytes (verified chunks, in order) on a disk: each
 * piece says which bytes of the stream go to which disk offset. Blocks that
 * are all zeros are not written, so they stay holes of the output (the source
 * reads them as zeros either way).
 */
import { errorsFor } from '../../parsers/errors.js';
import type { DiskRange } from './extents.js';
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
  /** Bytes stored twice (in the regions too) and found equal to what the regions wrote. */
  verified: number;
}

/** Where bytes of a source were stored in the regions too: checked against them instead of written again. */
export interface Shared {
  ranges: readonly DiskRange[];
  /** Names the regions in an error. */
  regions: string;
}

/** The first range of `ranges` (sorted) that ends after `offset`. */
function firstEndingAfter(ranges: readonly DiskRange[], offset: number): number {
  let lo = 0;
  let hi = ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ranges[mid]!.end <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Writes a part of a source at disk `offset`; where the regions already
 * wrote the same disk bytes, reads them back and requires them equal.
 */
async function putPart(
  writer: DiskWriter,
  offset: number,
  bytes: Uint8Array,
  shared: Shared | undefined,
  what: string,
  counters: PlaceCounters,
): Promise<void> {
  const end = offset + bytes.byteLength;
  const ranges = shared?.ranges ?? [];
  let pos = offset;
  for (let k = firstEndingAfter(ranges, offset); pos < end; k++) {
    const r = ranges[k];
    if (!r || r.start >= end) break;
    if (r.start > pos) {
      const n = await writeNonZero(writer, pos, bytes.subarray(pos - offset, r.start - offset));
      counters.written += n;
      pos = r.start;
    }
    const to = Math.min(r.end, end);
    const have = await writer.read(pos, to - pos);
    const mine = bytes.subarray(pos - offset, to - offset);
    if (!have.equals(mine)) {
      throw errorsFor({ image: what, layer: 'restore' }).corrupt(
        'REBUILD_OVERLAP_DIFFERS',
        `${what} and ${shared!.regions} both hold disk bytes ${pos}..${to}, and not the same bytes: the backup is inconsistent`,
        { offset: pos },
      );
    }
    counters.verified += to - pos;
    pos = to;
  }
  if (pos < end) {
    // not `counters.written += await …`: that reads the counter before the await, and files are placed concurrently
    const n = await writeNonZero(writer, pos, bytes.subarray(pos - offset));
    counters.written += n;
  }
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

/** Bytes of a stored stream that start at `offset` in it. */
export interface Segment {
  offset: number;
  bytes: Uint8Array;
}

/** A stream read from its start, as segments. */
export async function* contiguous(source: AsyncIterable<Uint8Array>): AsyncGenerator<Segment> {
  let offset = 0;
  for await (const bytes of source) {
    yield { offset, bytes };
    offset += bytes.byteLength;
  }
}

/**
 * Puts `source` (segments in stream order, maybe with gaps where no piece
 * needs bytes) on the disk through `pieces` (sorted by streamOffset, not
 * overlapping). With `exact`, the stream must end at exactly `exact` bytes;
 * otherwise reading stops once the last piece is written.
 */
export async function placeStream(
  source: AsyncIterable<Segment>,
  pieces: readonly Piece[],
  writer: DiskWriter,
  counters: PlaceCounters,
  what: string,
  check: () => void,
  exact?: number,
  shared?: Shared,
): Promise<void> {
  const err = errorsFor({ image: what, layer: 'restore' });
  let i = 0;
  /** The next stream byte a piece needs. */
  let next = pieces[0]?.streamOffset ?? 0;
  let end = 0;
  for await (const { offset, bytes } of source) {
    check();
    const segEnd = offset + bytes.byteLength;
    end = segEnd;
    while (i < pieces.length) {
      if (next < offset) {
        throw err.corrupt('REBUILD_SHORT_STREAM', `stored bytes ${next}..${offset} are missing`, { offset: next });
      }
      if (next >= segEnd) break;
      const p = pieces[i]!;
      const pEnd = p.streamOffset + p.length;
      const to = Math.min(pEnd, segEnd);
      const part = bytes.subarray(next - offset, to - offset);
      await putPart(writer, p.diskOffset + (next - p.streamOffset), part, shared, what, counters);
      counters.bytes += part.byteLength;
      next = to;
      if (to < pEnd) break;
      i++;
      if (i < pieces.length) next = pieces[i]!.streamOffset;
    }
    if (i >= pieces.length && exact === undefined) return;
  }
  if (i < pieces.length) {
    throw err.corrupt('REBUILD_SHORT_STREAM', `the stored bytes end at ${end}, its runs need byte ${next}`, {
      offset: next,
    });
  }
  if (exact !== undefined && end !== exact) {
    throw err.corrupt('REBUILD_STREAM_LENGTH', `the stored bytes are ${end} long, its runs say ${exact}`);
  }
}
