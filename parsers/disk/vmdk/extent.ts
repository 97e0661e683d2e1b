/**
 * The contract between the VMDK descriptor/device (parsers/disk/vmdk/index.ts)
 * and each extent format (flat, hosted sparse "KDMV", streamOptimized, ESX
 * "COWD" vmfsSparse, SEsparse, ZERO).
 *
 * An extent covers `size` bytes of the virtual disk, starting at its own
 * offset 0. `span(offset, maxLength)` describes the bytes at `offset` up to
 * the next change of kind (end of a grain, a run of equal grains …) and never
 * more than `maxLength` (which is > 0). The device loops over spans to serve a
 * read and to build the allocation map, so a span must be cheap: it looks up
 * tables, it does not read data (except to inflate a compressed grain).
 */
import type { FileSource } from '../file.js';

export type ExtentSpan =
  /** Bytes stored plainly in `file` at `fileOffset`. */
  | { kind: 'data'; length: number; file: FileSource; fileOffset: number }
  /** Bytes already decoded (a compressed grain); `bytes.length === length`. */
  | { kind: 'bytes'; length: number; bytes: Buffer }
  /** Allocated as zeros in this extent: reads zeros, does NOT read through to a parent. */
  | { kind: 'zero'; length: number }
  /** Not held by this extent: read through to the parent disk, zeros if there is none. */
  | { kind: 'absent'; length: number };

export interface ExtentReader {
  /** 'FLAT' | 'SPARSE' | 'ZERO' | 'VMFS' | 'VMFSSPARSE' | 'SESPARSE' … */
  readonly type: string;
  /** Path of the extent file ('' for ZERO). */
  readonly path: string;
  /** Bytes of virtual disk this extent covers. */
  readonly size: number;
  span(offset: number, maxLength: number): ExtentSpan;
  close(): void;
}
