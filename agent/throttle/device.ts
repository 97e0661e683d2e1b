/**
 * A BlockDevice that takes tokens before it reads (DESIGN.md: throttling is a
 * wrapper, never a flag inside a device). A read larger than one piece is
 * split: each piece waits for its own tokens, then is read, so a 4 MiB read
 * stops between pieces when the controller stops the backup, and no thread
 * ever asks the bucket for more than it can hold.
 *
 * Wrap the disk image (the bottom of the stack), not a volume or file: every
 * layer above reads through it. Tokens count the image's virtual bytes; for a
 * compressed image (streamOptimized, compressed qcow2) that is more than the
 * bytes fetched from storage, so the law is conservative there.
 *
 * `priority: true` (restores): reads take no tokens and hold the bucket while
 * they run, so backups sharing the bucket wait for them, never the reverse.
 */
import { type BlockDevice, type ByteRange, checkRead } from '../../parsers/blockdevice.js';
import type { DiskImage } from '../../parsers/disk/types.js';
import { DEFAULT_PIECE_BYTES, TokenBucket } from './bucket.js';

/** What a ThrottledDevice needs from a bucket (a TokenBucket, or a worker's BucketSlot). */
export interface Limiter {
  readonly pieceBytes: number;
  acquire(n: number): number;
  hold(): () => void;
  notePriority(bytes: number): void;
}

/**
 * A worker's slot for the current task's bucket. Workers keep disks open
 * across tasks (and jobs), so a device opened once reads through whatever
 * bucket the task at hand brought: `use(task.throttle)` at the start of each
 * task. Empty (no bucket, or `use(undefined)`), it does not limit.
 */
export class BucketSlot implements Limiter {
  private bucket: TokenBucket | undefined;

  use(buffer: SharedArrayBuffer | undefined): void {
    if (buffer === undefined) this.bucket = undefined;
    else if (this.bucket?.buffer !== buffer) this.bucket = TokenBucket.attach(buffer);
  }
  get pieceBytes(): number {
    return this.bucket?.pieceBytes ?? DEFAULT_PIECE_BYTES;
  }
  acquire(n: number): number {
    return this.bucket?.acquire(n) ?? 0;
  }
  hold(): () => void {
    return this.bucket?.hold() ?? (() => {});
  }
  notePriority(bytes: number): void {
    this.bucket?.notePriority(bytes);
  }
}

export interface ThrottleOptions {
  /** Reads of a restore: never wait, and make backups on the same bucket wait. */
  priority?: boolean;
  /** Bytes per acquisition (default: the bucket's piece size). */
  pieceBytes?: number;
}

export class ThrottledDevice implements BlockDevice {
  readonly size: number;
  readonly name: string;
  private readonly piece: number;
  private readonly priority: boolean;

  constructor(
    private readonly inner: BlockDevice,
    private readonly bucket: Limiter,
    opts: ThrottleOptions = {},
  ) {
    this.size = inner.size;
    this.name = inner.name;
    this.priority = opts.priority ?? false;
    this.piece = Math.max(1, opts.pieceBytes ?? bucket.pieceBytes);
  }

  read(offset: number, length: number): Buffer {
    checkRead(this, offset, length);
    // a slot's bucket can change between reads: never ask for more than it holds
    const piece = Math.min(this.piece, this.bucket.pieceBytes);
    if (this.priority) {
      const release = this.bucket.hold();
      try {
        const buf = this.inner.read(offset, length);
        this.bucket.notePriority(length);
        return buf;
      } finally {
        release();
      }
    }
    if (length <= piece) {
      this.bucket.acquire(length);
      return this.inner.read(offset, length);
    }
    const out = Buffer.allocUnsafe(length);
    for (let done = 0; done < length;) {
      const n = Math.min(piece, length - done);
      this.bucket.acquire(n);
      this.inner.read(offset + done, n).copy(out, done);
      done += n;
    }
    return out;
  }

  allocated(offset: number, length: number): ByteRange[] {
    // allocation maps are metadata the image already holds or reads in small amounts: not throttled
    return this.inner.allocated(offset, length);
  }

  close(): void {
    this.inner.close();
  }
}

/** A disk image whose reads go through `bucket`; format and chain are the image's own. */
export function throttleDisk(disk: DiskImage, bucket: Limiter, opts: ThrottleOptions = {}): DiskImage {
  const dev = new ThrottledDevice(disk, bucket, opts);
  return Object.assign(dev, {
    format: disk.format,
    chain: disk.chain,
    ...(disk.subformat !== undefined ? { subformat: disk.subformat } : {}),
  });
}
