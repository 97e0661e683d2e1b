/**
 * The ext2/ext3/ext4 FileSystem (parsers/fs/types.ts) on a volume.
 *
 * Opening reads the superblock and every group descriptor. Inodes are read
 * through a small cache of large inode-table chunks. walk() follows the tree
 * through directories only, gathering names in batches, and reads the
 * inodes of each batch sorted by inode number, i.e. the inode tables in disk
 * order in big sequential reads instead of one read per inode (see walk()).
 * Per-walk state: the visited directories (cycle detection), their paths,
 * the stack of directories still to list and one batch of names.
 *
 * Memory stays bounded whatever the inode count: the inode cache holds
 * INODE_CACHE_CHUNKS chunks, one directory's names at a time are held in
 * typed arrays (dir.ts DirList), and `problems` keeps at most MAX_PROBLEMS.
 *
 * The journal is never replayed: a filesystem that needs recovery is opened
 * as it is on disk and reported as not clean by info().
 * Names are decoded as described in names.ts; inline files and directories
 * in inline.ts; checksum mismatches and local damage go to `problems`.
 * `read()` returns at most size - offset bytes (nothing past the end of the
 * file); `runs()` of an inline file or a fast symlink is empty, their bytes
 * live inside the inode.
 */
import type { BlockDevice, ByteRange } from '../../blockdevice.js';
import { type Errors, errorsFor, isVdbakError, type VdbakError } from '../../errors.js';
import type { DataRun, FileSystem, FsEntry, FsInfo, FsProblem, Xattr } from '../types.js';
import { extAllocated } from './bitmap.js';
import { blockMapRuns } from './blockmap.js';
import { DirList, FT_DIR, NameSet, parseDirBlock } from './dir.js';
import { extentRuns } from './extents.js';
import { BG_INODE_UNINIT, type GroupTable, readGroups } from './groups.js';
import { inlineContent, inlineDirAreas } from './inline.js';
import {
  deviceNumber,
  I_BLOCK_SIZE,
  INODE_FLAGS,
  type Inode,
  inodeSeed,
  isUnusedInode,
  parseInode,
  ROOT_INO,
} from './inode.js';
import { decodeName, encodeName } from './names.js';
import type { BlockRun, MapContext } from './runs.js';
import {
  COMPAT,
  featureNames,
  INCOMPAT,
  isClean,
  parseSuperblock,
  RO_COMPAT,
  readSuperblock,
  type Superblock,
} from './superblock.js';
import { hasInodeXattrs, INLINE_DATA_XATTR, parseInodeXattrs, parseXattrBlock, type XattrWhere } from './xattr.js';

/** Inode-table bytes fetched per read. */
const INODE_CHUNK = 256 * 1024;
/** Inode-table chunks kept (INODE_CHUNK each). */
const INODE_CACHE_CHUNKS = 64;
/** Directory blocks fetched per read. */
const DIR_READ_BYTES = 1024 * 1024;
/** Largest directory: i_size is 32-bit without large_dir, 2^32 blocks with it. */
const MAX_DIR_BYTES = 2 ** 31;
const MAX_LARGE_DIR_BYTES = 2 ** 42;
/** Names one directory may hold before we refuse it (large_dir allows ~2^32 blocks of records). */
const MAX_DIR_ENTRIES = 1 << 24;
/** Names walk() gathers before it reads their inodes (about 20 MiB of typed arrays and name bytes). */
const WALK_BATCH = 1 << 19;
/** Longest symlink target we decode (PATH_MAX). */
const MAX_SYMLINK = 4096;
/** Problems kept in `problems`; later ones are only counted. */
const MAX_PROBLEMS = 10_000;
const XATTR_CACHE_BLOCKS = 256;
const NO_XATTRS: Xattr[] = [];
/** Inode flags that show up in FsEntry.flags. */
const FLAGGED = INODE_FLAGS.inlineData | INODE_FLAGS.encrypt | INODE_FLAGS.immutable | INODE_FLAGS.append;

