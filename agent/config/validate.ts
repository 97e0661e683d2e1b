/**
 * From the untyped config tree (the YAML file over the embedded defaults) to
 * a DaemonConfig, or the list of everything wrong with it. Every key path is
 * checked; nothing is half-accepted: a config with any problem is refused
 * whole, so a daemon never runs on a file that says something else.
 */
import { realpathSync, statSync } from 'node:fs';

import { MAX_KEEP as MAX_SHIP_KEEP } from '../ship/ship.js';
import { MAX_KEEP as MAX_RETENTION_KEEP, type RetentionPolicy, RetentionError, validatePolicy } from '../retention.js';
import {
  type KeyPath,
  type Obj,
  type Problems,
  readAbsolutePath,
  readBoolean,
  readList,
  readName,
  readNumber,
  readObject,
  readString,
  show,
} from './check.js';
import { defaultRestoreRoots } from './defaults.js';
import { readSchedules } from './schedules.js';
import { readThrottle } from './throttle.js';
import { tokenFromFile, tokenProblem } from './token.js';
import type { DaemonConfig, DatastoreConfig, LogLevel } from './types.js';
import { isInside } from '../paths.js';

export const TOP_KEYS = [
  'repo',
  'target',
  'datastores',
  'schedules',
  'retention',
  'throttle',
  'api',
  'restoreRoots',
  'log',
  'ship',
  'threads',
];
/** The sections whose keys a file sets one by one over the defaults (the others replace the default whole). */
export const MERGED_SECTIONS = ['throttle', 'api', 'log', 'ship'];

export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];
export const MAX_DATASTORES = 256;
export const MAX_RESTORE_ROOTS = 64;
/** More worker threads than any controller has cores. */
export const MAX_THREADS = 256;
const RETENTION_KEYS = ['keepLast', 'keepHourly', 'keepDaily', 'keepWeekly', 'keepMonthly', 'keepYearly'] as const;
const MAX_PORT = 65_535;

/** The config being built: DaemonConfig without readonly, filled in as sections pass. */
type Draft = { -readonly [K in keyof DaemonConfig]: DaemonConfig[K] };

function isDirectory(path: string): 'yes' | 'missing' | 'not a folder' {
  try {
    return statSync(path).isDirectory() ? 'yes' : 'not a folder';
  } catch {
    return 'missing';
  }
}

function realOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function readDatastores(p: Problems, path: KeyPath, v: unknown): DatastoreConfig[] | undefined {
  const list = readList(p, path, v, MAX_DATASTORES);
  if (!list) return undefined;
  const before = p.count;
  const out: (DatastoreConfig & { real: string; index: number })[] = [];
  const names = new Map<string, number>();
  list.forEach((entry, i) => {
    const o = readObject(p, [...path, i], entry, ['name', 'path']);
    if (!o) return;
    const name = readName(p, [...path, i, 'name'], o.name);
    const dir = readAbsolutePath(p, [...path, i, 'path'], o.path);
    if (name !== undefined) {
      const first = names.get(name);
      if (first !== undefined) p.add([...path, i, 'name'], `${show(name)} is already the name of datastores[${first}]`);
      else names.set(name, i);
    }
    if (dir !== undefined) {
      const state = isDirectory(dir);
      if (state !== 'yes')
        p.add([...path, i, 'path'], `${show(dir)} is ${state === 'missing' ? 'not there' : 'not a folder'}`);
    }
    if (name !== undefined && dir !== undefined) out.push({ name, path: dir, real: realOr(dir), index: i });
  });
  // one folder inside another would find its VMs twice, under two datastores
  for (const a of out) {
    for (const b of out) {
      if (a.index < b.index && (isInside(a.real, b.real) || isInside(b.real, a.real))) {
        const how = a.real === b.real ? 'is the same folder as' : isInside(b.real, a.real) ? 'lies inside' : 'holds';
        p.add([...path, b.index, 'path'], `${how} datastores[${a.index}] (${a.path}): its VMs would be found twice`);
      }
    }
  }
  return p.count > before ? undefined : out.map(({ name, path: dir }) => ({ name, path: dir }));
}

function readRetention(p: Problems, path: KeyPath, v: unknown): RetentionPolicy | undefined {
  // an unknown key counts too: a policy read without it would be judged on what the admin did not mean
  const before = p.count;
  const o = readObject(p, path, v, RETENTION_KEYS);
  if (!o) return undefined;
  const policy: RetentionPolicy = {};
  for (const k of RETENTION_KEYS) {
    if (o[k] === undefined) continue;
    const n = readNumber(p, [...path, k], o[k], { min: 0, max: MAX_RETENTION_KEEP, integer: true });
    if (n !== undefined) policy[k] = n;
  }
  if (p.count > before) return undefined;
  try {
    validatePolicy(policy);
  } catch (e) {
    if (!(e instanceof RetentionError)) throw e;
    // the CLI's wording names --keep-* options; the file has keys
    p.add(
      path,
      e.code === 'RETENTION_NO_RULE'
        ? `needs at least one of ${RETENTION_KEYS.join(', ')} at 1 or more: a policy without one would forget every backup`
        : e.message,
    );
    return undefined;
  }
  return policy;
}

