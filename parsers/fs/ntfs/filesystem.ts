/**
 * The NTFS FileSystem (parsers/fs/types.ts) on a volume.
 *
 * open: boot sector → $MFT (through its own runlist). walk() is one pass over
 * the MFT in record order that builds the tree (tree.ts) as it goes: the root
 * comes first, a record is yielded once its parents' paths are known, the few
 * whose parents come later are read again at the end, and the orphan folder
 * comes last. lookup() and list() browse one directory at a time through the
 * $I30 indexes (dirindex.ts) without reading the whole MFT; info() and the
 * orphan folder need the tree, built by a names-only pass when no walk did.
 * A record that fails its checks (fixups, attribute lengths, runlists …) is
 * recorded in `problems` and skipped; the walk goes on.
 *
 * Choices (DESIGN.md asks for what a storage administrator expects):
 * - metafiles ($MFT, $Bitmap, $LogFile, $Secure, $Extend/…) are not listed;
 *   the root is. info().facts.metafiles says so.
 * - orphans (live records whose parent is gone or reused) are listed under
 *   '/$OrphanFiles', a synthetic directory with id '$OrphanFiles'.
 * - Interix symlinks (ntfs-3g) and reparse symlinks/junctions are 'symlink'
 *   with linkTarget; other reparse tags are only in reparseTag.
 * - mode is synthesized: 0o755 for directories, 0o644 for files (0o444 /
 *   0o555 when read-only), 0o777 for links; uid and gid are 0.
 * - runs() of a compressed or resident stream is [] (no byte-for-byte
 *   mapping to the volume exists); read() decompresses.
 */
import type { BlockDevice, ByteRange } from '../../blockdevice.js';
import { assertLayout, checkCount, checkRange, isPowerOfTwo } from '../../bytes.js';
import { type Errors, errorsFor, isVdbakError } from '../../errors.js';
import type { DataRun, EntryType, FileSystem, FsEntry, FsInfo, FsProblem, NamedStream } from '../types.js';
import {
  ATTR_FLAG_COMPRESSION_MASK,
  ATTR_FLAG_ENCRYPTED,
  ATTR_FLAG_SPARSE,
  type Attribute,
  AttrType,
  parseAttributes,
} from './attribute.js';
import { parseAttributeList } from './attrlist.js';
import { ntfsAllocated } from './bitmap.js';
import { type BootSector, MAX_RECORD_SIZE, MIN_RECORD_SIZE, readBootSector } from './boot.js';
import { I30, type IndexEntry, type IndexNode, parseIndexRecord, parseIndexRoot } from './dirindex.js';
import { FILENAME, type FileName, Namespace, parseFileName } from './filename.js';
import { INTX_MAX_SIZE, parseIntxSymlink } from './intx.js';
import { type LoadedRecord, Mft, SCAN_BATCH } from './mft.js';
import { isEmptySlot, parseRecordHeader, type RecordHeader } from './record.js';
import { parseReparsePoint, REPARSE_TAG_MOUNT_POINT, REPARSE_TAG_SYMLINK, type ReparsePoint } from './reparse.js';
import { ownerOfDescriptor, SDS_BLOCK, scanSds } from './secure.js';
import { DosAttr, parseStandardInformation, type StandardInformation } from './stdinfo.js';
import { buildStream, StreamReader, streamRuns } from './stream.js';
import { ORPHAN_DIR, PENDING, ROOT_RECORD, Tree } from './tree.js';

const VOLUME_RECORD = 3;
const BITMAP_RECORD = 6;
const SECURE_RECORD = 9;
const SDS_NAME = '$SDS';
/** Caps on what one file may make us read or keep. */
export const MAX_ATTRLIST_SIZE = 16 * 1024 * 1024;
export const MAX_EXTENSION_RECORDS = 65536;
export const MAX_SDS_SIZE = 256 * 1024 * 1024;
const MAX_SMALL_ATTR = 64 * 1024;
const READER_CACHE = 4;
const DIR_CACHE = 8;
/** $VOLUME_INFORMATION (attribute 0x70 of $Volume): NTFS version and volume flags. */
const VOLUME_INFORMATION_SIZE = 12;
const VOLUME_INFORMATION = { major: [8, 1], minor: [9, 1], flags: [10, 2] } as const;
assertLayout('NtfsVolumeInformation', VOLUME_INFORMATION_SIZE, VOLUME_INFORMATION);
const VOLUME_FLAG_DIRTY = 0x0001;

