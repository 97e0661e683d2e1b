/**
 * Interix-style symbolic links, as written by ntfs-3g (its default): a plain
 * file with the System attribute whose data is "IntxLNK\x01" followed by the
 * UTF-16LE target. Windows sees a file; Linux sees a symlink.
 *
 * Spec: ntfs-3g documentation "Junctions, symbolic links and reparse points"
 * (Interix symlinks). Other Interix kinds (IntxCHR, IntxBLK, FIFOs) are left
 * as files.
 */
export const INTX_SYMLINK_MAGIC = Buffer.from('IntxLNK\x01', 'latin1');
/** Largest Interix link we decode (a target path of 4095 UTF-16 units). */
export const INTX_MAX_SIZE = INTX_SYMLINK_MAGIC.length + 2 * 4095;

/** The target of an Interix symlink, or undefined when the data is not one. */
export function parseIntxSymlink(data: Buffer): string | undefined {
  if (data.length < INTX_SYMLINK_MAGIC.length || data.length > INTX_MAX_SIZE) return undefined;
  if (!data.subarray(0, INTX_SYMLINK_MAGIC.length).equals(INTX_SYMLINK_MAGIC)) return undefined;
  const body = data.subarray(INTX_SYMLINK_MAGIC.length);
  return body.toString('utf16le', 0, body.length - (body.length % 2));
}
