/**
 * The pieces the config validator is made of: a collector that gathers every
 * problem (an admin fixes a file once, not once per run), and readers that
 * take one value of the untyped YAML tree, check it, and either return it or
 * record why not under its key path ("schedules[1].cron").
 */
import { isAbsolute, normalize } from 'node:path';

/** Most problems listed; past it one line says how many more there were. */
export const MAX_PROBLEMS = 100;

/** A key path into the file: ['schedules', 1, 'cron'] is shown as schedules[1].cron. */
export type KeyPath = readonly (string | number)[];

export function showPath(path: KeyPath): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s === '' ? p : `.${p}`;
  return s === '' ? '(top level)' : s;
}

/** A value as a short quoted snippet for messages; long values are cut. */
export function show(v: unknown): string {
  const SNIPPET = 60;
  const s = typeof v === 'string' ? JSON.stringify(v) : v === undefined ? 'nothing' : (JSON.stringify(v) ?? String(v));
  return s.length > SNIPPET ? `${s.slice(0, SNIPPET)}…` : s;
}

export interface Problem {
  path: KeyPath;
  message: string;
}

export class Problems {
  readonly list: Problem[] = [];
  private dropped = 0;

  add(path: KeyPath, message: string): void {
    if (this.list.length < MAX_PROBLEMS) this.list.push({ path: [...path], message });
    else this.dropped++;
  }

  get count(): number {
    return this.list.length + this.dropped;
  }

  /** One line per problem, "key.path: why", and a closing note when some were dropped. */
  lines(): string[] {
    const out = this.list.map((p) => `${showPath(p.path)}: ${p.message}`);
    if (this.dropped > 0) out.push(`${this.dropped} more problems not shown`);
    return out;
  }
}

export type Obj = Readonly<Record<string, unknown>>;

export function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Levenshtein distance, for "did you mean" on unknown keys (keys are short). */
function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] ?? 0;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j] ?? 0;
      prev[j] = Math.min(up + 1, (prev[j - 1] ?? 0) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length] ?? 0;
}

function suggestion(key: string, known: readonly string[]): string {
  const MAX_TYPO_DISTANCE = 2;
  let best: string | undefined;
  let bestD = MAX_TYPO_DISTANCE + 1;
  for (const k of known) {
    const d = distance(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best !== undefined ? ` (did you mean ${best}?)` : ` (known keys: ${known.join(', ')})`;
}

/**
 * Reads a mapping: records a problem unless `v` is one, and one per key not in
 * `known` (a typo must not silently leave a setting at its default).
 */
export function readObject(p: Problems, path: KeyPath, v: unknown, known: readonly string[]): Obj | undefined {
  if (!isObject(v)) {
    p.add(path, `must be a mapping of ${known.join(', ')}, not ${show(v)}`);
    return undefined;
  }
  for (const k of Object.keys(v)) {
    if (!known.includes(k)) p.add([...path, k], `unknown key${suggestion(k, known)}`);
  }
  return v;
}

export function readList(p: Problems, path: KeyPath, v: unknown, max: number): unknown[] | undefined {
  if (!Array.isArray(v)) {
    p.add(path, `must be a list, not ${show(v)}`);
    return undefined;
  }
  if (v.length > max) {
    p.add(path, `has ${v.length} entries; at most ${max} are accepted`);
    return undefined;
  }
  return v;
}

export function readString(p: Problems, path: KeyPath, v: unknown, maxChars: number): string | undefined {
  if (typeof v !== 'string' || v.trim() === '') {
    p.add(path, `must be a non-empty string, not ${show(v)}`);
    return undefined;
  }
  if (v.length > maxChars) {
    p.add(path, `is ${v.length} characters long; at most ${maxChars} are accepted`);
    return undefined;
  }
  return v;
}

export function readBoolean(p: Problems, path: KeyPath, v: unknown): boolean | undefined {
  if (typeof v !== 'boolean') {
    p.add(path, `must be true or false, not ${show(v)}`);
    return undefined;
  }
  return v;
}

export interface NumberRange {
  min: number;
  max: number;
  integer?: boolean;
  /** min itself is not allowed (a rate of 0). */
  minExclusive?: boolean;
}

export function readNumber(p: Problems, path: KeyPath, v: unknown, r: NumberRange): number | undefined {
  const kind = r.integer ? 'a whole number' : 'a number';
  const range = `${r.minExclusive ? 'above' : 'from'} ${r.min} ${r.minExclusive ? 'up to' : 'to'} ${r.max}`;
  if (typeof v !== 'number' || !Number.isFinite(v) || (r.integer === true && !Number.isInteger(v))) {
    p.add(path, `must be ${kind} ${range}, not ${show(v)}`);
    return undefined;
  }
  if (v < r.min || v > r.max || (r.minExclusive === true && v === r.min)) {
    p.add(path, `${v} is out of range: must be ${kind} ${range}`);
    return undefined;
  }
  return v;
}

/** Most characters of a path we accept (Linux PATH_MAX). */
export const MAX_PATH_CHARS = 4096;

/** An absolute path, normalised (no trailing slash, no '..'); relative paths are refused, never resolved against the cwd. */
export function readAbsolutePath(p: Problems, path: KeyPath, v: unknown): string | undefined {
  const s = readString(p, path, v, MAX_PATH_CHARS);
  if (s === undefined) return undefined;
  if (s.includes('\0')) {
    p.add(path, 'holds a NUL character');
    return undefined;
  }
  if (!isAbsolute(s)) {
    p.add(path, `${show(s)} is not an absolute path (the daemon's working folder is not a place to rely on)`);
    return undefined;
  }
  const n = normalize(s);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

const TIME_RE = /^([01]?\d|2[0-3]):([0-5]\d)$/;

/** "HH:MM", local time of day. */
export function readTimeOfDay(p: Problems, path: KeyPath, v: unknown): string | undefined {
  if (typeof v !== 'string' || !TIME_RE.test(v)) {
    p.add(path, `${show(v)} is not a time of day (HH:MM, 00:00 to 23:59; quote it in YAML)`);
    return undefined;
  }
  return v;
}

/** A {start, end} window of local times; end ≤ start wraps past midnight. */
export function readWindow(p: Problems, path: KeyPath, v: unknown): { start: string; end: string } | undefined {
  const o = readObject(p, path, v, ['start', 'end']);
  if (!o) return undefined;
  const start = readTimeOfDay(p, [...path, 'start'], o.start);
  const end = readTimeOfDay(p, [...path, 'end'], o.end);
  return start !== undefined && end !== undefined ? { start, end } : undefined;
}

/** Short names for datastores and schedules: they appear in logs, the API and schedule references. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function readName(p: Problems, path: KeyPath, v: unknown): string | undefined {
  if (typeof v !== 'string' || !NAME_RE.test(v)) {
    p.add(path, `${show(v)} is not a name (1 to 64 letters, digits, '_', '.', '-', starting with a letter or digit)`);
    return undefined;
  }
  return v;
}
