/**
 * MBR (DOS) partition tables: the four primary entries of sector 0, and the
 * chain of EBRs (extended boot records) inside an extended partition that
 * holds the logical partitions.
 *
 * Layout (no official spec; see the Wikipedia "Master boot record" and
 * "Extended boot record" articles, and util-linux libfdisk/src/dos.c):
 * - sector 0: boot code, disk signature at 440, four 16-byte entries at 446,
 *   bytes 55 AA at 510. Entry: status (0x80 bootable / 0x00), CHS, type,
 *   CHS, first LBA (u32), sector count (u32).
 * - each EBR has the same layout: its first data entry starts relative to the
 *   EBR's own sector; its link entry (type 0x05/0x0F/0x85) starts relative to
 *   the start of the primary extended partition. Logicals are numbered from 5,
 *   as Linux and sfdisk do.
 * LBAs count logical sectors (512 bytes, or 4096 on 4Kn disks).
 */
import type { BlockDevice } from '../blockdevice.js';
import { assertLayout, u16le, u32le } from '../bytes.js';
import { mbrTypeName } from './typenames.js';
import type { Volume } from './types.js';

/** Size of the MBR/EBR record (the first 512 bytes of its sector, whatever the sector size). */
export const MBR_SIZE = 512;
/** Bytes 55 AA at offset 510, read as a little-endian u16. */
const BOOT_SIGNATURE = 0xaa55;
const ENTRY_COUNT = 4;
const ENTRY_SIZE = 16;
const STATUS_BOOTABLE = 0x80;
const STATUS_NONE = 0x00;
/** Type of the protective (and hybrid) MBR entry that announces a GPT. */
export const GPT_PROTECTIVE_TYPE = 0xee;
/** Extended partition types: DOS 0x05, Windows LBA 0x0F, Linux 0x85. */
export const EXTENDED_TYPES: ReadonlySet<number> = new Set([0x05, 0x0f, 0x85]);
/** Longest EBR chain we follow (Linux stops far earlier; real disks have a few dozen logicals at most). */
export const MAX_EBR_CHAIN = 1024;

const MBR = {
  diskSignature: [440, 4],
  entries: [446, ENTRY_COUNT * ENTRY_SIZE],
  signature: [510, 2],
} as const;
const ENTRY = {
  status: [0, 1],
  type: [4, 1],
  firstLba: [8, 4],
  sectors: [12, 4],
} as const;
assertLayout('MBR', MBR_SIZE, MBR);
assertLayout('MBR entry', ENTRY_SIZE, ENTRY);

export interface MbrEntry {
  /** 0–3: position in the table. */
  slot: number;
  status: number;
  type: number;
  firstLba: number;
  sectors: number;
}

export interface MbrRecord {
  /** Bytes 55 AA present at 510. */
  signature: boolean;
  diskSignature: number;
  /** All four entries, empty ones included. */
  entries: MbrEntry[];
}

/** Decodes one MBR or EBR record (at least 512 bytes). Pure: no validation beyond decoding. */
export function parseMbrRecord(b: Uint8Array): MbrRecord {
  const entries: MbrEntry[] = [];
  for (let slot = 0; slot < ENTRY_COUNT; slot++) {
    const at = MBR.entries[0] + slot * ENTRY_SIZE;
    entries.push({
      slot,
      status: b[at + ENTRY.status[0]] ?? 0,
      type: b[at + ENTRY.type[0]] ?? 0,
      firstLba: u32le(b, at + ENTRY.firstLba[0]),
      sectors: u32le(b, at + ENTRY.sectors[0]),
    });
  }
  return {
    signature: u16le(b, MBR.signature[0]) === BOOT_SIGNATURE,
    diskSignature: u32le(b, MBR.diskSignature[0]),
    entries,
  };
}

/** An entry describes a partition when it has a type and a size (as the Linux kernel reads it). */
export function isUsed(e: MbrEntry): boolean {
  return e.type !== 0 && e.sectors !== 0;
}

export function isExtended(e: MbrEntry): boolean {
  return EXTENDED_TYPES.has(e.type);
}

/**
 * Why these entries cannot be a partition table (garbage such as boot code),
 * or undefined when every used entry is plausible.
 */
export function tableProblem(m: MbrRecord): string | undefined {
  for (const e of m.entries) {
    // as the Linux kernel does, the status byte of empty entries counts too
    if (e.status !== STATUS_NONE && e.status !== STATUS_BOOTABLE) {
      return `entry ${e.slot + 1} has status byte 0x${e.status.toString(16)} (only 0x00 and 0x80 are valid)`;
    }
    if (isUsed(e) && e.firstLba === 0) return `entry ${e.slot + 1} starts at sector 0, on the table itself`;
  }
  return undefined;
}

const POWERS_OF_TWO_UP_TO_128 = new Set([1, 2, 4, 8, 16, 32, 64, 128]);
const FAT_SECTOR_SIZES = new Set([512, 1024, 2048, 4096]);
const FAT_MEDIA_FIXED = 0xf0;
const FAT_MEDIA_MIN = 0xf8;

/**
 * Names the filesystem whose boot sector sector 0 is (an NTFS, exFAT or FAT
 * boot sector also ends in 55 AA), or undefined. Checks the x86 jump, the
 * OEM name, and for FAT a plausible BIOS parameter block.
 */
