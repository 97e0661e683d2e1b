/**
 * Finds the volumes inside a disk: MBR (with extended/logical partitions),
 * GPT (primary, or backup when the primary is damaged), or none (a filesystem
 * at offset 0 is one whole-disk volume).
 *
 * Decision order for sector 0:
 * 1. 55 AA and a 0xEE entry: GPT (a hybrid MBR's other entries are reported
 *    in a warning; the GPT wins). If no GPT copy is usable, a hybrid MBR falls
 *    back to its own entries; a purely protective MBR is a typed error.
 * 2. 55 AA and plausible entries: MBR, unless sector 0 is a filesystem boot
 *    sector (NTFS/exFAT/FAT also end in 55 AA) whose "entries" are garbage or empty.
 * 3. Otherwise no table ('none'), unless a CRC-valid GPT header is found
 *    (then GPT, with a warning that the protective MBR is missing).
 * Partitions past the end of the device stay in `partitions` as declared and
 * are clipped (or left out) in `volumes`, with warnings; overlaps are warned.
 */
import type { BlockDevice } from '../blockdevice.js';
import { errorsFor, isVdbakError } from '../errors.js';
import { gptVolumes, hasGptSignature, readGpt } from './gpt.js';
import {
  bootSectorKind,
  GPT_PROTECTIVE_TYPE,
  guessMbrSectorSize,
  isUsed,
  MBR_SIZE,
  type MbrRecord,
  parseMbrRecord,
  readMbrPartitions,
  tableProblem,
} from './mbr.js';
import type { PartitionScheme, Volume, VolumeMap } from './types.js';

export type { PartitionScheme, Volume, VolumeMap } from './types.js';

/** Logical sector sizes we detect (512e/512n and 4Kn disks). */
const SECTOR_SIZES = [512, 4096] as const;
export type SectorSize = (typeof SECTOR_SIZES)[number];

export interface VolumeOptions {
  /** Force the logical sector size instead of detecting it. */
  sectorSize?: SectorSize;
}

/** Most warnings we keep; the rest are counted in a last one. */
const MAX_WARNINGS = 64;
const PROTECTIVE_ONLY: ReadonlySet<number> = new Set([GPT_PROTECTIVE_TYPE]);

export function readVolumeMap(dev: BlockDevice, opts: VolumeOptions = {}): VolumeMap {
  const warnings: string[] = [];
  const defaultSize = opts.sectorSize ?? 512;
  if (dev.size < MBR_SIZE) {
    warnings.push(`the device holds ${dev.size} bytes, less than one sector: no partition table`);
    return wholeDisk(dev, defaultSize, warnings);
  }
  const sector0 = dev.read(0, MBR_SIZE);
  const mbr = parseMbrRecord(sector0);
  const used = mbr.entries.filter(isUsed);
  if (mbr.signature && used.some((e) => e.type === GPT_PROTECTIVE_TYPE)) {
    return fromProtectiveMbr(dev, mbr, opts, warnings);
  }
  const problem = mbr.signature ? tableProblem(mbr) : 'no 55 AA signature';
  const fs = mbr.signature ? bootSectorKind(sector0) : undefined;
  if (problem === undefined && used.length > 0 && fs === undefined) {
    if (dev.size >= 2 * MBR_SIZE && hasGptSignature(dev.read(MBR_SIZE, 8))) {
      warnings.push('a GPT header exists at LBA 1 but the MBR has no 0xEE entry: the MBR is used (stale GPT?)');
    }
    const sectorSize = opts.sectorSize ?? guessMbrSectorSize(dev, mbr);
    const parts = readMbrPartitions(dev, mbr, sectorSize, warnings);
    return finish(dev, 'mbr', sectorSize, mbrDiskId(mbr), parts, warnings);
  }
  // No MBR table: a GPT whose protective MBR was wiped still counts if a header checks out.
  const gptSize = detectGptSectorSize(dev, opts);
  if (gptSize !== undefined) {
    const gptWarnings: string[] = [];
    try {
      const t = readGpt(dev, gptSize, errorsFor({ image: dev.name, layer: 'gpt' }), gptWarnings);
      warnings.push('sector 0 holds no protective MBR, but a valid GPT was found and is used', ...gptWarnings);
      warnings.push(...t.problems);
      return finish(dev, 'gpt', gptSize, t.header.diskGuid, gptVolumes(t, gptSize), warnings);
    } catch (e) {
      if (!isVdbakError(e)) throw e;
      warnings.push(`a GPT signature was found but no usable GPT (${e.message})`);
    }
  }
  if (mbr.signature && fs === undefined && problem === undefined) {
    // 55 AA and four empty entries: an MBR with no partitions (as sfdisk reports it).
    return finish(dev, 'mbr', defaultSize, mbrDiskId(mbr), [], warnings);
  }
  if (mbr.signature && fs === undefined) {
    warnings.push(`sector 0 ends in 55 AA but is not a partition table: ${problem}`);
  }
  return wholeDisk(dev, defaultSize, warnings);
}

