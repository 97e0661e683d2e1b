/**
 * The bucket and the throttled device, in this thread and across worker
 * threads. A token bucket promises an upper bound (never more than its
 * capacity plus rate × time), which holds however loaded the machine is;
 * the tests assert that bound and the direction of changes, never speeds.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenBucket } from '../../agent/throttle/bucket.js';
import { BucketSlot, throttleDisk, ThrottledDevice } from '../../agent/throttle/device.js';
import { MemoryDevice } from '../../parsers/blockdevice.js';
import { RawImage } from '../../parsers/disk/raw.js';
import { CorruptError, TruncatedError } from '../../parsers/errors.js';
import { compiled, removeCompiled, startReader } from './workers.js';

const MiB = 1024 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const now = (): number => performance.timeOrigin + performance.now();

let dir = '';
let image = '';
beforeAll(() => {
  dir = compiled();
  image = join(dir, 'image.raw');
  writeFileSync(image, randomBytes(16 * MiB));
});
afterAll(() => removeCompiled(dir));

describe('ThrottledDevice in one thread', () => {
  it('returns exactly the inner bytes, split into pieces, and takes tokens for every byte', () => {
    const bytes = randomBytes(8 * MiB + 123);
    const bucket = TokenBucket.create(1e12); // effectively unlimited: this test is about content
    const dev = new ThrottledDevice(new MemoryDevice(bytes, 'mem'), bucket, { pieceBytes: 256 * 1024 });
    const a = dev.read(1000, 3 * MiB + 17);
    expect(a.equals(bytes.subarray(1000, 1000 + 3 * MiB + 17))).toBe(true);
    const b = dev.read(5, 10);
    expect(b.equals(bytes.subarray(5, 15))).toBe(true);
    expect(bucket.stats().granted).toBe(3 * MiB + 17 + 10);
    expect(dev.allocated(0, dev.size)).toEqual([{ offset: 0, length: dev.size }]);
    expect(dev.name).toBe('mem');
    expect(() => dev.read(dev.size - 1, 2)).toThrow(/READ_OUT_OF_RANGE/);
  });

  it('a throttled disk keeps its format and chain', () => {
    const raw = new RawImage(image);
    const d = throttleDisk(raw, TokenBucket.create(1e12));
    expect(d.format).toBe('raw');
    expect(d.chain).toEqual(raw.chain);
    expect(d.read(0, 4096).equals(raw.read(0, 4096))).toBe(true);
    d.close();
    expect(() => raw.read(0, 1)).toThrow(/FILE_CLOSED/);
  });

  it('a request larger than the bucket waits for a full bucket and goes into debt, never starves', () => {
    // 4 MiB/s, 1 MiB bucket: a 10 MiB request waits for 1 MiB, then owes 9 MiB
    const bucket = TokenBucket.create(4 * MiB, { minCapacity: MiB });
    expect(bucket.stats().capacity).toBe(MiB);
    bucket.acquire(10 * MiB);
    expect(bucket.stats().tokens).toBeLessThan(-8 * MiB);
  });

  it('the main thread never sleeps (it runs the loop that would wake it), but pays into debt', async () => {
    const b = TokenBucket.create(0);
    b.hold();
    expect(b.acquire(2 * MiB)).toBe(0);
    expect(b.stats().tokens).toBe(-2 * MiB);
    expect(b.stats().granted).toBe(2 * MiB);
    // a worker on the same bucket does sleep: the hold still applies to it
    b.setRate(4 * MiB);
    const r = await startReader(dir, b.buffer, image, 64 * 1024);
    await sleep(300);
    expect(r.bytes()).toBe(0); // still held
    b.close();
    await r.stop();
  });

  it('attach refuses anything but a bucket buffer', () => {
    expect(() => TokenBucket.attach(new SharedArrayBuffer(8))).toThrow(CorruptError);
    const b = TokenBucket.create(5);
    expect(TokenBucket.attach(b.buffer).rate).toBe(5);
  });

  it('a closed bucket lets everything through', () => {
    const b = TokenBucket.create(0);
    b.close();
    expect(b.acquire(100 * MiB)).toBeGreaterThanOrEqual(0);
    expect(b.stats().closed).toBe(true);
  });

  it("a worker's slot reads through whichever bucket the current task brought, or none", () => {
    const slot = new BucketSlot();
    const dev = new ThrottledDevice(new MemoryDevice(randomBytes(3 * MiB)), slot);
    const stopped = TokenBucket.create(0); // would block forever if it were used
    dev.read(0, 2 * MiB); // empty slot: no limit
    const a = TokenBucket.create(1e12, { minCapacity: 64 * 1024 });
    slot.use(a.buffer);
    dev.read(0, 3 * MiB);
    expect(a.stats().granted).toBe(3 * MiB);
    const b = TokenBucket.create(1e12);
    slot.use(b.buffer);
    dev.read(0, 1000);
    expect(b.stats().granted).toBe(1000);
    expect(a.stats().granted).toBe(3 * MiB);
    slot.use(undefined);
    dev.read(0, 1000);
    expect(b.stats().granted).toBe(1000);
    expect(stopped.stats().granted).toBe(0);
  });

  it('inner errors pass through unchanged', () => {
    const dev = new ThrottledDevice(
      {
        size: 100,
        name: 'broken',
        read: () => {
          throw new TruncatedError({ image: 'broken', layer: 'raw' }, 'X_SHORT', 'short');
        },
        allocated: () => [],
        close: () => {},
      },
      TokenBucket.create(1e12),
    );
    expect(() => dev.read(0, 10)).toThrow(/X_SHORT/);
  });
});

describe('the bucket across worker threads', () => {
  it('never grants more than capacity + rate × time, shared by two readers', async () => {
    const rate = 6 * MiB;
    const bucket = TokenBucket.create(rate);
    const t0 = now();
    const cap = bucket.stats().capacity;
    const readers = [
      await startReader(dir, bucket.buffer, image, 256 * 1024),
      await startReader(dir, bucket.buffer, image, 256 * 1024),
    ];
    await sleep(1500);
    const read = readers.reduce((a, r) => a + r.bytes(), 0);
    const elapsed = (now() - t0) / 1000;
    expect(read).toBeGreaterThan(0);
    expect(bucket.stats().granted).toBeLessThanOrEqual(cap + rate * elapsed);
    expect(read).toBeLessThanOrEqual(bucket.stats().granted);
    // both readers got a share (neither thread starves the other)
    for (const r of readers) expect(r.bytes()).toBeGreaterThan(0);
    bucket.close();
    await Promise.all(readers.map((r) => r.stop()));
  });

  it('rate 0 stops readers mid-stream; a rate wakes them at once', async () => {
    const bucket = TokenBucket.create(50 * MiB);
    const r = await startReader(dir, bucket.buffer, image, 4 * MiB);
    while (r.bytes() === 0) await sleep(10);
    bucket.setRate(0);
    await sleep(300); // a read in progress finishes its current piece
    const stopped = r.bytes();
    await sleep(400);
    expect(r.bytes()).toBe(stopped);
    expect(bucket.stats().waiters).toBe(1);
    bucket.setRate(50 * MiB);
    while (r.bytes() === stopped) await sleep(10);
    expect(r.bytes()).toBeGreaterThan(stopped);
    bucket.close();
    await r.stop();
  });

  it('a restore outranks a backup: a hold stops backup readers while a priority reader goes on', async () => {
    const bucket = TokenBucket.create(50 * MiB);
    const backup = await startReader(dir, bucket.buffer, image, 1 * MiB);
    while (backup.bytes() === 0) await sleep(10);
    const release = bucket.hold();
    const restore = await startReader(dir, bucket.buffer, image, 1 * MiB, true);
    await sleep(300); // the backup's read in progress ends
    const held = backup.bytes();
    const restored = restore.bytes();
    await sleep(400);
    expect(backup.bytes()).toBe(held);
    expect(restore.bytes()).toBeGreaterThan(restored);
    await restore.stop();
    expect(bucket.stats().priorityBytes).toBeGreaterThan(0);
    release();
    release(); // idempotent: one hold, one release
    expect(bucket.stats().holds).toBe(0);
    while (backup.bytes() === held) await sleep(10);
    bucket.close();
    await backup.stop();
  });

  it('close releases a reader blocked at rate 0', async () => {
    const bucket = TokenBucket.create(0);
    const r = await startReader(dir, bucket.buffer, image, 1 * MiB);
    await sleep(200);
    expect(r.bytes()).toBe(0);
    bucket.close();
    await r.stop();
    expect(r.bytes()).toBeGreaterThan(0);
  });
});
