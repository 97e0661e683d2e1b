/**
 * File search across every backup (`vdbak find`, GET /search): a glob or a
 * /regex/ over full paths, optionally one VM's and only entries modified since
 * a time.
 */
import type { Catalog } from '../../catalog/catalog.js';
import type { VersionRow } from '../../catalog/records.js';
import { BadQueryError } from './errors.js';
import { versionJson, type VersionJson } from './json.js';
import { findVmsOrThrow } from './vms.js';

/** Longer patterns are refused: a pattern is compiled into a RegExp and run on every path of the catalog. */
export const MAX_PATTERN_LENGTH = 1024;

const AGE_MS = { h: 3600e3, d: 86400e3, w: 604800e3 } as const;

/** A glob (`*`, `?`, `[…]`, `**`) or a /regex/ as a matcher of full paths and of base names. */
export function matcher(pattern: string): (path: string, name: string) => boolean {
  if (pattern.length === 0) throw new BadQueryError('BAD_PATTERN', 'the search pattern is empty');
  if (pattern.length > MAX_PATTERN_LENGTH) {
    throw new BadQueryError('BAD_PATTERN', `the search pattern is longer than ${MAX_PATTERN_LENGTH} characters`);
  }
  if (pattern.length > 2 && pattern.startsWith('/') && pattern.endsWith('/')) {
    let re: RegExp;
    try {
      re = new RegExp(pattern.slice(1, -1), 'i');
    } catch (e) {
      throw new BadQueryError('BAD_PATTERN', `bad regular expression ${pattern}: ${(e as Error).message}`);
    }
    return (path) => re.test(path);
  }
  let src = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        src += '.*';
        i++;
      } else src += '[^/]*';
    } else if (c === '?') src += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) src += '\\[';
      else {
        src += `[${pattern
          .slice(i + 1, end)
          .replace(/\\/g, '\\\\')
          .replace(/^!/, '^')}]`;
        i = end;
      }
    } else src += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  let re: RegExp;
  try {
    re = new RegExp(`^${src}$`, 'i');
  } catch (e) {
    throw new BadQueryError('BAD_PATTERN', `bad glob ${pattern}: ${(e as Error).message}`);
  }
  const onName = !pattern.includes('/');
  return (path, name) => (onName ? re.test(name) : re.test(path));
}

/** A date (2026-11-20, 2026-11-20T10:00Z) or an age (12h, 3d, 2w) as nanoseconds since the epoch. */
export function parseSince(s: string | undefined, nowMs = Date.now()): bigint | undefined {
  if (s === undefined) return undefined;
  const rel = /^(\d{1,6})([hdw])$/.exec(s);
  let ms: number;
  if (rel) ms = nowMs - Number(rel[1]) * AGE_MS[rel[2] as keyof typeof AGE_MS];
  else {
    ms = Date.parse(s);
    if (Number.isNaN(ms)) {
      throw new BadQueryError(
        'BAD_SINCE',
        `since takes a date (2026-11-20, 2026-11-20T10:00Z) or an age (12h, 3d, 2w), not '${s}'`,
      );
    }
  }
  return BigInt(ms) * 1_000_000n;
}

export interface SearchQuery {
  pattern: string;
  vm?: string;
  since?: string;
}

export interface SearchHit {
  vmName: string | undefined;
  version: VersionRow;
  /** /<volume>/<path> */
  full: string;
  /** The complete backups holding this version, oldest first. */
  backups: number[];
}

/** The hits, lazily (the caller stops after a page). Bad patterns and unknown VMs throw before the first hit. */
export function searchVersions(cat: Catalog, q: SearchQuery): Iterable<SearchHit> {
  const match = matcher(q.pattern);
  const since = parseSince(q.since);
  let volumeIds: number[] | undefined;
  if (q.vm !== undefined) volumeIds = findVmsOrThrow(cat, q.vm).flatMap((vm) => cat.vmVolumes(vm.id).map((v) => v.id));
  const names = cat.volumeNames();
  return (function* (): Generator<SearchHit> {
    for (const v of cat.allVersions(volumeIds)) {
      if (v.path === '/') continue;
      if (since !== undefined && v.mtimeNs < since) continue;
      if (!match(v.path, v.name)) continue;
      const backups = cat.backupsHolding(v);
      if (backups.length === 0) continue;
      const vol = names.get(v.volumeId);
      yield { vmName: vol?.vmName, version: v, full: `/${vol?.name ?? '?'}${v.path}`, backups };
    }
  })();
}

export function searchHitJson(h: SearchHit): { vm: string | undefined } & VersionJson & { backups: number[] } {
  return { vm: h.vmName, ...versionJson(h.version, h.full), backups: h.backups };
}
