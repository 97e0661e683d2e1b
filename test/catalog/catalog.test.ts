/**
 * The catalog's model on its own: validity intervals (an unchanged entry costs
 * no row), visibility only by the completing transaction, reaping of dead
 * backups, forget keeping exactly the versions that remaining backups hold,
 * and the referenced-chunk set that prune and check rely on.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Catalog } from '../../catalog/catalog.js';
import {
  decodeHashes,
  decodeRuns,
  encodeHashes,
  encodeRuns,
  encodeRunsTransient,
  sameContent,
  splitPath,
  type VersionRecord,
} from '../../catalog/records.js';

const H = (c: string) => c.repeat(64);

function rec(over: Partial<VersionRecord> = {}): VersionRecord {
  return {
    fsId: '12',
    type: 'file',
    size: 5,
    mode: 0o644,
    uid: 0,
    gid: 0,
    nlink: 1,
    mtimeNs: 1_700_000_000_123_456_789n,
    atimeNs: 1_700_000_000_000_000_000n,
    ctimeNs: 1_700_000_000_123_456_789n,
    chunks: [H('a')],
    runs: [{ fileOffset: 0, volumeOffset: 4096, length: 4096 }],
    ...over,
  };
}

let dir: string;
let cat: Catalog;
let vol: number;
let vm: number;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdbak-cat-'));
  cat = Catalog.open(join(dir, 'c.db'), { create: true });
  vm = cat.upsertVm({ identity: 'vmware:1', name: 'vm1', kind: 'vmware' });
  const disk = cat.upsertDisk(vm, 'scsi0:0', 0);
  vol = cat.upsertVolume(disk, 1, 'd0p1');
});

afterEach(() => {
  cat.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One backup of the volume with these entries; unchanged ones (same content as current) are only marked seen. */
function backup(entries: Record<string, VersionRecord>, opts: { complete?: boolean } = {}): number {
  const b = cat.beginBackup(vm, process.pid, 'h');
  cat.addBackupVolume(b, vol, { offset: 0, length: 1 << 20, mode: 'files', fsType: 'ext' });
  cat.startSeen();
  for (const [path, r] of Object.entries(entries)) {
    const cur = cat.currentVersion(vol, path);
    if (cur && sameContent(cur, r)) cat.markSeen(cur.id);
    else cat.insertVersion(vol, path, b, r);
  }
  if (opts.complete !== false) cat.completeBackup(b, {});
  return b;
}

const rows = () => Number((cat.db.prepare('SELECT count(*) AS c FROM versions').get() as { c: bigint }).c);

describe('records', () => {
  it('round-trips runs (holes, unwritten) and hash lists, and splits paths', () => {
    const runs = [
      { fileOffset: 0, volumeOffset: 2 ** 40, length: 8192 },
      { fileOffset: 8192, volumeOffset: null, length: 4096 },
      { fileOffset: 12288, volumeOffset: 4096, length: 4096, unwritten: true },
    ];
    expect(decodeRuns(encodeRuns(runs))).toEqual(runs);
    expect(decodeHashes(encodeHashes([H('a'), H('b')]))).toEqual([H('a'), H('b')]);
    expect(splitPath('/')).toEqual({ dir: '', name: '' });
    expect(splitPath('/a')).toEqual({ dir: '/', name: 'a' });
    expect(splitPath('/a/b c')).toEqual({ dir: '/a', name: 'b c' });
  });

  it('calls a file changed when its id, size, times, runs or streams differ — not for atime', () => {
    const a = rec();
    expect(sameContent(a, rec({ atimeNs: 5n }))).toBe(true);
    for (const change of [
      { fsId: '13' },
      { size: 6 },
      { mtimeNs: a.mtimeNs + 1n },
      { ctimeNs: a.ctimeNs + 1n },
      { runs: [{ fileOffset: 0, volumeOffset: 8192, length: 4096 }] },
      { streams: [{ name: 'x', size: 1, chunks: [] }] },
    ]) {
      expect(sameContent(a, rec(change))).toBe(false);
    }
  });
});

