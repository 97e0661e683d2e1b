/**
 * NTFS boot sector (volume header): sector and cluster sizes, where the $MFT
 * starts, and the sizes of MFT records and index records.
 *
 * Spec: libyal libfsntfs "New Technologies File System (NTFS)", section
 * "Volume header". Sizes of records are signed bytes: a positive value counts
 * clusters, a negative value v means 2^-v bytes. Sectors per cluster above
 * 0x80 (Windows 10 large clusters, up to 2 MiB) likewise mean 2^(256-v).
 */
import type { BlockDevice } from '../../blockdevice.js';
import { assertLayout, isPowerOfTwo, MiB, toSafeNumber } from '../../bytes.js';
import type { Errors } from '../../errors.js';

export const BOOT_SECTOR_SIZE = 512;
export const NTFS_OEM = 'NTFS    ';
export const BOOT_SIGNATURE = 0xaa55;
/** Windows refuses clusters over 2 MiB. */
export const MAX_CLUSTER_SIZE = 2 * MiB;
/** Largest MFT or index record we accept (real ones are 1 KiB / 4 KiB). */
export const MAX_RECORD_SIZE = 64 * 1024;
/** One fixup stride: a record is made of whole 512-byte strides. */
export const MIN_RECORD_SIZE = 512;

export const BOOT = {
  oem: [0x03, 8],
  bytesPerSector: [0x0b, 2],
  sectorsPerCluster: [0x0d, 1],
  totalSectors: [0x28, 8],
  mftLcn: [0x30, 8],
  mftMirrLcn: [0x38, 8],
  recordSize: [0x40, 1],
  indexRecordSize: [0x44, 1],
  serial: [0x48, 8],
  signature: [0x1fe, 2],
} as const;
assertLayout('NtfsBootSector', BOOT_SECTOR_SIZE, BOOT);

export interface BootSector {
  bytesPerSector: number;
  clusterSize: number;
  /** Clusters the volume holds (total sectors × sector size / cluster size). */
  totalClusters: number;
  /** Byte offset of the first $MFT record inside the volume. */
  mftOffset: number;
  mftMirrOffset: number;
  recordSize: number;
  indexRecordSize: number;
  /** Volume serial number as 16 upper-case hex digits. */
  serial: string;
}

/** True when the first sector looks like NTFS (cheap, no validation of sizes). */
export function looksLikeNtfs(b: Uint8Array): boolean {
  return b.length >= BOOT_SECTOR_SIZE && Buffer.from(b.subarray(3, 11)).toString('latin1') === NTFS_OEM;
}

function decodeRecordSize(v: number, clusterSize: number, err: Errors, what: string, at: number): number {
  const signed = v > 0x7f ? v - 0x100 : v;
  const size = signed > 0 ? signed * clusterSize : signed < 0 && signed >= -31 ? 2 ** -signed : 0;
  if (!isPowerOfTwo(size) || size < MIN_RECORD_SIZE || size > MAX_RECORD_SIZE) {
    throw err.corrupt('NTFS_BAD_RECORD_SIZE', `${what} size field ${v} gives ${size} bytes`, { offset: at });
  }
  return size;
}

/** Decodes and validates a boot sector (512 bytes). */
export function parseBootSector(b: Buffer, err: Errors): BootSector {
  if (b.length < BOOT_SECTOR_SIZE) throw err.truncated('NTFS_BOOT_SHORT', 'boot sector is short', { offset: 0 });
  if (!looksLikeNtfs(b)) throw err.corrupt('NTFS_BAD_OEM', 'no "NTFS    " OEM id', { offset: BOOT.oem[0] });
  if (b.readUInt16LE(BOOT.signature[0]) !== BOOT_SIGNATURE) {
    throw err.corrupt('NTFS_BAD_SIGNATURE', 'boot sector lacks 0x55AA', { offset: BOOT.signature[0] });
  }
  const bytesPerSector = b.readUInt16LE(BOOT.bytesPerSector[0]);
  if (!isPowerOfTwo(bytesPerSector) || bytesPerSector < 256 || bytesPerSector > 4096) {
    throw err.corrupt('NTFS_BAD_SECTOR_SIZE', `bytes per sector ${bytesPerSector}`, { offset: BOOT.bytesPerSector[0] });
  }
  const spc = b.readUInt8(BOOT.sectorsPerCluster[0]);
  const sectors = spc <= 0x80 ? spc : 2 ** (0x100 - spc);
  const clusterSize = sectors * bytesPerSector;
  if (!isPowerOfTwo(sectors) || clusterSize > MAX_CLUSTER_SIZE) {
    throw err.corrupt('NTFS_BAD_CLUSTER_SIZE', `sectors per cluster field ${spc}`, {
      offset: BOOT.sectorsPerCluster[0],
    });
  }
  const totalSectors = toSafeNumber(b.readBigUInt64LE(BOOT.totalSectors[0]), err, 'NTFS_BAD_SIZE', 'total sectors');
  const volumeBytes = totalSectors * bytesPerSector;
  if (!Number.isSafeInteger(volumeBytes)) {
    throw err.limit('NTFS_BAD_SIZE', `volume of ${totalSectors} sectors`, { offset: BOOT.totalSectors[0] });
  }
  const totalClusters = Math.floor(volumeBytes / clusterSize);
  const lcn = (field: readonly [number, number], what: string): number => {
    const v = toSafeNumber(b.readBigUInt64LE(field[0]), err, 'NTFS_BAD_MFT_LCN', what, field[0]);
    if (v >= totalClusters) {
      throw err.corrupt('NTFS_BAD_MFT_LCN', `${what} ${v} lies past the ${totalClusters} clusters of the volume`, {
        offset: field[0],
      });
    }
    return v * clusterSize;
  };
  const serial = b.readBigUInt64LE(BOOT.serial[0]).toString(16).toUpperCase().padStart(16, '0');
  return {
    bytesPerSector,
    clusterSize,
    totalClusters,
    mftOffset: lcn(BOOT.mftLcn, 'MFT cluster'),
    mftMirrOffset: lcn(BOOT.mftMirrLcn, 'MFT mirror cluster'),
    recordSize: decodeRecordSize(b.readUInt8(BOOT.recordSize[0]), clusterSize, err, 'MFT record', BOOT.recordSize[0]),
    indexRecordSize: decodeRecordSize(
      b.readUInt8(BOOT.indexRecordSize[0]),
      clusterSize,
      err,
      'index record',
      BOOT.indexRecordSize[0],
    ),
    serial,
  };
}

export function readBootSector(dev: BlockDevice, err: Errors): BootSector {
  if (dev.size < BOOT_SECTOR_SIZE) throw err.truncated('NTFS_BOOT_SHORT', 'volume smaller than a boot sector');
  return parseBootSector(dev.read(0, BOOT_SECTOR_SIZE), err);
}