export class ExtFileSystem implements FileSystem {
  readonly type = 'ext';
  readonly problems: FsProblem[] = [];
  /** Problems found, including those past MAX_PROBLEMS that were not kept. */
  problemCount = 0;
  readonly sb: Superblock;
  private readonly err: Errors;
  private readonly groups: GroupTable;
  private readonly inodeCache = new Map<number, Buffer>();
  private readonly xattrCache = new Map<number, Xattr[]>();
  private readonly reportedInodes = new Set<number>();
  private runCache: { id: string; runs: DataRun[] } | undefined;
  private lastChunk = -1;
  /** The last inode decoded: a walk decodes an entry's inode, then runs() and read() ask for it again at once. */
  private lastInode: Inode | undefined;

  /** Names walk() gathers before it reads their inodes (see WALK_BATCH). */
  private readonly walkBatch: number;

  constructor(
    private readonly dev: BlockDevice,
    opts: { walkBatch?: number } = {},
  ) {
    this.walkBatch = Math.max(1, Math.min(opts.walkBatch ?? WALK_BATCH, WALK_BATCH));
    this.err = errorsFor({ image: dev.name, layer: 'ext' });
    this.sb = parseSuperblock(readSuperblock(dev, this.err), dev.size, this.err);
    if (!this.sb.checksumOk) {
      this.problem(this.err.corrupt('EXT_SB_CSUM', 'superblock checksum mismatch', { offset: 1024 }));
    }
    const end = this.sb.blocksCount * this.sb.blockSize;
    if (end > dev.size) {
      this.problem(
        this.err.truncated('EXT_VOLUME_SHORT', `filesystem of ${end} bytes on a volume of ${dev.size}`, {
          offset: dev.size,
        }),
      );
    }
    this.groups = readGroups(dev, this.sb, this.err);
    for (const g of this.groups.badChecksum) {
      this.problem(this.err.corrupt('EXT_GD_CSUM', `group descriptor ${g} checksum mismatch`, { group: g }));
    }
    for (const e of this.groups.damaged) this.problem(e);
  }

  info(): FsInfo {
    const sb = this.sb;
    const uuid = Buffer.from(sb.uuid).toString('hex');
    return {
      type: extVersion(sb),
      label: sb.label,
      uuid: `${uuid.slice(0, 8)}-${uuid.slice(8, 12)}-${uuid.slice(12, 16)}-${uuid.slice(16, 20)}-${uuid.slice(20)}`,
      blockSize: sb.blockSize,
      totalBytes: sb.blocksCount * sb.blockSize,
      usedBytes: Math.max(0, sb.blocksCount - sb.freeBlocksCount) * sb.blockSize,
      clean: isClean(sb),
      features: featureNames(sb.compat, sb.incompat, sb.roCompat),
      facts: {
        inodeCount: sb.inodesCount,
        freeInodes: sb.freeInodesCount,
        inodeSize: sb.inodeSize,
        groups: sb.groupCount,
        clusterSize: sb.clusterSize,
        lastMountedOn: sb.lastMounted,
        createdBy: sb.creatorOs,
        revision: sb.revLevel,
        state: sb.state,
        needsRecovery: (sb.incompat & INCOMPAT.needs_recovery) !== 0,
        mkfsTime: sb.mkfsTime,
        lastWriteTime: sb.wtime,
        lastMountTime: sb.mtime,
        problems: this.problemCount,
      },
    };
  }

  // ---- entries -------------------------------------------------------------

