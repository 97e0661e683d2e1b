/**
 * What a fuzz case does with an extent that opened: walk every span (which
 * must tile the extent exactly) and read the bytes of every data span, so
 * that only typed errors or complete reads come out.
 */
import type { ExtentReader } from '../../../parsers/disk/vmdk/extent.js';

/** Walks the whole extent; returns the number of data bytes read. Throws a plain Error if spans misbehave. */
export function walkExtent(e: ExtentReader, maxSpan = e.size): number {
  let off = 0;
  let dataBytes = 0;
  let steps = 0;
  while (off < e.size) {
    const s = e.span(off, Math.min(maxSpan, e.size - off));
    if (!Number.isSafeInteger(s.length) || s.length <= 0 || s.length > e.size - off) {
      throw new Error(`span at ${off} has an impossible length ${s.length}`);
    }
    if (s.kind === 'data') {
      s.file.read(s.fileOffset, Math.min(s.length, 1 << 20));
      dataBytes += s.length;
    }
    off += s.length;
    if (++steps > 1e6) throw new Error('too many spans');
  }
  return dataBytes;
}
