/**
 * A small XML reader for the XML we meet on a datastore: libvirt domain files
 * (and, later, the OVF descriptors next to exported VMs). It is not a general
 * XML processor, on purpose: a domain file is machine-written, and a general
 * processor's features (DTDs, entity expansion, external resources) are how
 * hostile XML attacks its reader.
 *
 * What it reads: elements, attributes, text, CDATA (kept as text), the five
 * predefined entities and numeric character references. What it skips:
 * comments, processing instructions and the XML declaration. What it refuses:
 * a DOCTYPE with an internal subset or an external identifier (the only way to
 * declare entities, so no entity bomb and no external fetch can exist), any
 * other named entity, and input past the caps below.
 *
 * Every element and attribute value keeps its source offsets, so a patcher
 * (whole-VM restore rewrites names, uuids, MACs and disk paths) can replace
 * exactly one value in the original text and leave the rest byte-for-byte as
 * it was. Offsets are indexes into the JavaScript string given to parseXml
 * (UTF-16 code units), not bytes: patch the same string you parsed.
 */
import { errorsFor, type Errors } from '../../parsers/errors.js';

/** Largest document we read, in characters. Domain files are a few KiB; 4 Mi leaves room for huge metadata blocks. */
export const MAX_XML_CHARS = 4 * 1024 * 1024;
/** Deepest element nesting. libvirt nests about 6 deep; the cap stops a stack-sized recursion in consumers. */
export const MAX_XML_DEPTH = 64;
/** Most elements in one document. */
export const MAX_XML_ELEMENTS = 100_000;
/** Most attributes on one element. */
export const MAX_XML_ATTRIBUTES = 256;
/** Longest element or attribute name. */
export const MAX_XML_NAME_CHARS = 256;
/** Longest attribute value or text run of one element (characters, after decoding). */
export const MAX_XML_VALUE_CHARS = 256 * 1024;

export interface XmlAttribute {
  /** As written, prefix included ('xmlns:qemu'). */
  readonly name: string;
  /** Decoded: entities and character references replaced, literal tabs and newlines as spaces (XML's normalisation). */
  readonly value: string;
  /** Offsets of the raw value between the quotes: text.slice(start, end) is the value as written. */
  readonly start: number;
  readonly end: number;
  /** The quote it is written in, so a patch can escape for it. */
  readonly quote: '"' | "'";
}

export interface XmlElement {
  /** As written, prefix included ('qemu:commandline'). */
  readonly name: string;
  readonly attributes: readonly XmlAttribute[];
  readonly children: readonly XmlElement[];
  /** The decoded text directly inside it (its children's text excluded), CDATA included. */
  readonly text: string;
  /** Offset of its '<'. */
  readonly start: number;
  /** Offset just past its last '>' (the end tag's, or the '/>' of an empty element). */
  readonly end: number;
  /**
   * The content between its start and end tags: text.slice(contentStart, contentEnd).
   * For an empty element (<a/>) both are `end`, and a patcher that wants to give
   * it content must rewrite the whole element.
   */
  readonly contentStart: number;
  readonly contentEnd: number;
  /** Depth below the root (the root is 0). */
  readonly depth: number;
}

export interface XmlDocument {
  readonly root: XmlElement;
  /** The text parsed; the offsets index into it. */
  readonly text: string;
}

