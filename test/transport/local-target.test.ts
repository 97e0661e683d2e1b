import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FaultyTarget } from '../../transport/targets/faulty.js';
import { LocalTarget } from '../../transport/targets/local.js';
import { bytesOf, expectTypedError, failingSource, listAll, piecesOf, targetSuite } from './target-suite.js';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'vdbak-target-'));
}

targetSuite('LocalTarget', async () => {
  const dir = tempDir();
  return { target: new LocalTarget(join(dir, 'repo')), cleanup: async () => rmSync(dir, { recursive: true }) };
});

targetSuite('FaultyTarget(LocalTarget) with faults off', async () => {
  const dir = tempDir();
  const t = new FaultyTarget(new LocalTarget(dir), { seed: 1, putBefore: 1, putAfter: 1, noSpace: 1, shortRead: 1 });
  t.enabled = false;
  return { target: t, cleanup: async () => rmSync(dir, { recursive: true }) };
});

/** Every file under `dir`, relative, including hidden temporary files. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

describe('LocalTarget on disk', () => {
  it('lays packs out in fan-out folders and leaves no temporary file behind', async () => {
    const dir = tempDir();
    const t = new LocalTarget(dir);
    await t.put('packs/ab/abcdef', Buffer.from('p1'));
    await t.put('packs/cd/cdef01', Buffer.from('p2'));
    expect(filesUnder(dir)).toEqual(['packs/ab/abcdef', 'packs/cd/cdef01']);
    rmSync(dir, { recursive: true });
  });

  it('never lists the temporary file a crashed write left behind', async () => {
    const dir = tempDir();
    const t = new LocalTarget(dir);
    await t.put('packs/ab/ab01', Buffer.from('whole'));
    writeFileSync(join(dir, 'packs', 'ab', '.tmp-ab02-123456'), 'half a pack');
    expect(await listAll(t, '')).toEqual(['packs/ab/ab01']);
    expect(await t.exists('packs/ab/ab02')).toBe(false);
    rmSync(dir, { recursive: true });
  });

  it('leaves no temporary file when a streamed put fails', async () => {
    const dir = tempDir();
    const t = new LocalTarget(dir);
    await expect(t.putStream('catalog/c', failingSource(bytesOf(5000, 1), new Error('gone')))).rejects.toThrow('gone');
    expect(filesUnder(dir)).toEqual([]);
    rmSync(dir, { recursive: true });
  });

  describe('when the filesystem is full (a real 1 MiB tmpfs)', () => {
    const mnt = tempDir();
    beforeAll(() => {
      const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
      if (r.status !== 0) throw new Error(`mount tmpfs (needs root, as on our machines and CI): ${r.stderr}`);
    });
    afterAll(() => {
      spawnSync('umount', [mnt]);
      rmSync(mnt, { recursive: true });
    });

    it('fails with TARGET_NO_SPACE, shows no partial object, keeps no temp file, and works once space is freed', async () => {
      const t = new LocalTarget(mnt);
      const small = bytesOf(600 << 10, 1);
      await t.put('packs/aa/aa01', small);
      const big = bytesOf(700 << 10, 2);
      await expectTypedError(t.put('packs/bb/bb01', big), 'TARGET_NO_SPACE');
      expect(await t.exists('packs/bb/bb01')).toBe(false);
      expect(await listAll(t, '')).toEqual(['packs/aa/aa01']);
      expect(filesUnder(mnt)).toEqual(['packs/aa/aa01']);
      // the retry after making room succeeds and the object is whole
      await t.delete('packs/aa/aa01');
      await t.put('packs/bb/bb01', big);
      expect((await t.get('packs/bb/bb01')).equals(big)).toBe(true);
      expect(filesUnder(mnt)).toEqual(['packs/bb/bb01']);
    });

    it('fails a streamed put with TARGET_NO_SPACE mid-stream, shows nothing and keeps no temp file', async () => {
      const t = new LocalTarget(mnt);
      for (const name of await listAll(t, '')) await t.delete(name);
      await t.put('packs/aa/aa01', bytesOf(600 << 10, 3));
      await expectTypedError(t.putStream('catalog/c', piecesOf(bytesOf(700 << 10, 4), [64 << 10])), 'TARGET_NO_SPACE');
      expect(await listAll(t, '')).toEqual(['packs/aa/aa01']);
      expect(filesUnder(mnt)).toEqual(['packs/aa/aa01']);
    });
  });
});
