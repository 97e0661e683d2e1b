/**
 * The schedules section: what runs when. Each entry names its kind; keys
 * that only mean something for another kind (readData on a backup) are
 * refused rather than ignored, since an admin who wrote them expects an effect.
 */
import { cronProblem } from './cron.js';
import {
  isObject,
  type KeyPath,
  type Problems,
  readBoolean,
  readList,
  readName,
  readObject,
  readString,
  readWindow,
  show,
} from './check.js';
import type { ScheduleConfig, ScheduleKind } from './types.js';

export const SCHEDULE_KINDS: readonly ScheduleKind[] = ['backup', 'ship', 'forget', 'prune', 'check'];
/** Most schedules one daemon runs. */
export const MAX_SCHEDULES = 256;
/** Most VMs one schedule lists by name. */
export const MAX_SCHEDULE_VMS = 10_000;
/** Longest VM name or identity a schedule may list ('vmx:' + a path). */
const MAX_VM_REF_CHARS = 4200;

const SCHEDULE_KEYS = ['name', 'kind', 'cron', 'window', 'datastores', 'vms', 'readData', 'prune'];
/** The keys only some kinds take. */
const KIND_ONLY: Readonly<Record<string, ScheduleKind>> = {
  datastores: 'backup',
  vms: 'backup',
  readData: 'check',
  prune: 'forget',
};

function readStrings(p: Problems, path: KeyPath, v: unknown, max: number, maxChars: number): string[] | undefined {
  const list = readList(p, path, v, max);
  if (!list) return undefined;
  const out = list.map((s, i) => readString(p, [...path, i], s, maxChars));
  return out.every((s) => s !== undefined) ? out : undefined;
}

function readSchedule(p: Problems, path: KeyPath, v: unknown, datastores: ReadonlySet<string> | undefined) {
  const o = readObject(p, path, v, SCHEDULE_KEYS);
  if (!o) return undefined;
  const before = p.count;
  const name = readName(p, [...path, 'name'], o.name);
  let kind: ScheduleKind | undefined;
  if (typeof o.kind === 'string' && (SCHEDULE_KINDS as readonly string[]).includes(o.kind))
    kind = o.kind as ScheduleKind;
  else p.add([...path, 'kind'], `${show(o.kind)} is not a schedule kind (${SCHEDULE_KINDS.join(', ')})`);
  const cron = readString(p, [...path, 'cron'], o.cron, Number.MAX_SAFE_INTEGER);
  if (cron !== undefined) {
    const why = cronProblem(cron);
    if (why !== undefined) p.add([...path, 'cron'], `${show(cron)} is not a cron expression (${why})`);
  }
  const s: { -readonly [K in keyof ScheduleConfig]: ScheduleConfig[K] } = {
    name: name ?? '',
    kind: kind ?? 'backup',
    cron: cron ?? '',
  };
  if (o.window !== undefined) {
    const w = readWindow(p, [...path, 'window'], o.window);
    if (w) s.window = w;
  }
  for (const [key, only] of Object.entries(KIND_ONLY)) {
    if (o[key] !== undefined && kind !== undefined && kind !== only) {
      p.add([...path, key], `only a ${only} schedule takes ${key}; this one is a ${kind}`);
    }
  }
  if (o.datastores !== undefined) {
    const names = readStrings(p, [...path, 'datastores'], o.datastores, MAX_SCHEDULES, 64);
    names?.forEach((n, i) => {
      if (datastores && !datastores.has(n)) {
        const known = datastores.size > 0 ? [...datastores].join(', ') : 'none is configured';
        p.add([...path, 'datastores', i], `${show(n)} is not a datastore name (${known})`);
      }
    });
    if (names) s.datastores = names;
  }
  if (o.vms !== undefined) {
    const vms = readStrings(p, [...path, 'vms'], o.vms, MAX_SCHEDULE_VMS, MAX_VM_REF_CHARS);
    if (vms) s.vms = vms;
  }
  if (o.readData !== undefined) {
    const b = readBoolean(p, [...path, 'readData'], o.readData);
    if (b !== undefined) s.readData = b;
  }
  if (o.prune !== undefined) {
    const b = readBoolean(p, [...path, 'prune'], o.prune);
    if (b !== undefined) s.prune = b;
  }
  return p.count > before ? undefined : s;
}

/** `datastores` is the set of valid datastore names, undefined when that section itself was broken (then no reference is judged). */
export function readSchedules(
  p: Problems,
  path: KeyPath,
  v: unknown,
  datastores: ReadonlySet<string> | undefined,
): ScheduleConfig[] | undefined {
  const list = readList(p, path, v, MAX_SCHEDULES);
  if (!list) return undefined;
  const out: ScheduleConfig[] = [];
  const seen = new Map<string, number>();
  list.forEach((entry, i) => {
    // names are compared even on entries with other problems: a repeat is worth knowing at once
    const name = isObject(entry) ? entry.name : undefined;
    if (typeof name === 'string') {
      const first = seen.get(name);
      if (first !== undefined) p.add([...path, i, 'name'], `${show(name)} is already the name of schedules[${first}]`);
      else seen.set(name, i);
    }
    const s = readSchedule(p, [...path, i], entry, datastores);
    if (s) out.push(s as ScheduleConfig);
  });
  return out.length === list.length ? out : undefined;
}
