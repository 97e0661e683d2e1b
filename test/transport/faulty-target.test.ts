import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isVdbakError } from '../../parsers/errors.js';
import { FaultyTarget } from '../../transport/targets/faulty.js';
import { LocalTarget } from '../../transport/targets/local.js';
import type { Target } from '../../transport/targets/types.js';
import { bytesOf, listAll, piecesOf } from './target-suite.js';

/** Puts with retries, as a backup job would; returns the typed error codes seen on the way. */
async function putWithRetry(t: Target, name: string, bytes: Uint8Array, codes: string[]): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await t.put(name, bytes);
      return;
    } catch (e) {
      if (!isVdbakError(e)) throw e; // only typed errors are acceptable
      codes.push(e.code);
      if (attempt > 50) throw e;
    }
  }
}

describe('FaultyTarget with faults on', () => {
  it('surfaces injected write faults as typed errors, and retries leave the target consistent', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdbak-faulty-'));
    const local = new LocalTarget(dir);
    const t = new FaultyTarget(local, { seed: 42, putBefore: 0.2, putAfter: 0.2, noSpace: 0.1, latencyMs: 1 });
    const objects = new Map<string, Buffer>();
    for (let i = 0; i < 60; i++) {
      const hex = i.toString(16).padStart(2, '0');
      objects.set(`packs/${hex}/${hex}${'0'.repeat(10)}`, bytesOf(1000 + i * 37, i));
    }
    const codes: string[] = [];
    for (const [name, bytes] of objects) {
      // a first attempt may fail before or after the commit: either nothing or the whole object is visible
      try {
        await t.put(name, bytes);
      } catch (e) {
        expect(isVdbakError(e)).toBe(true);
        if (await local.exists(name)) expect((await local.get(name)).equals(bytes)).toBe(true);
        await putWithRetry(t, name, bytes, codes);
      }
    }
    expect(t.injected.putBefore).toBeGreaterThan(0);
    expect(t.injected.putAfter).toBeGreaterThan(0);
    expect(t.injected.noSpace).toBeGreaterThan(0);
    t.enabled = false;
    // consistent: exactly the objects put, each whole, and no temporary file anywhere
    expect(await listAll(t, '')).toEqual([...objects.keys()].sort());
    for (const [name, bytes] of objects) expect((await t.get(name)).equals(bytes)).toBe(true);
    const files = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
    expect(files.length).toBe(objects.size);
    rmSync(dir, { recursive: true });
  });

  it('fails streamed puts mid-stream: either nothing or the whole object is visible, and no temp file stays', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdbak-faulty-'));
    const local = new LocalTarget(dir);
    const t = new FaultyTarget(local, { seed: 11, putBefore: 0.3, putAfter: 0.3, noSpace: 0.2 });
    const codes: string[] = [];
    for (let i = 0; i < 30; i++) {
      const name = `catalog/c${i}.db.zst`;
      const bytes = bytesOf(20_000 + i, i);
      try {
        await t.putStream(name, piecesOf(bytes, [4096]));
        expect((await local.get(name)).equals(bytes)).toBe(true);
      } catch (e) {
        expect(isVdbakError(e)).toBe(true);
        if (isVdbakError(e)) codes.push(`${e.code}:${e.message.includes('after') ? 'after' : 'before'}`);
        // a fault after the commit leaves the whole object; one before it, none
        if (await local.exists(name)) expect((await local.get(name)).equals(bytes)).toBe(true);
        else expect(codes.at(-1)).not.toMatch(/:after$/);
      }
    }
    expect(new Set(codes)).toEqual(new Set(['TARGET_NO_SPACE:before', 'TARGET_IO:before', 'TARGET_IO:after']));
    const files = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
    expect(files.every((f) => !f.name.startsWith('.'))).toBe(true);
    rmSync(dir, { recursive: true });
  });

  it('injects the same faults for the same seed (replayable)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdbak-faulty-'));
    const outcomes = async (): Promise<string[]> => {
      const t = new FaultyTarget(new LocalTarget(dir), { seed: 7, putBefore: 0.3, putAfter: 0.3, noSpace: 0.2 });
      const seen: string[] = [];
      for (let i = 0; i < 30; i++) {
        await t.put(`o${i}`, Buffer.from([i])).then(
          () => seen.push('ok'),
          (e) =>
            seen.push(isVdbakError(e) ? `${e.code}:${e.message.includes('after') ? 'after' : 'before'}` : 'untyped'),
        );
      }
      return seen;
    };
    const a = await outcomes();
    expect(new Set(a).size).toBeGreaterThan(2);
    expect(await outcomes()).toEqual(a);
    rmSync(dir, { recursive: true });
  });

  it('returns short reads that a consumer can detect', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdbak-faulty-'));
    const t = new FaultyTarget(new LocalTarget(dir), { seed: 3, shortRead: 1 });
    t.enabled = false;
    await t.put('o', bytesOf(1000, 1));
    t.enabled = true;
    expect((await t.getRange('o', 0, 1000)).length).toBe(500);
    expect((await t.get('o')).length).toBe(500);
    expect(t.injected.shortRead).toBe(2);
    rmSync(dir, { recursive: true });
  });
});