const ONLY_NAMES = new Set<number>([AttrType.FileName, AttrType.AttributeList]);

type ScanItem = { n: number; rec: LoadedRecord } | { n: number; error: unknown };

/** What one record says, before a path is attached. */
interface Described {
  type: EntryType;
  size: number;
  si: StandardInformation | undefined;
  /** DOS 8.3 aliases (the other names are in the tree). */
  dosNames: FileName[];
  streams: NamedStream[];
  flags: string[];
  linkTarget?: string;
  reparseTag?: number;
  ownerSid?: string;
}

export class NtfsFileSystem implements FileSystem {
  readonly type = 'ntfs';
  readonly problems: FsProblem[] = [];
  readonly boot: BootSector;
  private readonly err: Errors;
  private readonly mft: Mft;
  private tree: Tree | undefined;
  private owners: Map<number, string> | undefined;
  private byParent: Map<string, Map<string, number>> | undefined;
  private readers: { key: string; reader: StreamReader }[] = [];
  private readonly problemKeys = new Set<string>();
  private dirCache: { dir: number; byName: Map<string, IndexEntry> }[] = [];

  constructor(private readonly dev: BlockDevice) {
    this.err = errorsFor({ image: dev.name, layer: 'ntfs' });
    this.boot = readBootSector(dev, this.err);
    this.mft = new Mft(dev, this.boot, this.err);
  }

  close(): void {
    this.readers = [];
  }

  /** Records local damage once (a second walk meets the same bad records again). */
  private problem(e: unknown, path?: string): void {
    if (!isVdbakError(e)) throw e;
    const key = `${e.code}/${e.details.inode}/${e.details.offset}`;
    if (this.problemKeys.has(key)) return;
    this.problemKeys.add(key);
    this.problems.push(path === undefined ? { error: e.toJSON() } : { error: e.toJSON(), path });
  }

  /** Every attribute of a file: its base record's, plus those its $ATTRIBUTE_LIST places in extension records. */
  private attributes(n: number, rec: LoadedRecord, only?: ReadonlySet<number>): Attribute[] {
    const { err } = this;
    const attrs = parseAttributes(rec.buf, rec.header, err, rec.at, n, only);
    const list = attrs.find((a) => a.type === AttrType.AttributeList);
    if (!list) return attrs;
    let listBytes = list.value;
    if (!listBytes) {
      checkCount(
        list.dataSize,
        MAX_ATTRLIST_SIZE,
        err,
        'NTFS_ATTRLIST_TOO_LARGE',
        'attribute list size',
        list.runlistAt,
      );
      listBytes = new StreamReader(this.dev, this.boot, err, buildStream([list], this.boot, err, n)).read(
        0,
        list.dataSize,
      );
    }
    const out = attrs.filter((a) => a.type !== AttrType.AttributeList);
    const ext = new Map<number, Attribute[]>();
    for (const e of parseAttributeList(listBytes, err, list.value ? rec.at : list.runlistAt, n)) {
      if (e.record === n || (only && !only.has(e.type))) continue;
      let inRec = ext.get(e.record);
      if (!inRec) {
        checkCount(ext.size + 1, MAX_EXTENSION_RECORDS, err, 'NTFS_TOO_MANY_EXTENSIONS', 'extension records');
        const r = this.mft.load(e.record);
        if (!r.header.inUse || r.header.baseRecord !== n || r.header.sequence !== e.sequence) {
          throw err.corrupt('NTFS_BAD_EXTENSION', `extension record ${e.record} does not belong to record ${n}`, {
            offset: r.at,
            inode: n,
          });
        }
        inRec = parseAttributes(r.buf, r.header, err, r.at, e.record);
        ext.set(e.record, inRec);
      }
      const a = inRec.find((x) => x.type === e.type && x.id === e.id);
      if (!a) {
        throw err.corrupt('NTFS_ATTRLIST_DANGLING', `attribute ${e.type.toString(16)}/${e.id} missing in ${e.record}`, {
          inode: n,
        });
      }
      out.push(a);
    }
    return out;
  }

  private names(n: number, attrs: Attribute[], at: number): FileName[] {
    return attrs
      .filter((a) => a.type === AttrType.FileName && a.value)
      .map((a) => parseFileName(a.value!, this.err, at, n));
  }

