/**
 * FaultyTarget: wraps any Target and injects faults, deterministically (a
 * seeded PRNG decides each operation's fate, so a failing test replays), for
 * tests of everything that writes to or reads from a target.
 *
 * Faults:
 * - `putBefore`: the write fails before anything is stored (a failed upload,
 *   a write error before the rename);
 * - `putAfter`: the object IS stored, then the caller gets an error (the
 *   connection dropped after the rename, the reply was lost) — a retry must
 *   succeed and change nothing;
 * - `noSpace`: the write fails with `TARGET_NO_SPACE`, nothing stored;
 * - `shortRead`: a read returns fewer bytes than asked (a misbehaving share or
 *   proxy) — the consumer must notice, as PackReader does;
 * - `latencyMs`: every operation waits that long first.
 * Rates are probabilities in [0, 1]; `enabled = false` turns every fault off.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { transportErrors } from '../errors.js';
import { prng } from '../prng.js';
import type { ObjectInfo, Target } from './types.js';

export interface FaultOptions {
  seed: number;
  putBefore?: number;
  putAfter?: number;
  noSpace?: number;
  shortRead?: number;
  latencyMs?: number;
}

/** `source`'s first piece, then `fault` (thrown as the inner target's own failure would be). */
async function* failAfterFirst(source: AsyncIterable<Uint8Array>, fault: Error): AsyncGenerator<Uint8Array> {
  for await (const piece of source) {
    yield piece;
    break;
  }
  throw fault;
}

export type FaultKind = 'putBefore' | 'putAfter' | 'noSpace' | 'shortRead';

export class FaultyTarget implements Target {
  readonly location: string;
  enabled = true;
  /** How many faults of each kind were injected so far. */
  readonly injected: Record<FaultKind, number> = { putBefore: 0, putAfter: 0, noSpace: 0, shortRead: 0 };
  private readonly rnd: () => number;
  private readonly err;

  constructor(
    readonly inner: Target,
    private readonly opts: FaultOptions,
  ) {
    this.location = `faulty:${inner.location}`;
    this.rnd = prng(opts.seed);
    this.err = transportErrors(this.location, 'target');
  }

  /** Draws one fault decision; every call consumes exactly one PRNG value so the schedule is stable. */
  private roll(kind: FaultKind): boolean {
    const p = this.opts[kind] ?? 0;
    const hit = this.rnd() < p && this.enabled;
    if (hit) this.injected[kind]++;
    return hit;
  }

  private async delay(): Promise<void> {
    if (this.enabled && this.opts.latencyMs) await sleep(this.opts.latencyMs);
  }

  async put(name: string, bytes: Uint8Array): Promise<void> {
    await this.delay();
    if (this.roll('noSpace')) {
      throw this.err.io('TARGET_NO_SPACE', `put ${name}: no space left (injected)`, { name, injected: true });
    }
    if (this.roll('putBefore')) {
      throw this.err.io('TARGET_IO', `put ${name}: write failed before commit (injected)`, { name, injected: true });
    }
    await this.inner.put(name, bytes);
    if (this.roll('putAfter')) {
      throw this.err.io('TARGET_IO', `put ${name}: reply lost after commit (injected)`, { name, injected: true });
    }
  }

  /**
   * The stream's faults strike mid-way: `noSpace` and `putBefore` fail the
   * inner write after its first piece, so the inner target's clean-up of a
   * half-written object is what gets tested.
   */
  async putStream(name: string, source: AsyncIterable<Uint8Array>): Promise<void> {
    await this.delay();
    const fault = this.roll('noSpace')
      ? this.err.io('TARGET_NO_SPACE', `putStream ${name}: no space left (injected)`, { name, injected: true })
      : this.roll('putBefore')
        ? this.err.io('TARGET_IO', `putStream ${name}: write failed before commit (injected)`, { name, injected: true })
        : undefined;
    await this.inner.putStream(name, fault ? failAfterFirst(source, fault) : source);
    if (this.roll('putAfter')) {
      throw this.err.io('TARGET_IO', `putStream ${name}: reply lost after commit (injected)`, { name, injected: true });
    }
  }

  async get(name: string): Promise<Buffer> {
    await this.delay();
    const b = await this.inner.get(name);
    return this.roll('shortRead') ? b.subarray(0, Math.floor(b.length / 2)) : b;
  }

  async getRange(name: string, offset: number, length: number): Promise<Buffer> {
    await this.delay();
    const b = await this.inner.getRange(name, offset, length);
    return this.roll('shortRead') ? b.subarray(0, Math.floor(b.length / 2)) : b;
  }

  async stat(name: string): Promise<ObjectInfo> {
    await this.delay();
    return this.inner.stat(name);
  }

  async exists(name: string): Promise<boolean> {
    await this.delay();
    return this.inner.exists(name);
  }

  async *list(prefix: string): AsyncIterable<string> {
    await this.delay();
    yield* this.inner.list(prefix);
  }

  async delete(name: string): Promise<void> {
    await this.delay();
    return this.inner.delete(name);
  }

  isNotFound(err: unknown): boolean {
    return this.inner.isNotFound(err);
  }
}