function fromProtectiveMbr(dev: BlockDevice, mbr: MbrRecord, opts: VolumeOptions, warnings: string[]): VolumeMap {
  const others = mbr.entries.filter((e) => isUsed(e) && e.type !== GPT_PROTECTIVE_TYPE);
  if (others.length > 0) {
    const list = others
      .map((e) => `#${e.slot + 1} type 0x${e.type.toString(16)} sectors [${e.firstLba}, +${e.sectors})`)
      .join(', ');
    warnings.push(`hybrid MBR: besides its 0xEE entry it lists ${list}; the GPT wins and those entries are not used`);
  }
  const sectorSize = detectGptSectorSize(dev, opts) ?? opts.sectorSize ?? 512;
  try {
    const t = readGpt(dev, sectorSize, errorsFor({ image: dev.name, layer: 'gpt' }), warnings);
    warnings.push(...t.problems);
    return finish(dev, 'gpt', sectorSize, t.header.diskGuid, gptVolumes(t, sectorSize), warnings);
  } catch (e) {
    if (!isVdbakError(e) || others.length === 0) throw e;
    warnings.push(`no usable GPT (${e.message}); the hybrid MBR's own entries are used instead`);
    const mbrSectorSize = opts.sectorSize ?? guessMbrSectorSize(dev, mbr);
    const parts = readMbrPartitions(dev, mbr, mbrSectorSize, warnings, PROTECTIVE_ONLY);
    return finish(dev, 'mbr', mbrSectorSize, mbrDiskId(mbr), parts, warnings);
  }
}

/**
 * The sector size whose LBA 1 (or last LBA, for a lost primary) carries an
 * "EFI PART" signature: 512 first, then 4096 (4Kn disks).
 */
function detectGptSectorSize(dev: BlockDevice, opts: VolumeOptions): SectorSize | undefined {
  const sizes = opts.sectorSize ? [opts.sectorSize] : SECTOR_SIZES;
  const signatureAt = (at: number) => at >= 0 && at + 8 <= dev.size && hasGptSignature(dev.read(at, 8));
  for (const s of sizes) if (signatureAt(s)) return s;
  for (const s of sizes) {
    const last = Math.floor(dev.size / s) - 1;
    if (last > 1 && signatureAt(last * s)) return s;
  }
  return undefined;
}

function mbrDiskId(mbr: MbrRecord): string {
  return `0x${mbr.diskSignature.toString(16).padStart(8, '0')}`;
}

function wholeDisk(dev: BlockDevice, sectorSize: number, warnings: string[]): VolumeMap {
  const whole: Volume = {
    index: 1,
    offset: 0,
    length: dev.size,
    scheme: 'none',
    type: 'none',
    typeName: 'whole disk',
    name: '',
  };
  return { scheme: 'none', sectorSize, volumes: [whole], partitions: [], warnings: capWarnings(warnings) };
}

/** Derives the readable volumes from the declared partitions: clipping, past-the-end and overlap warnings. */
function finish(
  dev: BlockDevice,
  scheme: PartitionScheme,
  sectorSize: number,
  diskId: string,
  partitions: Volume[],
  warnings: string[],
): VolumeMap {
  const volumes: Volume[] = [];
  const data = partitions.filter((p) => !p.extended);
  for (const p of data) {
    const end = p.offset + p.length;
    if (p.offset >= dev.size) {
      warnings.push(
        `partition ${p.index} [${p.offset}, ${end}) starts past the end of the device (${dev.size} bytes): not readable`,
      );
    } else if (end > dev.size) {
      const length = dev.size - p.offset;
      warnings.push(
        `partition ${p.index} [${p.offset}, ${end}) runs past the end of the device: clipped to ${length} bytes`,
      );
      volumes.push({ ...p, length, declaredLength: p.length });
    } else {
      volumes.push({ ...p });
    }
  }
  const sorted = [...data].sort((a, b) => a.offset - b.offset || a.index - b.index);
  let reach: Volume | undefined;
  for (const p of sorted) {
    if (reach && p.offset < reach.offset + reach.length) {
      warnings.push(`partitions ${reach.index} and ${p.index} overlap`);
    }
    if (!reach || p.offset + p.length > reach.offset + reach.length) reach = p;
  }
  return { scheme, sectorSize, diskId, volumes, partitions, warnings: capWarnings(warnings) };
}

function capWarnings(warnings: string[]): string[] {
  if (warnings.length <= MAX_WARNINGS) return warnings;
  return [...warnings.slice(0, MAX_WARNINGS - 1), `… and ${warnings.length - MAX_WARNINGS + 1} more warnings`];
}
