/**
 * GPT (GUID Partition Table), UEFI specification 2.x section 5.3.
 *
 * LBA 0 holds a protective MBR (one 0xEE entry). The primary header is at
 * LBA 1 and points at the partition entry array (usually LBA 2–33); a backup
 * header sits at the last LBA with its own array just before it. Both the
 * header (its first HeaderSize bytes, CRC field zeroed) and the array carry a
 * CRC-32. An entry: type GUID, unique GUID, first and last LBA (inclusive),
 * attribute bits, a 36-character UTF-16LE name. GUIDs are stored mixed-endian.
 * LBAs count logical sectors: 512 bytes, or 4096 on 4Kn disks.
 */
import type { BlockDevice } from '../blockdevice.js';
import { assertLayout, guidToString, MAX_DISK_SIZE, MiB, toSafeNumber, u32le, u64le } from '../bytes.js';
import { type Errors, isVdbakError, type VdbakError } from '../errors.js';
import { crc32 } from './crc32.js';
import { gptTypeName } from './typenames.js';
import type { Volume } from './types.js';

const SIGNATURE = Buffer.from('EFI PART', 'latin1');
const HEADER_MIN_SIZE = 92;
const ENTRY_MIN_SIZE = 128;
/** Entry sizes are 128 × 2^n (UEFI); we accept up to this. */
const MAX_ENTRY_SIZE = 4096;
/** Cap on the entry array (the usual one is 16 KiB). */
const MAX_ENTRY_ARRAY_BYTES = 4 * MiB;
const PRIMARY_LBA = 1;

const HEADER = {
  signature: [0, 8],
  revision: [8, 4],
  headerSize: [12, 4],
  headerCrc: [16, 4],
  myLba: [24, 8],
  alternateLba: [32, 8],
  firstUsableLba: [40, 8],
  lastUsableLba: [48, 8],
  diskGuid: [56, 16],
  entriesLba: [72, 8],
  entryCount: [80, 4],
  entrySize: [84, 4],
  entriesCrc: [88, 4],
} as const;
const ENTRY = {
  typeGuid: [0, 16],
  uniqueGuid: [16, 16],
  firstLba: [32, 8],
  lastLba: [40, 8],
  attributes: [48, 8],
  name: [56, 72],
} as const;
assertLayout('GPT header', HEADER_MIN_SIZE, HEADER);
assertLayout('GPT entry', ENTRY_MIN_SIZE, ENTRY);

