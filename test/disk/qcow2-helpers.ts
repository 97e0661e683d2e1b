/**
 * Shared helpers for the qcow2 tests: hashing a whole device and reading
 * `qemu-img map --output=json` as merged data ranges (the oracle).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type BlockDevice, type ByteRange, mergeRanges } from '../../parsers/blockdevice.js';

/** SHA-256 of the whole device, read in odd-sized chunks so reads straddle clusters and tables. */
export function deviceSha256(dev: BlockDevice, chunk = 3 * 1024 * 1024 + 4097): string {
  const h = createHash('sha256');
  for (let off = 0; off < dev.size; off += chunk) h.update(dev.read(off, Math.min(chunk, dev.size - off)));
  return h.digest('hex');
}

interface QemuMapEntry {
  start: number;
  length: number;
  data: boolean;
}

/** The data:true ranges of a `qemu-img map --output=json` file, merged. */
export function qemuDataRanges(mapJsonPath: string): ByteRange[] {
  const entries = JSON.parse(readFileSync(mapJsonPath, 'utf8')) as QemuMapEntry[];
  return mergeRanges(entries.filter((e) => e.data).map((e) => ({ offset: e.start, length: e.length })));
}