describe('keepIfSame: the unchanged check in SQL', () => {
  let n = 0;
  /** A complete backup holding `stored` at a new path; then a running backup asks keepIfSame there with `key`. */
  function check(stored: VersionRecord, key: VersionRecord): boolean {
    const path = `/f${n++}`;
    backup({ [path]: stored });
    cat.beginBackup(vm, process.pid, 'h');
    cat.startSeen();
    return cat.keepIfSame(vol, path, key);
  }

  it('agrees with sameContent on every field that decides, and ignores the rest', () => {
    const base = rec({ btimeNs: 1_600_000_000_000_000_001n, linkTarget: undefined });
    const variants: Partial<VersionRecord>[] = [
      {},
      { atimeNs: 5n, mode: 0o600, uid: 7, gid: 8, nlink: 3, chunks: [H('f')], meta: { attributes: 32 } },
      { fsId: '13' },
      { type: 'symlink' },
      { size: 6 },
      { mtimeNs: base.mtimeNs + 1n },
      { ctimeNs: base.ctimeNs + 1n },
      { btimeNs: undefined },
      { btimeNs: base.btimeNs! + 1n },
      { linkTarget: 'x' },
      { runs: [{ fileOffset: 0, volumeOffset: 8192, length: 4096 }] },
      { runs: [{ fileOffset: 0, volumeOffset: 4096, length: 4096, unwritten: true }] },
      { runs: [] },
      { runs: undefined },
    ];
    for (const change of variants) {
      const key = rec({ ...base, ...change });
      expect(
        check(base, key),
        JSON.stringify(change, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)),
      ).toBe(sameContent(base, key));
    }
    // a stored version without runs matches a key with an empty list (both are "no runs")
    expect(check(rec({ runs: undefined }), rec({ runs: [] }))).toBe(true);
  });

  it('never keeps a version whose read failed, one with named streams, or one of an unfinished backup', () => {
    expect(check(rec({ meta: { readError: { code: 'X', message: 'y' } } }), rec())).toBe(false);
    expect(check(rec({ meta: { attributes: 1 } }), rec())).toBe(true);
    expect(check(rec({ streams: [{ name: 's', size: 1, chunks: [] }] }), rec())).toBe(false);
    const b = cat.beginBackup(vm, process.pid, 'h');
    cat.insertVersion(vol, '/g', b, rec());
    expect(cat.keepIfSame(vol, '/g', rec())).toBe(false);
  });

  it('marks what it keeps seen: completing closes only the others', () => {
    const b1 = backup({ '/a': rec(), '/b': rec(), '/c': rec() });
    const b2 = cat.beginBackup(vm, process.pid, 'h');
    cat.addBackupVolume(b2, vol, { offset: 0, length: 1 << 20, mode: 'files', fsType: 'ext' });
    cat.startSeen();
    expect(cat.keepIfSame(vol, '/a', rec())).toBe(true);
    expect(cat.keepIfSame(vol, '/b', rec({ size: 9 }))).toBe(false);
    cat.completeBackup(b2, {});
    expect(cat.list(b2, vol, '/').map((v) => v.name)).toEqual(['a']);
    expect(cat.list(b1, vol, '/').map((v) => v.name)).toEqual(['a', 'b', 'c']);
  });

  it('currentVersionMeta gives what currentVersion gives of id, meta and runs, without decoding them', () => {
    const runs = [
      { fileOffset: 0, volumeOffset: 4096, length: 4096 },
      { fileOffset: 4096, volumeOffset: null, length: 4096 },
    ];
    backup({ '/r': rec({ runs, meta: { imageStamp: 'x', allocatedBytes: 7 } }), '/n': rec({ runs: [] }) });
    const full = cat.currentVersion(vol, '/r')!;
    expect(cat.currentVersionMeta(vol, '/r')).toEqual({ id: full.id, meta: full.meta, runCount: 2 });
    expect(cat.currentVersionMeta(vol, '/n')).toEqual({
      id: cat.currentVersion(vol, '/n')!.id,
      meta: undefined,
      runCount: 0,
    });
    expect(cat.currentVersionMeta(vol, '/none')).toBeUndefined();
    // a version of an unfinished backup is not current yet
    const b = cat.beginBackup(vm, process.pid, 'h');
    cat.insertVersion(vol, '/u', b, rec());
    expect(cat.currentVersionMeta(vol, '/u')).toBeUndefined();
  });

  it('encodes runs into its kept buffer exactly as encodeRuns does', () => {
    const runs = [
      { fileOffset: 0, volumeOffset: 2 ** 52 + 3, length: 2 ** 33 + 1 },
      { fileOffset: 2 ** 33 + 1, volumeOffset: null, length: 4096 },
      { fileOffset: 2 ** 33 + 4097, volumeOffset: 0, length: 1, unwritten: true },
    ];
    const fresh = encodeRuns(runs);
    expect(Buffer.compare(encodeRunsTransient(runs), fresh)).toBe(0);
    expect(decodeRuns(fresh)).toEqual(runs);
    // longer than the kept buffer: a buffer of its own
    const many = Array.from({ length: 5000 }, (_, i) => ({
      fileOffset: i * 4096,
      volumeOffset: i * 8192,
      length: 4096,
    }));
    expect(decodeRuns(encodeRunsTransient(many))).toEqual(many);
    expect(() => encodeRuns([{ fileOffset: -1, volumeOffset: 0, length: 1 }])).toThrow(RangeError);
    expect(() => encodeRuns([{ fileOffset: 0.5, volumeOffset: 0, length: 1 }])).toThrow(RangeError);
  });
});

