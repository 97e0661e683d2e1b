/**
 * VMware VMDK disks: every subformat as one BlockDevice.
 *
 * A VMDK is a descriptor (a text file, or text embedded in a hosted sparse
 * extent) plus one or more extents laid end to end (descriptor.ts). Extents
 * are flat files (monolithicFlat, twoGbMaxExtentFlat, vmfs), hosted sparse
 * "KDMV" files (monolithicSparse, twoGbMaxExtentSparse, streamOptimized:
 * sparse.ts), ESX "COWD" deltas (vmfsSparse) and SEsparse deltas (seSparse).
 * A snapshot names its parent with parentFileNameHint and the parent's CID;
 * what a snapshot does not hold reads through to the parent, at any depth.
 *
 * Spec: VMware "Virtual Disk Format 5.0", libyal libvmdk's format document,
 * qemu block/vmdk.c.
 */
import { existsSync } from 'node:fs';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { type ByteRange, checkRead } from '../../blockdevice.js';
import { u32le } from '../../bytes.js';
import { errorsFor } from '../../errors.js';
import { FileSource } from '../file.js';
import type { ChainLink, DiskFormat, DiskImage, OpenContext } from '../types.js';
import { COWD_HEADER_SIZE, COWD_MAGIC, openCowdExtent, parseCowdHeader } from './cowd.js';
import {
  CID_NONE,
  type Descriptor,
  type ExtentLine,
  looksLikeDescriptor,
  MAX_DESCRIPTOR_BYTES,
  parseDescriptor,
  SECTOR,
} from './descriptor.js';
import type { ExtentReader, ExtentSpan } from './extent.js';
import { FlatExtent, ZeroExtent } from './flat.js';
import { openSeSparseExtent } from './sesparse.js';
import {
  type AllocationSpanner,
  readEmbeddedDescriptor,
  readSparseHeader,
  SPARSE_MAGIC,
  SparseExtent,
} from './sparse.js';

/** Extent files kept open at once; a disk with more extents (twoGbMaxExtent* of a large disk) reopens them on use. */
export const MAX_OPEN_EXTENTS = 256;

/**
 * An extent that may be closed when too many are open and is reopened (and
 * re-validated) by `make` when it is read again. The first reader is the
 * one made while the disk was opened, so every extent is checked up front.
 */
class PooledExtent implements ExtentReader {
  readonly type: string;
  readonly path: string;
  readonly size: number;
  constructor(
    private reader: ExtentReader | null,
    private readonly make: () => ExtentReader,
    private readonly pool: Set<PooledExtent>,
  ) {
    const r = reader ?? make();
    this.reader = r;
    this.type = r.type;
    this.path = r.path;
    this.size = r.size;
    this.touch();
  }
  private touch(): void {
    this.pool.delete(this);
    this.pool.add(this);
    for (const old of this.pool) {
      if (this.pool.size <= MAX_OPEN_EXTENTS) break;
      old.release();
    }
  }
  private release(): void {
    this.pool.delete(this);
    this.reader?.close();
    this.reader = null;
  }
  /** The open reader, made again if it was released. */
  get open(): ExtentReader {
    if (!this.reader) this.reader = this.make();
    this.touch();
    return this.reader;
  }
  span(offset: number, maxLength: number): ExtentSpan {
    return this.open.span(offset, maxLength);
  }
  close(): void {
    this.release();
  }
}

interface Placed {
  start: number;
  end: number;
  reader: ExtentReader;
}

function hex(cid: number): string {
  return cid.toString(16).padStart(8, '0');
}

function hasAllocationSpan(r: ExtentReader): r is ExtentReader & AllocationSpanner {
  return typeof (r as Partial<AllocationSpanner>).allocationSpan === 'function';
}

