/**
 * The clusters an NTFS volume uses, from $Bitmap (MFT record 6, its unnamed
 * $DATA): one bit per cluster, set = in use. The boot sector, $MFT, $MFTMirr,
 * $LogFile and every other metafile are clusters like any file's, so they
 * are in it. Spec: libyal libfsntfs "Bitmap (metadata file)".
 *
 * Clusters the bitmap does not cover (a short or unreadable $Bitmap) count
 * as used, never as free. Read in BITMAP_PIECE pieces: memory stays bounded
 * whatever the volume size.
 */
import type { ByteRange } from '../../blockdevice.js';
import { setBitRuns } from '../ranges.js';
import type { StreamReader, VolumeGeometry } from './stream.js';

/** $Bitmap bytes read per request (2^19 clusters). */
const BITMAP_PIECE = 64 * 1024;

/**
 * Used byte ranges of the volume (volume coordinates), sorted and merged,
 * inside [0, totalClusters × clusterSize) and the device. `bitmap` reads
 * $Bitmap's $DATA.
 */
export function* ntfsAllocated(bitmap: StreamReader, geo: VolumeGeometry, deviceSize: number): Generator<ByteRange> {
  const cs = geo.clusterSize;
  // the boot sector's cluster count is the guest's word: clusters past the device do not exist
  const total = Math.min(geo.totalClusters, Math.floor(deviceSize / cs));
  const covered = Math.min(total, bitmap.stream.size * 8);
  let pending: ByteRange | undefined;
  const out: ByteRange[] = [];
  const push = (offset: number, end: number): void => {
    if (pending && offset <= pending.offset + pending.length) {
      pending.length = Math.max(pending.length, end - pending.offset);
      return;
    }
    if (pending) out.push(pending);
    pending = { offset, length: end - offset };
  };
  for (let bit = 0; bit < covered; bit += BITMAP_PIECE * 8) {
    const bits = Math.min(BITMAP_PIECE * 8, covered - bit);
    const bytes = bitmap.read(bit / 8, Math.ceil(bits / 8));
    setBitRuns(bytes, bits, (first, count) => push((bit + first) * cs, (bit + first + count) * cs));
    yield* out;
    out.length = 0;
  }
  if (covered < total) push(covered * cs, total * cs);
  yield* out;
  if (pending) yield pending;
}
