/**
 * Opens the whole reading stack on one disk image:
 * image (VMDK, qcow2, raw …) → volumes (MBR, GPT, none) → filesystem per volume.
 *
 * A volume whose filesystem is not recognised, or fails to open, is kept and
 * reported (with the error), never silently dropped.
 */
import { type BlockDevice, SliceDevice, totalLength } from '../parsers/blockdevice.js';
import { openDisk } from '../parsers/disk/open.js';
import type { DiskImage, OpenOptions } from '../parsers/disk/types.js';
import { errorsFor, isVdbakError, type SerializedError } from '../parsers/errors.js';
import { probeFileSystem } from '../parsers/fs/index.js';
import type { FileSystem, FsInfo } from '../parsers/fs/types.js';
import { readVolumeMap } from '../parsers/volume/index.js';
import type { Volume, VolumeMap } from '../parsers/volume/types.js';

export interface OpenVolume {
  volume: Volume;
  device: BlockDevice;
  /** The filesystem driver's name when one recognised the volume. */
  fsType?: string;
  fs?: FileSystem;
  /** Why the filesystem could not be opened. */
  fsError?: SerializedError;
}

export interface DiskStack {
  disk: DiskImage;
  map: VolumeMap;
  volumes: OpenVolume[];
  close(): void;
}

function serialize(e: unknown, image: string): SerializedError {
  if (isVdbakError(e)) return e.toJSON();
  // a bug of ours, not the guest's: keep it visible, typed for the report
  return errorsFor({ image, layer: 'fs' })
    .corrupt('FS_INTERNAL', String(e instanceof Error ? e.stack : e))
    .toJSON();
}

/**
 * Opens a disk and everything inside it. Filesystem failures are reported per
 * volume. `wrap` puts a wrapper (the throttle) under every layer above the image.
 */
export function openStack(path: string, options: OpenOptions = {}, wrap?: (d: DiskImage) => DiskImage): DiskStack {
  const opened = openDisk(path, options);
  return stackOn(wrap ? wrap(opened) : opened);
}

/** The stack above an image already open (closed with the stack, or here when the volumes cannot be read). */
export function stackOn(disk: DiskImage): DiskStack {
  try {
    const map = readVolumeMap(disk);
    const volumes: OpenVolume[] = map.volumes.map((volume) => {
      const device = new SliceDevice(disk, volume.offset, volume.length, `${disk.name}#${volume.index}`);
      const ov: OpenVolume = { volume, device };
      const driver = probeFileSystem(device);
      if (driver) {
        ov.fsType = driver.type;
        try {
          // info() is not asked here: on NTFS it needs a pass over the whole MFT,
          // which ls and cat of one file must not pay (see volumeInfo)
          ov.fs = driver.open(device);
        } catch (e) {
          ov.fsError = serialize(e, device.name);
        }
      }
      return ov;
    });
    return {
      disk,
      map,
      volumes,
      close() {
        for (const v of volumes) v.fs?.close();
        disk.close();
      },
    };
  } catch (e) {
    disk.close();
    throw e;
  }
}

/** A volume's filesystem summary, or the typed error that stopped it (inspect's view). */
export function volumeInfo(v: OpenVolume): { info?: FsInfo; error?: SerializedError } {
  if (!v.fs) return v.fsError ? { error: v.fsError } : {};
  try {
    return { info: v.fs.info() };
  } catch (e) {
    return { error: serialize(e, v.device.name) };
  }
}

/** Bytes of the disk that hold data (sum of its allocation map). */
export function allocatedBytes(dev: BlockDevice): number {
  let total = 0;
  const step = 64 * 1024 * 1024 * 1024; // ask in 64 GiB windows to bound each answer
  for (let off = 0; off < dev.size; off += step)
    total += totalLength(dev.allocated(off, Math.min(step, dev.size - off)));
  return total;
}

/**
 * Picks the volume a browse command works on: the one asked for by number,
 * or the only volume that holds a filesystem we read.
 */
export function pickVolume(stack: DiskStack, wanted?: number): OpenVolume {
  const err = errorsFor({ image: stack.disk.name, layer: 'volume' });
  if (wanted !== undefined) {
    const v = stack.volumes.find((x) => x.volume.index === wanted);
    if (!v) {
      throw err.notFound(
        'VOLUME_NOT_FOUND',
        `no volume ${wanted}; volumes: ${stack.volumes.map((x) => x.volume.index).join(', ') || 'none'}`,
      );
    }
    return v;
  }
  const readable = stack.volumes.filter((v) => v.fs);
  if (readable.length === 1 && readable[0]) return readable[0];
  if (readable.length === 0) throw err.notFound('NO_FILESYSTEM', 'no volume holds a filesystem vdbak reads');
  throw err.notFound(
    'VOLUME_AMBIGUOUS',
    `several volumes hold filesystems (${readable.map((v) => `${v.volume.index}: ${v.fsType}`).join(', ')}); choose one with --volume N`,
  );
}
