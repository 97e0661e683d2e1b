/**
 * Plain shapes the catalog stores and returns, and the binary encodings of
 * chunk lists and data runs. The catalog imports nothing else of ours, so the
 * run shape is restated here (it matches parsers/fs/types.ts DataRun).
 */
import { compactRunCount, decodeCompactRuns, encodeCompactRuns, isCompactRuns } from './runs-compact.js';

/** SHA-256 length: chunk ids are stored as 32-byte BLOBs. */
export const HASH_BYTES = 32;

export interface RunRecord {
  fileOffset: number;
  /** Offset inside the volume, or null for a hole. */
  volumeOffset: number | null;
  length: number;
  unwritten?: boolean;
}

export interface StreamRecord {
  name: string;
  size: number;
  /** Chunk hashes of the stream, lowercase hex, in order. */
  chunks: string[];
}

/** What a backup records of one entry (one path) of a volume. */
export interface VersionRecord {
  fsId: string;
  type: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtimeNs: bigint;
  atimeNs: bigint;
  ctimeNs: bigint;
  btimeNs?: bigint;
  linkTarget?: string;
  /** Everything else worth keeping (flags, attributes, owner SID, xattrs as base64 …). */
  meta?: Record<string, unknown>;
  runs?: RunRecord[];
  /** Chunk hashes of the main stream, lowercase hex, in order. */
  chunks?: string[];
  streams?: StreamRecord[];
}

/** A stored version as read back. */
export interface VersionRow extends VersionRecord {
  id: number;
  volumeId: number;
  dir: string;
  name: string;
  /** '/'-separated path inside the volume ('/' for the root). */
  path: string;
  firstBackup: number;
  lastBackup: number | null;
}

/** Bytes per run in a runs BLOB (encodeRuns). */
export const RUN_BYTES = 25;
const HOLE = -1n;
const TWO_32 = 2 ** 32;
/** Runs encodeRunsTransient encodes in its kept buffer; longer lists get a buffer of their own. */
const TRANSIENT_RUNS = 2048;
/** From this many runs a list is stored in the compact form (runs-compact.ts): a disk's regions, a fragmented file. */
export const COMPACT_MIN_RUNS = 64;

/** A u64/i64 as two u32 halves (no BigInt per value, cheap even before the JIT warms up); BigInt otherwise. */
function put64(dv: DataView, at: number, x: number, signed: boolean): void {
  if (x >= 0 && x <= Number.MAX_SAFE_INTEGER && Number.isInteger(x)) {
    dv.setUint32(at, x % TWO_32, true);
    dv.setUint32(at + 4, Math.floor(x / TWO_32), true);
  } else {
    // Buffer's writers reject what the format cannot hold (a negative u64, a fraction); DataView's would wrap
    const b = Buffer.from(dv.buffer, dv.byteOffset, dv.byteLength);
    if (signed) b.writeBigInt64LE(BigInt(x), at);
    else b.writeBigUInt64LE(BigInt(x), at);
  }
}

function writeRuns(dv: DataView, runs: readonly RunRecord[]): void {
  for (let i = 0; i < runs.length; i++) {
    const r = runs[i]!;
    const at = i * RUN_BYTES;
    put64(dv, at, r.fileOffset, false);
    if (r.volumeOffset === null) dv.setBigInt64(at + 8, HOLE, true);
    else put64(dv, at + 8, r.volumeOffset, true);
    put64(dv, at + 16, r.length, false);
    dv.setUint8(at + 24, r.unwritten ? 1 : 0);
  }
}

/** Runs as a BLOB: per run u64 file offset, i64 volume offset (-1 = hole), u64 length, u8 flags. */
export function encodeRuns(runs: readonly RunRecord[]): Buffer {
  if (runs.length >= COMPACT_MIN_RUNS) {
    const compact = encodeCompactRuns(runs, RUN_BYTES);
    if (compact) return compact;
  }
  const b = Buffer.alloc(runs.length * RUN_BYTES);
  writeRuns(new DataView(b.buffer, b.byteOffset, b.byteLength), runs);
  return b;
}