export function bootSectorKind(b: Uint8Array): string | undefined {
  const jump = (b[0] === 0xeb && b[2] === 0x90) || b[0] === 0xe9;
  if (!jump) return undefined;
  const oem = Buffer.from(b.subarray(3, 11)).toString('latin1');
  if (oem === 'NTFS    ') return 'NTFS';
  if (oem === 'EXFAT   ') return 'exFAT';
  const bytesPerSector = u16le(b, 11);
  const sectorsPerCluster = b[13] ?? 0;
  const reserved = u16le(b, 14);
  const fats = b[16] ?? 0;
  const media = b[21] ?? 0;
  if (
    FAT_SECTOR_SIZES.has(bytesPerSector) &&
    POWERS_OF_TWO_UP_TO_128.has(sectorsPerCluster) &&
    reserved >= 1 &&
    (fats === 1 || fats === 2) &&
    (media === FAT_MEDIA_FIXED || media >= FAT_MEDIA_MIN)
  ) {
    return 'FAT';
  }
  return undefined;
}

/**
 * Guesses the logical sector size of an MBR disk: 4096 when the first
 * extended partition's EBR is valid only if LBAs count 4096-byte sectors
 * (an MBR alone does not say; without an extended partition we assume 512).
 */
export function guessMbrSectorSize(dev: BlockDevice, m: MbrRecord): number {
  const ext = m.entries.find((e) => isUsed(e) && isExtended(e));
  if (!ext) return 512;
  const validAt = (sectorSize: number): boolean => {
    const at = ext.firstLba * sectorSize;
    if (at + MBR_SIZE > dev.size) return false;
    const ebr = parseMbrRecord(dev.read(at, MBR_SIZE));
    return ebr.signature && tableProblem(ebr) === undefined;
  };
  return !validAt(512) && validAt(4096) ? 4096 : 512;
}

function toVolume(index: number, e: MbrEntry, firstLba: number, sectorSize: number): Volume {
  const v: Volume = {
    index,
    offset: firstLba * sectorSize,
    length: e.sectors * sectorSize,
    scheme: 'mbr',
    type: `0x${e.type.toString(16).padStart(2, '0')}`,
    typeName: mbrTypeName(e.type),
    name: '',
    bootable: e.status === STATUS_BOOTABLE,
  };
  if (isExtended(e)) v.extended = true;
  return v;
}

/**
 * The partitions of an MBR disk as declared, in sfdisk order: primaries
 * (extended ones included, flagged) then logicals from 5. `skipTypes` leaves
 * out entries such as the 0xEE ones of a hybrid MBR.
 */
export function readMbrPartitions(
  dev: BlockDevice,
  m: MbrRecord,
  sectorSize: number,
  warnings: string[],
  skipTypes: ReadonlySet<number> = new Set(),
): Volume[] {
  const used = m.entries.filter((e) => isUsed(e) && !skipTypes.has(e.type));
  const primaries = used.map((e) => toVolume(e.slot + 1, e, e.firstLba, sectorSize));
  const extended = used.filter(isExtended);
  if (extended.length > 1) {
    warnings.push(`the MBR lists ${extended.length} extended partitions (one is usual); each chain is followed`);
  }
  const logicals: Volume[] = [];
  for (const ext of extended) {
    logicals.push(...readEbrChain(dev, ext, sectorSize, 5 + logicals.length, warnings));
  }
  return [...primaries, ...logicals];
}

/** Follows the EBR chain of one extended partition, bounded and loop-safe. */
function readEbrChain(
  dev: BlockDevice,
  ext: MbrEntry,
  sectorSize: number,
  firstIndex: number,
  warnings: string[],
): Volume[] {
  const out: Volume[] = [];
  const extStart = ext.firstLba;
  const extEnd = ext.firstLba + ext.sectors;
  const where = `extended partition ${ext.slot + 1} [sectors ${extStart}, ${extEnd})`;
  const seen = new Set<number>();
  let ebr = extStart;
  let index = firstIndex;
  for (let link = 0; ; link++) {
    if (link >= MAX_EBR_CHAIN) {
      warnings.push(`the EBR chain of ${where} is longer than ${MAX_EBR_CHAIN} links; stopped there`);
      break;
    }
    if (seen.has(ebr)) {
      warnings.push(`the EBR chain of ${where} loops back to sector ${ebr}; stopped there`);
      break;
    }
    seen.add(ebr);
    const at = ebr * sectorSize;
    if (at + MBR_SIZE > dev.size) {
      warnings.push(
        `the EBR at sector ${ebr} lies past the end of the device; logical partitions from there on are not listed`,
      );
      break;
    }
    const rec = parseMbrRecord(dev.read(at, MBR_SIZE));
    if (!rec.signature) {
      warnings.push(`the EBR at sector ${ebr} has no 55 AA signature; the chain of ${where} stops there`);
      break;
    }
    let data: MbrEntry | undefined;
    let next: MbrEntry | undefined;
    for (const e of rec.entries) {
      if (!isUsed(e)) continue;
      if (isExtended(e)) {
        if (next) warnings.push(`the EBR at sector ${ebr} has more than one link entry; the first is followed`);
        else next = e;
      } else if (data) {
        warnings.push(`the EBR at sector ${ebr} has more than one data entry; the first is used`);
      } else {
        data = e;
      }
    }
    if (data) {
      if (data.firstLba === 0) {
        warnings.push(`the logical partition of the EBR at sector ${ebr} starts on the EBR itself; skipped`);
      } else {
        const start = ebr + data.firstLba;
        if (start + data.sectors > extEnd) {
          warnings.push(
            `logical partition ${index} [sectors ${start}, ${start + data.sectors}) lies outside its ${where}`,
          );
        }
        const v = toVolume(index++, data, start, sectorSize);
        v.logical = true;
        out.push(v);
      }
    }
    if (!next) break;
    const nextEbr = extStart + next.firstLba;
    if (nextEbr >= extEnd) {
      warnings.push(`the EBR at sector ${ebr} links to sector ${nextEbr}, outside its ${where}; chain stopped`);
      break;
    }
    ebr = nextEbr;
  }
  return out;
}
