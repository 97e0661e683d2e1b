/**
 * Shared helpers for the qcow2 tests: hashing a whole device and reading
 * `qemu-img map --output=json` as merged data ranges (the oracle).
 */
import type { BlockDevice, ByteRange } from '../../parsers/blockdevice.js';
import { hashDevice, qemuMapData } from './device-helpers.js';

/** SHA-256 of the whole device, read in odd-sized chunks so reads straddle clusters and tables. */
export function deviceSha256(dev: BlockDevice, chunk = 3 * 1024 * 1024 + 4097): string {
  return hashDevice(dev, chunk);
}

/** The data:true ranges of a `qemu-img map --output=json` file, merged. */
export function qemuDataRanges(mapJsonPath: string): ByteRange[] {
  return qemuMapData(mapJsonPath).ranges;
}
