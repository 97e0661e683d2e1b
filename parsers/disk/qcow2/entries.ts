/**
 * qcow2 L1 and L2 table entries (spec: qemu docs/interop/qcow2.txt, "Cluster
 * mapping"). Pure decoding: a 64-bit big-endian entry in, a mapping out.
 *
 * L1 entry: bits 9-55 = offset of an L2 table (0: the whole table is
 * unallocated), bit 63 = "copied" (refcount 1, ignored for reading).
 * L2 entry: bit 62 = compressed, bit 63 = copied (ignored).
 * - standard: bit 0 = reads as zeros (v3), bits 9-55 = host cluster offset
 *   (0: unallocated, read through to the backing file);
 * - compressed: with x = 62 - (cluster_bits - 8), bits 0..x-1 = host byte
 *   offset, bits x..61 = number of 512-byte sectors beyond the first one.
 */
import { toSafeNumber } from '../../bytes.js';
import type { Errors } from '../../errors.js';

const OFLAG_COPIED = 1n << 63n;
const OFLAG_COMPRESSED = 1n << 62n;
const OFLAG_ZERO = 1n;
/** Bits 9-55: a cluster-aligned host offset (L1 and standard L2 entries). */
const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;
const SECTOR = 512;

export type ClusterMapping =
  | { kind: 'unallocated' }
  | { kind: 'zero' }
  | { kind: 'normal'; host: number }
  | { kind: 'compressed'; host: number; compressedSize: number };

export interface EntryContext {
  version: 2 | 3;
  clusterBits: number;
  clusterSize: number;
  /** Standard clusters live in an external data file (offset 0 may be valid). */
  externalData: boolean;
  err: Errors;
}

/** Offset of the L2 table an L1 entry points to, 0 if none. `at` is the entry's file offset. */
export function decodeL1Entry(entry: bigint, ctx: EntryContext, at: number): number {
  const off = toSafeNumber(entry & OFFSET_MASK, ctx.err, 'QCOW2_OFFSET_RANGE', 'L2 table offset', at);
  if (off % ctx.clusterSize !== 0) {
    throw ctx.err.corrupt('QCOW2_L2_UNALIGNED', `L2 table offset ${off} is not cluster aligned`, { offset: at });
  }
  return off;
}

/** Decodes one L2 entry. `at` is the entry's file offset, for errors. */
export function decodeL2Entry(entry: bigint, ctx: EntryContext, at: number): ClusterMapping {
  if (entry & OFLAG_COMPRESSED) {
    if (ctx.externalData) {
      throw ctx.err.corrupt('QCOW2_COMPRESSED_WITH_DATA_FILE', 'compressed cluster in an image with a data file', {
        offset: at,
      });
    }
    const shift = BigInt(62 - (ctx.clusterBits - 8));
    const host = toSafeNumber(entry & ((1n << shift) - 1n), ctx.err, 'QCOW2_OFFSET_RANGE', 'compressed offset', at);
    const sectorsMask = (1n << BigInt(ctx.clusterBits - 8)) - 1n;
    const sectors = Number((entry >> shift) & sectorsMask) + 1;
    return { kind: 'compressed', host, compressedSize: sectors * SECTOR - (host % SECTOR) };
  }
  const host = toSafeNumber(entry & OFFSET_MASK, ctx.err, 'QCOW2_OFFSET_RANGE', 'cluster offset', at);
  if (entry & OFLAG_ZERO) {
    if (ctx.version < 3) {
      throw ctx.err.corrupt('QCOW2_ZERO_IN_V2', 'zero-cluster flag in a version 2 image', { offset: at });
    }
    if (host % ctx.clusterSize !== 0) {
      throw ctx.err.corrupt('QCOW2_CLUSTER_UNALIGNED', `cluster offset ${host} is not cluster aligned`, {
        offset: at,
      });
    }
    return { kind: 'zero' };
  }
  if (host === 0 && !(ctx.externalData && entry & OFLAG_COPIED)) return { kind: 'unallocated' };
  if (host % ctx.clusterSize !== 0) {
    throw ctx.err.corrupt('QCOW2_CLUSTER_UNALIGNED', `cluster offset ${host} is not cluster aligned`, { offset: at });
  }
  return { kind: 'normal', host };
}
