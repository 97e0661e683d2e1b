/**
 * The filesystem registry: the one place a new filesystem is plugged in.
 */
import type { BlockDevice } from '../blockdevice.js';
import { extDriver } from './ext/index.js';
import { ntfsDriver } from './ntfs/index.js';
import type { FileSystemDriver } from './types.js';

export const FILESYSTEMS: FileSystemDriver[] = [extDriver, ntfsDriver];

/** The first driver that recognises the volume, or undefined. */
export function probeFileSystem(dev: BlockDevice): FileSystemDriver | undefined {
  for (const d of FILESYSTEMS) {
    try {
      if (d.probe(dev)) return d;
    } catch {
      // a probe that cannot read its superblock simply does not match
    }
  }
  return undefined;
}