  /** Pass over the MFT in batches: each non-empty slot with its fixed-up header, or why it is unreadable. */
  private *scan(): Generator<ScanItem> {
    const rs = this.mft.recordSize;
    for (let first = 0; first < this.mft.count; first += SCAN_BATCH) {
      const count = Math.min(SCAN_BATCH, this.mft.count - first);
      let raw: Buffer;
      try {
        raw = this.mft.readRaw(first, count);
      } catch (e) {
        for (let i = 0; i < count; i++) yield { n: first + i, error: e };
        continue;
      }
      for (let i = 0; i < count; i++) {
        const n = first + i;
        const buf = raw.subarray(i * rs, (i + 1) * rs);
        if (isEmptySlot(buf)) continue;
        const at = this.mft.offsetOf(n);
        let header: RecordHeader;
        try {
          header = parseRecordHeader(buf, this.err, at, n);
        } catch (e) {
          yield { n, error: e };
          continue;
        }
        yield { n, rec: { header, buf, at } };
      }
    }
  }

  /** Adds the names of a live base record to the tree. */
  private addNames(t: Tree, n: number, rec: LoadedRecord, attrs: Attribute[]): void {
    const names = this.names(n, attrs, rec.at);
    t.setLive(n, rec.header.sequence, rec.header.isDirectory);
    const long = names.filter((f) => f.namespace !== Namespace.Dos);
    const seen = new Set<string>();
    for (const f of long.length ? long : names) {
      const key = `${f.parentRecord}/${f.parentSequence}/${f.name}`;
      if (seen.has(key)) continue;
      seen.add(key);
      t.addLink(n, f.parentRecord, f.parentSequence, f.name);
    }
  }

  /**
   * Puts one scanned record into the tree. With `full`, returns every
   * attribute of a live base record (undefined when it is not one, or is damaged).
   */
  private treeStep(t: Tree, item: ScanItem, full: boolean): Attribute[] | undefined {
    if ('error' in item) {
      this.problem(item.error);
      t.markBad(item.n);
      return undefined;
    }
    const { n, rec } = item;
    if (!rec.header.inUse || rec.header.baseRecord !== 0) return undefined;
    let attrs: Attribute[] | undefined;
    let damage: unknown;
    try {
      if (full) {
        try {
          attrs = this.attributes(n, rec);
        } catch (e) {
          // the names may still be readable: the record keeps its place in the tree
          damage = e;
        }
      }
      this.addNames(t, n, rec, attrs ?? this.attributes(n, rec, ONLY_NAMES));
    } catch (e) {
      this.problem(e);
      t.markBad(n);
      return undefined;
    }
    if (damage !== undefined) this.problem(damage);
    return attrs;
  }

  /** Orphans and cycles, once every record is in the tree. */
  private finishTree(t: Tree): Tree {
    t.seen = t.count;
    for (let l = 0; l < t.linkName.length; l++) {
      const r = t.linkRecord[l]!;
      if (r !== ROOT_RECORD && t.isUsable(r) && t.parentPath(l) === ORPHAN_DIR && !Tree.isMetafile(r)) t.orphans++;
    }
    for (const c of t.cycles) {
      this.problem(this.err.corrupt('NTFS_PARENT_CYCLE', 'parent references form a cycle', { inode: c }));
    }
    t.orphans += t.cycles.length;
    this.tree = t;
    return t;
  }

  private ensureTree(): Tree {
    if (this.tree) return this.tree;
    const t = new Tree(this.mft.count);
    for (const item of this.scan()) this.treeStep(t, item, false);
    return this.finishTree(t);
  }

  /** Owner SIDs of $Secure:$SDS by security id (read once, on first need). */
  private ownerOf(securityId: number): string | undefined {
    if (!this.owners) {
      this.owners = new Map();
      try {
        const rec = this.mft.load(SECURE_RECORD);
        const sds = this.attributes(SECURE_RECORD, rec).filter((a) => a.type === AttrType.Data && a.name === SDS_NAME);
        if (sds.length) {
          const reader = new StreamReader(
            this.dev,
            this.boot,
            this.err,
            buildStream(sds, this.boot, this.err, SECURE_RECORD),
          );
          const size = Math.min(reader.stream.size, MAX_SDS_SIZE);
          // even blocks hold the descriptors, odd blocks mirror them
          for (let off = 0; off < size; off += 2 * SDS_BLOCK) {
            scanSds(reader.read(off, Math.min(SDS_BLOCK, size - off)), off, this.owners);
          }
        }
      } catch (e) {
        this.problem(e, '/$Secure');
      }
    }
    return this.owners.get(securityId);
  }

