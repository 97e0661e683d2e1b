/**
 * The backup target: where packs, and later catalog copies, are kept. A small
 * object-store contract that a local directory (a mounted share) and an
 * S3-compatible bucket can both honour.
 *
 * - Objects are whole and immutable in practice: `put` makes an object visible
 *   under its name only once all its bytes are durable, and replaces an
 *   existing object of that name atomically (putting the same name again is
 *   success, never an error). A reader never sees a partial object.
 * - Names are `/`-separated segments of `[A-Za-z0-9_][A-Za-z0-9._-]*` (no
 *   empty, hidden or `..` segments), so they map to file paths and S3 keys
 *   alike. Packs are named `packs/ab/abcdef…` (see transport/pack.ts): the
 *   two-hex fan-out keeps directories small.
 * - Every failure is a typed error (transport/errors.ts): `TARGET_NOT_FOUND`
 *   (NotFoundError), `TARGET_NO_SPACE`, `TARGET_IO`, `TARGET_SHORT_READ` …
 */
import { transportErrors } from '../errors.js';

export interface ObjectInfo {
  name: string;
  size: number;
}

export interface Target {
  /** Where the target is (directory path, bucket URL), for messages. */
  readonly location: string;
  /** Stores `bytes` under `name`, durably and atomically. */
  put(name: string, bytes: Uint8Array): Promise<void>;
  /**
   * Stores the bytes `source` yields, in order, under `name`, with put's
   * guarantees, for objects too big to hold in memory (a catalog copy): the
   * target holds at most a bounded piece of it at a time (one part, not the
   * object). If the source throws or the write fails, nothing is visible under
   * `name` (an object already there stays as it was) and the error propagates
   * (the source's own error unchanged). Pieces may be reused by the source
   * once the target has asked for the next one.
   */
  putStream(name: string, source: AsyncIterable<Uint8Array>): Promise<void>;
  /** The whole object. */
  get(name: string): Promise<Buffer>;
  /** Exactly `length` bytes from `offset`, or a typed error (`TARGET_SHORT_READ` past the end). */
  getRange(name: string, offset: number, length: number): Promise<Buffer>;
  stat(name: string): Promise<ObjectInfo>;
  exists(name: string): Promise<boolean>;
  /** Names that start with `prefix` (a plain string prefix, as in S3), in no particular order. */
  list(prefix: string): AsyncIterable<string>;
  /** Removes an object; removing a missing object is success. */
  delete(name: string): Promise<void>;
  /** True when `err` says that the object does not exist. */
  isNotFound(err: unknown): boolean;
}

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const MAX_NAME = 512;
const MAX_SEGMENTS = 8;

/** Throws a typed error (`TARGET_BAD_NAME`) unless `name` follows the naming rules above. */
export function checkObjectName(name: string, location: string): void {
  const parts = name.split('/');
  if (name.length > MAX_NAME || parts.length > MAX_SEGMENTS || !parts.every((p) => SEGMENT.test(p))) {
    throw transportErrors(location, 'target').unsupported('TARGET_BAD_NAME', `object name ${JSON.stringify(name)}`, {
      name,
    });
  }
}

/** Checks a list prefix: a name, possibly cut anywhere, possibly ending in `/`, or empty. */
export function checkListPrefix(prefix: string, location: string): void {
  if (prefix === '') return;
  const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  const parts = trimmed.split('/');
  if (prefix.length > MAX_NAME || parts.length > MAX_SEGMENTS || !parts.every((p) => SEGMENT.test(p))) {
    throw transportErrors(location, 'target').unsupported('TARGET_BAD_NAME', `list prefix ${JSON.stringify(prefix)}`, {
      prefix,
    });
  }
}

/** `exists` through `stat`: true when stat succeeds, false on the target's not-found error; other errors propagate. */
export async function existsByStat(target: Target, name: string): Promise<boolean> {
  try {
    await target.stat(name);
    return true;
  } catch (e) {
    if (target.isNotFound(e)) return false;
    throw e;
  }
}

/** A stream source's own failure, carried through a target's error handling so that it surfaces unchanged. */
export class SourceError {
  constructor(readonly error: unknown) {}
}

/**
 * `source`, with whatever it throws wrapped in a SourceError: a target tells
 * its own failures (to be typed) from its caller's. Ending the loop early
 * (a write failed) returns the source, so its cleanup runs.
 */
export async function* markSourceErrors(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  try {
    yield* source;
  } catch (e) {
    throw new SourceError(e);
  }
}
