/**
 * What every disk-image format returns: a BlockDevice plus a description of
 * itself and of its chain (snapshot parents / backing files), for `inspect`.
 */
import type { BlockDevice } from '../blockdevice.js';

export interface ChainLink {
  /** Absolute path of the file that holds this link's descriptor/header. */
  path: string;
  /** 'raw', 'vmdk', 'qcow2' … */
  format: string;
  /** Format-specific kind, e.g. VMDK createType 'monolithicSparse', qcow2 'v3'. */
  subformat?: string;
  /** Every file this link reads (descriptor plus extents). */
  files: string[];
  /** Free-form facts worth printing (CID, parentCID, cluster size, compression …). */
  facts?: Record<string, string | number | boolean>;
}

export interface DiskImage extends BlockDevice {
  readonly format: string;
  readonly subformat?: string;
  /** Child first: chain[0] is the file that was opened, the last one is the base. */
  readonly chain: ChainLink[];
}

export interface OpenOptions {
  /** Deepest snapshot/backing chain we follow before calling it a loop. */
  maxChainDepth?: number;
  /**
   * The format of the image at the top, when the VM's configuration says it
   * ('vmdk', 'qcow2', 'raw'). It is then not guessed from content: a raw disk
   * whose guest wrote a qcow2 or VMDK header at sector 0 stays raw (the
   * lesson of CVE-2008-2004).
   */
  format?: string;
  /**
   * Folders that parents (snapshot parents, backing files) must lie in, after
   * symlinks are resolved — e.g. the datastores. A parent named outside them
   * is a ChainError, so an image cannot make us read the controller's own
   * files. Unset: any parent is followed (the CLI on a single image).
   */
  parentRoots?: string[];
}

export interface ResolvedOpenOptions {
  maxChainDepth: number;
  format: string | undefined;
  parentRoots: string[] | undefined;
}

export const DEFAULT_MAX_CHAIN_DEPTH = 256;

/**
 * A disk-image format: `probe` looks at the first bytes of a file (content,
 * never the file name), `open` returns the device.
 *
 * `openParent` opens another image (a backing file / snapshot parent) through
 * the same detection, with the chain depth and the set of visited paths
 * carried along so that loops are found.
 */
export interface DiskFormat {
  readonly name: string;
  probe(head: Uint8Array, path: string): boolean;
  open(path: string, ctx: OpenContext): DiskImage;
}

export interface OpenContext {
  depth: number;
  /** Real paths already open in this chain, child first. */
  visited: string[];
  options: ResolvedOpenOptions;
  /**
   * Opens a parent image by path: through content detection, or as `format`
   * when the child names the parent's format and that format must not be
   * guessed (a raw backing file).
   */
  openParent(path: string, childPath: string, format?: string): DiskImage;
}
