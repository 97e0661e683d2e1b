/**
 * Which loose disk images in a folder are the disks to back up: the leaves of
 * their chains. A file is *not* a leaf when another image in the folder names
 * it as its parent (VMDK parentFileNameHint, qcow2 backing file) or as one of
 * its extents (a VMDK descriptor's -flat / -s001 / -delta files).
 *
 * This reads only headers and descriptors (at most a few KiB per file, the
 * descriptor up to its 1 MiB cap), never grain tables: a datastore folder is
 * scanned before anything is opened for real. A file whose header cannot be
 * read is still a leaf candidate: opening it later reports the real error.
 */
import { readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { u32be, u32le, u64le } from '../../parsers/bytes.js';
import { FileSource } from '../../parsers/disk/file.js';
import { parseHeader as parseQcow2Header, QCOW2_MAGIC } from '../../parsers/disk/qcow2/header.js';
import { COWD_MAGIC } from '../../parsers/disk/vmdk/cowd.js';
import { looksLikeDescriptor, MAX_DESCRIPTOR_BYTES, parseDescriptor } from '../../parsers/disk/vmdk/descriptor.js';
import { SESPARSE_CONST_MAGIC } from '../../parsers/disk/vmdk/sesparse.js';
import {
  parseSparseHeader,
  readEmbeddedDescriptor,
  SPARSE_HEADER_SIZE,
  SPARSE_MAGIC,
} from '../../parsers/disk/vmdk/sparse.js';
import { errorsFor, isVdbakError, type VdbakError } from '../../parsers/errors.js';
import { resolveParent } from '../../parsers/disk/vmdk/index.js';

/** Extensions of loose disk images we pick up in a folder (lower case, with the dot). */
export const IMAGE_EXTENSIONS = ['.vmdk', '.qcow2', '.img', '.raw'] as const;
/** Most image files one folder may hold before we refuse to scan it. */
export const MAX_FOLDER_IMAGES = 10_000;
/** Bytes read to tell a format by content. */
const HEAD_BYTES = 4096;
/** qemu caps backing file names at 1023 bytes. */
const MAX_BACKING_NAME = 1023;

/**
 * VMDK extent files that are never opened alone: ESXi -flat / -delta /
 * -sesparse / -rdm / -rdmp, hosted split -s001 / -f001, and -ctk
 * (changed-block tracking, not an image at all).
 */
const EXTENT_NAME_RE = /-(flat|delta|sesparse|rdm|rdmp|ctk|s\d{3}|f\d{3})\.vmdk$/i;

export type ImageKind = 'vmdk-descriptor' | 'vmdk-sparse' | 'vmdk-extent' | 'qcow2' | 'raw' | 'unreadable';

export interface ImageRefs {
  path: string;
  kind: ImageKind;
  /** Absolute paths of the parents this image names (0 or 1). */
  parents: string[];
  /** Absolute paths of other files this image reads as extents. */
  extents: string[];
  /** True when the file describes itself (descriptor text, sparse with embedded descriptor, qcow2). */
  selfDescribing: boolean;
  /** What went wrong reading the header, for kind 'unreadable'. */
  error?: VdbakError;
}

export function isImageName(name: string): boolean {
  return (IMAGE_EXTENSIONS as readonly string[]).includes(extname(name).toLowerCase());
}

export function looksLikeExtentName(name: string): boolean {
  return EXTENT_NAME_RE.test(name);
}

/**
 * The format a loose image's name promises, forced when it is opened so a
 * guest's bytes at sector 0 of a raw disk are never taken for a header.
 * `.img` says nothing (cloud images are qcow2, dd images raw): undefined,
 * so the content decides. Extent files are undefined too: they are not
 * images of their own.
 */
export function formatByName(name: string): string | undefined {
  if (looksLikeExtentName(name)) return undefined;
  const ext = extname(name).toLowerCase();
  return ext === '.vmdk' ? 'vmdk' : ext === '.qcow2' ? 'qcow2' : ext === '.raw' ? 'raw' : undefined;
}

/**
 * Where a reference written in an image points, the way the disk layer
 * resolves it (parsers/disk/vmdk/index.ts resolveParent): relative to the
 * image's folder; an absolute path from another host that does not exist
 * here falls back to its base name next to the image.
 */
export function resolveReference(name: string, fromPath: string): string {
  // the same rule the VMDK reader follows for parentFileNameHint
  return resolveParent(name, fromPath);
}

export function existsFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** realpath, or the path itself when it does not resolve (a missing parent). */
export function realOr(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

function fromDescriptorBytes(bytes: Uint8Array, path: string, at: number, refs: ImageRefs): void {
  const d = parseDescriptor(bytes, errorsFor({ image: path, layer: 'vmdk' }), at);
  if (d.parentFileNameHint) refs.parents.push(resolveReference(d.parentFileNameHint, path));
  const self = realOr(path);
  for (const e of d.extents) {
    if (e.fileName === '') continue;
    const p = resolveReference(e.fileName, path);
    if (realOr(p) !== self) refs.extents.push(p);
  }
}

function readRefs(f: FileSource, path: string, refs: ImageRefs): void {
  const head = f.read(0, Math.min(HEAD_BYTES, f.size), 'header');
  if (head.length >= 4 && u32le(head, 0) === SPARSE_MAGIC) {
    refs.kind = 'vmdk-sparse';
    const h = parseSparseHeader(head.subarray(0, SPARSE_HEADER_SIZE), errorsFor({ image: path, layer: 'vmdk' }), 0);
    const embedded = readEmbeddedDescriptor(f, h);
    if (embedded) {
      refs.selfDescribing = true;
      fromDescriptorBytes(embedded.bytes, path, embedded.at, refs);
    }
    return;
  }
  if (head.length >= 4 && u32le(head, 0) === COWD_MAGIC) {
    refs.kind = 'vmdk-extent';
    return;
  }
  if (head.length >= 8 && u64le(head, 0) === SESPARSE_CONST_MAGIC) {
    refs.kind = 'vmdk-extent';
    return;
  }
  if (head.length >= 4 && u32be(head, 0) === QCOW2_MAGIC) {
    refs.kind = 'qcow2';
    refs.selfDescribing = true;
    const h = parseQcow2Header(head, errorsFor({ image: path, layer: 'qcow2' }));
    if (h.backingFileOffset !== 0 && h.backingFileSize > 0 && h.backingFileSize <= MAX_BACKING_NAME) {
      const raw = f.read(h.backingFileOffset, h.backingFileSize, 'backing file name');
      const nul = raw.indexOf(0);
      const name = (nul >= 0 ? raw.subarray(0, nul) : raw).toString('utf8');
      // json:{…} and protocol:// backing files are not files in this folder
      if (name !== '' && !name.startsWith('json:') && !/^[a-z][a-z0-9+.-]*:\/\//i.test(name)) {
        refs.parents.push(resolveReference(name, path));
      }
    }
    return;
  }
  if (looksLikeDescriptor(head)) {
    refs.kind = 'vmdk-descriptor';
    refs.selfDescribing = true;
    if (f.size > MAX_DESCRIPTOR_BYTES) {
      throw errorsFor({ image: path, layer: 'vmdk' }).limit(
        'VMDK_DESCRIPTOR_TOO_LARGE',
        `descriptor file of ${f.size} bytes`,
        { cap: MAX_DESCRIPTOR_BYTES },
      );
    }
    fromDescriptorBytes(f.read(0, f.size, 'descriptor'), path, 0, refs);
    return;
  }
  refs.kind = 'raw';
}

/**
 * What one image names: its parents and extents. `format` 'raw' (a `.raw`
 * file) is not read at all: its first bytes belong to the guest.
 */
export function readImageRefs(path: string, format?: string): ImageRefs {
  const refs: ImageRefs = { path, kind: 'raw', parents: [], extents: [], selfDescribing: false };
  if (format === 'raw') return refs;
  let f: FileSource | null = null;
  try {
    f = new FileSource(path, 'disk');
    readRefs(f, path, refs);
  } catch (e) {
    if (!isVdbakError(e)) throw e;
    refs.kind = 'unreadable';
    refs.parents = [];
    refs.extents = [];
    refs.error = e;
  } finally {
    f?.close();
  }
  return refs;
}

export interface FolderImages {
  /** Absolute paths of the leaf images, sorted by name. */
  leaves: string[];
  warnings: string[];
}

/** The image files directly inside `folder` (regular files, or symlinks to them; not hidden ones), sorted by name. */
export function listImages(folder: string): string[] {
  let all: string[];
  try {
    all = readdirSync(folder);
  } catch (e) {
    throw errorsFor({ image: folder, layer: 'file' }).io(
      'SOURCE_READDIR',
      `cannot list: ${(e as NodeJS.ErrnoException).code ?? e}`,
    );
  }
  const names = all.filter((n) => !n.startsWith('.') && isImageName(n)).sort();
  const files: string[] = [];
  for (const name of names) {
    const p = join(folder, name);
    if (!existsFile(p)) continue;
    if (files.length >= MAX_FOLDER_IMAGES) {
      throw errorsFor({ image: folder, layer: 'file' }).limit(
        'SOURCE_TOO_MANY_IMAGES',
        `more than ${MAX_FOLDER_IMAGES} image files in one folder`,
        { cap: MAX_FOLDER_IMAGES },
      );
    }
    files.push(p);
  }
  return files;
}

/** Finds the leaf images among `files` (all in one folder): the ones no other file names as parent or extent. */
export function findLeaves(files: string[]): FolderImages {
  const warnings: string[] = [];
  const refs = files.map((p) => readImageRefs(p, formatByName(basename(p))));
  const named = new Set<string>();
  for (const r of refs) {
    for (const p of [...r.parents, ...r.extents]) named.add(realOr(p));
    for (const p of r.parents) {
      if (!existsFile(p)) warnings.push(`${basename(r.path)} names the parent ${p}, which does not exist`);
    }
  }
  const leaves: string[] = [];
  for (const r of refs) {
    if (named.has(realOr(r.path))) continue;
    const extentLike = r.kind === 'vmdk-extent' || (!r.selfDescribing && looksLikeExtentName(basename(r.path)));
    if (extentLike) {
      warnings.push(
        `${basename(r.path)} looks like an extent of a VMDK whose descriptor is not in this folder; not backed up`,
      );
      continue;
    }
    leaves.push(r.path);
  }
  return { leaves, warnings };
}
