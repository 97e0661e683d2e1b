/**
 * qcow2 image header and header extensions (versions 2 and 3).
 *
 * Spec: qemu docs/interop/qcow2.txt ("Header", "Header extensions", "Feature
 * name table"). Every number in qcow2 is big-endian. The first cluster holds
 * the fixed header, then the header extensions (type, length, data padded to
 * 8 bytes, ended by type 0), then possibly the backing file name.
 *
 * `parseHeader` / `parseExtensions` decode and validate bytes only; the checks
 * that need the file size live in `checkHeaderAgainstFile`.
 */
import { assertLayout, cString, MAX_DISK_SIZE, MiB, toSafeNumber, u8, u32be, u64be } from '../../bytes.js';
import type { Errors } from '../../errors.js';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
export const V2_HEADER_LENGTH = 72;
export const V3_MIN_HEADER_LENGTH = 104;
/** Bytes read to decode the fixed header: the v3 fields plus compression_type. */
export const HEADER_READ_LENGTH = 112;
export const MIN_CLUSTER_BITS = 9;
/** qemu's implementation limit: 2 MiB clusters. */
export const MAX_CLUSTER_BITS = 21;
/** qemu's implementation limit for the active L1 table, in bytes. */
export const MAX_L1_BYTES = 32 * MiB;
const MAX_BACKING_NAME_LENGTH = 1023;
/** Longest backing format / data file name we accept (qemu: 15 / 1023 bytes). */
const MAX_EXTENSION_STRING = 1023;
const FEATURE_NAME_ENTRY = 48;
const FEATURE_NAME_LENGTH = 46;

export const HEADER = {
  magic: [0, 4],
  version: [4, 4],
  backingFileOffset: [8, 8],
  backingFileSize: [16, 4],
  clusterBits: [20, 4],
  size: [24, 8],
  cryptMethod: [32, 4],
  l1Size: [36, 4],
  l1TableOffset: [40, 8],
  refcountTableOffset: [48, 8],
  refcountTableClusters: [56, 4],
  nbSnapshots: [60, 4],
  snapshotsOffset: [64, 8],
  incompatibleFeatures: [72, 8],
  compatibleFeatures: [80, 8],
  autoclearFeatures: [88, 8],
  refcountOrder: [96, 4],
  headerLength: [100, 4],
  compressionType: [104, 1],
} as const;
assertLayout('qcow2 header', HEADER_READ_LENGTH, HEADER);

const EXT_END = 0x00000000;
const EXT_BACKING_FORMAT = 0xe2792aca;
const EXT_FEATURE_NAMES = 0x6803f857;
const EXT_DATA_FILE = 0x44415441;

/** Incompatible feature bits (header offset 72). */
export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTENDED_L2 = 1n << 4n;
const INCOMPAT_KNOWN =
  INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTENDED_L2;
/** Autoclear bit 1: the external data file is a valid raw image on its own. */
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;

export const COMPRESSION_ZLIB = 0;
export const COMPRESSION_ZSTD = 1;
const COMPRESSION_NAMES = ['zlib', 'zstd'] as const;

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  clusterSize: number;
  size: number;
  l1Size: number;
  l1TableOffset: number;
  nbSnapshots: number;
  incompatible: bigint;
  compatible: bigint;
  autoclear: bigint;
  headerLength: number;
  compressionType: number;
}

export interface Qcow2Extensions {
  backingFormat?: string;
  dataFile?: string;
  /** Feature names by "type:bit" (type 0 incompatible, 1 compatible, 2 autoclear). */
  featureNames: Map<string, string>;
}

