/**
 * Guest names made safe for the restore destination (issue 5 §2).
 *
 * A guest controls every byte of its file names. `safeName` turns one name
 * into a single component that Linux accepts and that cannot climb out of its
 * folder (`/`, `\`, NUL and other control characters, `.`, `..`, empty), that a
 * Windows share also accepts for the common traps (reserved device names such
 * as `CON` or `com1.txt`, trailing dots and spaces), and that fits in
 * NAME_MAX (255 UTF-8 bytes). It is pure and deterministic: the same guest name
 * always gives the same safe name, so two restores of one backup agree.
 *
 * `PathMapper` maps whole relative paths inside one restore: it remembers what
 * each guest folder became, so children follow a renamed parent, and it gives
 * two guest names that end up with the same safe name distinct results
 * (`name~2.ext`). It refuses to map anything below an entry it already mapped
 * as something other than a folder (a guest symlink `a -> /etc` followed by
 * `a/passwd`), because writing there would follow the link.
 */
import { createHash } from 'node:crypto';

import type { EntryType } from '../../parsers/fs/types.js';

/** Linux NAME_MAX: a path component is at most this many bytes. */
export const NAME_MAX_BYTES = 255;
/** Hex digits of SHA-256 kept to tell shortened long names apart. */
const LONG_NAME_HASH_HEX = 8;
/** A "extension" longer than this is just part of a long name, not kept whole when shortening. */
const EXTENSION_MAX_BYTES = 32;
const REPLACEMENT = '_';
const REPLACEMENT_CHAR = '\uFFFD';
/** Separator before a shortened name's hash and a collision counter. */
const SUFFIX_MARK = '~';

/** Windows device names, reserved whatever the case and whatever the extension (`nul.txt`). */
const WINDOWS_RESERVED = /^(con|prn|aux|nul|com[0-9\u00b9\u00b2\u00b3]|lpt[0-9\u00b9\u00b2\u00b3]|conin\$|conout\$)$/i;
/** C0 controls (NUL included), DEL and C1 controls: never useful in a name, dangerous in terminals. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
/** Characters a Windows share refuses (only replaced with `windows: true`: `:` is common on Linux). */
const WINDOWS_FORBIDDEN = /[<>:"|?*]/;

export interface SafeNameOptions {
  /** Also replace the characters Windows forbids (`<>:"|?*`); for restores onto an SMB share. */
  windows?: boolean;
}

export interface SafeName {
  name: string;
  changed: boolean;
  /** Why it changed, one short phrase per reason (empty when unchanged). */
  why: string[];
}

function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** Replaces lone UTF-16 surrogates (which have no UTF-8 form) with U+FFFD. */
function wellFormed(s: string): { text: string; fixed: boolean } {
  let out = '';
  let fixed = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (next >= 0xdc00 && next <= 0xdfff) {
        out += s[i]! + s[i + 1]!;
        i++;
        continue;
      }
      out += REPLACEMENT_CHAR;
      fixed = true;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      out += REPLACEMENT_CHAR;
      fixed = true;
    } else {
      out += s[i]!;
    }
  }
  return { text: out, fixed };
}

/** The longest prefix of `s` (whole code points) that fits in `maxBytes` UTF-8 bytes. */
function truncateUtf8(s: string, maxBytes: number): string {
  let bytes = 0;
  let end = 0;
  for (const ch of s) {
    const n = utf8Length(ch);
    if (bytes + n > maxBytes) break;
    bytes += n;
    end += ch.length;
  }
  return s.slice(0, end);
}

/** Splits `name` into stem and extension (`.txt`); dotfiles and over-long extensions have none. */
function splitExtension(name: string): { stem: string; ext: string } {
  const dot = name.lastIndexOf('.');
  if (dot <= 0) return { stem: name, ext: '' };
  const ext = name.slice(dot);
  if (utf8Length(ext) > EXTENSION_MAX_BYTES) return { stem: name, ext: '' };
  return { stem: name.slice(0, dot), ext };
}

/** `stem + tag + ext`, the stem cut so the whole fits in NAME_MAX bytes. */
function fitWithTag(name: string, tag: string): string {
  const { stem, ext } = splitExtension(name);
  const room = NAME_MAX_BYTES - utf8Length(tag) - utf8Length(ext);
  return truncateUtf8(stem, room) + tag + ext;
}

