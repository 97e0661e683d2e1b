/**
 * Opens any disk image by its content (magic numbers and descriptor text,
 * never the file extension) and follows its chain of parents.
 *
 * To add a format: write parsers/disk/<format>/…, export a DiskFormat, and
 * add it to FORMATS below (raw stays last: it accepts anything).
 */
import { realpathSync } from 'node:fs';
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

function openAt(path: string, ctx: OpenContext): DiskImage {
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
  const fmt = detectFormat(real);
  const child: OpenContext = {
    ...ctx,
    visited: [...ctx.visited, real],
    openParent: (p) => openAt(p, { ...child, depth: ctx.depth + 1 }),
  };
  return fmt.open(real, child);
}

/** Opens the image at `path` (and its parents) as one virtual block device. */
export function openDisk(path: string, options: OpenOptions = {}): DiskImage {
  const ctx: OpenContext = {
    depth: 0,
    visited: [],
    options: { maxChainDepth: options.maxChainDepth ?? DEFAULT_MAX_CHAIN_DEPTH },
    // openAt gives every child context its own openParent
    openParent: (p) => openAt(p, ctx),
  };
  return openAt(path, ctx);
}