describe('validity intervals', () => {
  it('an unchanged file costs no row; a changed or deleted one closes its version', () => {
    const b1 = backup({ '/': rec({ type: 'dir', chunks: undefined }), '/a': rec(), '/b': rec({ fsId: '13' }) });
    expect(rows()).toBe(3);
    const b2 = backup({ '/': rec({ type: 'dir', chunks: undefined }), '/a': rec(), '/b': rec({ fsId: '13' }) });
    expect(rows()).toBe(3); // nothing new
    const b3 = backup({
      '/': rec({ type: 'dir', chunks: undefined }),
      '/a': rec({ size: 9, chunks: [H('b')] }), // changed
      // '/b' deleted
    });
    expect(rows()).toBe(4);
    expect(cat.lookup(b1, vol, '/a')?.size).toBe(5);
    expect(cat.lookup(b2, vol, '/a')?.size).toBe(5);
    expect(cat.lookup(b3, vol, '/a')?.size).toBe(9);
    expect(cat.lookup(b2, vol, '/b')).toBeDefined();
    expect(cat.lookup(b3, vol, '/b')).toBeUndefined();
    expect(cat.list(b2, vol, '/').map((v) => v.name)).toEqual(['a', 'b']);
    expect(cat.list(b3, vol, '/').map((v) => v.name)).toEqual(['a']);
    expect(cat.history(vol, '/a').map((h) => h.backups)).toEqual([[b1, b2], [b3]]);
  });

  it('an unfinished backup is invisible, and its rows go when its writer is found dead', () => {
    const b1 = backup({ '/a': rec() });
    const b2 = backup({ '/a': rec({ size: 7 }), '/new': rec() }, { complete: false });
    expect(cat.backups().map((b) => b.id)).toEqual([b1]);
    // readers and the next backup see only complete backups' versions
    expect(cat.currentVersion(vol, '/new')).toBeUndefined();
    expect(cat.currentVersion(vol, '/a')?.size).toBe(5);
    expect(cat.reapDeadBackups(() => true)).toEqual([]);
    expect(cat.reapDeadBackups(() => false)).toEqual([b2]);
    expect(cat.backup(b2)?.state).toBe('failed');
    expect(rows()).toBe(1);
    const b3 = backup({ '/a': rec() });
    expect(cat.lookup(b3, vol, '/a')?.firstBackup).toBe(b1);
  });

  it('walk lists a subtree in path order and not a sibling with the same prefix', () => {
    const b = backup({
      '/': rec({ type: 'dir', chunks: undefined }),
      '/d': rec({ type: 'dir', chunks: undefined }),
      '/d/x': rec(),
      '/d/e': rec({ type: 'dir', chunks: undefined }),
      '/d/e/y': rec(),
      '/dd': rec({ type: 'dir', chunks: undefined }),
      '/dd/z': rec(),
    });
    expect([...cat.walk(b, vol, '/d')].map((v) => v.path)).toEqual(['/d/e', '/d/x', '/d/e/y']);
    expect([...cat.walk(b, vol, '/')].length).toBe(7);
  });
});

describe('forget and referenced chunks', () => {
  it('forget removes exactly the versions no remaining backup holds', () => {
    const b1 = backup({ '/a': rec(), '/keep': rec({ chunks: [H('c')] }) });
    const b2 = backup({ '/a': rec({ size: 6, chunks: [H('b')] }), '/keep': rec({ chunks: [H('c')] }) });
    const b3 = backup({ '/a': rec({ size: 7, chunks: [H('d')] }), '/keep': rec({ chunks: [H('c')] }) });
    expect(rows()).toBe(4);
    const { versionsRemoved } = cat.forgetBackups([b1]);
    expect(versionsRemoved).toBe(1); // /a of b1 only; /keep spans b1..b3
    expect(cat.lookup(b2, vol, '/keep')).toBeDefined();
    cat.forgetBackups([b3]);
    // b3's own version of /a goes; /keep (first seen in b1) still serves b2
    expect(cat.lookup(b2, vol, '/a')?.size).toBe(6);
    expect(rows()).toBe(2);
    // the next backup compares with what b2 saw
    expect(cat.currentVersion(vol, '/keep')).toBeDefined();
    cat.collectReferenced();
    const refs = (cat.db.prepare('SELECT hash FROM temp.referenced').all() as { hash: Buffer }[])
      .map((r) => r.hash.toString('hex'))
      .sort();
    expect(refs).toEqual([H('b'), H('c')]);
  });

  it('referenced chunks include named streams, and missing ones are reported', () => {
    backup({ '/s': rec({ streams: [{ name: 'Zone.Identifier', size: 3, chunks: [H('e')] }] }) });
    cat.addPack('packs/aa/x', 100, [{ hash: H('a'), offset: 0, storedLength: 10, rawLength: 5, codec: 0 }]);
    expect(cat.collectReferenced()).toBe(2);
    expect(cat.missingReferenced()).toEqual([H('e')]);
    expect(cat.chunkLocation(H('a'))).toMatchObject({ packName: 'packs/aa/x', storedLength: 10 });
  });
});