/** Decodes and validates the fixed header from its first bytes (at least 72). */
export function parseHeader(b: Uint8Array, err: Errors): Qcow2Header {
  if (b.length < V2_HEADER_LENGTH) {
    throw err.truncated('QCOW2_HEADER_TRUNCATED', `header needs ${V2_HEADER_LENGTH} bytes, file has ${b.length}`, {
      offset: 0,
    });
  }
  if (u32be(b, HEADER.magic[0]) !== QCOW2_MAGIC) {
    throw err.corrupt('QCOW2_BAD_MAGIC', 'no "QFI\\xfb" magic', { offset: 0 });
  }
  const version = u32be(b, HEADER.version[0]);
  if (version !== 2 && version !== 3) {
    throw err.unsupported('QCOW2_VERSION', `qcow version ${version} (only 2 and 3 are read)`, {
      offset: HEADER.version[0],
      version,
    });
  }
  const clusterBits = u32be(b, HEADER.clusterBits[0]);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw err.corrupt(
      'QCOW2_CLUSTER_BITS',
      `cluster_bits ${clusterBits} outside [${MIN_CLUSTER_BITS}, ${MAX_CLUSTER_BITS}]`,
      { offset: HEADER.clusterBits[0], clusterBits },
    );
  }
  const clusterSize = 2 ** clusterBits;
  const num = (field: readonly [number, number], what: string): number =>
    toSafeNumber(u64be(b, field[0]), err, 'QCOW2_FIELD_RANGE', what, field[0]);
  const size = num(HEADER.size, 'virtual size');
  if (size > MAX_DISK_SIZE) {
    throw err.limit('QCOW2_SIZE', `virtual size ${size} exceeds ${MAX_DISK_SIZE}`, { offset: HEADER.size[0], size });
  }
  const cryptMethod = u32be(b, HEADER.cryptMethod[0]);
  if (cryptMethod !== 0) {
    throw err.unsupported('QCOW2_ENCRYPTED', `encrypted image (crypt_method ${cryptMethod}) is not read`, {
      offset: HEADER.cryptMethod[0],
      cryptMethod,
    });
  }

  let incompatible = 0n;
  let compatible = 0n;
  let autoclear = 0n;
  let headerLength = V2_HEADER_LENGTH;
  let compressionType = COMPRESSION_ZLIB;
  if (version === 3) {
    if (b.length < V3_MIN_HEADER_LENGTH) {
      throw err.truncated('QCOW2_HEADER_TRUNCATED', `v3 header needs ${V3_MIN_HEADER_LENGTH} bytes`, { offset: 0 });
    }
    incompatible = u64be(b, HEADER.incompatibleFeatures[0]);
    compatible = u64be(b, HEADER.compatibleFeatures[0]);
    autoclear = u64be(b, HEADER.autoclearFeatures[0]);
    headerLength = u32be(b, HEADER.headerLength[0]);
    if (headerLength < V3_MIN_HEADER_LENGTH || headerLength % 8 !== 0 || headerLength > clusterSize) {
      throw err.corrupt('QCOW2_HEADER_LENGTH', `header_length ${headerLength} is impossible`, {
        offset: HEADER.headerLength[0],
      });
    }
    if (headerLength > HEADER.compressionType[0]) {
      if (b.length <= HEADER.compressionType[0]) {
        throw err.truncated('QCOW2_HEADER_TRUNCATED', 'header ends before compression_type', { offset: 0 });
      }
      compressionType = u8(b, HEADER.compressionType[0]);
    }
  }

  const hasCompressionBit = (incompatible & INCOMPAT_COMPRESSION) !== 0n;
  if (hasCompressionBit !== (compressionType !== COMPRESSION_ZLIB)) {
    throw err.corrupt(
      'QCOW2_COMPRESSION_BIT',
      `compression_type ${compressionType} disagrees with the compression incompatible bit`,
      { offset: HEADER.compressionType[0] },
    );
  }
  if (compressionType !== COMPRESSION_ZLIB && compressionType !== COMPRESSION_ZSTD) {
    throw err.unsupported('QCOW2_COMPRESSION_TYPE', `unknown compression_type ${compressionType}`, {
      offset: HEADER.compressionType[0],
    });
  }

  // a backing name of length 0 means no backing file, wherever it claims to be (as in qemu)
  const backingFileSize = u32be(b, HEADER.backingFileSize[0]);
  return {
    version,
    backingFileOffset: backingFileSize === 0 ? 0 : num(HEADER.backingFileOffset, 'backing_file_offset'),
    backingFileSize,
    clusterBits,
    clusterSize,
    size,
    l1Size: u32be(b, HEADER.l1Size[0]),
    l1TableOffset: num(HEADER.l1TableOffset, 'l1_table_offset'),
    nbSnapshots: u32be(b, HEADER.nbSnapshots[0]),
    incompatible,
    compatible,
    autoclear,
    headerLength,
    compressionType,
  };
}

/** Where the header extensions end: at the backing file name, else at the end of the first cluster. */
export function extensionAreaEnd(h: Qcow2Header): number {
  return h.backingFileOffset > 0 && h.backingFileOffset < h.clusterSize ? h.backingFileOffset : h.clusterSize;
}

/**
 * Decodes the header extensions. `area` holds the bytes from `h.headerLength`
 * to `extensionAreaEnd(h)` (shorter if the file ends first: qemu reads the
 * missing bytes as zeros, i.e. as the end marker).
 */
