/**
 * The one behaviour suite every Target must pass (LocalTarget, FaultyTarget
 * with faults off, and later S3). A target file calls
 * `targetSuite('name', async () => ({ target, cleanup }))`; each test gets a
 * fresh, empty target.
 */
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { isVdbakError } from '../../parsers/errors.js';
import type { Target } from '../../transport/targets/types.js';
import { prng } from '../helpers/fuzz.js';

export interface TargetHandle {
  target: Target;
  cleanup(): Promise<void>;
}

export function bytesOf(length: number, seed: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

/**
 * `bytes` as a stream of pieces of the given sizes (cycled), all through one
 * reused buffer: a target must be done with a piece when it asks for the next.
 */
export async function* piecesOf(bytes: Buffer, sizes: readonly number[]): AsyncGenerator<Uint8Array> {
  const buf = Buffer.alloc(Math.max(...sizes));
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, bytes.length - at);
    bytes.copy(buf, 0, at, at + n);
    yield buf.subarray(0, n);
    buf.fill(0xee); // what a target that kept the view would store instead
    at += n;
  }
}

/** A source that yields `good` and then fails with `error`. */
export async function* failingSource(good: Buffer, error: Error): AsyncGenerator<Uint8Array> {
  yield good;
  yield good;
  throw error;
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export async function listAll(t: Target, prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const n of t.list(prefix)) names.push(n);
  return names.sort();
}

export async function expectTypedError(p: Promise<unknown>, code: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    expect(isVdbakError(e) ? e.code : `untyped ${String(e)}`).toBe(code);
    return;
  }
  throw new Error(`expected ${code}, got success`);
}

