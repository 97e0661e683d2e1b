/**
 * Shared helpers of the VMDK tests: hashing a whole device, and turning
 * `qemu-img map --output=json` (the oracle) into merged data ranges.
 */
import { readFileSync } from 'node:fs';
import type { BlockDevice } from '../../parsers/blockdevice.js';
import { hashDevice, qemuMapData } from './device-helpers.js';

/** SHA-256 of a device read front to back in `chunk`-byte reads. */
export function deviceSha256(dev: BlockDevice, chunk = 8 * 1024 * 1024): string {
  return hashDevice(dev, chunk);
}

/** Merged `data: true` ranges of a `qemu-img map --output=json` file, and the size it covers. */
export const qemuDataRanges = qemuMapData;

/** The digests staged with the corpus (container_raw_sha256.txt), by corpus-relative path. */
export function corpusDigests(file: string): Map<string, { size: number; sha256: string }> {
  const out = new Map<string, { size: number; sha256: string }>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('#')) continue;
    const [name, size, sha] = line.split('|').map((s) => s.trim());
    if (name && size && sha && /^[0-9a-f]{64}$/.test(sha)) out.set(name, { size: Number(size), sha256: sha });
  }
  return out;
}