/** Makes one guest path component safe. Pure and deterministic. */
export function safeName(guestName: string, opts: SafeNameOptions = {}): SafeName {
  const why: string[] = [];
  const wf = wellFormed(guestName);
  let name = wf.text;
  if (wf.fixed) why.push('invalid UTF-16 (lone surrogate) replaced');

  const reasons = new Set<string>();
  let cleaned = '';
  for (const ch of name) {
    if (ch === '/') reasons.add("'/' replaced");
    else if (ch === '\\') reasons.add("'\\' replaced");
    else if (ch === '\0') reasons.add('NUL replaced');
    else if (CONTROL.test(ch)) reasons.add('control character replaced');
    else if (opts.windows && WINDOWS_FORBIDDEN.test(ch)) reasons.add('character forbidden on Windows replaced');
    else {
      cleaned += ch;
      continue;
    }
    cleaned += REPLACEMENT;
  }
  name = cleaned;
  why.push(...reasons);

  if (name === '' || name === '.' || name === '..') {
    why.push(name === '' ? 'empty name' : `'${name}' is not a usable name`);
    name = REPLACEMENT.repeat(Math.max(1, name.length));
  }

  // Windows silently drops trailing dots and spaces, so `a.` and `a` would collide there.
  if (/[. ]$/.test(name)) {
    why.push('trailing dot or space');
    name += REPLACEMENT;
  }

  // `CON`, `con.txt`, `Com1 .log`: the part before the first dot (trailing spaces ignored) names a device.
  const firstDot = name.indexOf('.');
  const base = firstDot === -1 ? name : name.slice(0, firstDot);
  if (WINDOWS_RESERVED.test(base.replace(/ +$/, ''))) {
    why.push('reserved device name on Windows');
    name = base + REPLACEMENT + name.slice(base.length);
  }

  if (utf8Length(name) > NAME_MAX_BYTES) {
    // The hash is of the guest's exact UTF-16 code units, so two long names that differ anywhere stay distinct.
    const hash = createHash('sha256').update(guestName, 'utf16le').digest('hex').slice(0, LONG_NAME_HASH_HEX);
    why.push(`longer than ${NAME_MAX_BYTES} bytes, shortened`);
    name = fitWithTag(name, SUFFIX_MARK + hash);
  }

  return { name, changed: name !== guestName, why };
}

/** The n-th (n ≥ 2) distinct variant of an already safe name: `report~2.docx`, still within NAME_MAX. */
export function withCollisionSuffix(safe: string, n: number): string {
  return fitWithTag(safe, `${SUFFIX_MARK}${n}`);
}

/** One component that had to change, reported once, when first mapped. */
export interface Rename {
  /** Guest path up to and including the renamed component. */
  guestPath: string;
  /** Relative safe path it was restored as. */
  restoredAs: string;
  why: string;
}

export type MapResult =
  | {
      ok: true;
      /** Safe relative path ('' is the restore root itself). */
      rel: string;
      parts: string[];
      renames: Rename[];
      /** The same guest path was mapped explicitly before in this restore. */
      repeat: boolean;
    }
  | { ok: false; reason: string; renames: Rename[] };

interface Mapped {
  safe: string;
  isDir: boolean;
  explicit: boolean;
}

interface DirNames {
  /** Guest name (keyed by kind) → what it became. */
  names: Map<string, Mapped>;
  /** Safe names taken in this folder. */
  used: Set<string>;
}

const ENTRY_KEY = 'e\0';
const SIDECAR_KEY = 's\0';

/** Splits a relative guest path; leading and trailing '/' are ignored, empty inner components stay (and become `_`). */
function splitGuestPath(path: string): string[] {
  const trimmed = path.replace(/^\/+/, '').replace(/\/+$/, '');
  return trimmed === '' ? [] : trimmed.split('/');
}

/**
 * Maps guest paths of one restore to safe relative paths. Memory grows with
 * the number of entries mapped (each folder remembers its names), which is
 * what collision detection needs.
 */
export class PathMapper {
  private readonly dirs = new Map<string, DirNames>([['', { names: new Map(), used: new Set() }]]);

  constructor(private readonly opts: SafeNameOptions = {}) {}