export function targetSuite(label: string, open: () => Promise<TargetHandle>): void {
  describe(`Target contract: ${label}`, () => {
    let handle: TargetHandle | undefined;
    const fresh = async (): Promise<Target> => {
      handle = await open();
      return handle.target;
    };
    afterEach(async () => {
      await handle?.cleanup();
      handle = undefined;
    });

    it('puts and gets objects of any size, byte for byte', async () => {
      const t = await fresh();
      for (const [name, size] of [
        ['empty', 0],
        ['one', 1],
        ['config/repo.json', 1000],
        ['packs/ab/ab' + 'c'.repeat(62), 5 << 20],
      ] as const) {
        const bytes = bytesOf(size, size);
        await t.put(name, bytes);
        const back = await t.get(name);
        expect(back.length).toBe(size);
        expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(bytes).digest('hex'));
        expect(await t.stat(name)).toEqual({ name, size });
        expect(await t.exists(name)).toBe(true);
      }
    });

    it('streams objects in pieces of any size, byte for byte (putStream)', async () => {
      const t = await fresh();
      const MiB = 1 << 20;
      for (const [name, size, sizes] of [
        ['catalog/empty', 0, [1]],
        ['catalog/small', 10_000, [1, 999, 4096]],
        // over 2 parts of S3's smallest part size (5 MiB), in pieces that straddle the part boundaries
        ['catalog/big.db.zst', 11 * MiB + 12_345, [3 * MiB + 7, 1, 700_001]],
      ] as const) {
        const bytes = bytesOf(size, size + 1);
        await t.putStream(name, piecesOf(bytes, sizes));
        expect(await t.stat(name)).toEqual({ name, size });
        expect(sha(await t.get(name))).toBe(sha(bytes));
      }
      await t.putStream('catalog/small', piecesOf(bytesOf(5, 9), [2])); // replaced
      expect((await t.get('catalog/small')).equals(bytesOf(5, 9))).toBe(true);
      expect(await listAll(t, '')).toEqual(['catalog/big.db.zst', 'catalog/empty', 'catalog/small']);
    });

    it('shows nothing of a streamed put whose source fails, and passes the source error on unchanged', async () => {
      const t = await fresh();
      const old = bytesOf(1000, 5);
      await t.put('catalog/x', old);
      for (const [name, piece] of [
        ['catalog/x', bytesOf(100, 6)],
        ['catalog/new', bytesOf(3 << 20, 7)], // big enough that an S3 target with 5 MiB parts has sent one
      ] as const) {
        const boom = new Error('source broke');
        let caught: unknown;
        await t.putStream(name, failingSource(piece, boom)).catch((e: unknown) => {
          caught = e;
        });
        expect(caught).toBe(boom);
      }
      expect((await t.get('catalog/x')).equals(old)).toBe(true);
      expect(await t.exists('catalog/new')).toBe(false);
      expect(await listAll(t, '')).toEqual(['catalog/x']);
      await expect(t.putStream('../bad', piecesOf(old, [10]))).rejects.toThrow(/TARGET_BAD_NAME/);
    });

    it('treats a second put of the same name as success and keeps one whole object', async () => {
      const t = await fresh();
      const a = bytesOf(3000, 1);
      await t.put('packs/00/00aa', a);
      await t.put('packs/00/00aa', a);
      expect((await t.get('packs/00/00aa')).equals(a)).toBe(true);
      const b = bytesOf(100, 2);
      await t.put('packs/00/00aa', b); // replaced atomically
      expect((await t.get('packs/00/00aa')).equals(b)).toBe(true);
      expect(await listAll(t, '')).toEqual(['packs/00/00aa']);
    });

    it('reads exact ranges, and refuses ranges past the end with a typed error', async () => {
      const t = await fresh();
      const bytes = bytesOf(100_000, 3);
      await t.put('obj', bytes);
      expect((await t.getRange('obj', 0, 10)).equals(bytes.subarray(0, 10))).toBe(true);
      expect((await t.getRange('obj', 99_990, 10)).equals(bytes.subarray(99_990))).toBe(true);
      expect((await t.getRange('obj', 500, 0)).length).toBe(0);
      expect((await t.getRange('obj', 12_345, 54_321)).equals(bytes.subarray(12_345, 12_345 + 54_321))).toBe(true);
      await expectTypedError(t.getRange('obj', 99_990, 11), 'TARGET_SHORT_READ');
      await expectTypedError(t.getRange('obj', 200_000, 1), 'TARGET_SHORT_READ');
    });

    it('reports missing objects as typed not-found errors that isNotFound recognises', async () => {
      const t = await fresh();
      // one at a time: a rejected promise must have its handler before the next starts
      for (const op of [() => t.get('nope'), () => t.getRange('nope', 0, 1), () => t.stat('packs/no/nope')]) {
        let caught: unknown;
        await op().catch((e: unknown) => {
          caught = e;
        });
        expect(isVdbakError(caught) && caught.code).toBe('TARGET_NOT_FOUND');
        expect(t.isNotFound(caught)).toBe(true);
      }
      expect(await t.exists('nope')).toBe(false);
      expect(t.isNotFound(new Error('ENOENT'))).toBe(false);
    });

    it('lists names by prefix, recursively', async () => {
      const t = await fresh();
      const names = ['packs/ab/ab01', 'packs/ab/ab02', 'packs/cd/cd01', 'catalog/c1', 'top'];
      for (const n of names) await t.put(n, Buffer.from(n));
      expect(await listAll(t, '')).toEqual([...names].sort());
      expect(await listAll(t, 'packs/')).toEqual(['packs/ab/ab01', 'packs/ab/ab02', 'packs/cd/cd01']);
      expect(await listAll(t, 'packs/a')).toEqual(['packs/ab/ab01', 'packs/ab/ab02']);
      expect(await listAll(t, 'packs/ab/ab0')).toEqual(['packs/ab/ab01', 'packs/ab/ab02']);
      expect(await listAll(t, 'packs/ab/ab01')).toEqual(['packs/ab/ab01']);
      expect(await listAll(t, 'cat')).toEqual(['catalog/c1']);
      expect(await listAll(t, 'zzz/')).toEqual([]);
    });

    it('deletes objects, and deleting a missing one is success', async () => {
      const t = await fresh();
      await t.put('packs/ab/ab01', Buffer.from('x'));
      await t.delete('packs/ab/ab01');
      expect(await t.exists('packs/ab/ab01')).toBe(false);
      await t.delete('packs/ab/ab01');
      await t.delete('never');
      expect(await listAll(t, '')).toEqual([]);
    });

    it('refuses names that are not portable object names', async () => {
      const t = await fresh();
      for (const bad of ['', '/abs', 'a//b', '../x', 'a/../b', '.hidden', 'a/.tmp-x', 'sp ace', 'a\\b', 'x/']) {
        await expectTypedError(t.put(bad, Buffer.from('x')), 'TARGET_BAD_NAME');
        await expectTypedError(t.get(bad), 'TARGET_BAD_NAME');
      }
      await expect(listAll(t, '../')).rejects.toThrow(/TARGET_BAD_NAME/);
    });

    it('returns plain data (buffers and plain objects) that cross worker threads', async () => {
      const t = await fresh();
      await t.put('o', Buffer.from('hello'));
      const info = await t.stat('o');
      expect(structuredClone(info)).toEqual(info);
      expect(Buffer.from(structuredClone(await t.get('o'))).toString()).toBe('hello');
    });
  });
}
