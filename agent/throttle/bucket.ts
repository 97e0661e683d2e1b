/**
 * A token bucket shared by the main thread and the piscina workers.
 *
 * The workers read disks synchronously, so they take tokens synchronously:
 * the bucket lives in a SharedArrayBuffer and a worker that must wait sleeps
 * in Atomics.wait (no event loop involved). The main thread runs the
 * controller and sets the rate; nobody needs to refill on a timer, because
 * whoever takes tokens first adds what the elapsed time earned at the
 * current rate.
 *
 * The lock is a word taken with compareExchange and held for a few
 * arithmetic operations only, never while sleeping. Sleepers wait on a
 * separate "notify" word that every rate change bumps, so a rate raised
 * from 0 (stop, pause) wakes them at once.
 *
 * Priority: `hold()` makes every `acquire` wait until released (a restore
 * outranks a backup: the restore job holds the backup's bucket while it
 * runs, and a `priority` ThrottledDevice holds it for each of its reads).
 * Tokens are never taken for a priority read.
 *
 * Pass the bucket to a worker as `bucket.buffer` (a SharedArrayBuffer is
 * shared, not copied, by postMessage and piscina) and rebuild it there with
 * `TokenBucket.attach(buffer)`.
 */
import { isMainThread } from 'node:worker_threads';
import { errorsFor } from '../../parsers/errors.js';

/** Int32 slots. */
const LOCK = 0;
const NOTIFY = 1;
const HOLDS = 2;
const CLOSED = 3;
const WAITERS = 4;
const INT_SLOTS = 8;
/** Float64 slots, after the Int32 ones. */
const RATE = 0;
const TOKENS = 1;
const LAST_MS = 2;
const CAPACITY = 3;
const GRANTED = 4;
const WAITED_MS = 5;
const PRIORITY_BYTES = 6;
const BURST_S = 7;
const MIN_CAPACITY = 8;
const FLOAT_SLOTS = 10;
const BYTES = INT_SLOTS * 4 + FLOAT_SLOTS * 8;

/** Longest single sleep: a sleeper rechecks at least this often (clock skew, lost wake-ups). */
const MAX_SLEEP_MS = 100;
/** Spins on the lock before sleeping on it (the critical section is a few instructions). */
const LOCK_SPINS = 64;

/** Sizes of a bucket. */
export interface BucketOptions {
  /** Seconds of the current rate the bucket holds: the largest burst after an idle spell. */
  burstSeconds?: number;
  /** The smallest capacity (bytes), so that one piece of a read always fits. */
  minCapacity?: number;
}
export const DEFAULT_BURST_SECONDS = 0.1;
export const DEFAULT_PIECE_BYTES = 1024 * 1024;

export interface BucketStats {
  rate: number;
  tokens: number;
  capacity: number;
  /** Bytes handed out since creation. */
  granted: number;
  /** Milliseconds acquirers spent waiting, summed over threads. */
  waitedMs: number;
  /** Bytes read by priority readers (not limited). */
  priorityBytes: number;
  holds: number;
  waiters: number;
  closed: boolean;
}