const PREDEFINED: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const MAX_CODE_POINT = 0x10ffff;
const NAME_START_RE = /[A-Za-z_:\u00c0-\uffff]/;
const NAME_CHAR_RE = /[A-Za-z0-9_:.\u00b7\u00c0-\uffff-]/;
const SPACE_RE = /[ \t\r\n]/;
/** Characters XML 1.0 forbids anywhere in a document (C0 controls except tab, LF, CR). */
const FORBIDDEN_CHAR_RE = /[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/;

interface Builder {
  name: string;
  attributes: XmlAttribute[];
  children: XmlElement[];
  text: string;
  start: number;
  contentStart: number;
  depth: number;
}

/** Characters that are allowed as a character reference's target (XML 1.0 Char production). */
function isXmlChar(cp: number): boolean {
  if (cp === 0x9 || cp === 0xa || cp === 0xd) return true;
  if (cp < 0x20) return false;
  if (cp >= 0xd800 && cp <= 0xdfff) return false;
  if (cp === 0xfffe || cp === 0xffff) return false;
  return cp <= MAX_CODE_POINT;
}

class Reader {
  private pos = 0;
  private elements = 0;
  private readonly err: Errors;

  constructor(
    private readonly s: string,
    image: string,
  ) {
    this.err = errorsFor({ image, layer: 'config' });
  }

  private corrupt(code: string, msg: string, offset = this.pos): Error {
    return this.err.corrupt(code, msg, { offset });
  }

  private limit(code: string, msg: string, cap: number, offset = this.pos): Error {
    return this.err.limit(code, msg, { offset, cap });
  }

  private startsWith(token: string): boolean {
    return this.s.startsWith(token, this.pos);
  }

  private skipSpace(): void {
    while (this.pos < this.s.length && SPACE_RE.test(this.s[this.pos] ?? '')) this.pos++;
  }

  /** Moves past `close`, which must come; returns where the skipped run started. */
  private skipPast(close: string, code: string, what: string): number {
    const from = this.pos;
    const at = this.s.indexOf(close, this.pos);
    if (at < 0) throw this.err.truncated(code, `${what} is not closed by "${close}"`, { offset: from });
    this.pos = at + close.length;
    return from;
  }

  private readName(what: string): string {
    const from = this.pos;
    const first = this.s[this.pos] ?? '';
    if (!NAME_START_RE.test(first)) throw this.corrupt('XML_NAME', `expected ${what} name`);
    this.pos++;
    while (this.pos < this.s.length && NAME_CHAR_RE.test(this.s[this.pos] ?? '')) {
      this.pos++;
      if (this.pos - from > MAX_XML_NAME_CHARS) {
        throw this.limit('XML_NAME_LONG', `${what} name longer than ${MAX_XML_NAME_CHARS}`, MAX_XML_NAME_CHARS, from);
      }
    }
    return this.s.slice(from, this.pos);
  }

  /** Decodes a reference starting at '&'; returns the replacement text and moves past ';'. */
  private readReference(): string {
    const from = this.pos;
    const semi = this.s.indexOf(';', from);
    // the longest legal reference is &#x10FFFF; (10 chars); further means a stray '&'
    if (semi < 0 || semi - from > 12) throw this.corrupt('XML_AMPERSAND', "'&' that starts no reference", from);
    const body = this.s.slice(from + 1, semi);
    this.pos = semi + 1;
    if (body.startsWith('#')) {
      const hex = body.startsWith('#x');
      const digits = body.slice(hex ? 2 : 1);
      const ok = hex ? /^[0-9A-Fa-f]{1,6}$/.test(digits) : /^[0-9]{1,7}$/.test(digits);
      const cp = ok ? Number.parseInt(digits, hex ? 16 : 10) : -1;
      if (!ok || !isXmlChar(cp)) throw this.corrupt('XML_CHAR_REF', `bad character reference &${body};`, from);
      return String.fromCodePoint(cp);
    }
    const named = PREDEFINED[body];
    if (named === undefined) {
      throw this.err.unsupported('XML_ENTITY', `entity &${body}; is not one of XML's five predefined ones`, {
        offset: from,
      });
    }
    return named;
  }

  private readAttributeValue(): { value: string; start: number; end: number; quote: '"' | "'" } {
    const quote = this.s[this.pos];
    if (quote !== '"' && quote !== "'") throw this.corrupt('XML_ATTR_QUOTE', 'attribute value is not quoted');
    this.pos++;
    const start = this.pos;
    let value = '';
    for (;;) {
      if (this.pos >= this.s.length)
        throw this.err.truncated('XML_ATTR_EOF', 'attribute value is not closed', { offset: start });
      const c = this.s[this.pos] ?? '';
      if (c === quote) break;
      if (c === '<') throw this.corrupt('XML_ATTR_LT', "'<' inside an attribute value");
      if (c === '&') value += this.readReference();
      else {
        value += c === '\t' || c === '\n' || c === '\r' ? ' ' : c;
        this.pos++;
      }
      if (value.length > MAX_XML_VALUE_CHARS || this.pos - start > MAX_XML_VALUE_CHARS * 2) {
        throw this.limit(
          'XML_VALUE_LONG',
          `attribute value longer than ${MAX_XML_VALUE_CHARS}`,
          MAX_XML_VALUE_CHARS,
          start,
        );
      }
    }
    const end = this.pos;
    this.pos++;
    return { value, start, end, quote };
  }

  /** Reads '<name attr="v" ...' up to and including '>' or '/>'. */
  private readStartTag(depth: number): { b: Builder; empty: boolean } {
    const start = this.pos;
    this.pos++; // '<'
    if (depth >= MAX_XML_DEPTH)
      throw this.limit('XML_DEPTH', `elements nested deeper than ${MAX_XML_DEPTH}`, MAX_XML_DEPTH, start);
    if (++this.elements > MAX_XML_ELEMENTS) {
      throw this.limit('XML_ELEMENTS', `more than ${MAX_XML_ELEMENTS} elements`, MAX_XML_ELEMENTS, start);
    }
    const name = this.readName('element');
    const attributes: XmlAttribute[] = [];
    const seen = new Set<string>();
    for (;;) {
      const before = this.pos;
      this.skipSpace();
      if (this.startsWith('/>')) {
        this.pos += 2;
        return { b: { name, attributes, children: [], text: '', start, contentStart: this.pos, depth }, empty: true };
      }
      if (this.startsWith('>')) {
        this.pos++;
        return { b: { name, attributes, children: [], text: '', start, contentStart: this.pos, depth }, empty: false };
      }
      if (this.pos >= this.s.length)
        throw this.err.truncated('XML_TAG_EOF', `<${name}> is not closed`, { offset: start });
      if (this.pos === before)
        throw this.corrupt('XML_ATTR_SPACE', `expected a space before an attribute of <${name}>`);
      const attrAt = this.pos;
      const attrName = this.readName('attribute');
      if (seen.has(attrName)) throw this.corrupt('XML_ATTR_DUP', `attribute ${attrName} repeated on <${name}>`, attrAt);
      seen.add(attrName);
      if (attributes.length >= MAX_XML_ATTRIBUTES) {
        throw this.limit(
          'XML_ATTRIBUTES',
          `<${name}> has more than ${MAX_XML_ATTRIBUTES} attributes`,
          MAX_XML_ATTRIBUTES,
          attrAt,
        );
      }
      this.skipSpace();
      if (this.s[this.pos] !== '=') throw this.corrupt('XML_ATTR_EQ', `attribute ${attrName} has no '='`);
      this.pos++;
      this.skipSpace();
      attributes.push({ name: attrName, ...this.readAttributeValue() });
    }
  }

  /** <!DOCTYPE name> is harmless; anything that could declare or fetch entities is refused. */
  private readDoctype(): void {
    const from = this.pos;
    const end = this.s.indexOf('>', from);
    const body = end < 0 ? this.s.slice(from) : this.s.slice(from, end);
    if (body.includes('[') || /\b(SYSTEM|PUBLIC)\b/.test(body) || end < 0) {
      throw this.err.unsupported('XML_DTD', 'a DOCTYPE with declarations or an external DTD is not read', {
        offset: from,
      });
    }
    this.pos = end + 1;
  }

  /** Comments, processing instructions and whitespace between markup outside the root. */
  private skipMisc(allowDoctype: boolean): void {
    for (;;) {
      this.skipSpace();
      if (this.startsWith('<!--')) this.skipPast('-->', 'XML_COMMENT_EOF', 'a comment');
      else if (this.startsWith('<?')) this.skipPast('?>', 'XML_PI_EOF', 'a processing instruction');
      else if (this.startsWith('<!DOCTYPE')) {
        if (!allowDoctype) throw this.corrupt('XML_DOCTYPE_PLACE', 'DOCTYPE after the root element');
        this.readDoctype();
      } else return;
    }
  }

  parse(): XmlElement {
    if (this.s.length > MAX_XML_CHARS) {
      throw this.err.limit('XML_TOO_LARGE', `document of ${this.s.length} characters`, { cap: MAX_XML_CHARS });
    }
    const bad = FORBIDDEN_CHAR_RE.exec(this.s);
    if (bad)
      throw this.corrupt(
        'XML_CHAR',
        `control character U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0')}`,
        bad.index,
      );
    if (this.s.charCodeAt(0) === 0xfeff) this.pos = 1;
    this.skipMisc(true);
    if (this.s[this.pos] !== '<') {
      if (this.pos >= this.s.length) throw this.err.truncated('XML_EMPTY', 'no root element', { offset: this.pos });
      throw this.corrupt('XML_ROOT', 'text before the root element');
    }
    const root = this.readElement();
    this.skipMisc(false);
    if (this.pos < this.s.length) throw this.corrupt('XML_TRAILING', 'content after the root element');
    return root;
  }

  /** The element at '<', with everything inside it; iterative so nesting never grows the JS stack. */
  private readElement(): XmlElement {
    const stack: Builder[] = [];
    let done: XmlElement | undefined;
    const finish = (b: Builder, contentEnd: number): void => {
      const el: XmlElement = {
        name: b.name,
        attributes: b.attributes,
        children: b.children,
        text: b.text,
        start: b.start,
        end: this.pos,
        contentStart: b.contentStart,
        contentEnd,
        depth: b.depth,
      };
      const parent = stack.at(-1);
      if (parent) parent.children.push(el);
      else done = el;
    };
    const open = (): void => {
      const { b, empty } = this.readStartTag(stack.length);
      if (empty) finish(b, this.pos);
      else stack.push(b);
    };
    open();
    while (done === undefined) {
      const cur = stack.at(-1);
      if (!cur) break;
      if (this.pos >= this.s.length) {
        throw this.err.truncated('XML_EOF', `<${cur.name}> is not closed`, { offset: cur.start });
      }
      const c = this.s[this.pos];
      if (c === '<') {
        if (this.startsWith('</')) {
          const contentEnd = this.pos;
          this.pos += 2;
          const name = this.readName('end tag');
          if (name !== cur.name) throw this.corrupt('XML_END_TAG', `</${name}> closes <${cur.name}>`, contentEnd);
          this.skipSpace();
          if (this.s[this.pos] !== '>') throw this.corrupt('XML_END_TAG', `</${name}> is not closed by '>'`);
          this.pos++;
          stack.pop();
          finish(cur, contentEnd);
        } else if (this.startsWith('<!--')) {
          this.skipPast('-->', 'XML_COMMENT_EOF', 'a comment');
        } else if (this.startsWith('<![CDATA[')) {
          this.pos += '<![CDATA['.length;
          const from = this.skipPast(']]>', 'XML_CDATA_EOF', 'a CDATA section');
          this.addText(cur, this.s.slice(from, this.pos - 3));
        } else if (this.startsWith('<?')) {
          this.skipPast('?>', 'XML_PI_EOF', 'a processing instruction');
        } else if (this.startsWith('<!')) {
          throw this.err.unsupported('XML_DECL', 'a markup declaration inside an element', { offset: this.pos });
        } else {
          open();
        }
      } else if (c === '&') {
        this.addText(cur, this.readReference());
      } else {
        const next = this.nextMarkup();
        this.addText(cur, this.s.slice(this.pos, next));
        this.pos = next;
      }
    }
    if (done === undefined) throw this.corrupt('XML_ROOT', 'no root element');
    return done;
  }

  private nextMarkup(): number {
    let i = this.pos;
    while (i < this.s.length) {
      const c = this.s.charCodeAt(i);
      if (c === 0x3c /* < */ || c === 0x26 /* & */) break;
      i++;
    }
    return i;
  }

  private addText(b: Builder, t: string): void {
    if (b.text.length + t.length > MAX_XML_VALUE_CHARS) {
      throw this.limit(
        'XML_TEXT_LONG',
        `text of <${b.name}> longer than ${MAX_XML_VALUE_CHARS}`,
        MAX_XML_VALUE_CHARS,
        b.start,
      );
    }
    // XML normalises line ends to LF
    b.text += t.replace(/\r\n?/g, '\n');
  }
}

/** Parses an XML document; `image` names it in errors (layer 'config'). Throws typed errors only. */
export function parseXml(text: string, image: string): XmlDocument {
  return { root: new Reader(text, image).parse(), text };
}

/** The first child element with this name. */
export function childElement(el: XmlElement, name: string): XmlElement | undefined {
  return el.children.find((c) => c.name === name);
}

/** Every child element with this name, in document order. */
export function childElements(el: XmlElement, name: string): XmlElement[] {
  return el.children.filter((c) => c.name === name);
}

/** An attribute by name. */
export function attribute(el: XmlElement, name: string): XmlAttribute | undefined {
  return el.attributes.find((a) => a.name === name);
}

/** An attribute's decoded value. */
export function attributeValue(el: XmlElement | undefined, name: string): string | undefined {
  return el ? attribute(el, name)?.value : undefined;
}

/** Escapes text for use as element content. */
export function escapeXmlText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Escapes text for use inside an attribute value written in `quote`. */
export function escapeXmlAttribute(s: string, quote: '"' | "'" = '"'): string {
  const t = escapeXmlText(s).replace(/\t/g, '&#9;').replace(/\n/g, '&#10;').replace(/\r/g, '&#13;');
  return quote === '"' ? t.replace(/"/g, '&quot;') : t.replace(/'/g, '&apos;');
}