  /** Small attribute content (reparse data, security descriptor, Interix link), resident or not. */
  private smallValue(n: number, pieces: Attribute[], max: number): Buffer | undefined {
    const first = pieces[0];
    if (!first) return undefined;
    if (first.value) return first.value;
    if (first.dataSize > max) return undefined;
    return new StreamReader(this.dev, this.boot, this.err, buildStream(pieces, this.boot, this.err, n)).read(
      0,
      first.dataSize,
    );
  }

  private describe(n: number, header: RecordHeader, attrs: Attribute[], at: number): Described {
    const err = this.err;
    const siAttr = attrs.find((a) => a.type === AttrType.StandardInformation && a.value);
    const si = siAttr ? parseStandardInformation(siAttr.value!, err, at, n) : undefined;
    const dosAttrs = si?.attributes ?? 0;
    const data = attrs.filter((a) => a.type === AttrType.Data);
    const main = data.filter((a) => a.name === '');
    const mainHead = main.find((a) => a.value || a.startVcn === 0);
    const streams = new Map<string, number>();
    for (const a of data) {
      if (a.name !== '' && (a.value || a.startVcn === 0)) streams.set(a.name, a.dataSize);
    }
    // every data stream's runlist is checked here (inside the volume, no overlap, sizes), so a
    // damaged record is a problem of the walk rather than a surprise of a later read
    for (const name of new Set(data.map((a) => a.name))) {
      buildStream(
        data.filter((a) => a.name === name),
        this.boot,
        err,
        n,
      );
    }
    const flags: string[] = [];
    const d: Described = {
      type: header.isDirectory ? 'dir' : 'file',
      size: header.isDirectory ? 0 : (mainHead?.dataSize ?? 0),
      si,
      dosNames: this.names(
        n,
        attrs.filter((a) => a.type === AttrType.FileName && a.value?.[FILENAME.namespace[0]] === Namespace.Dos),
        at,
      ),
      streams: [...streams].map(([name, size]) => ({ name, size })),
      flags,
    };
    const reparseAttrs = attrs.filter((a) => a.type === AttrType.ReparsePoint);
    if (reparseAttrs.length) {
      const v = this.smallValue(n, reparseAttrs, MAX_SMALL_ATTR);
      const rp: ReparsePoint | undefined = v ? parseReparsePoint(v, err, at, n) : undefined;
      flags.push('reparse');
      if (rp) {
        d.reparseTag = rp.tag;
        if ((rp.tag === REPARSE_TAG_SYMLINK || rp.tag === REPARSE_TAG_MOUNT_POINT) && rp.target !== undefined) {
          d.type = 'symlink';
          d.linkTarget = rp.target;
          if (rp.tag === REPARSE_TAG_MOUNT_POINT) flags.push('junction');
        }
      }
    } else if (d.type === 'file' && dosAttrs & DosAttr.System && d.size <= INTX_MAX_SIZE && main.length) {
      const target = parseIntxSymlink(this.smallValue(n, main, INTX_MAX_SIZE) ?? Buffer.alloc(0));
      if (target !== undefined) {
        d.type = 'symlink';
        d.linkTarget = target;
        flags.push('interix');
      }
    }
    const mainFlags = mainHead?.flags ?? 0;
    if (dosAttrs & DosAttr.Compressed || mainFlags & ATTR_FLAG_COMPRESSION_MASK) flags.push('compressed');
    if (dosAttrs & DosAttr.Encrypted || mainFlags & ATTR_FLAG_ENCRYPTED) flags.push('encrypted');
    if (dosAttrs & DosAttr.Sparse || mainFlags & ATTR_FLAG_SPARSE) flags.push('sparse');
    if (dosAttrs & DosAttr.Offline) flags.push('offline');
    if (mainHead?.value) flags.push('inline');
    const sd = attrs.find((a) => a.type === AttrType.SecurityDescriptor && a.value);
    const owner = sd ? ownerOfDescriptor(sd.value!) : si?.securityId ? this.ownerOf(si.securityId) : undefined;
    if (owner) d.ownerSid = owner;
    return d;
  }

