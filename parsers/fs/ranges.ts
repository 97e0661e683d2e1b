/**
 * Range helpers the filesystems' allocation maps share.
 *
 * Allocation bitmaps (ext block bitmaps, NTFS $Bitmap): bit i of a bitmap is
 * bit (i & 7) of byte (i >> 3), least significant first, and a set bit means
 * "in use". Whole 0x00 and 0xff bytes are skipped over in one step, which is
 * what real bitmaps are mostly made of.
 */

/**
 * Calls `emit(firstBit, count)` for each run of set bits among the first
 * `nbits` bits of `bytes`, in order; runs are maximal within the call.
 */
export function setBitRuns(bytes: Uint8Array, nbits: number, emit: (first: number, count: number) => void): void {
  const limit = Math.min(nbits, bytes.length * 8);
  let start = -1;
  let bit = 0;
  while (bit < limit) {
    const b = bytes[bit >> 3]!;
    if ((bit & 7) === 0 && bit + 8 <= limit && (b === 0 || b === 0xff)) {
      if (b === 0xff) {
        if (start < 0) start = bit;
      } else if (start >= 0) {
        emit(start, bit - start);
        start = -1;
      }
      bit += 8;
      continue;
    }
    if ((b >> (bit & 7)) & 1) {
      if (start < 0) start = bit;
    } else if (start >= 0) {
      emit(start, bit - start);
      start = -1;
    }
    bit++;
  }
  if (start >= 0) emit(start, limit - start);
}

/**
 * The union of the intervals [starts[i], ends[i]) as sorted, merged
 * [start, end) pairs (touching intervals join). The two arrays are sorted in
 * place, separately: a sweep over sorted starts and sorted ends gives the
 * union without pairing them up again, with typed-array sorts instead of an
 * array of objects. Empty intervals must not be passed.
 */
export function* unionOfIntervals(starts: Float64Array, ends: Float64Array): Generator<[number, number]> {
  const n = Math.min(starts.length, ends.length);
  const s = starts.subarray(0, n).sort();
  const e = ends.subarray(0, n).sort();
  let i = 0;
  let j = 0;
  let depth = 0;
  let open = 0;
  while (j < n) {
    if (i < n && s[i]! <= e[j]!) {
      if (depth === 0) open = s[i]!;
      depth++;
      i++;
    } else {
      depth--;
      if (depth === 0) yield [open, e[j]!];
      j++;
    }
  }
}
