/**
 * NTFS driver: probes the boot sector's OEM id and opens the filesystem.
 * See filesystem.ts for what is listed and how.
 */
import type { BlockDevice } from '../../blockdevice.js';
import type { FileSystemDriver } from '../types.js';
import { BOOT_SECTOR_SIZE, looksLikeNtfs } from './boot.js';
import { NtfsFileSystem } from './filesystem.js';

export const ntfsDriver: FileSystemDriver = {
  type: 'ntfs',
  probe(dev: BlockDevice): boolean {
    return dev.size >= BOOT_SECTOR_SIZE && looksLikeNtfs(dev.read(0, BOOT_SECTOR_SIZE));
  },
  open(dev: BlockDevice): NtfsFileSystem {
    return new NtfsFileSystem(dev);
  },
};

export { NtfsFileSystem };