  /** Maps `guestPath` (relative, '/'-separated) for an entry of `type`. */
  map(guestPath: string, type: EntryType): MapResult {
    const comps = splitGuestPath(guestPath);
    if (comps.length === 0) return { ok: true, rel: '', parts: [], renames: [], repeat: false };
    const parent = this.mapParents(comps.slice(0, -1));
    if (!parent.ok) return parent;
    const leaf = this.allocate(parent.rel, ENTRY_KEY + comps[comps.length - 1]!, comps[comps.length - 1]!, {
      isDir: type === 'dir',
      guestPath: comps.join('/'),
      explicit: true,
    });
    if (!leaf.ok) return { ok: false, reason: leaf.reason, renames: parent.renames };
    const parts = [...parent.parts, leaf.safe];
    return {
      ok: true,
      rel: parts.join('/'),
      parts,
      renames: [...parent.renames, ...leaf.renames],
      repeat: leaf.repeat,
    };
  }

  /** Maps the sidecar file `<name>:<stream>` that holds a named stream of `guestPath`, beside it. */
  sidecar(guestPath: string, stream: string): MapResult {
    const comps = splitGuestPath(guestPath);
    if (comps.length === 0)
      return { ok: false, reason: 'the restore root has no name to hang a stream on', renames: [] };
    const parent = this.mapParents(comps.slice(0, -1));
    if (!parent.ok) return parent;
    const name = comps[comps.length - 1]!;
    const display = `${name}:${stream}`;
    const leaf = this.allocate(parent.rel, `${SIDECAR_KEY}${name}\0${stream}`, display, {
      isDir: false,
      guestPath: [...comps.slice(0, -1), display].join('/'),
      explicit: true,
    });
    if (!leaf.ok) return { ok: false, reason: leaf.reason, renames: parent.renames };
    const parts = [...parent.parts, leaf.safe];
    return { ok: true, rel: parts.join('/'), parts, renames: parent.renames, repeat: leaf.repeat };
  }

  private mapParents(
    comps: string[],
  ): { ok: true; rel: string; parts: string[]; renames: Rename[] } | { ok: false; reason: string; renames: Rename[] } {
    const parts: string[] = [];
    const renames: Rename[] = [];
    for (let i = 0; i < comps.length; i++) {
      const r = this.allocate(parts.join('/'), ENTRY_KEY + comps[i]!, comps[i]!, {
        isDir: true,
        guestPath: comps.slice(0, i + 1).join('/'),
        explicit: false,
      });
      renames.push(...(r.ok ? r.renames : []));
      if (!r.ok) return { ok: false, reason: r.reason, renames };
      parts.push(r.safe);
    }
    return { ok: true, rel: parts.join('/'), parts, renames };
  }

  private allocate(
    dirRel: string,
    key: string,
    guestName: string,
    want: { isDir: boolean; guestPath: string; explicit: boolean },
  ): { ok: true; safe: string; renames: Rename[]; repeat: boolean } | { ok: false; reason: string } {
    const dir = this.dirs.get(dirRel);
    if (dir === undefined) return { ok: false, reason: `internal: folder '${dirRel}' was never mapped` };
    const rel = (safe: string) => (dirRel === '' ? safe : `${dirRel}/${safe}`);
    const seen = dir.names.get(key);
    if (seen !== undefined) {
      if (!want.explicit && !seen.isDir) {
        return { ok: false, reason: `'${want.guestPath}' was restored as a non-folder; nothing is written below it` };
      }
      if (want.explicit && seen.isDir !== want.isDir) {
        return {
          ok: false,
          reason: `'${want.guestPath}' was already restored as a ${seen.isDir ? 'folder' : 'non-folder'}`,
        };
      }
      const repeat = want.explicit && seen.explicit;
      if (want.explicit) seen.explicit = true;
      return { ok: true, safe: seen.safe, renames: [], repeat };
    }
    const s = safeName(guestName, this.opts);
    let safe = s.name;
    const why = [...s.why];
    if (dir.used.has(safe)) {
      // Terminates: each round tries a new counter and `used` is finite.
      let n = 2;
      while (dir.used.has(withCollisionSuffix(s.name, n))) n++;
      safe = withCollisionSuffix(s.name, n);
      why.push('another name in this folder became the same safe name');
    }
    dir.used.add(safe);
    dir.names.set(key, { safe, isDir: want.isDir, explicit: want.explicit });
    if (want.isDir) this.dirs.set(rel(safe), { names: new Map(), used: new Set() });
    const renames =
      safe !== guestName ? [{ guestPath: want.guestPath, restoredAs: rel(safe), why: why.join('; ') }] : [];
    return { ok: true, safe, renames, repeat: false };
  }
}
