/**
 * The qcow2 disk format (qemu's copy-on-write image, versions 2 and 3),
 * detected by its "QFI\xfb" magic. See image.ts for what is read and how.
 */
import { u32be } from '../../bytes.js';
import type { DiskFormat } from '../types.js';
import { QCOW2_MAGIC } from './header.js';
import { openQcow2 } from './image.js';

export const qcow2Format: DiskFormat = {
  name: 'qcow2',
  probe: (head) => head.length >= 4 && u32be(head, 0) === QCOW2_MAGIC,
  open: (path, ctx) => openQcow2(path, ctx),
};
