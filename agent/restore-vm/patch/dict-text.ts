/**
 * An editor for VMware dictionary files (.vmx, .vmsd) that changes values in
 * place: every byte it is not asked to change stays as it was, comments,
 * spacing, key case, line endings and lines our reader ignores included.
 *
 * It works on the file's bytes seen one char per byte (latin1), so offsets
 * are byte offsets and untouched bytes round-trip whatever the file's
 * encoding. Lines are recognised as agent/source/dictionary.ts reads them
 * (that reader is the oracle in the tests); values are decoded with the
 * file's `.encoding` and VMware's `|XX` escapes.
 */
import { TextDecoder } from 'node:util';
import { errorsFor } from '../../../parsers/errors.js';
import { MAX_DICTIONARY_CHARS, MAX_DICTIONARY_LINES, unescapeValue } from '../../source/dictionary.js';

const KEY_RE = /^([^\s="#]+)[ \t]*=[ \t]*/;
/** .vmx/.vmsd name their charset in `.encoding`, VMDK descriptors in `encoding`. */
const ENCODING_RE = {
  dictionary: /^[ \t]*\.encoding[ \t]*=[ \t]*"?([A-Za-z0-9_.:-]+)"?/im,
  descriptor: /^[ \t]*encoding[ \t]*=[ \t]*"?([A-Za-z0-9_.:-]+)"?/im,
} as const;
/** A descriptor's extent line: ACCESS SECTORS TYPE "file" … (descriptor.ts EXTENT_RE). */
const EXTENT_RE = /^(?:RW|RDONLY|NOACCESS)\s+\d+\s+[A-Za-z]+\s+"([^"]*)"/;
/** Whitespace as a dictionary line may hold it; not JS's trim, which would also eat 0xA0 bytes of UTF-8 text. */
const SPACE = new Set([' ', '\t', '\r', '\f', '\v']);
/** Bytes escaped as |XX in a value: the quote, the escape char itself, control characters. */
const MUST_ESCAPE_RE = /["|\x00-\x1f\x7f]/g;
/** A bare (unquoted) value may not hold these. */
const NEEDS_QUOTES_RE = /[\s#"]/;

export interface DictLine {
  /** Byte offset of the line's first byte, and of the byte after its last (before '\n'). */
  start: number;
  end: number;
  key: string;
  lower: string;
  /** Byte span of the raw value (between the quotes when quoted). */
  vStart: number;
  vEnd: number;
  quoted: boolean;
  /** 1-based, for messages. */
  lineNo: number;
}

/** A VMDK descriptor's extent line and the byte span of its file name. */
export interface ExtentFileLine {
  fStart: number;
  fEnd: number;
  lineNo: number;
}

/**
 * 'dictionary': .vmx/.vmsd (|XX escapes, `.encoding`); 'descriptor': a VMDK
 * descriptor (no escapes, `encoding`, extent lines).
 */
export type Dialect = 'dictionary' | 'descriptor';

interface Edit {
  start: number;
  end: number;
  text: string;
}

export class DictText {
  /** The file's bytes, one char per byte. */
  readonly raw: string;
  readonly encoding: string;
  readonly lines: DictLine[] = [];
  readonly extents: ExtentFileLine[] = [];
  private readonly decoder: TextDecoder;
  private readonly edits: Edit[] = [];

  constructor(
    bytes: Buffer,
    readonly path: string,
    readonly dialect: Dialect = 'dictionary',
  ) {
    const err = errorsFor({ image: path, layer: 'restore' });
    if (bytes.length > MAX_DICTIONARY_CHARS * 4) {
      throw err.limit('PATCH_FILE_TOO_LARGE', `configuration file of ${bytes.length} bytes`, {
        cap: MAX_DICTIONARY_CHARS * 4,
      });
    }
    this.raw = bytes.toString('latin1');
    this.encoding = (ENCODING_RE[dialect].exec(this.raw.slice(0, 64 * 1024))?.[1] ?? 'utf-8').toLowerCase();
    try {
      this.decoder = new TextDecoder(this.encoding);
    } catch {
      throw err.unsupported('PATCH_ENCODING', `configuration encoding "${this.encoding}"`);
    }
    this.scan(err);
  }

  private scan(err: ReturnType<typeof errorsFor>): void {
    let pos = 0;
    let lineNo = 0;
    // a UTF-8 byte order mark is not part of the first key
    if (this.raw.startsWith('\xef\xbb\xbf')) pos = 3;
    while (pos < this.raw.length) {
      if (++lineNo > MAX_DICTIONARY_LINES) {
        throw err.limit('PATCH_TOO_MANY_LINES', `more than ${MAX_DICTIONARY_LINES} lines`, { offset: pos });
      }
      let end = this.raw.indexOf('\n', pos);
      if (end < 0) end = this.raw.length;
      const line = this.parseLine(pos, end, lineNo);
      if (line) this.lines.push(line);
      pos = end + 1;
    }
  }

  private parseLine(start: number, end: number, lineNo: number): DictLine | null {
    let a = start;
    let b = end;
    while (a < b && SPACE.has(this.raw[a] ?? '')) a++;
    while (b > a && SPACE.has(this.raw[b - 1] ?? '')) b--;
    if (a === b || this.raw[a] === '#') return null;
    if (this.dialect === 'descriptor') {
      const e = EXTENT_RE.exec(this.raw.slice(a, b));
      if (e) {
        const fEnd = a + e[0].length - 1;
        this.extents.push({ fStart: fEnd - (e[1] ?? '').length, fEnd, lineNo });
        return null;
      }
    }
    const m = KEY_RE.exec(this.raw.slice(a, b));
    if (!m) return null;
    const key = m[1] ?? '';
    const v = a + m[0].length;
    if (this.raw[v] === '"') {
      const close = this.raw.indexOf('"', v + 1);
      const vEnd = close >= 0 && close < b ? close : b;
      return { start, end, key, lower: key.toLowerCase(), vStart: v + 1, vEnd, quoted: true, lineNo };
    }
    const hash = this.raw.indexOf('#', v);
    let vEnd = hash >= 0 && hash < b ? hash : b;
    while (vEnd > v && SPACE.has(this.raw[vEnd - 1] ?? '')) vEnd--;
    return { start, end, key, lower: key.toLowerCase(), vStart: v, vEnd, quoted: false, lineNo };
  }

  /** Every line with this key (any case), in file order. */
  all(lower: string): DictLine[] {
    return this.lines.filter((l) => l.lower === lower);
  }

  /** The value of a key as the reader sees it (the last line wins), or undefined. */
  get(lower: string): string | undefined {
    const ls = this.all(lower);
    const last = ls[ls.length - 1];
    return last ? this.value(last) : undefined;
  }

  value(line: DictLine): string {
    return this.decode(line.vStart, line.vEnd);
  }

  extentFile(e: ExtentFileLine): string {
    return this.decode(e.fStart, e.fEnd);
  }

  setExtentFile(e: ExtentFileLine, name: string): void {
    this.edits.push({ start: e.fStart, end: e.fEnd, text: this.encodeValue(name) });
  }

  private decode(start: number, end: number): string {
    const text = this.decoder.decode(Buffer.from(this.raw.slice(start, end), 'latin1'));
    return this.dialect === 'dictionary' ? unescapeValue(text) : text;
  }

  /** Replaces a line's value, keeping its quotes, spacing and comment. */
  setValue(line: DictLine, value: string): void {
    const text = this.encodeValue(value);
    if (!line.quoted && NEEDS_QUOTES_RE.test(value)) {
      this.edits.push({ start: line.vStart, end: line.vEnd, text: `"${text}"` });
    } else {
      this.edits.push({ start: line.vStart, end: line.vEnd, text });
    }
  }

  /** Renames a line's key in place (snapshot renumbering). */
  setKey(line: DictLine, key: string): void {
    const at = this.raw.indexOf(line.key, line.start);
    this.edits.push({ start: at, end: at + line.key.length, text: key });
  }

  /** Removes the whole line with its newline. */
  remove(line: DictLine): void {
    const end = line.end < this.raw.length ? line.end + 1 : line.end;
    this.edits.push({ start: line.start, end, text: '' });
  }

  get changed(): boolean {
    return this.edits.length > 0;
  }

  /** The edited bytes. Edits never overlap: each touches one line's key, value or whole line once. */
  result(): Buffer {
    const sorted = [...this.edits].sort((x, y) => y.start - x.start);
    let out = this.raw;
    for (const e of sorted) out = out.slice(0, e.start) + e.text + out.slice(e.end);
    return Buffer.from(out, 'latin1');
  }

  /**
   * VMware escapes as |XX; the escaped bytes are UTF-8 (as our reader decodes
   * them). A non-ASCII character in a file that is not UTF-8 is escaped the
   * same way, since we cannot encode every charset TextDecoder reads.
   */
  private encodeValue(v: string): string {
    if (this.dialect === 'descriptor') {
      // a descriptor has no escapes: a quote or a control character cannot be written at all
      if (/["\x00-\x1f\x7f]/.test(v)) {
        throw errorsFor({ image: this.path, layer: 'restore' }).corrupt(
          'PATCH_FIELD',
          `a VMDK descriptor cannot hold the value ${JSON.stringify(v)}`,
        );
      }
      return Buffer.from(v, 'utf8').toString('latin1');
    }
    const escaped = v.replace(MUST_ESCAPE_RE, (c) => `|${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
    const utf8 = Buffer.from(escaped, 'utf8');
    if (this.encoding === 'utf-8' || this.encoding === 'utf8') return utf8.toString('latin1');
    return [...utf8].map((b) => (b < 0x80 ? String.fromCharCode(b) : `|${b.toString(16).toUpperCase()}`)).join('');
  }
}