/** Opens the file of one descriptor extent line and returns its reader. */
function openExtent(line: ExtentLine, dir: string, image: string): ExtentReader {
  const err = errorsFor({ image, layer: 'vmdk' });
  const size = line.sectors * SECTOR;
  if (line.access === 'NOACCESS') {
    throw err.unsupported('VMDK_EXTENT_NOACCESS', `extent "${line.fileName}" is marked NOACCESS`, { offset: line.at });
  }
  if (line.type === 'ZERO') return new ZeroExtent(size);
  const path = isAbsolute(line.fileName) ? line.fileName : join(dir, line.fileName);
  const file = new FileSource(path, 'vmdk');
  try {
    switch (line.type) {
      case 'FLAT':
      case 'VMFS':
      case 'VMFSRDM':
      case 'VMFSRAW':
        return new FlatExtent(line.type, file, line.offset * SECTOR, size);
      case 'SPARSE': {
        const magic = file.size >= 4 ? u32le(file.read(0, 4, 'extent magic'), 0) : -1;
        if (magic === SPARSE_MAGIC) return new SparseExtent(file, size);
        if (magic === COWD_MAGIC) return openCowdExtent(file, size);
        throw errorsFor({ image: path, layer: 'vmdk' }).corrupt(
          'VMDK_BAD_MAGIC',
          'SPARSE extent with neither a "KDMV" nor a "COWD" header',
          { offset: 0 },
        );
      }
      case 'VMFSSPARSE':
        return openCowdExtent(file, size);
      case 'SESPARSE':
        return openSeSparseExtent(file, size);
    }
  } catch (e) {
    file.close();
    throw e;
  }
}

/**
 * Where parentFileNameHint points: relative hints are relative to the child's
 * folder. An absolute hint written on another host (an ESXi datastore path,
 * a Windows "C:\\…" path) that does not exist here falls back to its base name
 * in the child's folder, where copied or mounted snapshots keep their parents.
 */
export function resolveParent(hint: string, childPath: string): string {
  const dir = dirname(childPath);
  const windowsAbsolute = /^[A-Za-z]:[\\/]/.test(hint) || hint.startsWith('\\');
  const portable = hint.replace(/\\/g, '/');
  if (!isAbsolute(hint) && !windowsAbsolute) return join(dir, portable);
  if (!windowsAbsolute && existsSync(hint)) return hint;
  const local = join(dir, basename(portable));
  return existsSync(local) ? local : hint;
}

export class VmdkImage implements DiskImage {
  readonly format = 'vmdk';
  readonly subformat: string;
  readonly size: number;
  readonly name: string;
  readonly chain: ChainLink[];
  /** This link's content id (CID), if its descriptor has one. */
  readonly cid: number | undefined;
  private readonly extents: Placed[];

  constructor(
    path: string,
    descriptor: Descriptor | null,
    readers: ExtentReader[],
    subformat: string,
    private readonly parent: DiskImage | null,
  ) {
    this.name = path;
    this.subformat = subformat;
    this.cid = descriptor?.cid;
    let start = 0;
    this.extents = readers.map((reader) => {
      const p = { start, end: start + reader.size, reader };
      start = p.end;
      return p;
    });
    this.size = start;
    const facts: Record<string, string | number | boolean> = { createType: subformat, extents: readers.length };
    if (descriptor?.cid !== undefined) facts['CID'] = hex(descriptor.cid);
    if (descriptor) facts['parentCID'] = hex(descriptor.parentCid);
    if (descriptor?.parentFileNameHint) facts['parentFileNameHint'] = descriptor.parentFileNameHint;
    const first = readers[0] instanceof PooledExtent ? readers[0].open : readers[0];
    const sparse = first instanceof SparseExtent ? first : undefined;
    if (sparse) Object.assign(facts, sparse.facts());
    const files = [path, ...readers.map((r) => r.path).filter((p) => p !== '' && p !== path)];
    this.chain = [
      { path, format: 'vmdk', subformat, files: [...new Set(files)], facts },
      ...(parent ? parent.chain : []),
    ];
  }

