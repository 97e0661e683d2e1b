/**
 * The compact form of a long runs list (schema 3). A disk's non-file regions
 * hold thousands of runs (inode tables, bitmaps, directory and extent blocks,
 * the journal): 25 bytes each in the fixed form made every backup of a changed
 * VM add ~190 KB to the catalog for one regions version. Here each run is
 * varints of its deltas from the previous run's end, in units of the largest
 * power of two dividing every offset and length (the block size), deflated:
 * ~10 KB for the same list.
 *
 *   blob    = TAG, pad, deflateRaw(payload), pad × 0x00
 *   payload = varint count, u8 shift, count × run
 *   run     = varint zigzag(fileOffset − previous end) >> shift,
 *             varint flags (1 hole, 2 unwritten),
 *             [varint zigzag(volumeOffset − previous volume end) >> shift, unless a hole],
 *             varint length >> shift
 *
 * A fixed-form blob is a multiple of RUN_BYTES long; a compact one never is
 * (`pad` adds a byte when it would be), so the length says which form a blob
 * has and the catalogs written before keep reading as they are.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';

/** A runs blob the catalog cannot decode: the catalog is damaged. */
export class RunsFormatError extends Error {
  readonly code = 'CATALOG_RUNS_FORMAT';
}

export interface CompactRun {
  fileOffset: number;
  volumeOffset: number | null;
  length: number;
  unwritten?: boolean;
}

const TAG = 0xc1;
const HEADER = 2;
const HOLE = 1;
const UNWRITTEN = 2;
/** Largest shift: offsets in units of up to 1 MiB. */
const MAX_SHIFT = 20;
/** The fewest bytes a run takes in the payload (flags, and three one-byte varints at most one of which is absent). */
const MIN_RUN_BYTES = 3;
/** Inflated payload at most: 8 M runs' worth, far above any disk's regions. */
const MAX_PAYLOAD = 64 * 1024 * 1024;

function zigzag(x: number): number {
  return x >= 0 ? 2 * x : -2 * x - 1;
}

function unzigzag(z: number): number {
  return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
}

function putVarint(out: number[], x: number): void {
  while (x >= 128) {
    out.push((x % 128) | 128);
    x = Math.floor(x / 128);
  }
  out.push(x);
}

/** The largest power-of-two exponent dividing every offset and length (0 when one is odd). */
function commonShift(runs: readonly CompactRun[]): number {
  let shift = MAX_SHIFT;
  for (const r of runs) {
    for (const v of [r.fileOffset, r.length, r.volumeOffset ?? 0]) {
      while (shift > 0 && v % 2 ** shift !== 0) shift--;
    }
  }
  return shift;
}

/** The compact blob of `runs`, or undefined when a value does not fit the form (negative, unsafe): keep the fixed form then. */
export function encodeCompactRuns(runs: readonly CompactRun[], fixedBytes: number): Buffer | undefined {
  const shift = commonShift(runs);
  const unit = 2 ** shift;
  const out: number[] = [];
  putVarint(out, runs.length);
  out.push(shift);
  let fileEnd = 0;
  let volumeEnd = 0;
  for (const r of runs) {
    const values = [r.fileOffset, r.length, r.volumeOffset ?? 0];
    if (values.some((v) => !Number.isSafeInteger(v) || v < 0 || v > Number.MAX_SAFE_INTEGER / 4)) return undefined;
    putVarint(out, zigzag((r.fileOffset - fileEnd) / unit));
    putVarint(out, (r.volumeOffset === null ? HOLE : 0) | (r.unwritten ? UNWRITTEN : 0));
    if (r.volumeOffset !== null) {
      putVarint(out, zigzag((r.volumeOffset - volumeEnd) / unit));
      volumeEnd = r.volumeOffset + r.length;
    }
    putVarint(out, r.length / unit);
    fileEnd = r.fileOffset + r.length;
  }
  const body = deflateRawSync(Buffer.from(out));
  const pad = (HEADER + body.length) % fixedBytes === 0 ? 1 : 0;
  const blob = Buffer.alloc(HEADER + body.length + pad);
  blob[0] = TAG;
  blob[1] = pad;
  body.copy(blob, HEADER);
  return blob;
}

/** Whether a runs blob is in the compact form (else the fixed one). */
export function isCompactRuns(blob: Uint8Array, fixedBytes: number): boolean {
  return blob.length % fixedBytes !== 0;
}

function payloadOf(blob: Uint8Array): Buffer {
  const pad = blob[1];
  if (blob.length < HEADER + 1 || blob[0] !== TAG || (pad !== 0 && pad !== 1)) {
    throw new RunsFormatError(`runs blob of ${blob.length} bytes: neither form`);
  }
  try {
    return inflateRawSync(blob.subarray(HEADER, blob.length - pad), { maxOutputLength: MAX_PAYLOAD });
  } catch (e) {
    throw new RunsFormatError(`runs blob does not inflate: ${(e as Error).message}`);
  }
}

/** Reads varints from a payload, refusing to run past its end or past 2^53. */
class Reader {
  at = 0;
  constructor(readonly b: Buffer) {}
  varint(): number {
    let x = 0;
    let scale = 1;
    for (;;) {
      if (this.at >= this.b.length) throw new RunsFormatError('runs blob ends inside a run');
      const byte = this.b[this.at++]!;
      x += (byte & 127) * scale;
      if (!Number.isSafeInteger(x)) throw new RunsFormatError('runs blob holds a value past 2^53');
      if (byte < 128) return x;
      scale *= 128;
    }
  }
}

/** The number of runs in a compact blob, without decoding them. */
export function compactRunCount(blob: Uint8Array): number {
  return new Reader(payloadOf(blob)).varint();
}

export function decodeCompactRuns(blob: Uint8Array): CompactRun[] {
  const payload = payloadOf(blob);
  const r = new Reader(payload);
  const count = r.varint();
  if (count > payload.length / MIN_RUN_BYTES) throw new RunsFormatError(`runs blob claims ${count} runs`);
  const shift = payload[r.at++] ?? MAX_SHIFT + 1;
  if (shift > MAX_SHIFT) throw new RunsFormatError(`runs blob has unit 2^${shift}`);
  const unit = 2 ** shift;
  const checked = (v: number): number => {
    if (!Number.isSafeInteger(v) || v < 0) throw new RunsFormatError(`runs blob decodes to ${v}`);
    return v;
  };
  const out: CompactRun[] = [];
  let fileEnd = 0;
  let volumeEnd = 0;
  for (let i = 0; i < count; i++) {
    const fileOffset = checked(fileEnd + unzigzag(r.varint()) * unit);
    const flags = r.varint();
    if (flags > (HOLE | UNWRITTEN)) throw new RunsFormatError(`runs blob has flags ${flags}`);
    let volumeOffset: number | null = null;
    if (!(flags & HOLE)) volumeOffset = checked(volumeEnd + unzigzag(r.varint()) * unit);
    const length = checked(r.varint() * unit);
    if (volumeOffset !== null) volumeEnd = checked(volumeOffset + length);
    fileEnd = checked(fileOffset + length);
    const run: CompactRun = { fileOffset, volumeOffset, length };
    if (flags & UNWRITTEN) run.unwritten = true;
    out.push(run);
  }
  if (r.at !== payload.length) throw new RunsFormatError('runs blob has bytes after its last run');
  return out;
}