  private entry(n: number, d: Described, path: string, name: string, nlink: number, parent: number): FsEntry {
    const ro = ((d.si?.attributes ?? 0) & DosAttr.ReadOnly) !== 0;
    const mode = d.type === 'symlink' ? 0o777 : d.type === 'dir' ? (ro ? 0o555 : 0o755) : ro ? 0o444 : 0o644;
    const e: FsEntry = {
      id: String(n),
      path,
      name,
      type: d.type,
      size: d.size,
      mode,
      uid: 0,
      gid: 0,
      mtimeNs: d.si?.modifiedNs ?? 0n,
      atimeNs: d.si?.accessedNs ?? 0n,
      ctimeNs: d.si?.changedNs ?? 0n,
      nlink,
      attributes: d.si?.attributes ?? 0,
      flags: nlink > 1 ? [...d.flags, 'hardlink'] : d.flags,
    };
    if (d.si) e.birthtimeNs = d.si.createdNs;
    if (d.linkTarget !== undefined) e.linkTarget = d.linkTarget;
    if (d.streams.length) e.streams = d.streams;
    if (d.ownerSid) e.ownerSid = d.ownerSid;
    if (d.reparseTag !== undefined) e.reparseTag = d.reparseTag;
    const dos = d.dosNames.find((f) => f.parentRecord === parent);
    if (dos && dos.name !== name) e.shortName = dos.name;
    return e;
  }

  private rootEntry(): FsEntry {
    const rec = this.mft.load(ROOT_RECORD);
    const d = this.describe(ROOT_RECORD, rec.header, this.attributes(ROOT_RECORD, rec), rec.at);
    return this.entry(ROOT_RECORD, d, '/', '', 1, ROOT_RECORD);
  }

  private orphanDirEntry(): FsEntry {
    return {
      id: '$OrphanFiles',
      path: ORPHAN_DIR,
      name: ORPHAN_DIR.slice(1),
      type: 'dir',
      size: 0,
      mode: 0o755,
      uid: 0,
      gid: 0,
      mtimeNs: 0n,
      atimeNs: 0n,
      ctimeNs: 0n,
      nlink: 1,
      flags: ['synthetic'],
    };
  }

  /** Entries of one record, one per visible path. */
  private entriesOf(t: Tree, n: number, rec: LoadedRecord): FsEntry[] {
    return this.entriesFrom(t, n, rec, this.attributes(n, rec));
  }

  private entriesFrom(t: Tree, n: number, rec: LoadedRecord, attrs: Attribute[]): FsEntry[] {
    const d = this.describe(n, rec.header, attrs, rec.at);
    if (n === ROOT_RECORD) return [this.entry(ROOT_RECORD, d, '/', '', 1, ROOT_RECORD)];
    const links = t.links(n);
    const out: FsEntry[] = [];
    for (const l of links) {
      const path = t.linkPath(l);
      if (path === null) continue;
      out.push(this.entry(n, d, path, t.linkName[l]!, links.length, t.linkParent[l]!));
    }
    return out;
  }

  /**
   * One pass over the MFT when the tree is not built yet: a record is yielded
   * as soon as the paths of its parents are known (parents usually have lower
   * record numbers); the few others are read again at the end.
   */
  *walk(): Iterable<FsEntry> {
    if (this.tree) {
      yield* this.walkTree(this.tree);
      return;
    }
    const t = new Tree(this.mft.count);
    const deferred: number[] = [];
    for (const item of this.scan()) {
      t.seen = item.n + 1;
      const attrs = this.treeStep(t, item, true);
      if (!attrs || 'error' in item || Tree.isMetafile(item.n)) continue;
      const { n, rec } = item;
      if (n !== ROOT_RECORD && t.links(n).some((l) => t.linkPath(l) === PENDING)) {
        deferred.push(n);
        continue;
      }
      const entries = this.entriesSafely(t, n, () => this.entriesFrom(t, n, rec, attrs));
      if (entries) yield* entries;
    }
    this.finishTree(t);
    for (const n of deferred) {
      const entries = this.entriesSafely(t, n, () => this.entriesOf(t, n, this.mft.load(n)));
      if (entries) yield* entries;
    }
    if (t.orphans > 0) yield this.orphanDirEntry();
  }

  /** A second walk reuses the tree: root, orphan folder, then every record in MFT order. */
  private *walkTree(t: Tree): Iterable<FsEntry> {
    yield this.rootEntry();
    if (t.orphans > 0) yield this.orphanDirEntry();
    for (const item of this.scan()) {
      if ('error' in item || item.n === ROOT_RECORD || !t.isUsable(item.n) || Tree.isMetafile(item.n)) continue;
      const { n, rec } = item;
      const entries = this.entriesSafely(t, n, () => this.entriesOf(t, n, rec));
      if (entries) yield* entries;
    }
  }

