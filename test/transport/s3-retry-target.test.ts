/**
 * S3Target against a fake S3 server (fake-s3-target.ts) that fails on
 * demand: transient failures (503 SlowDown, 500, 502, 504, a reset
 * connection, a body cut short) are retried with back-off until an attempt
 * succeeds, bounded by `retries`; other failures are not; a streamed put is a
 * multipart upload that shows nothing and leaves no upload open when it fails.
 * The whole Target contract runs on the fake too.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MIN_PART_SIZE } from '../../transport/targets/s3.js';
import { FakeS3, type FaultReply } from './fake-s3-target.js';
import { bytesOf, expectTypedError, failingSource, listAll, piecesOf, targetSuite } from './target-suite.js';

targetSuite('S3Target on a fake S3 (5 MiB parts)', async () => {
  const s3 = new FakeS3();
  await s3.start();
  return { target: s3.target({ partSize: MIN_PART_SIZE }), cleanup: () => s3.stop() };
});

const servers: FakeS3[] = [];
async function fake(): Promise<FakeS3> {
  const s3 = new FakeS3();
  await s3.start();
  servers.push(s3);
  return s3;
}
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

describe('S3Target retries', () => {
  for (const reply of [503, 500, 502, 504, 'reset'] as FaultReply[]) {
    it(`retries put, get, ranged get, stat, list and delete after ${String(reply)}`, async () => {
      const s3 = await fake();
      const t = s3.target();
      const bytes = bytesOf(70_000, 1);
      // every request fails once, then succeeds
      const once = (): void => {
        s3.faults.push({ reply });
      };
      once();
      await t.put('packs/ab/ab01', bytes);
      once();
      expect((await t.get('packs/ab/ab01')).equals(bytes)).toBe(true);
      once();
      expect((await t.getRange('packs/ab/ab01', 100, 5000)).equals(bytes.subarray(100, 5100))).toBe(true);
      once();
      expect(await t.stat('packs/ab/ab01')).toEqual({ name: 'packs/ab/ab01', size: 70_000 });
      once();
      expect(await listAll(t, 'packs/')).toEqual(['packs/ab/ab01']);
      once();
      await t.delete('packs/ab/ab01');
      expect(s3.objects.size).toBe(0);
      expect(s3.faults).toEqual([]);
      // each operation took exactly two requests
      expect(s3.count(/^PUT packs\/ab\/ab01$/)).toBe(2);
      expect(s3.count(/^GET packs\/ab\/ab01$/)).toBe(4);
      expect(s3.count(/^HEAD /)).toBe(2);
      expect(s3.count(/^DELETE packs/)).toBe(2);
    });
  }

  it('retries a body cut short by a reset connection', async () => {
    const s3 = await fake();
    const t = s3.target();
    const bytes = bytesOf(200_000, 2);
    await t.put('o', bytes);
    s3.faults.push({ reply: 'reset-mid-body', match: (m) => m === 'GET' });
    expect((await t.get('o')).equals(bytes)).toBe(true);
    expect(s3.count(/^GET o$/)).toBe(2);
  });

  it('gives up after `retries` more attempts with a typed error naming the status', async () => {
    const s3 = await fake();
    const t = s3.target({ retries: 3 });
    s3.faults.push({ reply: 503, times: 4 });
    let caught: unknown;
    await t.put('o', Buffer.from('x')).catch((e: unknown) => {
      caught = e;
    });
    expect(String(caught)).toMatch(/HTTP 503 SlowDown.*TARGET_IO/);
    expect(s3.count(/^PUT o$/)).toBe(4);
    expect(s3.objects.has('o')).toBe(false);
    // the next call starts afresh
    await t.put('o', Buffer.from('x'));
    expect(s3.objects.get('o')?.toString()).toBe('x');
  });

  it('does not retry what another attempt would not change (not found, access denied, bad range)', async () => {
    const s3 = await fake();
    const t = s3.target();
    await expectTypedError(t.get('nope'), 'TARGET_NOT_FOUND');
    expect(s3.count(/^GET nope$/)).toBe(1);
    s3.faults.push({ reply: 403 });
    await expectTypedError(t.put('o', Buffer.from('abc')), 'TARGET_ACCESS');
    expect(s3.count(/^PUT o$/)).toBe(1);
    await t.put('o', Buffer.from('abc'));
    await expectTypedError(t.getRange('o', 10, 1), 'TARGET_SHORT_READ');
    expect(s3.count(/^GET o$/)).toBe(1);
  });
});

describe('S3Target streamed puts (multipart)', () => {
  const MiB = 1 << 20;

  it('uploads parts of partSize, completes once, and retries a part that met 503', async () => {
    const s3 = await fake();
    const t = s3.target({ partSize: MIN_PART_SIZE });
    const bytes = bytesOf(12 * MiB + 3, 3);
    s3.faults.push({ reply: 503, match: (m, _k, q) => m === 'PUT' && q.get('partNumber') === '2' });
    s3.faults.push({ reply: 'reset', match: (m, _k, q) => m === 'POST' && q.has('uploadId') });
    await t.putStream('catalog/c.db.zst', piecesOf(bytes, [MiB]));
    expect(s3.objects.get('catalog/c.db.zst')?.equals(bytes)).toBe(true);
    expect(s3.count(/^PUT catalog\/c\.db\.zst\?partNumber=/)).toBe(4); // 3 parts, one sent twice
    expect(s3.count(/^POST .*\?uploads=?$/)).toBe(1);
    expect(s3.uploads.size).toBe(0);
  });

  it('takes a completion whose reply was lost as done (its retry finds the upload gone and the object whole)', async () => {
    const s3 = await fake();
    const t = s3.target({ partSize: MIN_PART_SIZE });
    const bytes = bytesOf(6 * MiB, 7);
    s3.faults.push({ reply: 'reset-after', match: (m, _k, q) => m === 'POST' && q.has('uploadId') });
    await t.putStream('catalog/d', piecesOf(bytes, [MiB]));
    expect(s3.count(/^POST catalog\/d\?uploadId=/)).toBe(2);
    expect(s3.objects.get('catalog/d')?.equals(bytes)).toBe(true);
  });

  it('takes an object smaller than a part in one plain PUT', async () => {
    const s3 = await fake();
    const t = s3.target({ partSize: MIN_PART_SIZE });
    await t.putStream('catalog/s', piecesOf(bytesOf(MiB, 4), [1000]));
    expect(s3.requests).toEqual(['PUT catalog/s']);
  });

  it('aborts the upload when the source fails or a part keeps failing: no object, no open upload', async () => {
    const s3 = await fake();
    const t = s3.target({ partSize: MIN_PART_SIZE, retries: 1 });
    const boom = new Error('source broke');
    await expect(t.putStream('catalog/a', failingSource(bytesOf(3 * MiB, 5), boom))).rejects.toBe(boom);
    s3.faults.push({ reply: 500, times: 2, match: (m, _k, q) => m === 'PUT' && q.get('partNumber') === '2' });
    await expectTypedError(t.putStream('catalog/b', piecesOf(bytesOf(11 * MiB, 6), [MiB])), 'TARGET_IO');
    expect(s3.count(/^DELETE catalog\/[ab]\?uploadId=/)).toBe(2);
    expect(s3.uploads.size).toBe(0);
    expect(s3.objects.size).toBe(0);
  });

  it('refuses a part size S3 would refuse', async () => {
    const s3 = await fake();
    expect(() => s3.target({ partSize: MIN_PART_SIZE - 1 })).toThrow(RangeError);
  });
});
