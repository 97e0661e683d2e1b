/**
 * The FileSystem plugin contract (DESIGN.md). One folder per filesystem under
 * parsers/fs/, registered in parsers/fs/index.ts.
 *
 * A filesystem is opened on a BlockDevice (a volume) and:
 * - `walk()` yields every live entry once per path (a hard link with two
 *   paths yields two entries with the same `id`);
 * - `lookup(path)` / `list(dir)` browse without a full walk;
 * - `runs(entry)` maps file offsets to volume offsets (holes have
 *   volumeOffset null);
 * - `read(entry, offset, length)` returns content: decompressed, holes and
 *   bytes past the initialized size as zeros.
 * Damage that is local (one bad inode, one bad MFT record) is recorded in
 * `problems` and the walk goes on; damage that makes the whole filesystem
 * unreadable throws a typed error from `open`.
 */
import type { BlockDevice, ByteRange } from '../blockdevice.js';
import type { SerializedError } from '../errors.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket' | 'other';

export interface NamedStream {
  /** Stream name ('' is never used here: the main stream is the entry itself). */
  name: string;
  size: number;
}

export interface Xattr {
  name: string;
  value: Uint8Array;
}

export interface FsEntry {
  /** Stable id inside this filesystem: ext inode number, NTFS MFT record number (as a decimal string). */
  id: string;
  /** Absolute path inside the volume, '/'-separated, starting with '/'. Names are as the guest wrote them. */
  path: string;
  name: string;
  type: EntryType;
  /** Size of the main stream in bytes. */
  size: number;
  /** Permission bits (mode & 0o7777); for NTFS a synthesized value. */
  mode: number;
  uid: number;
  gid: number;
  /** Times in nanoseconds since the Unix epoch. */
  mtimeNs: bigint;
  atimeNs: bigint;
  ctimeNs: bigint;
  birthtimeNs?: bigint;
  /** Number of names (hard links) the object has. */
  nlink: number;
  /** Symlink / junction target. */
  linkTarget?: string;
  /** Device number for char/block devices. */
  rdev?: number;
  /** Named data streams (NTFS alternate data streams). */
  streams?: NamedStream[];
  xattrs?: Xattr[];
  /** NTFS/FAT DOS attribute bits. */
  attributes?: number;
  /** Flags worth recording: 'compressed', 'encrypted', 'sparse', 'hardlink', 'inline', 'reparse' … */
  flags?: string[];
  /** NTFS owner SID (S-1-5-…). */
  ownerSid?: string;
  /** NTFS reparse tag. */
  reparseTag?: number;
  /** DOS 8.3 alias (NTFS). */
  shortName?: string;
}

export interface DataRun {
  fileOffset: number;
  /** Offset inside the volume, or null for a hole (reads as zeros). */
  volumeOffset: number | null;
  length: number;
  /** Unwritten (ext4 uninit extent) — reads as zeros though space is allocated. */
  unwritten?: boolean;
}

export interface FsInfo {
  type: string;
  label: string;
  uuid: string;
  blockSize: number;
  totalBytes: number;
  usedBytes: number;
  /** false when the filesystem needs recovery (journal not replayed, dirty flag). */
  clean: boolean;
  features: string[];
  /** Anything else worth printing. */
  facts?: Record<string, string | number | boolean>;
}

/** Local damage found while walking; the walk goes on. */
export interface FsProblem {
  error: SerializedError;
  /** Path of the affected entry, when known. */
  path?: string;
}

export interface FileSystem {
  readonly type: string;
  info(): FsInfo;
  walk(): Iterable<FsEntry>;
  lookup(path: string): FsEntry | undefined;
  list(dirPath: string): FsEntry[];
  runs(entry: FsEntry, stream?: string): DataRun[];
  read(entry: FsEntry, offset: number, length: number, stream?: string): Buffer;
  /** Damage recorded so far. */
  readonly problems: FsProblem[];
  /**
   * The byte ranges the filesystem's own allocation bitmap marks in use
   * (volume coordinates, sorted, merged, inside [0, info().totalBytes)),
   * produced piece by piece so a 2 TiB volume never sits in memory. What it
   * does not yield is free space. A filesystem without it: nothing is known
   * to be free.
   */
  allocated?(): Iterable<ByteRange>;
  close(): void;
}

export interface FileSystemDriver {
  readonly type: string;
  /** Cheap check of the first bytes (superblock/boot sector) of a volume. */
  probe(dev: BlockDevice): boolean;
  open(dev: BlockDevice): FileSystem;
}