  private extentIndex(offset: number): number {
    let lo = 0;
    let hi = this.extents.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.extents[mid]?.end ?? 0) <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Walks the spans covering [offset, offset+length), calling `visit` for each. */
  private walk(
    offset: number,
    length: number,
    spanOf: (
      r: ExtentReader,
      at: number,
      max: number,
    ) => ExtentSpan | { kind: 'data' | 'zero' | 'absent'; length: number },
    visit: (s: ExtentSpan | { kind: 'data' | 'zero' | 'absent'; length: number }, pos: number, done: number) => void,
  ): void {
    let done = 0;
    let i = this.extentIndex(offset);
    while (done < length) {
      const pos = offset + done;
      let e = this.extents[i];
      while (e && pos >= e.end) e = this.extents[++i];
      if (!e)
        throw errorsFor({ image: this.name, layer: 'vmdk' }).corrupt('VMDK_NO_EXTENT', 'no extent', { offset: pos });
      const max = Math.min(length - done, e.end - pos);
      const s = spanOf(e.reader, pos - e.start, max);
      if (!Number.isSafeInteger(s.length) || s.length <= 0 || s.length > max) {
        throw errorsFor({ image: e.reader.path || this.name, layer: 'vmdk' }).corrupt(
          'VMDK_EXTENT_SPAN',
          `extent returned a span of ${s.length} bytes for a request of ${max}`,
          { offset: pos - e.start },
        );
      }
      visit(s, pos, done);
      done += s.length;
    }
  }

  read(offset: number, length: number): Buffer {
    checkRead(this, offset, length, 'vmdk');
    const out = Buffer.allocUnsafe(length);
    this.readInto(out, offset);
    return out;
  }

  /** Fills `out` with the device's bytes from `offset` (already range-checked). */
  readInto(out: Buffer, offset: number): void {
    this.walk(
      offset,
      out.length,
      (r, at, max) => r.span(at, max),
      (s, pos, done) => {
        const target = out.subarray(done, done + s.length);
        if (s.kind === 'data' && 'file' in s) s.file.readInto(target, s.fileOffset, 'grain');
        else if (s.kind === 'bytes') {
          if (s.bytes.length !== s.length) {
            throw errorsFor({ image: this.name, layer: 'vmdk' }).corrupt('VMDK_EXTENT_SPAN', 'decoded span size', {
              offset: pos,
            });
          }
          target.set(s.bytes);
        } else if (s.kind === 'absent' && this.parent) this.readParent(target, pos);
        else target.fill(0);
      },
    );
  }

  private readParent(target: Buffer, pos: number): void {
    const p = this.parent;
    if (!p || pos >= p.size) {
      target.fill(0);
      return;
    }
    const n = Math.min(target.length, p.size - pos);
    if (p instanceof VmdkImage) p.readInto(target.subarray(0, n), pos);
    else target.set(p.read(pos, n));
    target.fill(0, n);
  }

  allocated(offset: number, length: number): ByteRange[] {
    checkRead(this, offset, length, 'vmdk');
    const out: ByteRange[] = [];
    const add = (o: number, l: number) => {
      const last = out[out.length - 1];
      if (last && last.offset + last.length === o) last.length += l;
      else out.push({ offset: o, length: l });
    };
    this.walk(
      offset,
      length,
      (pooled, at, max) => {
        const r = pooled instanceof PooledExtent ? pooled.open : pooled;
        return hasAllocationSpan(r) ? r.allocationSpan(at, max) : r.span(at, max);
      },
      (s, pos) => {
        if (s.kind === 'data' || s.kind === 'bytes') add(pos, s.length);
        else if (s.kind === 'absent' && this.parent && pos < this.parent.size) {
          for (const r of this.parent.allocated(pos, Math.min(s.length, this.parent.size - pos)))
            add(r.offset, r.length);
        }
      },
    );
    return out;
  }

  close(): void {
    for (const e of this.extents) e.reader.close();
    this.parent?.close();
  }
}

/** Opens the parent named by the descriptor and checks its CID. */
function openParentOf(path: string, d: Descriptor, ctx: OpenContext): DiskImage | null {
  const err = errorsFor({ image: path, layer: 'vmdk' });
  const hint = d.parentFileNameHint;
  if (!hint) {
    if (d.parentCid !== CID_NONE) {
      throw err.chain('VMDK_PARENT_HINT_MISSING', `parentCID ${hex(d.parentCid)} but no parentFileNameHint`);
    }
    return null;
  }
  const parent = ctx.openParent(resolveParent(hint, path), path);
  if (!(parent instanceof VmdkImage) || parent.cid === undefined || parent.cid !== d.parentCid) {
    const got = parent instanceof VmdkImage && parent.cid !== undefined ? hex(parent.cid) : `a ${parent.format} image`;
    parent.close();
    throw err.chain(
      'VMDK_PARENT_CID_MISMATCH',
      `parentCID ${hex(d.parentCid)} but the parent ${parent.name} has CID ${got} (the parent changed after the snapshot)`,
      { parent: parent.name },
    );
  }
  return parent;
}

