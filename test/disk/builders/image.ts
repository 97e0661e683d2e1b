/**
 * A disk-image file described as pieces of bytes at offsets over a zero
 * background, so builders can lay out big sparse files cheaply; plus the
 * test-side loop that reads a whole VMDK extent through its spans.
 */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import type { ExtentReader, ExtentSpan } from '../../../parsers/disk/vmdk/extent.js';

export interface ImageFile {
  /** Total file size in bytes. */
  size: number;
  pieces: { offset: number; bytes: Uint8Array }[];
}

/** Writes the image as a sparse file (holes where no piece lies). */
export function writeImage(path: string, img: ImageFile): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, img.size);
    for (const p of img.pieces) writeSync(fd, p.bytes, 0, p.bytes.length, p.offset);
  } finally {
    closeSync(fd);
  }
}

/** The image as one buffer (for small images, e.g. fuzzing). */
export function imageBytes(img: ImageFile): Buffer {
  const b = Buffer.alloc(img.size);
  for (const p of img.pieces) b.set(p.bytes, p.offset);
  return b;
}

export interface SpanRun {
  start: number;
  length: number;
  kind: ExtentSpan['kind'];
  /** File offset of the first byte, for 'data'. */
  fileOffset?: number;
}

/** Every span of the extent, adjacent spans of one kind (and contiguous file offsets) merged. */
export function extentSpans(e: ExtentReader, maxSpan = e.size): SpanRun[] {
  const runs: SpanRun[] = [];
  let off = 0;
  while (off < e.size) {
    const s = e.span(off, Math.min(maxSpan, e.size - off));
    if (!(s.length > 0 && s.length <= e.size - off)) throw new Error(`bad span length ${s.length} at ${off}`);
    const prev = runs[runs.length - 1];
    const fileOffset = s.kind === 'data' ? s.fileOffset : undefined;
    if (prev && prev.kind === s.kind && (s.kind !== 'data' || (prev.fileOffset ?? 0) + prev.length === fileOffset)) {
      prev.length += s.length;
    } else {
      runs.push(
        fileOffset === undefined
          ? { start: off, length: s.length, kind: s.kind }
          : { start: off, length: s.length, kind: s.kind, fileOffset },
      );
    }
    off += s.length;
  }
  return runs;
}

/**
 * Reads the whole extent through its spans. Absent spans come from `parent`
 * (zeros where it is shorter or missing), as the device will do.
 */
export function readExtent(e: ExtentReader, parent?: Uint8Array, maxSpan = e.size): Buffer {
  const out = Buffer.alloc(e.size);
  let off = 0;
  while (off < e.size) {
    const s = e.span(off, Math.min(maxSpan, e.size - off));
    if (s.kind === 'data') s.file.readInto(out.subarray(off, off + s.length), s.fileOffset);
    else if (s.kind === 'bytes') out.set(s.bytes, off);
    else if (s.kind === 'absent' && parent) out.set(parent.subarray(off, Math.min(off + s.length, parent.length)), off);
    off += s.length;
  }
  return out;
}

/** qemu-img map --output=json entries reduced to the same runs (no backing file). */
export function qemuMapRuns(json: string): SpanRun[] {
  const entries = JSON.parse(json) as {
    start: number;
    length: number;
    present: boolean;
    data: boolean;
    zero: boolean;
    offset?: number;
  }[];
  const runs: SpanRun[] = [];
  for (const m of entries) {
    const kind: SpanRun['kind'] = m.data ? 'data' : m.present ? 'zero' : 'absent';
    const prev = runs[runs.length - 1];
    if (prev && prev.kind === kind && (kind !== 'data' || (prev.fileOffset ?? 0) + prev.length === m.offset)) {
      prev.length += m.length;
    } else {
      runs.push(
        kind === 'data'
          ? { start: m.start, length: m.length, kind, fileOffset: m.offset ?? -1 }
          : { start: m.start, length: m.length, kind },
      );
    }
  }
  return runs;
}

/** The data ranges of a `qemu-img map --output=json`, merged (what BlockDevice.allocated must list). */
export function qemuDataRanges(json: string): { offset: number; length: number }[] {
  const out: { offset: number; length: number }[] = [];
  for (const m of JSON.parse(json) as { start: number; length: number; data: boolean }[]) {
    if (!m.data) continue;
    const prev = out[out.length - 1];
    if (prev && prev.offset + prev.length === m.start) prev.length += m.length;
    else out.push({ offset: m.start, length: m.length });
  }
  return out;
}