/** host:port, or [v6]:port. */
function readListen(p: Problems, path: KeyPath, v: unknown): string | undefined {
  const s = readString(p, path, v, 300);
  if (s === undefined) return undefined;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(s);
  const port = Number(m?.[3]);
  if (!m || !(port >= 1 && port <= MAX_PORT)) {
    p.add(path, `${show(s)} is not host:port (like 127.0.0.1:8470 or [::1]:8470; port 1 to ${MAX_PORT})`);
    return undefined;
  }
  return s;
}

function readApi(p: Problems, path: KeyPath, v: unknown): { listen: string; token?: string } | undefined {
  const o = readObject(p, path, v, ['listen', 'token', 'tokenFile']);
  if (!o) return undefined;
  const before = p.count;
  const listen = readListen(p, [...path, 'listen'], o.listen);
  let token: string | undefined;
  if (o.token !== undefined && o.tokenFile !== undefined) {
    p.add([...path, 'tokenFile'], 'api.token and api.tokenFile are both given: keep one');
  } else if (o.token !== undefined) {
    token = readString(p, [...path, 'token'], o.token, Number.MAX_SAFE_INTEGER);
    const why = token === undefined ? undefined : tokenProblem(token);
    if (why !== undefined) p.add([...path, 'token'], why);
  } else if (o.tokenFile !== undefined) {
    const file = readAbsolutePath(p, [...path, 'tokenFile'], o.tokenFile);
    if (file !== undefined) token = tokenFromFile(p, [...path, 'tokenFile'], file);
  }
  if (p.count > before || listen === undefined) return undefined;
  return token === undefined ? { listen } : { listen, token };
}

function readRestoreRoots(p: Problems, path: KeyPath, v: unknown): string[] | undefined {
  const list = readList(p, path, v, MAX_RESTORE_ROOTS);
  if (!list) return undefined;
  const roots = list.map((r, i) => {
    const dir = readAbsolutePath(p, [...path, i], r);
    if (dir === '/') {
      p.add([...path, i], 'the whole filesystem cannot be a restore root: name a folder restores may write into');
      return undefined;
    }
    return dir;
  });
  return roots.every((r) => r !== undefined) ? roots : undefined;
}

function readLog(p: Problems, path: KeyPath, v: unknown): { level: LogLevel } | undefined {
  const o = readObject(p, path, v, ['level']);
  if (!o) return undefined;
  if (typeof o.level === 'string' && (LOG_LEVELS as readonly string[]).includes(o.level)) {
    return { level: o.level as LogLevel };
  }
  p.add([...path, 'level'], `${show(o.level)} is not a log level (${LOG_LEVELS.join(', ')})`);
  return undefined;
}

function readShip(p: Problems, path: KeyPath, v: unknown): { keep: number; afterBackup: boolean } | undefined {
  const o = readObject(p, path, v, ['keep', 'afterBackup']);
  if (!o) return undefined;
  const keep = readNumber(p, [...path, 'keep'], o.keep, { min: 1, max: MAX_SHIP_KEEP, integer: true });
  const afterBackup = readBoolean(p, [...path, 'afterBackup'], o.afterBackup);
  return keep !== undefined && afterBackup !== undefined ? { keep, afterBackup } : undefined;
}

/**
 * Checks the whole tree; returns the config (its api.token unset when none is
 * configured: load.ts generates one) or undefined with the problems recorded.
 */
export function validateConfig(p: Problems, raw: unknown, source: string): Draft | undefined {
  const o: Obj | undefined = readObject(p, [], raw, TOP_KEYS);
  if (!o) return undefined;
  const repo = readAbsolutePath(p, ['repo'], o.repo);
  const target = o.target === undefined ? undefined : readAbsolutePath(p, ['target'], o.target);
  const datastores = readDatastores(p, ['datastores'], o.datastores ?? []);
  const names = datastores ? new Set(datastores.map((d) => d.name)) : undefined;
  const schedules = readSchedules(p, ['schedules'], o.schedules ?? [], names);
  const retention = readRetention(p, ['retention'], o.retention);
  const throttle = readThrottle(p, ['throttle'], o.throttle);
  const api = readApi(p, ['api'], o.api);
  const restoreRoots =
    o.restoreRoots === undefined
      ? repo === undefined
        ? undefined
        : defaultRestoreRoots(repo)
      : readRestoreRoots(p, ['restoreRoots'], o.restoreRoots);
  const log = readLog(p, ['log'], o.log);
  const ship = readShip(p, ['ship'], o.ship);
  const threads =
    o.threads === undefined
      ? undefined
      : readNumber(p, ['threads'], o.threads, { min: 1, max: MAX_THREADS, integer: true });

  if (
    p.count > 0 ||
    repo === undefined ||
    !datastores ||
    !schedules ||
    !retention ||
    !throttle ||
    !api ||
    !restoreRoots ||
    !log ||
    !ship
  ) {
    return undefined;
  }
  const cfg: Draft = {
    source,
    repo,
    datastores,
    schedules,
    retention,
    throttle,
    api: { listen: api.listen, token: api.token ?? '' },
    restoreRoots,
    log,
    ship,
  };
  if (target !== undefined) cfg.target = target;
  if (threads !== undefined) cfg.threads = threads;
  return cfg;
}
