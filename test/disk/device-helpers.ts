/**
 * Helpers shared by the disk-format tests (qcow2-helpers.ts, vmdk-helpers.ts):
 * hashing a whole device, and reading `qemu-img map --output=json` (the
 * oracle) as merged data ranges.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type BlockDevice, type ByteRange, mergeRanges } from '../../parsers/blockdevice.js';

/** SHA-256 of a device read front to back in `chunk`-byte reads. */
export function hashDevice(dev: BlockDevice, chunk: number): string {
  const h = createHash('sha256');
  for (let off = 0; off < dev.size; off += chunk) h.update(dev.read(off, Math.min(chunk, dev.size - off)));
  return h.digest('hex');
}

interface QemuMapEntry {
  start: number;
  length: number;
  data: boolean;
}

/** Merged `data: true` ranges of a `qemu-img map --output=json` file, and the size it covers. */
export function qemuMapData(mapJsonPath: string): { ranges: ByteRange[]; size: number } {
  const entries = JSON.parse(readFileSync(mapJsonPath, 'utf8')) as QemuMapEntry[];
  const size = entries.reduce((end, e) => Math.max(end, e.start + e.length), 0);
  const ranges = mergeRanges(entries.filter((e) => e.data).map((e) => ({ offset: e.start, length: e.length })));
  return { ranges, size };
}