  /**
   * Every live entry, the root first. Two alternating passes keep the reads
   * in disk order: the directory pass follows the tree through directories
   * only (their type comes from the dirent file_type, so files' inodes are
   * not touched) and gathers names into a compact batch; the emit pass sorts
   * the batch by inode number and reads those inodes in inode-table order.
   * A batch holds at most WALK_BATCH names, so memory stays bounded.
   */
  *walk(): Generator<FsEntry> {
    const root = this.inode(ROOT_INO);
    if (root.type !== 'dir') {
      throw this.err.corrupt('EXT_ROOT_NOT_DIR', 'the root inode is not a directory', { inode: ROOT_INO });
    }
    yield this.entry(root, '/', '');
    const hasFileType = (this.sb.incompat & INCOMPAT.filetype) !== 0;
    const dirInos: number[] = [ROOT_INO];
    const dirPaths: string[] = [''];
    const visited = new Set<number>([ROOT_INO]);
    const stack: number[] = [0];
    const batch = new DirList(this.walkBatch);
    while (stack.length > 0) {
      const d = stack.pop() as number;
      const dirIno = dirInos[d] as number;
      const dirPath = dirPaths[d] as string;
      let list: DirList;
      try {
        const dir = this.inode(dirIno);
        if (dir.type !== 'dir') {
          throw this.err.corrupt('EXT_DIRENT_TYPE', `a directory entry names inode ${dirIno}, which is no directory`, {
            inode: dirIno,
          });
        }
        list = this.dirRecords(dir);
      } catch (e) {
        this.local(e, dirPath || '/');
        continue;
      }
      const subdirs: number[] = [];
      const seen = new NameSet();
      for (let i = 0; i < list.count; i++) {
        const raw = list.name(i);
        const childIno = list.inos[i] as number;
        if (isDotName(raw)) continue;
        if (!this.acceptName(raw, childIno, dirIno, dirPath, seen)) continue;
        const type = list.types[i] as number;
        const isDir = hasFileType && type !== 0 ? type === FT_DIR : this.isDirInode(childIno);
        if (isDir) {
          const path = `${dirPath}/${decodeName(raw)}`;
          if (visited.has(childIno)) {
            this.problem(
              this.err.corrupt('EXT_DIR_CYCLE', `directory inode ${childIno} is reached twice (a cycle)`, {
                inode: childIno,
              }),
              path,
            );
          } else {
            visited.add(childIno);
            subdirs.push(dirInos.length);
            dirInos.push(childIno);
            dirPaths.push(path);
          }
        }
        batch.push(childIno, isDir ? FT_DIR : 0, d, raw, 0, raw.length, this.err, dirIno);
        if (batch.count >= this.walkBatch) yield* this.emit(batch, dirPaths);
      }
      // Reversed so that the pop order follows the directory's own order.
      for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i] as number);
    }
    yield* this.emit(batch, dirPaths);
  }

  /** Yields the batch's names in inode order (reading the inode tables in disk order), then empties it. */
  private *emit(batch: DirList, dirPaths: string[]): Generator<FsEntry> {
    for (const i of batch.byInode()) {
      const name = decodeName(batch.name(i));
      const path = `${dirPaths[batch.tags[i] as number]}/${name}`;
      const inode = this.liveInode(batch.inos[i] as number, path);
      if (!inode) continue;
      if (inode.type === 'dir' && batch.types[i] !== FT_DIR) {
        this.problem(
          this.err.corrupt('EXT_DIRENT_TYPE', `directory inode ${inode.ino} is named as a non-directory`, {
            inode: inode.ino,
          }),
          path,
        );
      }
      yield this.entry(inode, path, name);
    }
    batch.clear();
  }

  lookup(path: string): FsEntry | undefined {
    const found = this.resolve(path);
    return found && this.entry(found.inode, found.path, found.name);
  }

  list(dirPath: string): FsEntry[] {
    const found = this.resolve(dirPath);
    if (!found) throw this.err.notFound('EXT_NOT_FOUND', `no such directory ${dirPath}`);
    if (found.inode.type !== 'dir') throw this.err.notFound('EXT_NOT_A_DIR', `${dirPath} is not a directory`);
    return [...this.children(found.inode.ino, found.path === '/' ? '' : found.path)].map((c) =>
      this.entry(c.inode, c.path, c.name),
    );
  }

  /** The live children of directory `ino` whose path is `dirPath` ('' for the root), in inode order. */
  private *children(ino: number, dirPath: string): Generator<{ inode: Inode; path: string; name: string }> {
    let records: DirList;
    try {
      records = this.dirRecords(this.inode(ino));
    } catch (e) {
      this.local(e, dirPath || '/');
      return;
    }
    const seen = new NameSet();
    for (let i = 0; i < records.count; i++) {
      const raw = records.name(i);
      if (isDotName(raw) || !this.acceptName(raw, records.inos[i] as number, ino, dirPath, seen)) records.inos[i] = 0;
    }
    for (const i of records.byInode()) {
      const raw = records.name(i);
      const childIno = records.inos[i] as number;
      if (childIno === 0) continue;
      const name = decodeName(raw);
      const path = `${dirPath}/${name}`;
      const inode = this.liveInode(childIno, path);
      if (inode) yield { inode, path, name };
    }
  }

  /**
   * False (and a recorded problem) for a name in directory `dirPath` that no
   * live entry may have: '/' or NUL in it, a reserved inode, a name already
   * in `seen` (the names of this directory so far; the first one wins).
   */
  private acceptName(raw: Uint8Array, childIno: number, dirIno: number, dirPath: string, seen: NameSet): boolean {
    const path = () => `${dirPath}/${decodeName(raw)}`;
    if (!seen.add(raw)) {
      this.problem(
        this.err.corrupt('EXT_DUPLICATE_NAME', 'a name appears twice in one directory', { inode: dirIno }),
        path(),
      );
      return false;
    }
    if (raw.includes(0x2f) || raw.includes(0)) {
      this.problem(this.err.corrupt('EXT_BAD_NAME', 'directory entry name holds / or NUL', { inode: dirIno }), path());
      return false;
    }
    if (childIno < this.sb.firstIno && childIno !== ROOT_INO) {
      this.problem(
        this.err.corrupt('EXT_RESERVED_INODE', `entry points to reserved inode ${childIno}`, { inode: childIno }),
        path(),
      );
      return false;
    }
    return true;
  }

  /** The inode a name points to, or undefined (and a recorded problem) when it is unreadable or unused. */
  private liveInode(ino: number, path: string): Inode | undefined {
    let inode: Inode;
    try {
      inode = this.inode(ino);
    } catch (e) {
      this.local(e, path);
      return undefined;
    }
    if (isUnusedInode(inode.raw)) {
      this.problem(this.err.corrupt('EXT_DANGLING_ENTRY', `entry points to unused inode ${ino}`, { inode: ino }), path);
      return undefined;
    }
    return inode;
  }

  /** Whether inode `ino` is a directory (for filesystems without dirent file types); unreadable means no. */
  private isDirInode(ino: number): boolean {
    try {
      return this.inode(ino).type === 'dir';
    } catch {
      return false; // the emit pass reads it again and records the damage
    }
  }

  private resolve(path: string): { inode: Inode; path: string; name: string } | undefined {
    const parts = path.split('/').filter((p) => p !== '' && p !== '.');
    let inode = this.inode(ROOT_INO);
    let cur = '';
    let name = '';
    for (const part of parts) {
      if (inode.type !== 'dir') return undefined;
      const want = encodeName(part);
      const list = this.dirRecords(inode);
      let at = -1;
      for (let i = 0; i < list.count && at < 0; i++) if (Buffer.from(list.name(i)).equals(want)) at = i;
      if (at < 0) return undefined;
      inode = this.inode(list.inos[at] as number);
      if (isUnusedInode(inode.raw)) return undefined;
      cur = `${cur}/${part}`;
      name = part;
    }
    return { inode, path: cur || '/', name };
  }

  private entry(inode: Inode, path: string, name: string): FsEntry {
    const e: FsEntry = {
      id: String(inode.ino),
      path,
      name,
      type: inode.type,
      size: inode.type === 'file' || inode.type === 'dir' || inode.type === 'symlink' ? inode.size : 0,
      mode: inode.mode & 0o7777,
      uid: inode.uid,
      gid: inode.gid,
      mtimeNs: inode.mtimeNs,
      atimeNs: inode.atimeNs,
      ctimeNs: inode.ctimeNs,
      nlink: inode.links,
    };
    if (inode.crtimeNs !== undefined) e.birthtimeNs = inode.crtimeNs;
    if (inode.flags & FLAGGED || inode.links > 1 || inode.allocatedBytes < inode.size) {
      const flags: string[] = [];
      if (inode.type !== 'dir' && inode.links > 1) flags.push('hardlink');
      if (inode.flags & INODE_FLAGS.inlineData) flags.push('inline');
      if (inode.flags & INODE_FLAGS.encrypt) flags.push('encrypted');
      if (inode.flags & INODE_FLAGS.immutable) flags.push('immutable');
      if (inode.flags & INODE_FLAGS.append) flags.push('append');
      if (inode.type === 'file' && !(inode.flags & INODE_FLAGS.inlineData) && inode.allocatedBytes < inode.size) {
        flags.push('sparse');
      }
      if (flags.length > 0) e.flags = flags;
    }
    if (inode.type === 'chardev' || inode.type === 'blockdev') e.rdev = deviceNumber(inode.block);
    const xattrs = this.xattrsOf(inode, path);
    if (xattrs.length > 0) {
      const visible = xattrs.filter((x) => x.name !== INLINE_DATA_XATTR);
      if (visible.length > 0) e.xattrs = visible;
    }
    if (inode.type === 'symlink') {
      try {
        const target = this.symlinkTarget(inode, xattrs);
        if (target !== undefined) e.linkTarget = target;
      } catch (err) {
        this.local(err, path);
      }
    }
    return e;
  }

  private symlinkTarget(inode: Inode, xattrs: Xattr[]): string | undefined {
    if (inode.size > MAX_SYMLINK) {
      throw this.err.limit('EXT_SYMLINK_SIZE', `symlink of ${inode.size} bytes`, { inode: inode.ino });
    }
    let bytes: Uint8Array;
    if (inode.flags & INODE_FLAGS.inlineData) bytes = inlineContent(inode, xattrs, this.err);
    else if (isFastSymlink(inode, this.sb)) bytes = inode.block.subarray(0, inode.size);
    else bytes = this.readData(this.inodeRuns(inode), 0, inode.size);
    return decodeName(bytes);
  }

  // ---- content -------------------------------------------------------------

  runs(entry: FsEntry, stream?: string): DataRun[] {
    this.noStreams(stream, entry);
    if (this.runCache?.id === entry.id) return this.runCache.runs;
    const inode = this.inode(this.entryIno(entry));
    const runs = this.inodeRuns(inode);
    this.runCache = { id: entry.id, runs };
    return runs;
  }

  read(entry: FsEntry, offset: number, length: number, stream?: string): Buffer {
    this.noStreams(stream, entry);
    const inode = this.inode(this.entryIno(entry));
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw this.err.corrupt('EXT_BAD_READ', `read [${offset}, +${length})`, { inode: inode.ino });
    }
    if (inode.type !== 'file' && inode.type !== 'dir' && inode.type !== 'symlink') return Buffer.alloc(0);
    const n = Math.max(0, Math.min(length, inode.size - offset));
    if (inode.flags & INODE_FLAGS.inlineData) {
      return inlineContent(inode, this.xattrsOf(inode), this.err).subarray(offset, offset + n);
    }
    if (inode.type === 'symlink' && isFastSymlink(inode, this.sb)) {
      return Buffer.from(inode.block.subarray(offset, offset + n));
    }
    return this.readData(this.runs(entry), offset, n);
  }

  /** Used blocks from the block bitmaps (bitmap.ts). */
  allocated(): Iterable<ByteRange> {
    return extAllocated(this.dev, this.sb, this.groups, this.err);
  }

  close(): void {
    this.inodeCache.clear();
    this.xattrCache.clear();
    this.runCache = undefined;
    this.lastInode = undefined;
  }

  /** File offsets to volume offsets: holes (and space past the last block) as null runs. */
  private inodeRuns(inode: Inode): DataRun[] {
    if (inode.flags & INODE_FLAGS.inlineData || inode.size === 0) return [];
    if (inode.type === 'symlink' && isFastSymlink(inode, this.sb)) return [];
    const bs = this.sb.blockSize;
    const out: DataRun[] = [];
    let pos = 0;
    for (const r of this.blockRuns(inode)) {
      const start = r.lblk * bs;
      if (start >= inode.size) break;
      if (start > pos) out.push({ fileOffset: pos, volumeOffset: null, length: start - pos });
      const length = Math.min(r.len * bs, inode.size - start);
      const run: DataRun = { fileOffset: start, volumeOffset: r.pblk * bs, length };
      if (r.unwritten) run.unwritten = true;
      out.push(run);
      pos = start + length;
    }
    if (pos < inode.size) out.push({ fileOffset: pos, volumeOffset: null, length: inode.size - pos });
    return out;
  }

  private readData(runs: DataRun[], offset: number, length: number): Buffer {
    if (length === 0) return Buffer.alloc(0);
    // Binary search for the run holding `offset`.
    let lo = 0;
    let hi = runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((runs[mid] as DataRun).fileOffset <= offset) lo = mid;
      else hi = mid - 1;
    }
    const first = runs[lo];
    if (
      first &&
      first.volumeOffset !== null &&
      !first.unwritten &&
      first.fileOffset + first.length >= offset + length
    ) {
      return this.dev.read(first.volumeOffset + offset - first.fileOffset, length);
    }
    const out = Buffer.alloc(length);
    for (let i = lo; i < runs.length; i++) {
      const r = runs[i] as DataRun;
      const s = Math.max(offset, r.fileOffset);
      const e = Math.min(offset + length, r.fileOffset + r.length);
      if (s >= offset + length) break;
      if (e <= s || r.volumeOffset === null || r.unwritten) continue;
      this.dev.read(r.volumeOffset + s - r.fileOffset, e - s).copy(out, s - offset);
    }
    return out;
  }

  private blockRuns(inode: Inode): BlockRun[] {
    const nBlocks = Math.ceil(inode.size / this.sb.blockSize);
    if (nBlocks === 0) return [];
    const ctx = this.mapContext(inode);
    return inode.flags & INODE_FLAGS.extents
      ? extentRuns(ctx, inode.block, nBlocks)
      : blockMapRuns(ctx, inode.block, nBlocks);
  }

  private mapContext(inode: Inode): MapContext {
    const sb = this.sb;
    return {
      sb,
      err: this.err,
      ino: inode.ino,
      seed: sb.hasMetadataCsum ? inodeSeed(sb, inode.ino, inode.generation) : 0,
      readBlocks: (pblk, count) => plain(this.dev.read(pblk * sb.blockSize, count * sb.blockSize)),
      problem: (e) => this.problem(e),
    };
  }

  // ---- directories ---------------------------------------------------------

  private dirRecords(inode: Inode): DirList {
    const sb = this.sb;
    const out = new DirList(MAX_DIR_ENTRIES);
    const ctx = {
      err: this.err,
      ino: inode.ino,
      hasFileType: (sb.incompat & INCOMPAT.filetype) !== 0,
      seed: sb.hasMetadataCsum ? inodeSeed(sb, inode.ino, inode.generation) : undefined,
      indexed: (sb.compat & COMPAT.dir_index) !== 0 && (inode.flags & INODE_FLAGS.index) !== 0,
      problem: (e: VdbakError) => this.problem(e),
    };
    if (inode.flags & INODE_FLAGS.inlineData) {
      for (const area of inlineDirAreas(inode, this.xattrsOf(inode))) {
        parseDirBlock(area, 0, ctx, out, { inline: true });
      }
      return out;
    }
    const bs = sb.blockSize;
    const perRead = Math.max(1, Math.floor(DIR_READ_BYTES / bs));
    const runs = this.blockRuns(inode);
    // A directory is at most 2 GiB (4 TiB with large_dir) and never larger than the volume.
    const cap = Math.min(this.dev.size, sb.incompat & INCOMPAT.large_dir ? MAX_LARGE_DIR_BYTES : MAX_DIR_BYTES);
    const mapped = runs.reduce((n, r) => n + r.len * bs, 0);
    if (mapped > cap) {
      throw this.err.limit('EXT_DIR_TOO_LARGE', `directory maps ${mapped} bytes (at most ${cap})`, {
        inode: inode.ino,
      });
    }
    for (const r of runs) {
      if (r.unwritten) continue;
      for (let done = 0; done < r.len; done += perRead) {
        const n = Math.min(perRead, r.len - done);
        const bytes = plain(this.dev.read((r.pblk + done) * bs, n * bs));
        for (let i = 0; i < n; i++) {
          const lblk = r.lblk + done + i;
          parseDirBlock(bytes.subarray(i * bs, (i + 1) * bs), (r.pblk + done + i) * bs, ctx, out, {
            first: lblk === 0,
          });
        }
      }
    }
    return out;
  }

  // ---- inodes and xattrs ---------------------------------------------------

  /** Reads and decodes inode `ino` (checksum mismatches are recorded once per inode). */
  inode(ino: number): Inode {
    const sb = this.sb;
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > sb.inodesCount) {
      throw this.err.corrupt('EXT_BAD_INODE_NUMBER', `inode number ${ino} is out of range`, { inode: ino });
    }
    if (this.lastInode?.ino === ino) return this.lastInode;
    const group = Math.floor((ino - 1) / sb.inodesPerGroup);
    const index = (ino - 1) % sb.inodesPerGroup;
    const table = this.groups.inodeTable[group] as number;
    if (table < 0) {
      throw this.err.corrupt('EXT_GROUP_DAMAGED', `inode ${ino} lies in group ${group} whose table is damaged`, {
        inode: ino,
      });
    }
    const offset = table * sb.blockSize + index * sb.inodeSize;
    if ((this.groups.flags[group] as number) & BG_INODE_UNINIT) {
      throw this.err.corrupt('EXT_INODE_UNINIT', `inode ${ino} lies in an uninitialised inode table`, {
        offset,
        inode: ino,
      });
    }
    const tableBytes = sb.inodesPerGroup * sb.inodeSize;
    const chunkIndex = Math.floor((index * sb.inodeSize) / INODE_CHUNK);
    const key = group * Math.ceil(tableBytes / INODE_CHUNK) + chunkIndex;
    let chunk = this.inodeCache.get(key);
    if (chunk) {
      // Least recently used order: move the chunk to the end unless it is already there.
      if (key !== this.lastChunk) {
        this.inodeCache.delete(key);
        this.inodeCache.set(key, chunk);
      }
    } else {
      const start = chunkIndex * INODE_CHUNK;
      chunk = this.dev.read(table * sb.blockSize + start, Math.min(INODE_CHUNK, tableBytes - start));
      if (this.inodeCache.size >= INODE_CACHE_CHUNKS) {
        this.inodeCache.delete(this.inodeCache.keys().next().value as number);
      }
      this.inodeCache.set(key, chunk);
    }
    this.lastChunk = key;
    const at = (index * sb.inodeSize) % INODE_CHUNK;
    const raw = new Uint8Array(chunk.buffer, chunk.byteOffset + at, sb.inodeSize);
    const inode = parseInode(raw, ino, sb, offset, this.err);
    if (!inode.checksumOk && !isUnusedInode(raw) && !this.reportedInodes.has(ino)) {
      this.reportedInodes.add(ino);
      this.problem(this.err.corrupt('EXT_INODE_CSUM', `inode ${ino} checksum mismatch`, { offset, inode: ino }));
    }
    this.lastInode = inode;
    return inode;
  }

  private xattrsOf(inode: Inode, path?: string): Xattr[] {
    let out: Xattr[] = NO_XATTRS;
    if (inode.xattrStart > 0 && hasInodeXattrs(inode.raw, inode.xattrStart)) {
      try {
        out = parseInodeXattrs(inode.raw.subarray(inode.xattrStart), this.xattrWhere(inode, 0));
      } catch (e) {
        this.local(e, path);
      }
    }
    if (inode.fileAcl !== 0) {
      try {
        out = out.concat(this.xattrBlock(inode));
      } catch (e) {
        this.local(e, path);
      }
    }
    return out;
  }

  private xattrBlock(inode: Inode): Xattr[] {
    const sb = this.sb;
    const nr = inode.fileAcl;
    const cached = this.xattrCache.get(nr);
    if (cached) return cached;
    if (nr >= sb.blocksCount) {
      throw this.err.corrupt('EXT_XATTR_BLOCK_RANGE', `xattr block ${nr} lies outside the filesystem`, {
        inode: inode.ino,
      });
    }
    const block = this.dev.read(nr * sb.blockSize, sb.blockSize);
    const { xattrs, checksumOk } = parseXattrBlock(
      block,
      nr,
      sb.hasMetadataCsum ? sb.csumSeed : undefined,
      this.xattrWhere(inode, nr * sb.blockSize),
    );
    if (!checksumOk) {
      this.problem(
        this.err.corrupt('EXT_XATTR_CSUM', `xattr block ${nr} checksum mismatch`, {
          offset: nr * sb.blockSize,
          inode: inode.ino,
        }),
      );
    }
    if (this.xattrCache.size >= XATTR_CACHE_BLOCKS)
      this.xattrCache.delete(this.xattrCache.keys().next().value as number);
    this.xattrCache.set(nr, xattrs);
    return xattrs;
  }

  private xattrWhere(inode: Inode, offset: number): XattrWhere {
    return { err: this.err, ino: inode.ino, offset, readEaInode: (inum, size) => this.eaInodeValue(inode, inum, size) };
  }

  /** An xattr value kept in its own inode (ea_inode): that inode's data, exactly `size` bytes. */
  private eaInodeValue(owner: Inode, inum: number, size: number): Uint8Array {
    if (inum === owner.ino) {
      throw this.err.corrupt('EXT_XATTR_EA_INODE', 'xattr value inode is its own owner', { inode: owner.ino });
    }
    const ea = this.inode(inum);
    if (!(ea.flags & INODE_FLAGS.eaInode) || ea.size !== size || ea.flags & INODE_FLAGS.inlineData) {
      throw this.err.corrupt('EXT_XATTR_EA_INODE', `inode ${inum} does not hold a ${size}-byte xattr value`, {
        inode: owner.ino,
      });
    }
    return this.readData(this.inodeRuns(ea), 0, size);
  }

  // ---- helpers -------------------------------------------------------------

  private entryIno(entry: FsEntry): number {
    const ino = Number(entry.id);
    if (!/^[0-9]+$/.test(entry.id))
      throw this.err.notFound('EXT_BAD_ID', `entry id ${entry.id} is not an inode number`);
    return ino;
  }

  private noStreams(stream: string | undefined, entry: FsEntry): void {
    if (stream !== undefined && stream !== '') {
      throw this.err.notFound('EXT_NO_STREAM', `ext has no named streams (${entry.path}:${stream})`);
    }
  }

  /** Records damage local to one entry; anything that is not a typed error is a bug and goes up. */
  private local(e: unknown, path?: string): void {
    if (!isVdbakError(e)) throw e;
    this.problem(e, path);
  }

  private problem(e: VdbakError, path?: string): void {
    this.problemCount++;
    if (this.problems.length >= MAX_PROBLEMS) return;
    const p: FsProblem = { error: e.toJSON() };
    if (path !== undefined) p.path = path;
    this.problems.push(p);
  }
}