function openFromDescriptor(path: string, d: Descriptor, ctx: OpenContext): VmdkImage {
  const err = errorsFor({ image: path, layer: 'vmdk' });
  if (d.extents.length === 0) throw err.corrupt('VMDK_NO_EXTENTS', 'the descriptor lists no extents', { offset: 0 });
  const readers: ExtentReader[] = [];
  let parent: DiskImage | null = null;
  try {
    const pool = new Set<PooledExtent>();
    for (const line of d.extents) {
      const make = () => openExtent(line, dirname(path), path);
      readers.push(d.extents.length > MAX_OPEN_EXTENTS ? new PooledExtent(make(), make, pool) : make());
    }
    parent = openParentOf(path, d, ctx);
    return new VmdkImage(path, d, readers, d.createType ?? 'custom', parent);
  } catch (e) {
    for (const r of readers) r.close();
    parent?.close();
    throw e;
  }
}

function openSparseFile(path: string, file: FileSource, ctx: OpenContext): VmdkImage {
  const err = errorsFor({ image: path, layer: 'vmdk' });
  const { header } = readSparseHeader(file);
  const embedded = readEmbeddedDescriptor(file, header);
  const d = embedded ? parseDescriptor(embedded.bytes, err, embedded.at) : null;
  if (header.capacity === 0 && d) {
    // a sparse file that only carries a descriptor (qemu vmdk_open_vmdk4 accepts this form)
    file.close();
    return openFromDescriptor(path, d, ctx);
  }
  const extent = new SparseExtent(file);
  try {
    const parent = d ? openParentOf(path, d, ctx) : null;
    const subformat = d?.createType ?? (extent.compressed ? 'streamOptimized' : 'monolithicSparse');
    return new VmdkImage(path, d, [extent], subformat, parent);
  } catch (e) {
    extent.close();
    throw e;
  }
}

function openVmdk(path: string, ctx: OpenContext): VmdkImage {
  const err = errorsFor({ image: path, layer: 'vmdk' });
  const file = new FileSource(path, 'vmdk');
  try {
    const magic = file.size >= 4 ? u32le(file.read(0, 4, 'magic'), 0) : -1;
    if (magic === SPARSE_MAGIC) return openSparseFile(path, file, ctx);
    if (magic === COWD_MAGIC) {
      // a COWD delta opened by itself: one extent, no descriptor, so no parent to read through to
      const h = parseCowdHeader(file.read(0, Math.min(COWD_HEADER_SIZE, file.size), 'COWD header'), err);
      const extent = openCowdExtent(file, h.numSectors * SECTOR);
      return new VmdkImage(path, null, [extent], 'vmfsSparse', null);
    }
    if (file.size > MAX_DESCRIPTOR_BYTES) {
      throw err.limit('VMDK_DESCRIPTOR_TOO_LARGE', `a descriptor file of ${file.size} bytes`, {
        offset: 0,
        cap: MAX_DESCRIPTOR_BYTES,
      });
    }
    const d = parseDescriptor(file.read(0, file.size, 'descriptor'), err, 0);
    file.close();
    return openFromDescriptor(path, d, ctx);
  } catch (e) {
    file.close();
    throw e;
  }
}

export const vmdkFormat: DiskFormat = {
  name: 'vmdk',
  probe(head) {
    if (head.length >= 4) {
      const magic = u32le(head, 0);
      if (magic === SPARSE_MAGIC || magic === COWD_MAGIC) return true;
    }
    return looksLikeDescriptor(head);
  },
  open: (path, ctx) => openVmdk(path, ctx),
};
