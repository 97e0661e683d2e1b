/**
 * The ext2/ext3/ext4 driver: probes the superblock magic at byte 1024 and
 * opens an ExtFileSystem (fs.ts). See the other files of this folder for
 * one on-disk structure each.
 */
import type { BlockDevice } from '../../blockdevice.js';
import { errorsFor } from '../../errors.js';
import type { FileSystemDriver } from '../types.js';
import { ExtFileSystem } from './fs.js';
import { hasExtMagic, readSuperblock } from './superblock.js';

export const extDriver: FileSystemDriver = {
  type: 'ext',
  probe(dev: BlockDevice): boolean {
    return hasExtMagic(readSuperblock(dev, errorsFor({ image: dev.name, layer: 'ext' })));
  },
  open(dev: BlockDevice): ExtFileSystem {
    return new ExtFileSystem(dev);
  },
};

export { ExtFileSystem };
