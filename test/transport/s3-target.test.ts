/**
 * The Target contract against a real S3-compatible store (OpenStack Swift with
 * s3api, started on loopback by ../shared/services/s3-store), and the pack
 * reader on it with ranged reads.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeChunk } from '../../transport/codec.js';
import { PackReader, PackWriter, packObjectName } from '../../transport/pack.js';
import { FaultyTarget } from '../../transport/targets/faulty.js';
import { MIN_PART_SIZE, S3Target } from '../../transport/targets/s3.js';
import { CACHE, ROOT } from '../helpers/fixtures.js';
import { bytesOf, expectTypedError, listAll, targetSuite } from './target-suite.js';

const STORE = resolve(ROOT, '..', 'shared', 'services', 's3-store');
// ports of our own, so that another engineer's store on the defaults does not collide
const env = { ...process.env, S3_PORT: '18580', SWIFT_PORT_BASE: '16500' };
const DIR = join(CACHE, '..', 's3-store');
const endpoint = 'http://127.0.0.1:18580';
const CREDENTIALS = { endpoint, accessKeyId: 'test:tester', secretAccessKey: 'testing', region: 'us-east-1' };

function store(cmd: 'start' | 'stop'): void {
  const r = spawnSync('bash', [STORE, cmd, DIR], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`s3-store ${cmd}: ${r.stdout}${r.stderr}`);
}

beforeAll(async () => {
  mkdirSync(DIR, { recursive: true });
  store('start');
  // the proxy answers before the account and container servers do (HTTP 503 meanwhile): wait, bounded
  const probe = new S3Target({ ...CREDENTIALS, bucket: 'vdbak-ready' });
  for (let i = 0; ; i++) {
    try {
      await probe.createBucket();
      await probe.deleteBucket();
      return;
    } catch (e) {
      if (i >= 120) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
});
afterAll(() => store('stop'));

async function freshBucket(listPageSize?: number): Promise<S3Target> {
  // the smallest part size S3 allows, so that the suite's streamed puts are multipart uploads here
  const t = new S3Target({
    ...CREDENTIALS,
    bucket: `vdbak-${randomBytes(6).toString('hex')}`,
    listPageSize,
    partSize: MIN_PART_SIZE,
  });
  await t.createBucket();
  return t;
}

async function dropBucket(t: S3Target): Promise<void> {
  for (const name of await listAll(t, '')) await t.delete(name);
  await t.deleteBucket();
}

targetSuite('S3Target (Swift s3api on loopback, multipart at 5 MiB)', async () => {
  const t = await freshBucket();
  return { target: t, cleanup: () => dropBucket(t) };
});

describe('S3Target specifics', () => {
  it('lists past one page of results', async () => {
    const t = await freshBucket(7);
    const names = Array.from({ length: 60 }, (_, i) => `packs/${(i % 16).toString(16).padStart(2, '0')}/o${i}`);
    for (let i = 0; i < names.length; i += 50)
      await Promise.all(names.slice(i, i + 50).map((n) => t.put(n, Buffer.from(n))));
    expect(await listAll(t, 'packs/')).toEqual([...names].sort());
    await dropBucket(t);
  });

  it('refuses bad credentials with a typed access error', async () => {
    const t = new S3Target({
      endpoint,
      bucket: 'vdbak-nope',
      accessKeyId: 'test:tester',
      secretAccessKey: 'wrong',
      region: 'us-east-1',
    });
    await expectTypedError(t.put('x', Buffer.from('x')), 'TARGET_ACCESS');
  });

  it('reports an unreachable store as a typed I/O error', async () => {
    const t = new S3Target({
      endpoint: 'http://127.0.0.1:9',
      bucket: 'vdbak-x',
      accessKeyId: 'a',
      secretAccessKey: 'b',
      region: 'us-east-1',
    });
    await expectTypedError(t.get('x'), 'TARGET_IO');
  });

  it('serves packs with ranged reads, and retried faulty writes leave whole objects', async () => {
    const t = await freshBucket();
    const faulty = new FaultyTarget(t, { seed: 9, putBefore: 0.3, putAfter: 0.3 });
    const w = new PackWriter({ targetSize: 1 << 20 });
    const raw = new Map<string, Buffer>();
    for (let i = 0; i < 40; i++) {
      const bytes = i % 2 ? bytesOf(50_000, i) : Buffer.from('text '.repeat(10_000 + i));
      const hash = createHash('sha256').update(bytes).digest('hex');
      raw.set(hash, bytes);
      w.add(encodeChunk({ hash, bytes }));
    }
    const pack = w.finish();
    const name = packObjectName(pack.id);
    for (let attempt = 0; ; attempt++) {
      try {
        await faulty.put(name, pack.bytes);
        break;
      } catch (e) {
        if (attempt > 20) throw e;
      }
    }
    const r = await PackReader.fromTarget(t, name);
    for (const e of r.entries) expect((await r.readChunk(e)).equals(raw.get(e.hash)!)).toBe(true);
    expect(await listAll(t, '')).toEqual([name]);
    await dropBucket(t);
  });
});
