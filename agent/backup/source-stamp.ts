/**
 * The shortcut for a VM whose files did not change: when every file a backup
 * reads (every link of every disk's chain, and the configuration files) has
 * the same device, inode, size, modification and change time (ns) as when
 * the VM's latest complete backup read them — the test restic and borg make
 * per file — the new backup keeps that backup's volumes without opening a
 * filesystem: its entries, regions and configuration files are the same
 * versions, still current.
 *
 * Exact only under these rules, all checked:
 * - the change time cannot be set back by a writer (`touch -r` and utimes
 *   set it to now), so equal stamps mean no write since;
 * - a file written in the same timestamp tick as the stamp was taken could
 *   change again without its times moving (git's "racily clean" files): no
 *   stamp is made unless every file is older than STAMP_SETTLE_MS before the
 *   backup first read it (regions.ts imageStamp);
 * - the stamp covers this program's version and BACKUP_FORMAT, the VM's
 *   identity, its disks (slot, path, format) and the snapshot-parent roots,
 *   so another program or another layout reads again;
 * - only a backup with no transient warning is kept (job.ts WarningKind): a
 *   file or the regions not read, a filesystem problem — anything a second
 *   reading could change — means the next backup reads. Warnings the same
 *   bytes give again (a partition kept raw) are repeated by the kept backup;
 * - only the VM's latest complete backup is kept (checked again in the
 *   completing transaction), whose versions are the VM's current ones.
 */
import { createHash } from 'node:crypto';
import { VERSION } from '../version.js';
import type { ConfigFile } from './config-files.js';
import { imageStamp } from './regions.js';

/** Bump when what a backup records of an unchanged disk changes (a parser reads more, a record gains a field). */
export const BACKUP_FORMAT = 1;
/** A file modified less than this long before a backup starts reading it gives no stamp (see above). */
export const STAMP_SETTLE_MS = 2000;
/** Environment override of STAMP_SETTLE_MS (tests that back up fixtures they just made). */
export const STAMP_SETTLE_ENV = 'VDBAK_STAMP_SETTLE_MS';
/** The most a settle time may be set to: a day. */
const MAX_SETTLE_MS = 86_400_000;

export interface StampedDisk {
  slot: string;
  path: string;
  format?: string;
  chain: readonly { files: readonly string[] }[];
}

export interface SourceStamp {
  /** The whole VM's stamp, or undefined when any part has none. */
  stamp: string | undefined;
  /** Per disk, in order: its chain's stamp (regions.ts keeps a disk's regions by it). */
  disks: (string | undefined)[];
}

/** The settle time in force: the option, else the environment, else STAMP_SETTLE_MS. */
export function settleMs(option: number | undefined, env: NodeJS.ProcessEnv = process.env): number {
  const text = env[STAMP_SETTLE_ENV]?.trim();
  const raw = option ?? (text ? Number(text) : STAMP_SETTLE_MS);
  return Number.isFinite(raw) && raw >= 0 ? Math.min(raw, MAX_SETTLE_MS) : STAMP_SETTLE_MS;
}

/** Wall-clock ns before which every file must have last changed, for a backup that starts reading at `startMs`. */
export function settledBefore(startMs: number, settle: number): bigint {
  return BigInt(Math.floor(startMs - settle)) * 1_000_000n;
}

/**
 * The stamp of everything a backup of this VM reads. Config files come from
 * their listing's stat (config-files.ts), checked against the same bound.
 */
export function sourceStamp(
  vm: { identity: string; parentRoots?: readonly string[] },
  disks: readonly StampedDisk[],
  config: readonly ConfigFile[],
  settledBeforeNs: bigint,
): SourceStamp {
  const perDisk = disks.map((d) => imageStamp(d.chain, settledBeforeNs));
  const h = createHash('sha256').update(`vdbak ${VERSION}\0backup ${BACKUP_FORMAT}\0${vm.identity}\0`);
  h.update(`${(vm.parentRoots ?? []).join('\0')}\0\0`);
  for (const [i, d] of disks.entries()) {
    const s = perDisk[i];
    if (s === undefined) return { stamp: undefined, disks: perDisk };
    h.update(`disk\0${d.slot}\0${d.path}\0${d.format ?? ''}\0${s}\0`);
  }
  for (const f of config) {
    if (f.mtimeNs >= settledBeforeNs || f.ctimeNs >= settledBeforeNs) return { stamp: undefined, disks: perDisk };
    h.update(`config\0${f.name}\0${f.path}\0${f.dev}\0${f.ino}\0${f.size}\0${f.mtimeNs}\0${f.ctimeNs}\0`);
  }
  return { stamp: h.digest('hex'), disks: perDisk };
}

/** What the shortcut takes from the kept backup's stored stats (BackupResult fields); undefined when any is missing. */
export interface KeptStats {
  files: number;
  entries: number;
  bytesScanned: number;
  totalBytes: number;
  unchanged: number;
  changed: number;
  volumes: unknown[];
  regions: unknown[];
  configFiles: string[];
  readWarnings: string[];
  sourceStamp: string;
  /** The backup that last read the disks (the kept backup itself, unless it was kept too). */
  readBy: number;
}

const NUMBER_FIELDS = ['files', 'entries', 'bytesScanned', 'totalBytes', 'unchanged', 'changed'] as const;

/**
 * The kept backup's stats when it may be kept for `stamp`: same stamp, no
 * transient warning. Stats written by an older vdbak (no stamp) never match.
 */
export function keepable(
  backup: { id: number; stats: Record<string, unknown> | null },
  stamp: string,
): KeptStats | undefined {
  const s = backup.stats;
  if (!s || s.sourceStamp !== stamp) return undefined;
  if (s.transientWarnings !== 0) return undefined;
  const readWarnings = s.readWarnings;
  if (!Array.isArray(readWarnings) || !readWarnings.every((w) => typeof w === 'string')) return undefined;
  if (!Array.isArray(s.volumes) || !Array.isArray(s.regions) || !Array.isArray(s.configFiles)) return undefined;
  for (const k of NUMBER_FIELDS) if (typeof s[k] !== 'number') return undefined;
  const readBy = typeof s.unchangedSince === 'number' ? s.unchangedSince : backup.id;
  return {
    files: s.files as number,
    entries: s.entries as number,
    bytesScanned: s.bytesScanned as number,
    totalBytes: s.totalBytes as number,
    unchanged: s.unchanged as number,
    changed: s.changed as number,
    volumes: s.volumes as unknown[],
    regions: s.regions as unknown[],
    configFiles: s.configFiles as string[],
    readWarnings: readWarnings as string[],
    sourceStamp: stamp,
    readBy,
  };
}