  /** Entries of a record, or undefined (and a problem recorded) when it is damaged. */
  private entriesSafely(t: Tree, n: number, make: () => FsEntry[]): FsEntry[] | undefined {
    try {
      return make();
    } catch (e) {
      const first = t.links(n)[0];
      this.problem(e, first === undefined ? undefined : (t.linkPath(first) ?? undefined));
      return undefined;
    }
  }

  /** Children by parent path, from the tree: used under ORPHAN_DIR, which no index holds. */
  private orphanChildren(): Map<string, Map<string, number>> {
    if (this.byParent) return this.byParent;
    const t = this.ensureTree();
    const idx = new Map<string, Map<string, number>>();
    for (let l = 0; l < t.linkName.length; l++) {
      const r = t.linkRecord[l]!;
      if (r === ROOT_RECORD || !t.isUsable(r) || Tree.isMetafile(r)) continue;
      const parent = t.parentPath(l);
      if (parent === null || !parent.startsWith(ORPHAN_DIR)) continue;
      let m = idx.get(parent);
      if (!m) {
        m = new Map();
        idx.set(parent, m);
      }
      m.set(t.linkName[l]!, l);
    }
    this.byParent = idx;
    return idx;
  }

  private entryOfLink(l: number): FsEntry | undefined {
    const t = this.ensureTree();
    const n = t.linkRecord[l]!;
    const want = t.linkPath(l);
    return this.entriesOf(t, n, this.mft.load(n)).find((e) => e.path === want);
  }

  /**
   * The names of one directory from its $I30 index, by name (DOS-only aliases
   * left out). The last few directories are kept.
   */
  private dirIndex(dir: number, sequence?: number): Map<string, IndexEntry> {
    const hit = this.dirCache.find((c) => c.dir === dir);
    if (hit) return hit.byName;
    const { err, boot } = this;
    const rec = this.mft.load(dir);
    const h = rec.header;
    if (!h.inUse || !h.isDirectory || h.baseRecord !== 0 || (sequence !== undefined && h.sequence !== sequence)) {
      throw err.notFound('NTFS_NOT_A_DIRECTORY', `record ${dir} is not a live directory`, { inode: dir });
    }
    const attrs = this.attributes(dir, rec);
    const root = attrs.find((a) => a.type === AttrType.IndexRoot && a.name === I30 && a.value);
    if (!root)
      throw err.corrupt('NTFS_NO_INDEX', 'directory without a $I30 index root', { offset: rec.at, inode: dir });
    const top = parseIndexRoot(root.value!, err, rec.at, dir);
    const byName = new Map<string, IndexEntry>();
    const add = (node: IndexNode) => {
      for (const e of node.entries) if (e.namespace !== Namespace.Dos) byName.set(e.name, e);
    };
    add(top.node);
    if (top.node.children.length) {
      const size = top.blockSize;
      if (!isPowerOfTwo(size) || size < MIN_RECORD_SIZE || size > MAX_RECORD_SIZE) {
        throw err.corrupt('NTFS_BAD_RECORD_SIZE', `index record size ${size}`, { offset: rec.at, inode: dir });
      }
      const pieces = attrs.filter((a) => a.type === AttrType.IndexAllocation && a.name === I30);
      const reader = new StreamReader(this.dev, boot, err, buildStream(pieces, boot, err, dir));
      // child VCNs count clusters, or 512-byte units when an index record is smaller than a cluster
      const unit = size >= boot.clusterSize ? boot.clusterSize : 512;
      const seen = new Set<number>();
      const queue = [...top.node.children];
      while (queue.length) {
        const vcn = queue.pop()!;
        if (seen.has(vcn)) {
          throw err.corrupt('NTFS_INDEX_LOOP', `index node VCN ${vcn} reached twice`, { offset: rec.at, inode: dir });
        }
        seen.add(vcn);
        const pos = vcn * unit;
        checkRange(pos, size, reader.stream.size, err, 'NTFS_INDEX_BAD_VCN', 'index record', rec.at);
        const node = parseIndexRecord(reader.read(pos, size), vcn, err, reader.volumeOffset(pos), dir);
        add(node);
        for (const c of node.children) queue.push(c);
      }
    }
    this.dirCache.unshift({ dir, byName });
    this.dirCache.length = Math.min(this.dirCache.length, DIR_CACHE);
    return byName;
  }