const transient = Buffer.alloc(TRANSIENT_RUNS * RUN_BYTES);
const transientView = new DataView(transient.buffer, transient.byteOffset, transient.byteLength);

/**
 * encodeRuns into one kept buffer: the bytes are valid until the next call,
 * for binding to a statement (SQLite copies them). Saves an allocation per
 * file in the unchanged-file check.
 */
export function encodeRunsTransient(runs: readonly RunRecord[]): Buffer {
  if (runs.length > TRANSIENT_RUNS || runs.length >= COMPACT_MIN_RUNS) return encodeRuns(runs);
  writeRuns(transientView, runs);
  return transient.subarray(0, runs.length * RUN_BYTES);
}

/** The number of runs a runs blob holds, without decoding them (a compact one is inflated to read its count). */
export function runCountOf(b: Uint8Array): number {
  return isCompactRuns(b, RUN_BYTES) ? compactRunCount(b) : b.length / RUN_BYTES;
}

export function decodeRuns(b: Uint8Array): RunRecord[] {
  if (isCompactRuns(b, RUN_BYTES)) return decodeCompactRuns(b);
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const out: RunRecord[] = [];
  for (let at = 0; at + RUN_BYTES <= buf.length; at += RUN_BYTES) {
    const vo = buf.readBigInt64LE(at + 8);
    const run: RunRecord = {
      fileOffset: Number(buf.readBigUInt64LE(at)),
      volumeOffset: vo === HOLE ? null : Number(vo),
      length: Number(buf.readBigUInt64LE(at + 16)),
    };
    if ((buf[at + 24] ?? 0) & 1) run.unwritten = true;
    out.push(run);
  }
  return out;
}

/** Chunk hashes (hex) as one BLOB of 32-byte hashes. */
export function encodeHashes(hashes: readonly string[]): Buffer {
  const b = Buffer.alloc(hashes.length * HASH_BYTES);
  hashes.forEach((h, i) => b.write(h, i * HASH_BYTES, HASH_BYTES, 'hex'));
  return b;
}

export function decodeHashes(b: Uint8Array): string[] {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const out: string[] = [];
  for (let at = 0; at + HASH_BYTES <= buf.length; at += HASH_BYTES) out.push(buf.toString('hex', at, at + HASH_BYTES));
  return out;
}

/** Splits a volume path into the (dir, name) pair the catalog indexes: '/' → ('', ''), '/a/b' → ('/a', 'b'). */
export function splitPath(path: string): { dir: string; name: string } {
  if (path === '/' || path === '') return { dir: '', name: '' };
  const cut = path.lastIndexOf('/');
  return { dir: cut <= 0 ? '/' : path.slice(0, cut), name: path.slice(cut + 1) };
}

export function joinPath(dir: string, name: string): string {
  if (dir === '') return name === '' ? '/' : `/${name}`;
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/**
 * What decides "unchanged" for an entry without named streams (sameContent
 * without the streams): Catalog.keepIfSame compares it inside SQLite.
 */
export interface ContentKey {
  fsId: string;
  type: string;
  size: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  btimeNs?: bigint;
  linkTarget?: string;
  runs?: readonly RunRecord[];
}

/** Equality of what decides "unchanged": the stable id, size, times and data runs. */
export function sameContent(a: VersionRecord, b: VersionRecord): boolean {
  if (a.fsId !== b.fsId || a.type !== b.type || a.size !== b.size) return false;
  if (a.mtimeNs !== b.mtimeNs || a.ctimeNs !== b.ctimeNs || (a.btimeNs ?? null) !== (b.btimeNs ?? null)) return false;
  if (a.linkTarget !== b.linkTarget) return false;
  const ra = encodeRuns(a.runs ?? []);
  const rb = encodeRuns(b.runs ?? []);
  if (!ra.equals(rb)) return false;
  const sa = (a.streams ?? []).map((s) => `${s.name}:${s.size}`).join('\0');
  const sb = (b.streams ?? []).map((s) => `${s.name}:${s.size}`).join('\0');
  return sa === sb;
}
