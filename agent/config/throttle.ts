/**
 * The throttle section. Rates are written in MB/s (10^6 bytes per second,
 * decimals allowed) under keys that say so — maxMBps: 200 — because a bare
 * "rate: 200" invites bytes-versus-megabytes mistakes, and a number with a
 * unit in the key cannot be misread. Every other key is ThrottleLimits' own
 * name and unit. The limits are checked together by the controller's own
 * resolveLimits, so the file can never hold limits the controller refuses.
 */
import { isVdbakError } from '../../parsers/errors.js';
import { MB, resolveLimits, type ThrottleLimits } from '../throttle/controller.js';
import type { DaemonConfig } from './types.js';
import {
  type KeyPath,
  type NumberRange,
  type Problems,
  readBoolean,
  readList,
  readObject,
  readNumber,
  readWindow,
} from './check.js';

/** A rate no storage controller reaches (bytes/s = MB/s × 10^6). */
const MAX_MBPS = 1_000_000;
/** More quiet windows than a day can usefully hold. */
const MAX_QUIET_WINDOWS = 48;

/** The file's rate keys and the limits they set. */
const RATE_KEYS = {
  maxMBps: 'maxBytesPerSec',
  minMBps: 'minBytesPerSec',
  startMBps: 'startBytesPerSec',
  increaseMBps: 'increasePerSec',
} as const satisfies Record<string, keyof ThrottleLimits>;

const ANY = { min: 0, max: Number.MAX_SAFE_INTEGER };
const FRACTION = { min: 0, max: 1 };
const PERCENT = { min: 0, max: 100 };

/** Keys written as in ThrottleLimits, with the coarse range each may take (resolveLimits checks them together). */
const PLAIN_KEYS = {
  slowDownMs: ANY,
  stopMs: ANY,
  slowPressure: PERCENT,
  pausePressure: PERCENT,
  resumePressure: PERCENT,
  decreaseFactor: FRACTION,
  calmFraction: FRACTION,
  holdUtilisation: FRACTION,
  relativeSlow: ANY,
  relativeCalm: ANY,
  relativeMinDeltaMs: ANY,
  relativeMinIops: ANY,
  probeEverySec: ANY,
  probePeriods: { min: 2, max: 10, integer: true },
} as const satisfies Partial<Record<keyof ThrottleLimits, NumberRange>>;

export const THROTTLE_KEYS = ['enabled', ...Object.keys(RATE_KEYS), ...Object.keys(PLAIN_KEYS), 'quietWindows'];

/** The file's name for a limit, so the controller's complaints name the key the admin wrote. */
const FILE_NAME: Record<string, string> = Object.fromEntries(Object.entries(RATE_KEYS).map(([f, l]) => [l, f]));

function inFileTerms(text: string): string {
  return text.replace(/\b(maxBytesPerSec|minBytesPerSec|startBytesPerSec|increasePerSec)\b/g, (k) => FILE_NAME[k] ?? k);
}

export function readThrottle(p: Problems, path: KeyPath, v: unknown): DaemonConfig['throttle'] | undefined {
  // an unknown key counts too: a policy read without it would be judged on what the admin did not mean
  const before = p.count;
  const o = readObject(p, path, v, THROTTLE_KEYS);
  if (!o) return undefined;
  const enabled = o.enabled === undefined ? true : readBoolean(p, [...path, 'enabled'], o.enabled);
  const limits: Partial<ThrottleLimits> = {};
  for (const [key, limit] of Object.entries(RATE_KEYS)) {
    if (o[key] === undefined) continue;
    const mbps = readNumber(p, [...path, key], o[key], { min: 0, max: MAX_MBPS, minExclusive: true });
    if (mbps !== undefined) limits[limit] = Math.round(mbps * MB);
  }
  for (const [key, range] of Object.entries(PLAIN_KEYS)) {
    if (o[key] === undefined) continue;
    const n = readNumber(p, [...path, key], o[key], range);
    if (n !== undefined) limits[key as keyof typeof PLAIN_KEYS] = n;
  }
  if (o.quietWindows !== undefined) {
    const list = readList(p, [...path, 'quietWindows'], o.quietWindows, MAX_QUIET_WINDOWS);
    const windows = (list ?? []).map((w, i) => readWindow(p, [...path, 'quietWindows', i], w));
    limits.quietWindows = windows.filter((w) => w !== undefined);
  }
  if (p.count > before || enabled === undefined) return undefined;
  try {
    resolveLimits(limits);
  } catch (e) {
    if (!isVdbakError(e) || typeof e.details.key !== 'string') throw e;
    const key = e.details.key;
    const why = /THROTTLE_BAD_LIMIT/.test(e.message)
      ? e.message.replace(/^.*?: [A-Za-z]+: /, '').replace(/ \[.*$/, '')
      : e.message;
    p.add([...path, FILE_NAME[key] ?? key], inFileTerms(why));
    return undefined;
  }
  return { enabled, ...limits };
}