/** Fast symlinks keep their target in i_block (no data blocks besides an xattr block). */
function isFastSymlink(inode: Inode, sb: Superblock): boolean {
  if (inode.flags & INODE_FLAGS.inlineData) return false;
  const eaBytes = inode.fileAcl !== 0 ? sb.clusterSize : 0;
  return inode.allocatedBytes - eaBytes === 0 && inode.size < I_BLOCK_SIZE;
}

/**
 * A plain Uint8Array view of a Buffer: the hot decoders then only ever see
 * one array type, which keeps V8's inline caches monomorphic.
 */
function plain(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function isDotName(raw: Uint8Array): boolean {
  return raw[0] === 0x2e && (raw.length === 1 || (raw.length === 2 && raw[1] === 0x2e));
}

function extVersion(sb: Superblock): string {
  const ext4Incompat =
    INCOMPAT.extent | INCOMPAT['64bit'] | INCOMPAT.flex_bg | INCOMPAT.inline_data | INCOMPAT.meta_bg | INCOMPAT.mmp;
  const ext4Ro =
    RO_COMPAT.huge_file |
    RO_COMPAT.dir_nlink |
    RO_COMPAT.extra_isize |
    RO_COMPAT.metadata_csum |
    RO_COMPAT.bigalloc |
    RO_COMPAT.uninit_bg;
  if (sb.incompat & ext4Incompat || sb.roCompat & ext4Ro) return 'ext4';
  return sb.compat & COMPAT.has_journal ? 'ext3' : 'ext2';
}