/** Epoch milliseconds with sub-millisecond precision, comparable across threads. */
function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export class TokenBucket {
  readonly buffer: SharedArrayBuffer;
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;

  private constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.i32 = new Int32Array(buffer, 0, INT_SLOTS);
    this.f64 = new Float64Array(buffer, INT_SLOTS * 4, FLOAT_SLOTS);
  }

  /** A new bucket at `rate` bytes/s (0: nothing passes until a rate is set), starting empty. */
  static create(rate: number, opts: BucketOptions = {}): TokenBucket {
    const b = new TokenBucket(new SharedArrayBuffer(BYTES));
    b.f64[BURST_S] = opts.burstSeconds ?? DEFAULT_BURST_SECONDS;
    b.f64[MIN_CAPACITY] = Math.max(1, opts.minCapacity ?? DEFAULT_PIECE_BYTES);
    b.f64[LAST_MS] = nowMs();
    b.setRate(rate);
    return b;
  }

  /** The same bucket, seen from another thread. */
  static attach(buffer: SharedArrayBuffer): TokenBucket {
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength !== BYTES) {
      throw errorsFor({ image: 'throttle', layer: 'file' }).corrupt(
        'THROTTLE_BAD_BUFFER',
        `not a token bucket's shared buffer (${BYTES} bytes expected)`,
      );
    }
    return new TokenBucket(buffer);
  }

  private lock(): void {
    for (let i = 0; ; i++) {
      if (Atomics.compareExchange(this.i32, LOCK, 0, 1) === 0) return;
      if (i >= LOCK_SPINS) Atomics.wait(this.i32, LOCK, 1, 1);
    }
  }

  private unlock(): void {
    Atomics.store(this.i32, LOCK, 0);
    Atomics.notify(this.i32, LOCK, 1);
  }

  /** Adds what the time since the last refill earned. Call with the lock held. */
  private refill(now: number): void {
    const last = this.f64[LAST_MS] ?? now;
    const elapsed = now - last;
    // another thread's clock may be a hair behind: never move time backwards
    if (elapsed <= 0) return;
    const rate = this.f64[RATE] ?? 0;
    const cap = this.f64[CAPACITY] ?? 0;
    this.f64[TOKENS] = Math.min(cap, (this.f64[TOKENS] ?? 0) + (rate * elapsed) / 1000);
    this.f64[LAST_MS] = now;
  }

  private wake(): void {
    Atomics.add(this.i32, NOTIFY, 1);
    Atomics.notify(this.i32, NOTIFY);
  }

  /** Sets the rate (bytes/s); 0 stops every acquirer until a positive rate is set. Wakes the sleepers. */
  setRate(rate: number): void {
    const r = Number.isFinite(rate) && rate > 0 ? rate : 0;
    this.lock();
    try {
      this.refill(nowMs());
      this.f64[RATE] = r;
      const cap = Math.max(
        this.f64[MIN_CAPACITY] ?? DEFAULT_PIECE_BYTES,
        r * (this.f64[BURST_S] ?? DEFAULT_BURST_SECONDS),
      );
      this.f64[CAPACITY] = cap;
      this.f64[TOKENS] = Math.min(cap, this.f64[TOKENS] ?? 0);
    } finally {
      this.unlock();
    }
    this.wake();
  }

  get rate(): number {
    return this.f64[RATE] ?? 0;
  }

  /** The largest piece one acquire should ask for (a ThrottledDevice splits reads to this). */
  get pieceBytes(): number {
    return this.f64[MIN_CAPACITY] ?? DEFAULT_PIECE_BYTES;
  }

  /**
   * Takes `n` bytes' worth of tokens, sleeping (Atomics.wait) until they are
   * there, the rate allows it and no one holds the bucket. A request larger
   * than the capacity waits for a full bucket and leaves it in debt, so it
   * never starves. Returns the milliseconds it waited. A closed bucket lets
   * everything through.
   *
   * On the main thread it never sleeps: the main thread runs the loop that
   * raises the rate again, so sleeping there could wait forever. It takes the
   * tokens anyway (into debt if need be), and the workers pay for them.
   */
  acquire(n: number): number {
    if (!(n > 0)) return 0;
    if (isMainThread) {
      this.lock();
      this.refill(nowMs());
      if (Atomics.load(this.i32, CLOSED) === 0) this.f64[TOKENS] = (this.f64[TOKENS] ?? 0) - n;
      this.f64[GRANTED] = (this.f64[GRANTED] ?? 0) + n;
      this.unlock();
      return 0;
    }
    const t0 = nowMs();
    let waiting = false;
    for (;;) {
      this.lock();
      const now = nowMs();
      this.refill(now);
      const closed = Atomics.load(this.i32, CLOSED) !== 0;
      const rate = this.f64[RATE] ?? 0;
      const tokens = this.f64[TOKENS] ?? 0;
      const blocked = !closed && (Atomics.load(this.i32, HOLDS) > 0 || rate <= 0);
      const need = Math.min(n, this.f64[CAPACITY] ?? n);
      if (closed || (!blocked && tokens >= need)) {
        if (!closed) this.f64[TOKENS] = tokens - n;
        this.f64[GRANTED] = (this.f64[GRANTED] ?? 0) + n;
        const waited = now - t0;
        this.f64[WAITED_MS] = (this.f64[WAITED_MS] ?? 0) + waited;
        if (waiting) Atomics.sub(this.i32, WAITERS, 1);
        this.unlock();
        return waited;
      }
      const gen = Atomics.load(this.i32, NOTIFY);
      if (!waiting) {
        waiting = true;
        Atomics.add(this.i32, WAITERS, 1);
      }
      this.unlock();
      const sleep = blocked ? MAX_SLEEP_MS : Math.min(MAX_SLEEP_MS, ((need - tokens) / rate) * 1000);
      Atomics.wait(this.i32, NOTIFY, gen, Math.max(sleep, 0.05));
    }
  }

  /**
   * Makes every acquirer wait until the returned release is called (idempotent).
   * Holds nest: the bucket flows again when the last one is released.
   */
  hold(): () => void {
    Atomics.add(this.i32, HOLDS, 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      Atomics.sub(this.i32, HOLDS, 1);
      this.wake();
    };
  }

  /** Counts bytes a priority reader read (for status; they take no tokens). */
  notePriority(bytes: number): void {
    this.lock();
    this.f64[PRIORITY_BYTES] = (this.f64[PRIORITY_BYTES] ?? 0) + bytes;
    this.unlock();
  }

  /** Stops limiting for good and wakes every sleeper (the job ends or is cancelled). */
  close(): void {
    Atomics.store(this.i32, CLOSED, 1);
    this.wake();
  }

  stats(): BucketStats {
    this.lock();
    try {
      this.refill(nowMs());
      return {
        rate: this.f64[RATE] ?? 0,
        tokens: this.f64[TOKENS] ?? 0,
        capacity: this.f64[CAPACITY] ?? 0,
        granted: this.f64[GRANTED] ?? 0,
        waitedMs: this.f64[WAITED_MS] ?? 0,
        priorityBytes: this.f64[PRIORITY_BYTES] ?? 0,
        holds: Atomics.load(this.i32, HOLDS),
        waiters: Atomics.load(this.i32, WAITERS),
        closed: Atomics.load(this.i32, CLOSED) !== 0,
      };
    } finally {
      this.unlock();
    }
  }
}
