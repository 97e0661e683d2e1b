/**
 * Opens any disk image by its content (magic numbers and descriptor text,
 * never the file extension) and follows its chain of parents.
 *
 * To add a format: write parsers/disk/<format>/…, export a DiskFormat, and
 * add it to FORMATS below (raw stays last: it accepts anything).
 */
import { realpathSync } from 'node:fs';
import { sep } from 'node:path';
import { errorsFor } from '../errors.js';
import { FileSource } from './file.js';
import { qcow2Format } from './qcow2/index.js';
import { rawFormat } from './raw.js';
import { vmdkFormat } from './vmdk/index.js';
import {
  DEFAULT_MAX_CHAIN_DEPTH,
  type DiskFormat,
  type DiskImage,
  type OpenContext,
  type OpenOptions,
} from './types.js';

/** Bytes handed to every probe. */
export const PROBE_BYTES = 4096;

export const FORMATS: DiskFormat[] = [vmdkFormat, qcow2Format, rawFormat];

export function detectFormat(path: string): DiskFormat {
  const f = new FileSource(path, 'disk');
  try {
    const head = f.read(0, Math.min(PROBE_BYTES, f.size), 'header');
    for (const fmt of FORMATS) if (fmt.probe(head, path)) return fmt;
  } finally {
    f.close();
  }
  return rawFormat;
}

function formatByName(name: string, path: string): DiskFormat {
  const fmt = FORMATS.find((f) => f.name === name);
  if (!fmt) {
    throw errorsFor({ image: path, layer: 'disk' }).unsupported(
      'DISK_UNKNOWN_FORMAT',
      `unknown format '${name}' (known: ${FORMATS.map((f) => f.name).join(', ')})`,
    );
  }
  return fmt;
}

function openAt(path: string, ctx: OpenContext, format?: string): DiskImage {
  const err = errorsFor({ image: path, layer: 'disk' });
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    if (ctx.depth === 0) throw err.notFound('IMAGE_NOT_FOUND', 'no such image file');
    throw err.chain('CHAIN_PARENT_MISSING', `parent image not found (named by ${ctx.visited.at(-1)})`);
  }
  if (ctx.visited.includes(real)) {
    throw err.chain('CHAIN_LOOP', `the chain comes back to ${real}: ${[...ctx.visited, real].join(' -> ')}`);
  }
  if (ctx.depth > ctx.options.maxChainDepth) {
    throw err.limit('CHAIN_TOO_DEEP', `chain deeper than ${ctx.options.maxChainDepth}`);
  }
  const roots = ctx.options.parentRoots;
  if (ctx.depth > 0 && roots && !roots.some((r) => real === r || real.startsWith(r.endsWith(sep) ? r : r + sep))) {
    throw err.chain(
      'CHAIN_PARENT_OUTSIDE_ROOTS',
      `parent ${real} (named by ${ctx.visited.at(-1)}) lies outside the allowed folders ${roots.join(', ')}`,
    );
  }
  const forced = ctx.depth === 0 ? ctx.options.format : format;
  const fmt = forced !== undefined ? formatByName(forced, path) : detectFormat(real);
  const child: OpenContext = {
    ...ctx,
    visited: [...ctx.visited, real],
    openParent: (p, _child, f) => openAt(p, { ...child, depth: ctx.depth + 1 }, f),
  };
  return fmt.open(real, child);
}

/** Opens the image at `path` (and its parents) as one virtual block device. */
export function openDisk(path: string, options: OpenOptions = {}): DiskImage {
  const ctx: OpenContext = {
    depth: 0,
    visited: [],
    options: {
      maxChainDepth: options.maxChainDepth ?? DEFAULT_MAX_CHAIN_DEPTH,
      format: options.format,
      parentRoots: options.parentRoots?.map((r) => realpathSync(r)),
    },
    // openAt gives every child context its own openParent
    openParent: (p) => openAt(p, ctx),
  };
  return openAt(path, ctx);
}
