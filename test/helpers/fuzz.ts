/**
 * Mutation fuzzing of real fixtures. A guest controls every byte we parse, so
 * every parser must, for any mutation of a valid input, either return correct
 * output or throw one of our typed errors (VdbakError) — never hang, never
 * throw a RangeError/TypeError, never allocate without bound.
 *
 * Mutations are deterministic (seeded), so a failing case can be replayed by
 * its seed and index.
 */
import { isVdbakError, type VdbakError } from '../../parsers/errors.js';
import { prng } from '../../transport/prng.js';

/** Small, fast, seedable PRNG (mulberry32), shared with production code. */
export { prng };

export interface Region {
  start: number;
  end: number;
}

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0xfe, 0x10, 0x40];

/**
 * Yields `count` mutated copies of `base`. Each mutation touches 1–8 places
 * chosen inside `regions` (default: the whole buffer): random byte, bit flip,
 * interesting byte, a 32-bit field set to 0 / 0xffffffff / a large value, or a
 * truncation.
 */
export function* mutate(
  base: Uint8Array,
  count: number,
  seed = 1,
  regions?: Region[],
): Generator<{ index: number; bytes: Uint8Array }> {
  const rnd = prng(seed);
  const rs = regions && regions.length > 0 ? regions : [{ start: 0, end: base.length }];
  const pick = (): number => {
    const r = rs[Math.floor(rnd() * rs.length)] ?? { start: 0, end: base.length };
    return r.start + Math.floor(rnd() * Math.max(1, r.end - r.start));
  };
  for (let index = 0; index < count; index++) {
    let bytes = Uint8Array.from(base);
    const edits = 1 + Math.floor(rnd() * 8);
    for (let e = 0; e < edits; e++) {
      const at = Math.min(pick(), bytes.length - 1);
      const op = Math.floor(rnd() * 6);
      if (op === 0) bytes[at] = Math.floor(rnd() * 256);
      else if (op === 1) bytes[at] = (bytes[at] ?? 0) ^ (1 << Math.floor(rnd() * 8));
      else if (op === 2) bytes[at] = INTERESTING[Math.floor(rnd() * INTERESTING.length)] ?? 0;
      else if (op === 3 || op === 4) {
        const v = [0, 0xffffffff, 0x7fffffff, 0x80000000, 0x00100000][Math.floor(rnd() * 5)] ?? 0;
        const a = at & ~3;
        if (a + 4 <= bytes.length) new DataView(bytes.buffer).setUint32(a, v, true);
      } else if (rnd() < 0.2) {
        bytes = bytes.slice(0, Math.max(1, Math.floor(rnd() * bytes.length)));
      }
    }
    yield { index, bytes };
  }
}

export interface FuzzTally {
  ok: number;
  typed: number;
  codes: Map<string, number>;
}

/**
 * Runs `fn` and classifies the outcome. Any exception that is not a
 * VdbakError is rethrown with the case index attached, failing the test.
 */
export function expectTypedOrOk(tally: FuzzTally, index: number, fn: () => void): void {
  try {
    fn();
    tally.ok++;
  } catch (e) {
    if (isVdbakError(e)) {
      tally.typed++;
      tally.codes.set(e.code, (tally.codes.get(e.code) ?? 0) + 1);
      return;
    }
    const err = e instanceof Error ? e : new Error(String(e));
    err.message = `fuzz case ${index}: untyped ${err.name}: ${err.message}`;
    throw err;
  }
}

export function newTally(): FuzzTally {
  return { ok: 0, typed: 0, codes: new Map() };
}

/** Runs `fn`, which must throw one of our typed errors, and returns that error for inspection. */
export function catchTyped(fn: () => unknown): VdbakError {
  try {
    fn();
  } catch (e) {
    if (isVdbakError(e)) return e;
    throw e;
  }
  throw new Error('expected a typed error, but the call succeeded');
}
