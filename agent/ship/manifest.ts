/**
 * Names and manifests of catalog copies on the target.
 *
 * A copy is two objects: `catalog/<stamp>-<id>.db.zst` (the data) and
 * `catalog/<stamp>-<id>.json` (its manifest). The stamp is the UTC time to the
 * millisecond in a fixed-width form (`20261123T130930123Z`), so names sort in
 * time order; the id is random, so two ships in the same millisecond do not
 * collide. The manifest is written after the data: a manifest names only a
 * complete copy, and a data object without a manifest is an interrupted ship.
 *
 * Manifests come back from the target as untrusted JSON: `parseManifest`
 * checks every field it returns.
 */
import { randomBytes } from 'node:crypto';
import { errorsFor } from '../../parsers/errors.js';

export const CATALOG_PREFIX = 'catalog/';
export const DATA_SUFFIX = '.db.zst';
export const MANIFEST_SUFFIX = '.json';
export const MANIFEST_FORMAT = 'vdbak-catalog-copy';
export const MANIFEST_VERSION = 1;
/** The data is a sequence of zstd frames, each declaring its content size (at most `pieceSize`). */
export const CODEC_ZSTD_FRAMES = 'zstd-frames';
/** A manifest is small; a bigger object is not one of ours. */
export const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;

const STAMP_RE = /^\d{8}T\d{9}Z-[0-9a-f]{8}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const ID_BYTES = 4;

export interface ManifestBackup {
  id: number;
  vm: string;
  vmIdentity: string;
  startedMs: number;
  finishedMs: number | null;
}

export interface CatalogManifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  /** `<stamp>-<id>`: the name both objects share. */
  base: string;
  /** Object name of the compressed copy. */
  data: string;
  time: string;
  timeMs: number;
  repoId: string;
  schemaVersion: number;
  codec: typeof CODEC_ZSTD_FRAMES;
  /** Raw bytes per zstd frame (the last may hold fewer). */
  pieceSize: number;
  /** Compressed length of each frame (see frames.ts). */
  frames: number[];
  rawSize: number;
  compressedSize: number;
  rawSha256: string;
  compressedSha256: string;
  /** Complete backups the copy holds, oldest first. */
  backups: ManifestBackup[];
  newestBackupId: number | null;
  vms: { name: string; identity: string; backups: number }[];
  packs: number;
  chunks: number;
  host: string;
}

/** `20261123T130930123Z` for a time in ms. */
export function stampOf(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:.]/g, '');
}

/** The time in ms a base's stamp names, or undefined when it is not a valid time. */
export function stampMs(base: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z-/.exec(base);
  if (!m) return undefined;
  const [y, mo, d, h, mi, s, ms] = m.slice(1).map(Number) as [number, number, number, number, number, number, number];
  const t = Date.UTC(y, mo - 1, d, h, mi, s, ms);
  return Number.isNaN(t) || stampOf(t) !== base.slice(0, 19) ? undefined : t;
}

export function newBase(ms: number): string {
  return `${stampOf(ms)}-${randomBytes(ID_BYTES).toString('hex')}`;
}

export const dataName = (base: string): string => `${CATALOG_PREFIX}${base}${DATA_SUFFIX}`;
export const manifestName = (base: string): string => `${CATALOG_PREFIX}${base}${MANIFEST_SUFFIX}`;

/** The base of an object under catalog/ when it is a copy's data or manifest, else undefined. */
export function parseCopyName(name: string): { base: string; kind: 'data' | 'manifest' } | undefined {
  if (!name.startsWith(CATALOG_PREFIX)) return undefined;
  const rest = name.slice(CATALOG_PREFIX.length);
  for (const [suffix, kind] of [
    [DATA_SUFFIX, 'data'],
    [MANIFEST_SUFFIX, 'manifest'],
  ] as const) {
    if (rest.endsWith(suffix)) {
      const base = rest.slice(0, -suffix.length);
      if (STAMP_RE.test(base)) return { base, kind };
    }
  }
  return undefined;
}

function isInt(v: unknown, min = 0): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
}

/** Checks a manifest read from the target; throws a typed error naming the bad field. */
export function parseManifest(bytes: Uint8Array, name: string): CatalogManifest {
  const err = errorsFor({ image: name, layer: 'catalog' });
  const bad = (field: string, why: string) => err.corrupt('SHIP_MANIFEST_BAD', `manifest field '${field}' ${why}`);
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw err.limit('SHIP_MANIFEST_SIZE', `manifest of ${bytes.length} bytes exceeds ${MAX_MANIFEST_BYTES}`);
  }
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
  } catch (e) {
    throw err.corrupt('SHIP_MANIFEST_JSON', `manifest is not JSON (${(e as Error).message})`);
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw bad('(root)', 'is not an object');
  if (m.format !== MANIFEST_FORMAT) throw bad('format', `is not '${MANIFEST_FORMAT}'`);
  if (m.version !== MANIFEST_VERSION) {
    throw err.unsupported('SHIP_MANIFEST_VERSION', `manifest version ${String(m.version)} is not supported`);
  }
  const parsed = parseCopyName(name);
  if (!parsed || m.base !== parsed.base) throw bad('base', 'does not match the object name');
  if (m.data !== dataName(parsed.base)) throw bad('data', 'does not name this copy');
  if (m.codec !== CODEC_ZSTD_FRAMES) throw bad('codec', `is not '${CODEC_ZSTD_FRAMES}'`);
  for (const k of ['timeMs', 'schemaVersion', 'pieceSize', 'rawSize', 'compressedSize', 'packs', 'chunks']) {
    if (!isInt(m[k])) throw bad(k, 'is not a non-negative integer');
  }
  if ((m.pieceSize as number) < 1) throw bad('pieceSize', 'is zero');
  if (!Array.isArray(m.frames) || !(m.frames as unknown[]).every((f) => isInt(f, 1))) {
    throw bad('frames', 'is not a list of frame lengths');
  }
  for (const k of ['rawSha256', 'compressedSha256']) {
    if (typeof m[k] !== 'string' || !HEX64.test(m[k])) throw bad(k, 'is not a SHA-256 in hex');
  }
  for (const k of ['time', 'repoId', 'host']) if (typeof m[k] !== 'string') throw bad(k, 'is not a string');
  if (!Array.isArray(m.backups)) throw bad('backups', 'is not a list');
  for (const b of m.backups as unknown[]) {
    const r = b as Record<string, unknown>;
    if (typeof b !== 'object' || b === null || !isInt(r.id, 1) || typeof r.vm !== 'string') {
      throw bad('backups', 'holds an entry without id and vm');
    }
  }
  if (m.newestBackupId !== null && !isInt(m.newestBackupId, 1)) throw bad('newestBackupId', 'is not an id');
  if (!Array.isArray(m.vms)) throw bad('vms', 'is not a list');
  return m as unknown as CatalogManifest;
}