  /** The entry an index entry names, or undefined when the entry is stale (record reused or gone). */
  private entryOfIndex(e: IndexEntry, dir: number, parentPath: string): FsEntry | undefined {
    if (Tree.isMetafile(e.record) || e.record === ROOT_RECORD) return undefined;
    const rec = this.mft.load(e.record);
    const h = rec.header;
    if (!h.inUse || h.baseRecord !== 0 || h.sequence !== e.sequence) return undefined;
    const attrs = this.attributes(e.record, rec);
    const names = this.names(e.record, attrs, rec.at);
    const long = names.filter((f) => f.namespace !== Namespace.Dos);
    const nlink = new Set((long.length ? long : names).map((f) => `${f.parentRecord}/${f.parentSequence}/${f.name}`))
      .size;
    const d = this.describe(e.record, h, attrs, rec.at);
    return this.entry(e.record, d, `${parentPath}/${e.name}`, e.name, nlink, dir);
  }

  /** Follows the $I30 indexes from the root: the record of each component, or undefined. */
  private resolve(parts: string[]): { dir: number; entry: IndexEntry | undefined; parentPath: string } | undefined {
    let dir = ROOT_RECORD;
    let sequence: number | undefined;
    let parentPath = '';
    for (let i = 0; i < parts.length; i++) {
      let e: IndexEntry | undefined;
      try {
        e = this.dirIndex(dir, sequence).get(parts[i]!);
      } catch (x) {
        if (isVdbakError(x) && x.kind === 'NotFoundError') return undefined;
        throw x;
      }
      if (!e || Tree.isMetafile(e.record) || e.record === ROOT_RECORD) return undefined;
      if (i === parts.length - 1) return { dir, entry: e, parentPath };
      dir = e.record;
      sequence = e.sequence;
      parentPath += `/${parts[i]}`;
    }
    return { dir, entry: undefined, parentPath };
  }

  lookup(path: string): FsEntry | undefined {
    const parts = path.split('/').filter(Boolean);
    if (parts.length === 0) return this.rootEntry();
    if (`/${parts[0]}` === ORPHAN_DIR) {
      if (parts.length === 1) return this.ensureTree().orphans > 0 ? this.orphanDirEntry() : undefined;
      const l = this.orphanChildren()
        .get(`/${parts.slice(0, -1).join('/')}`)
        ?.get(parts[parts.length - 1]!);
      return l === undefined ? undefined : this.entryOfLink(l);
    }
    const r = this.resolve(parts);
    return r?.entry ? this.entryOfIndex(r.entry, r.dir, r.parentPath) : undefined;
  }

  /**
   * The entries of one directory, from its index. '/$OrphanFiles' (and the
   * folders under it) come from the tree; the root lists '$OrphanFiles' once
   * a walk, info() or a lookup under it has found orphans.
   */
  list(dirPath: string): FsEntry[] {
    const parts = dirPath.split('/').filter(Boolean);
    const out: FsEntry[] = [];
    if (parts.length && `/${parts[0]}` === ORPHAN_DIR) {
      for (const l of this.orphanChildren()
        .get(`/${parts.join('/')}`)
        ?.values() ?? []) {
        const e = this.entryOfLink(l);
        if (e) out.push(e);
      }
      return out;
    }
    let dir = ROOT_RECORD;
    let sequence: number | undefined;
    if (parts.length) {
      const r = this.resolve(parts);
      if (!r?.entry) return out;
      dir = r.entry.record;
      sequence = r.entry.sequence;
    } else if ((this.tree?.orphans ?? 0) > 0) {
      out.push(this.orphanDirEntry());
    }
    let names: Map<string, IndexEntry>;
    try {
      names = this.dirIndex(dir, sequence);
    } catch (x) {
      if (isVdbakError(x) && x.kind === 'NotFoundError') return out;
      throw x;
    }
    const prefix = parts.length ? `/${parts.join('/')}` : '';
    for (const e of names.values()) {
      try {
        const entry = this.entryOfIndex(e, dir, prefix);
        if (entry) out.push(entry);
      } catch (x) {
        this.problem(x, `${prefix}/${e.name}`);
      }
    }
    return out;
  }

  private reader(entry: FsEntry, stream?: string): StreamReader {
    const n = Number(entry.id);
    const name = stream ?? '';
    const key = `${entry.id}:${name}`;
    const hit = this.readers.find((r) => r.key === key);
    if (hit) return hit.reader;
    if (!/^\d+$/.test(entry.id) || !Number.isSafeInteger(n)) {
      throw this.err.notFound('NTFS_NO_STREAM', `entry ${entry.id} has no data`, { path: entry.path });
    }
    const rec = this.mft.load(n);
    if (!rec.header.inUse) throw this.err.notFound('NTFS_NOT_IN_USE', `record ${n} is not in use`, { inode: n });
    const pieces = this.attributes(n, rec).filter((a) => a.type === AttrType.Data && a.name === name);
    if (!pieces.length) {
      throw this.err.notFound('NTFS_NO_STREAM', `no $DATA stream '${name}'`, { inode: n, path: entry.path });
    }
    const reader = new StreamReader(this.dev, this.boot, this.err, buildStream(pieces, this.boot, this.err, n));
    this.readers.unshift({ key, reader });
    this.readers.length = Math.min(this.readers.length, READER_CACHE);
    return reader;
  }