export function parseExtensions(area: Uint8Array, h: Qcow2Header, err: Errors): Qcow2Extensions {
  const out: Qcow2Extensions = { featureNames: new Map() };
  const base = h.headerLength;
  let pos = 0;
  // each extension takes at least 8 bytes, so this loop ends within area.length / 8 turns
  while (pos + 8 <= area.length) {
    const type = u32be(area, pos);
    const len = u32be(area, pos + 4);
    const at = base + pos;
    if (type === EXT_END) break;
    const dataStart = pos + 8;
    if (len > area.length - dataStart) {
      throw err.corrupt('QCOW2_EXTENSION_TOO_LARGE', `header extension 0x${type.toString(16)} of ${len} bytes`, {
        offset: at,
      });
    }
    const data = area.subarray(dataStart, dataStart + len);
    if (type === EXT_BACKING_FORMAT || type === EXT_DATA_FILE) {
      if (len > MAX_EXTENSION_STRING) {
        throw err.corrupt('QCOW2_EXTENSION_STRING', `header extension string of ${len} bytes`, { offset: at });
      }
      const s = Buffer.from(data).toString('latin1');
      if (type === EXT_BACKING_FORMAT) out.backingFormat = s;
      else out.dataFile = s;
    } else if (type === EXT_FEATURE_NAMES) {
      for (let e = 0; e + FEATURE_NAME_ENTRY <= len; e += FEATURE_NAME_ENTRY) {
        const key = `${u8(data, e)}:${u8(data, e + 1)}`;
        out.featureNames.set(key, cString(data, e + 2, FEATURE_NAME_LENGTH));
      }
    }
    pos = dataStart + Math.ceil(len / 8) * 8;
  }
  return out;
}

/**
 * Refuses images whose incompatible features we cannot read correctly:
 * unknown bits (named from the feature table when it has them) and extended
 * L2 entries (subclusters).
 */
export function checkFeatures(h: Qcow2Header, ext: Qcow2Extensions, err: Errors): void {
  const unknown = h.incompatible & ~INCOMPAT_KNOWN;
  if (unknown !== 0n) {
    const names: string[] = [];
    for (let bit = 0n; bit < 64n; bit++) {
      if (unknown & (1n << bit)) names.push(ext.featureNames.get(`0:${bit}`) ?? `bit ${bit}`);
    }
    throw err.unsupported('QCOW2_INCOMPATIBLE_FEATURES', `unknown incompatible features: ${names.join(', ')}`, {
      offset: HEADER.incompatibleFeatures[0],
      features: `0x${unknown.toString(16)}`,
    });
  }
  if (h.incompatible & INCOMPAT_EXTENDED_L2) {
    throw err.unsupported('QCOW2_EXTENDED_L2', 'extended L2 entries (subclusters) are not read', {
      offset: HEADER.incompatibleFeatures[0],
    });
  }
}

/** Number of L2 entries per table (one cluster of 8-byte entries). */
export function l2EntriesPerTable(h: Qcow2Header): number {
  return h.clusterSize / 8;
}

/** L1 entries needed to map the whole virtual size. */
export function l1EntriesNeeded(h: Qcow2Header): number {
  return Math.ceil(h.size / (h.clusterSize * l2EntriesPerTable(h)));
}

/** Checks the L1 table and backing name placement against the cap and the file size. */
export function checkHeaderAgainstFile(h: Qcow2Header, fileSize: number, err: Errors): void {
  const needed = l1EntriesNeeded(h);
  if (h.l1Size * 8 > MAX_L1_BYTES) {
    throw err.limit('QCOW2_L1_TOO_LARGE', `L1 table of ${h.l1Size} entries exceeds ${MAX_L1_BYTES} bytes`, {
      offset: HEADER.l1Size[0],
    });
  }
  if (h.l1Size < needed) {
    throw err.corrupt('QCOW2_L1_TOO_SMALL', `L1 table of ${h.l1Size} entries cannot map ${h.size} bytes`, {
      offset: HEADER.l1Size[0],
      needed,
    });
  }
  if (needed > 0) {
    if (h.l1TableOffset % h.clusterSize !== 0) {
      throw err.corrupt('QCOW2_L1_UNALIGNED', `L1 table offset ${h.l1TableOffset} is not cluster aligned`, {
        offset: HEADER.l1TableOffset[0],
      });
    }
    if (h.l1TableOffset + needed * 8 > fileSize) {
      throw err.corrupt('QCOW2_L1_OUT_OF_FILE', `L1 table at ${h.l1TableOffset} runs past the end of the file`, {
        offset: h.l1TableOffset,
        fileSize,
      });
    }
  }
  if (h.backingFileOffset !== 0) {
    // qemu: the name lies in the first cluster and is at most 1023 bytes
    if (h.backingFileSize > Math.min(MAX_BACKING_NAME_LENGTH, h.clusterSize - h.backingFileOffset)) {
      throw err.corrupt('QCOW2_BACKING_NAME', `backing file name of ${h.backingFileSize} bytes`, {
        offset: HEADER.backingFileSize[0],
      });
    }
    if (h.backingFileOffset + h.backingFileSize > fileSize) {
      throw err.corrupt('QCOW2_BACKING_NAME', 'backing file name runs past the end of the file', {
        offset: h.backingFileOffset,
      });
    }
  }
}

export function describeCompression(type: number): string {
  return COMPRESSION_NAMES[type] ?? `type ${type}`;
}
