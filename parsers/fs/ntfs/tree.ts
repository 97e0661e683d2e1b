/**
 * The directory tree of an NTFS volume, rebuilt from the parent references of
 * every $FILE_NAME (not from the $I30 indexes): one pass over the MFT records
 * fills compact per-record arrays, and paths are resolved on demand with
 * memoised directory paths.
 *
 * - A parent reference holds the parent's sequence number: when it differs
 *   from the parent record's current one, or the parent is not a live
 *   directory, the name is an orphan and goes under ORPHAN_DIR.
 * - A chain of parents that comes back to itself is a cycle: the directory
 *   where it is found becomes an orphan too (and a problem is recorded).
 * - Metafiles (records 0–15 other than the root, and everything under
 *   $Extend) are hidden: a backup of a Windows volume keeps the root but not
 *   $MFT, $Bitmap, $LogFile, $UsnJrnl … (fls lists them; we say so in facts).
 *
 * Per record: sequence (u16), state bits (u8), first link (i32); per name:
 * parent, parent sequence, record, next link of the same record, and the
 * name string. About 40 bytes + the name per file.
 */

export const ROOT_RECORD = 5;
export const FIRST_USER_RECORD = 16;
export const ORPHAN_DIR = '/$OrphanFiles';
/** Deeper than this is treated as a cycle (Windows paths stop far earlier). */
export const MAX_DEPTH = 4096;
/** A path that depends on a record the single-pass walk has not reached yet. */
export const PENDING = '\u0000pending';

const LIVE = 1;
const DIR = 2;
const BAD = 4;

export class Tree {
  readonly seq: Uint16Array;
  private readonly state: Uint8Array;
  private readonly head: Int32Array;
  readonly linkParent: number[] = [];
  readonly linkParentSeq: number[] = [];
  readonly linkRecord: number[] = [];
  readonly linkName: string[] = [];
  private readonly linkNext: number[] = [];
  private readonly dirPaths = new Map<number, string | null>();
  /** Names placed directly under ORPHAN_DIR. */
  orphans = 0;
  /** Records below this number have been scanned (a walk fills the tree as it goes). */
  seen: number;
  cycles: number[] = [];

  constructor(readonly count: number) {
    this.seen = count;
    this.seq = new Uint16Array(count);
    this.state = new Uint8Array(count);
    this.head = new Int32Array(count).fill(-1);
  }

  /** Records a live base record (a file or directory). */
  setLive(record: number, sequence: number, isDir: boolean): void {
    this.seq[record] = sequence;
    this.state[record] = LIVE | (isDir ? DIR : 0);
  }

  markBad(record: number): void {
    this.state[record] = (this.state[record] ?? 0) | BAD;
  }

  isUsable(record: number): boolean {
    const s = this.state[record] ?? 0;
    return (s & LIVE) !== 0 && (s & BAD) === 0 && (this.head[record] ?? -1) >= 0;
  }

  /** Adds one name of `record` (names are added in record order, so links stay grouped). */
  addLink(record: number, parent: number, parentSeq: number, name: string): void {
    const l = this.linkName.length;
    this.linkParent.push(parent);
    this.linkParentSeq.push(parentSeq);
    this.linkRecord.push(record);
    this.linkName.push(name);
    this.linkNext.push(this.head[record] ?? -1);
    this.head[record] = l;
  }

  /** Link indexes of a record, first added first. */
  links(record: number): number[] {
    const out: number[] = [];
    for (let l = this.head[record] ?? -1; l >= 0; l = this.linkNext[l] ?? -1) out.push(l);
    return out.reverse();
  }

  static isMetafile(record: number): boolean {
    return record < FIRST_USER_RECORD && record !== ROOT_RECORD;
  }

  private isLiveDir(record: number, sequence: number): boolean {
    if (record < 0 || record >= this.count) return false;
    const s = this.state[record] ?? 0;
    return (s & (LIVE | DIR)) === (LIVE | DIR) && (s & BAD) === 0 && this.seq[record] === sequence;
  }

  private isPending(record: number): boolean {
    return record >= this.seen && record < this.count;
  }

  /** Path of the directory that holds link `l` ('' for the root), ORPHAN_DIR, PENDING, or null when hidden. */
  parentPath(l: number): string | null {
    const p = this.linkParent[l] ?? -1;
    if (this.isPending(p)) return PENDING;
    if (!this.isLiveDir(p, this.linkParentSeq[l] ?? -1)) return ORPHAN_DIR;
    return this.dirPath(p);
  }

  /** Full path of link `l`, or null when it is (under) a metafile. */
  linkPath(l: number): string | null {
    if (Tree.isMetafile(this.linkRecord[l] ?? 0)) return null;
    const parent = this.parentPath(l);
    return parent === null || parent === PENDING ? parent : `${parent}/${this.linkName[l]}`;
  }

  private dirPath(d: number): string | null {
    const known = this.dirPaths.get(d);
    if (known !== undefined) return known;
    const chain: number[] = [];
    const onChain = new Set<number>();
    let cur = d;
    let base: string | null;
    for (;;) {
      const m = this.dirPaths.get(cur);
      if (m !== undefined) {
        base = m;
        break;
      }
      if (cur === ROOT_RECORD) {
        base = '';
        break;
      }
      if (Tree.isMetafile(cur)) {
        base = null;
        break;
      }
      if (this.isPending(cur)) return PENDING;
      if (onChain.has(cur) || chain.length >= MAX_DEPTH) {
        this.cycles.push(cur);
        base = ORPHAN_DIR;
        break;
      }
      const l = this.head[cur] ?? -1;
      if (l < 0) {
        base = ORPHAN_DIR;
        break;
      }
      chain.push(cur);
      onChain.add(cur);
      const p = this.linkParent[l] ?? -1;
      if (this.isPending(p)) return PENDING;
      if (!this.isLiveDir(p, this.linkParentSeq[l] ?? -1)) {
        base = ORPHAN_DIR;
        break;
      }
      cur = p;
    }
    for (let k = chain.length - 1; k >= 0; k--) {
      const c = chain[k]!;
      const name = this.linkName[this.head[c] ?? -1];
      base = base === null ? null : `${base}/${name}`;
      this.dirPaths.set(c, base);
    }
    return chain.length === 0 ? base : (this.dirPaths.get(d) ?? null);
  }
}
