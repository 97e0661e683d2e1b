/**
 * VMware "dictionary" files: the text format of .vmx, .vmsd and .vmxf-less
 * configuration files. One `key = "value"` per line, `#` comments, keys
 * case-insensitive (VMware writes `scsi0:0.fileName` but reads
 * `SCSI0:0.FILENAME` the same), values quoted with bytes that would break the
 * line escaped as `|XX` (two hex digits: `|22` is `"`, `|7C` is `|`, `|0A` a
 * newline). The file names its character set in `.encoding = "UTF-8"`
 * (older Windows hosts: "windows-1252" and others).
 *
 * Reference for the escapes and defaults: libvirt src/vmx/vmx.c
 * (virVMXUnescapeHex, virVMXGetConfigBoolean) and what VMware Workstation /
 * ESXi write.
 *
 * The parser is lenient where VMware would still run the VM (a line without
 * `=`, a missing closing quote): such lines become warnings, not errors,
 * because one odd line must not stop the backup of a VM's disks.
 */
import { errorsFor, type Errors } from '../../parsers/errors.js';

/** Largest configuration text we read. Real .vmx files are a few KiB; 1 MiB leaves room for long annotations. */
export const MAX_DICTIONARY_CHARS = 1024 * 1024;
/** Most lines a configuration may have. */
export const MAX_DICTIONARY_LINES = 50_000;
/** Most warnings kept per file, so a garbage file cannot make a huge report. */
export const MAX_WARNINGS = 50;

export interface DictionaryEntry {
  /** The key as written (the map is keyed by its lower-case form). */
  key: string;
  /** The value, unquoted and unescaped. */
  value: string;
  /** Byte offset of the line in the file's text (UTF-8), for error messages. */
  offset: number;
}

export interface Dictionary {
  /** Lower-case key → entry; the last of repeated keys wins, as when VMware reloads the file. */
  entries: Map<string, DictionaryEntry>;
  /** Still open: the caller adds its own and calls done(). */
  warnings: Warnings;
}

/** A bounded warning list: past MAX_WARNINGS one closing note says how many were dropped. */
export class Warnings {
  readonly list: string[] = [];
  private dropped = 0;
  add(msg: string): void {
    if (this.list.length < MAX_WARNINGS) this.list.push(msg);
    else this.dropped++;
  }
  done(): string[] {
    if (this.dropped > 0) this.list.push(`${this.dropped} more warnings not shown`);
    return this.list;
  }
}

const KEY_LINE_RE = /^([^\s="#]+)\s*=\s*(.*)$/;
const ESCAPE_RE = /\|([0-9A-Fa-f]{2})/g;
const ENCODING_RE = /^[ \t]*\.encoding[ \t]*=[ \t]*"?([A-Za-z0-9_.:-]+)"?/im;
const UTF8 = new TextDecoder('utf-8');

/**
 * Decodes a configuration file's bytes in the character set its
 * `.encoding` line names (UTF-8 when it names none).
 */
export function decodeDictionary(bytes: Uint8Array, path: string): string {
  const err = errorsFor({ image: path, layer: 'file' });
  if (bytes.length > MAX_DICTIONARY_CHARS * 4) {
    throw err.limit('VMX_TOO_LARGE', `configuration file of ${bytes.length} bytes`, { cap: MAX_DICTIONARY_CHARS });
  }
  const head = Buffer.from(bytes.subarray(0, Math.min(bytes.length, 64 * 1024))).toString('latin1');
  const label = ENCODING_RE.exec(head)?.[1] ?? 'utf-8';
  let text: string;
  try {
    text = new TextDecoder(label).decode(bytes);
  } catch {
    throw err.unsupported('VMX_ENCODING', `configuration encoding "${label}"`);
  }
  return text.startsWith('\uFEFF') ? text.slice(1) : text;
}

/** Undoes VMware's `|XX` escapes; the escaped bytes are UTF-8 like the rest of the value. */
export function unescapeValue(v: string): string {
  if (!v.includes('|')) return v;
  const parts: Buffer[] = [];
  let last = 0;
  for (const m of v.matchAll(ESCAPE_RE)) {
    const at = m.index ?? 0;
    if (at > last) parts.push(Buffer.from(v.slice(last, at), 'utf8'));
    parts.push(Buffer.of(Number.parseInt(m[1] ?? '0', 16)));
    last = at + m[0].length;
  }
  if (last < v.length) parts.push(Buffer.from(v.slice(last), 'utf8'));
  return UTF8.decode(Buffer.concat(parts));
}

/** Splits `"value" # comment` or `value # comment`; `bad` says why the line is odd, if it is. */
function splitValue(rest: string): { raw: string; bad?: string } {
  if (rest.startsWith('"')) {
    const close = rest.indexOf('"', 1);
    if (close < 0) return { raw: rest.slice(1), bad: 'no closing quote' };
    const tail = rest.slice(close + 1).trim();
    if (tail !== '' && !tail.startsWith('#')) return { raw: rest.slice(1, close), bad: 'text after the closing quote' };
    return { raw: rest.slice(1, close) };
  }
  const hash = rest.indexOf('#');
  return { raw: (hash >= 0 ? rest.slice(0, hash) : rest).trim() };
}

/**
 * Parses dictionary text. `err` names the file; errors are only for what we
 * refuse to read at all (too large, too many lines).
 */
export function parseDictionary(text: string, err: Errors, what = 'configuration'): Dictionary {
  if (text.length > MAX_DICTIONARY_CHARS) {
    throw err.limit('VMX_TOO_LARGE', `${what} of ${text.length} characters`, { cap: MAX_DICTIONARY_CHARS });
  }
  const entries = new Map<string, DictionaryEntry>();
  const warnings = new Warnings();
  let pos = 0;
  let offset = 0;
  let lineNo = 0;
  while (pos < text.length) {
    if (++lineNo > MAX_DICTIONARY_LINES) {
      throw err.limit('VMX_TOO_MANY_LINES', `${what} has more than ${MAX_DICTIONARY_LINES} lines`, { offset });
    }
    let end = text.indexOf('\n', pos);
    if (end < 0) end = text.length;
    const raw = text.slice(pos, end);
    const lineAt = offset;
    offset += Buffer.byteLength(raw) + 1;
    pos = end + 1;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const kv = KEY_LINE_RE.exec(line);
    if (!kv) {
      warnings.add(`line ${lineNo}: not a "key = value" line, ignored`);
      continue;
    }
    const key = kv[1] ?? '';
    const { raw: rawValue, bad } = splitValue(kv[2] ?? '');
    if (bad) warnings.add(`line ${lineNo} (${key}): ${bad}`);
    const value = unescapeValue(rawValue);
    const lower = key.toLowerCase();
    const prev = entries.get(lower);
    if (prev && prev.value !== value) warnings.add(`line ${lineNo}: ${key} repeated with another value; the last wins`);
    entries.set(lower, { key, value, offset: lineAt });
  }
  return { entries, warnings };
}

/** VMware booleans: TRUE/FALSE in any case; also yes/no, 1/0, on/off. Anything else is `undefined`. */
export function parseBoolean(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  const s = v.trim().toLowerCase();
  if (s === 'true' || s === 'yes' || s === '1' || s === 'on') return true;
  if (s === 'false' || s === 'no' || s === '0' || s === 'off') return false;
  return undefined;
}