export interface GptHeader {
  /** LBA this header was read from. */
  lba: number;
  alternateLba: number;
  firstUsableLba: number;
  lastUsableLba: number;
  diskGuid: string;
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

export interface GptEntry {
  /** 1-based entry position. */
  index: number;
  typeGuid: string;
  uniqueGuid: string;
  firstLba: number;
  lastLba: number;
  attributes: bigint;
  name: string;
}

export interface GptTable {
  header: GptHeader;
  entries: GptEntry[];
  /** Entries that were skipped or look wrong. */
  problems: string[];
}

export function hasGptSignature(b: Uint8Array): boolean {
  return b.length >= SIGNATURE.length && SIGNATURE.equals(b.subarray(0, SIGNATURE.length));
}

/** Decodes and validates a header sector read from `lba`. Throws a typed error when it is not usable. */
export function parseGptHeader(sector: Uint8Array, lba: number, sectorSize: number, err: Errors): GptHeader {
  const at = lba * sectorSize;
  if (sector.length < HEADER_MIN_SIZE || !hasGptSignature(sector)) {
    throw err.corrupt('GPT_BAD_SIGNATURE', `no "EFI PART" signature at LBA ${lba}`, { offset: at });
  }
  const headerSize = u32le(sector, HEADER.headerSize[0]);
  if (headerSize < HEADER_MIN_SIZE || headerSize > sector.length) {
    throw err.corrupt('GPT_HEADER_SIZE', `header size ${headerSize} outside [${HEADER_MIN_SIZE}, ${sector.length}]`, {
      offset: at + HEADER.headerSize[0],
    });
  }
  const copy = Buffer.from(sector.subarray(0, headerSize));
  copy.fill(0, HEADER.headerCrc[0], HEADER.headerCrc[0] + HEADER.headerCrc[1]);
  const stored = u32le(sector, HEADER.headerCrc[0]);
  const computed = crc32(copy);
  if (stored !== computed) {
    throw err.corrupt(
      'GPT_HEADER_CRC',
      `header CRC32 0x${stored.toString(16)} != computed 0x${computed.toString(16)}`,
      {
        offset: at + HEADER.headerCrc[0],
      },
    );
  }
  const myLba = u64le(sector, HEADER.myLba[0]);
  if (myLba !== BigInt(lba)) {
    throw err.corrupt('GPT_MY_LBA', `header read at LBA ${lba} says it lives at LBA ${myLba}`, {
      offset: at + HEADER.myLba[0],
    });
  }
  const maxLba = BigInt(Math.floor(MAX_DISK_SIZE / sectorSize));
  const lbaField = (field: readonly [number, number], what: string): number => {
    const v = u64le(sector, field[0]);
    if (v > maxLba) {
      throw err.limit('GPT_LBA_RANGE', `${what} ${v} lies past the largest disk we accept`, { offset: at + field[0] });
    }
    return toSafeNumber(v, err, 'GPT_LBA_RANGE', what, at + field[0]);
  };
  const alternateLba = lbaField(HEADER.alternateLba, 'alternate LBA');
  const firstUsableLba = lbaField(HEADER.firstUsableLba, 'first usable LBA');
  const lastUsableLba = lbaField(HEADER.lastUsableLba, 'last usable LBA');
  const entriesLba = lbaField(HEADER.entriesLba, 'entry array LBA');
  if (firstUsableLba > lastUsableLba + 1) {
    throw err.corrupt('GPT_USABLE_RANGE', `first usable LBA ${firstUsableLba} > last usable LBA ${lastUsableLba}`, {
      offset: at + HEADER.firstUsableLba[0],
    });
  }
  const entrySize = u32le(sector, HEADER.entrySize[0]);
  const ratio = entrySize / ENTRY_MIN_SIZE;
  if (!Number.isInteger(ratio) || ratio < 1 || (ratio & (ratio - 1)) !== 0) {
    throw err.corrupt('GPT_ENTRY_SIZE', `entry size ${entrySize} is not 128 × 2^n`, {
      offset: at + HEADER.entrySize[0],
    });
  }
  if (entrySize > MAX_ENTRY_SIZE) {
    throw err.limit('GPT_ENTRY_SIZE', `entry size ${entrySize} exceeds ${MAX_ENTRY_SIZE}`, {
      offset: at + HEADER.entrySize[0],
    });
  }
  const entryCount = u32le(sector, HEADER.entryCount[0]);
  const maxCount = Math.floor(MAX_ENTRY_ARRAY_BYTES / entrySize);
  if (entryCount > maxCount) {
    throw err.limit('GPT_ENTRY_COUNT', `${entryCount} entries of ${entrySize} bytes exceed the ${maxCount} we accept`, {
      offset: at + HEADER.entryCount[0],
    });
  }
  const arraySectors = Math.ceil((entryCount * entrySize) / sectorSize);
  const overlaps = (l: number) => l >= entriesLba && l < entriesLba + arraySectors;
  if (arraySectors > 0 && (overlaps(0) || overlaps(lba))) {
    throw err.corrupt('GPT_ENTRIES_LBA', `entry array at LBA ${entriesLba} overlaps the MBR or this header`, {
      offset: at + HEADER.entriesLba[0],
    });
  }
  return {
    lba,
    alternateLba,
    firstUsableLba,
    lastUsableLba,
    diskGuid: guidToString(sector, HEADER.diskGuid[0]),
    entriesLba,
    entryCount,
    entrySize,
    entriesCrc: u32le(sector, HEADER.entriesCrc[0]),
  };
}

/** A UTF-16LE name ends at the first 0x0000 or 0xFFFF code unit (some tools pad with 0xFF). */
function decodeName(b: Uint8Array): string {
  let end = 0;
  while (end + 1 < b.length) {
    const unit = (b[end] ?? 0) | ((b[end + 1] ?? 0) << 8);
    if (unit === 0 || unit === 0xffff) break;
    end += 2;
  }
  return Buffer.from(b.subarray(0, end)).toString('utf16le');
}

function isZero(b: Uint8Array): boolean {
  for (const x of b) if (x !== 0) return false;
  return true;
}

/** Decodes the used entries of an entry array (already CRC-checked). Implausible entries become problems. */
export function parseGptEntries(array: Uint8Array, h: GptHeader, sectorSize: number, err: Errors): GptTable {
  const entries: GptEntry[] = [];
  const problems: string[] = [];
  const maxLba = BigInt(Math.floor(MAX_DISK_SIZE / sectorSize));
  for (let i = 0; i < h.entryCount; i++) {
    const e = array.subarray(i * h.entrySize, i * h.entrySize + ENTRY_MIN_SIZE);
    if (e.length < ENTRY_MIN_SIZE) break;
    if (isZero(e.subarray(ENTRY.typeGuid[0], ENTRY.typeGuid[0] + ENTRY.typeGuid[1]))) continue;
    const index = i + 1;
    const first = u64le(e, ENTRY.firstLba[0]);
    const last = u64le(e, ENTRY.lastLba[0]);
    if (first > last || last > maxLba) {
      problems.push(`GPT entry ${index} has an impossible LBA range [${first}, ${last}]; skipped`);
      continue;
    }
    const at = h.entriesLba * sectorSize + i * h.entrySize;
    const firstLba = toSafeNumber(first, err, 'GPT_LBA_RANGE', 'first LBA', at + ENTRY.firstLba[0]);
    const lastLba = toSafeNumber(last, err, 'GPT_LBA_RANGE', 'last LBA', at + ENTRY.lastLba[0]);
    if (firstLba < h.firstUsableLba || lastLba > h.lastUsableLba) {
      problems.push(
        `GPT entry ${index} [LBA ${firstLba}, ${lastLba}] lies outside the usable area [${h.firstUsableLba}, ${h.lastUsableLba}]`,
      );
    }
    entries.push({
      index,
      typeGuid: guidToString(e, ENTRY.typeGuid[0]),
      uniqueGuid: guidToString(e, ENTRY.uniqueGuid[0]),
      firstLba,
      lastLba,
      attributes: u64le(e, ENTRY.attributes[0]),
      name: decodeName(e.subarray(ENTRY.name[0], ENTRY.name[0] + ENTRY.name[1])),
    });
  }
  return { header: h, entries, problems };
}

/** Reads and checks one copy (header + entry array) whose header is at `lba`. Throws a typed error if unusable. */
export function readGptCopy(
  dev: BlockDevice,
  sectorSize: number,
  lba: number,
  err: Errors,
  checkArrayCrc = true,
): GptTable {
  const at = lba * sectorSize;
  if (at + sectorSize > dev.size) {
    throw err.truncated('GPT_HEADER_PAST_END', `GPT header LBA ${lba} lies past the end of the device`, { offset: at });
  }
  const h = parseGptHeader(dev.read(at, sectorSize), lba, sectorSize, err);
  const arrayAt = h.entriesLba * sectorSize;
  const arrayBytes = h.entryCount * h.entrySize;
  if (arrayAt + arrayBytes > dev.size) {
    throw err.truncated('GPT_ENTRIES_PAST_END', `entry array at LBA ${h.entriesLba} lies past the end of the device`, {
      offset: arrayAt,
      length: arrayBytes,
    });
  }
  const array = dev.read(arrayAt, arrayBytes);
  const computed = crc32(array);
  if (checkArrayCrc && computed !== h.entriesCrc) {
    throw err.corrupt(
      'GPT_ENTRIES_CRC',
      `entry array CRC32 0x${h.entriesCrc.toString(16)} != computed 0x${computed.toString(16)}`,
      { offset: arrayAt },
    );
  }
  return parseGptEntries(array, h, sectorSize, err);
}

/**
 * Reads the GPT: the primary copy, else the backup (at the primary's
 * alternate LBA, or at the last LBA of the device), with a warning saying so.
 * Throws a typed error when neither copy is usable.
 */
export function readGpt(dev: BlockDevice, sectorSize: number, err: Errors, warnings: string[]): GptTable {
  const lastLba = Math.floor(dev.size / sectorSize) - 1;
  const failures: { lba: number; error: VdbakError }[] = [];
  try {
    const table = readGptCopy(dev, sectorSize, PRIMARY_LBA, err);
    checkBackup(dev, sectorSize, table.header, err, warnings);
    return table;
  } catch (e) {
    if (!isVdbakError(e)) throw e;
    failures.push({ lba: PRIMARY_LBA, error: e });
  }
  const primaryError = failures[0]?.error as VdbakError;
  const backups = new Set<number>();
  try {
    backups.add(parseGptHeader(dev.read(sectorSize, sectorSize), PRIMARY_LBA, sectorSize, err).alternateLba);
  } catch (e) {
    if (!isVdbakError(e)) throw e;
  }
  backups.add(lastLba);
  for (const lba of backups) {
    if (lba <= PRIMARY_LBA) continue;
    try {
      const table = readGptCopy(dev, sectorSize, lba, err);
      warnings.push(`the primary GPT is damaged (${primaryError.message}); using the backup GPT at LBA ${lba}`);
      return table;
    } catch (e) {
      if (!isVdbakError(e)) throw e;
      failures.push({ lba, error: e });
    }
  }
  // No copy is intact. One whose header checks out but whose array CRC does not is still the
  // best account of the disk there is (e.g. names edited in place): read it, and say so.
  const arrayOnly = failures.find((f) => f.error.code === 'GPT_ENTRIES_CRC');
  if (arrayOnly) {
    const table = readGptCopy(dev, sectorSize, arrayOnly.lba, err, false);
    warnings.push(
      `no GPT copy is intact (${failures.map((f) => f.error.message).join('; ')}); the entries at LBA ${table.header.entriesLba} are used although their CRC32 does not match`,
    );
    return table;
  }
  throw err.corrupt(
    'GPT_NO_VALID_COPY',
    `neither GPT copy is usable: ${failures.map((f) => `LBA ${f.lba}: ${f.error.message}`).join('; ')}`,
    { offset: sectorSize, codes: failures.map((f) => f.error.code) },
  );
}

/** Warns when the backup copy of a good primary is missing or damaged. */
function checkBackup(dev: BlockDevice, sectorSize: number, h: GptHeader, err: Errors, warnings: string[]): void {
  if ((h.alternateLba + 1) * sectorSize > dev.size) {
    warnings.push(`the backup GPT header (LBA ${h.alternateLba}) lies past the end of the device (a truncated image?)`);
    return;
  }
  try {
    readGptCopy(dev, sectorSize, h.alternateLba, err);
  } catch (e) {
    if (!isVdbakError(e)) throw e;
    warnings.push(`the backup GPT is damaged (${e.message}); the primary is used`);
  }
}

export function gptVolumes(t: GptTable, sectorSize: number): Volume[] {
  return t.entries.map((e) => ({
    index: e.index,
    offset: e.firstLba * sectorSize,
    length: (e.lastLba - e.firstLba + 1) * sectorSize,
    scheme: 'gpt',
    type: e.typeGuid,
    typeName: gptTypeName(e.typeGuid),
    name: e.name,
    uuid: e.uniqueGuid,
    attributes: `0x${e.attributes.toString(16).padStart(16, '0')}`,
  }));
}