  runs(entry: FsEntry, stream?: string): DataRun[] {
    return streamRuns(this.reader(entry, stream).stream, this.boot);
  }

  read(entry: FsEntry, offset: number, length: number, stream?: string): Buffer {
    if (entry.type === 'dir' && stream === undefined && length === 0) return Buffer.alloc(0);
    return this.reader(entry, stream).read(offset, length);
  }

  info(): FsInfo {
    const t = this.ensureTree();
    let label = '';
    let clean = true;
    let version = '';
    try {
      const rec = this.mft.load(VOLUME_RECORD);
      const attrs = this.attributes(VOLUME_RECORD, rec);
      const name = attrs.find((a) => a.type === AttrType.VolumeName && a.value);
      if (name) label = name.value!.toString('utf16le', 0, name.value!.length & ~1);
      const vi = attrs.find(
        (a) => a.type === AttrType.VolumeInformation && a.value && a.value.length >= VOLUME_INFORMATION_SIZE,
      );
      if (vi) {
        const v = vi.value!;
        version = `${v.readUInt8(VOLUME_INFORMATION.major[0])}.${v.readUInt8(VOLUME_INFORMATION.minor[0])}`;
        clean = (v.readUInt16LE(VOLUME_INFORMATION.flags[0]) & VOLUME_FLAG_DIRTY) === 0;
      }
    } catch (e) {
      this.problem(e, '/$Volume');
    }
    const { clusterSize, totalClusters } = this.boot;
    return {
      type: 'ntfs',
      label,
      uuid: this.boot.serial,
      blockSize: clusterSize,
      totalBytes: totalClusters * clusterSize,
      usedBytes: this.usedClusters() * clusterSize,
      clean,
      features: version ? [`ntfs-${version}`] : [],
      facts: {
        clusterSize,
        mftRecordSize: this.boot.recordSize,
        indexRecordSize: this.boot.indexRecordSize,
        mftRecords: this.mft.count,
        orphans: t.orphans,
        metafiles: 'hidden',
        problems: this.problems.length,
      },
    };
  }

  /** Used clusters from $Bitmap (bitmap.ts). */
  allocated(): Iterable<ByteRange> {
    const rec = this.mft.load(BITMAP_RECORD);
    const pieces = this.attributes(BITMAP_RECORD, rec).filter((a) => a.type === AttrType.Data && a.name === '');
    const stream = buildStream(pieces, this.boot, this.err, BITMAP_RECORD);
    return ntfsAllocated(new StreamReader(this.dev, this.boot, this.err, stream), this.boot, this.dev.size);
  }

  /** Set bits of $Bitmap, read in 1 MiB pieces. */
  private usedClusters(): number {
    try {
      const rec = this.mft.load(BITMAP_RECORD);
      const pieces = this.attributes(BITMAP_RECORD, rec).filter((a) => a.type === AttrType.Data && a.name === '');
      const reader = new StreamReader(
        this.dev,
        this.boot,
        this.err,
        buildStream(pieces, this.boot, this.err, BITMAP_RECORD),
      );
      const bytes = Math.min(reader.stream.size, Math.ceil(this.boot.totalClusters / 8));
      let used = 0;
      for (let off = 0; off < bytes; off += 1024 * 1024) {
        const chunk = reader.read(off, Math.min(1024 * 1024, bytes - off));
        for (let i = 0; i < chunk.length; i++) {
          let v = chunk[i]!;
          const bit0 = (off + i) * 8;
          if (bit0 + 8 > this.boot.totalClusters) v &= (1 << (this.boot.totalClusters - bit0)) - 1;
          v -= (v >> 1) & 0x55;
          v = (v & 0x33) + ((v >> 2) & 0x33);
          used += (v + (v >> 4)) & 0x0f;
        }
      }
      return used;
    } catch (e) {
      this.problem(e, '/$Bitmap');
      return 0;
    }
  }
}
