/**
 * The XML reader (agent/source/xml.ts): the tree it reads is compared with
 * Python's xml.etree on the same text (an oracle we did not write), the
 * offsets it keeps are checked by patching values in place, and hostile
 * documents (entity bombs, external entities, deep nesting, huge values) end
 * in typed errors.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  attribute,
  childElement,
  escapeXmlAttribute,
  escapeXmlText,
  MAX_XML_ATTRIBUTES,
  MAX_XML_CHARS,
  MAX_XML_DEPTH,
  MAX_XML_VALUE_CHARS,
  parseXml,
  type XmlElement,
} from '../../agent/source/xml.js';
import { CorruptError, LimitError, TruncatedError, UnsupportedError, VdbakError } from '../../parsers/errors.js';

interface Plain {
  name: string;
  attrs: Record<string, string>;
  text: string;
  children: Plain[];
}

function plain(el: XmlElement): Plain {
  return {
    name: el.name,
    attrs: Object.fromEntries(el.attributes.map((a) => [a.name, a.value])),
    text: el.text,
    children: el.children.map(plain),
  };
}

/** Python's view of the same document: tag, attributes, and the element's own text (text + each child's tail). */
function oracle(xml: string): Plain {
  const py = `
import sys, json, xml.etree.ElementTree as E
def conv(e):
    t = (e.text or '') + ''.join((c.tail or '') for c in e)
    return {'name': e.tag, 'attrs': dict(e.attrib), 'text': t, 'children': [conv(c) for c in e]}
print(json.dumps(conv(E.fromstring(sys.stdin.read()))))
`;
  const r = spawnSync('python3', ['-c', py], { input: xml, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3: ${r.stderr}`);
  return JSON.parse(r.stdout) as Plain;
}

function typedError(fn: () => unknown): VdbakError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(VdbakError);
    return e as VdbakError;
  }
  throw new Error('expected a typed error');
}

const DOMAIN = `<?xml version="1.0" encoding="UTF-8"?>
<!-- written by virsh dumpxml -->
<domain type='kvm' id='3'>
  <name>web &amp; db</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  <description><![CDATA[owner: <ops> & friends]]></description>
  <memory unit='KiB'>2097152</memory>
  <devices>
    <disk type="file" device="disk">
      <driver name="qemu" type="qcow2"/>
      <source file="/var/lib/libvirt/images/web&#x20;1.qcow2"/>
      <target dev="vda" bus="virtio"/>
    </disk>
    <?some-pi data?>
    <interface type='network'>
      <mac address='52:54:00:6b:3c:58'/>
      <source network="default"/>
    </interface>
  </devices>
  <seclabel type='dynamic' model='selinux' relabel='yes'>
    <label>system_u:system_r:svirt_t:s0:c12,c34</label>
  </seclabel>
</domain>
`;

describe('parseXml', () => {
  it('reads the same tree as python xml.etree', () => {
    const doc = parseXml(DOMAIN, 'domain.xml');
    expect(plain(doc.root)).toEqual(oracle(DOMAIN));
    expect(childElement(doc.root, 'name')?.text).toBe('web & db');
    expect(childElement(doc.root, 'description')?.text).toBe('owner: <ops> & friends');
  });

  it('agrees with python on references, quotes, whitespace in attributes and CRLF text', () => {
    const xml =
      '<a x="1&#9;2&#x41;&lt;&gt;&quot;&apos;" y=\'he said "hi"\' z="line\nbreak\ttab">' +
      'x&#233;&#x1F600;y\r\nz<b/>tail&amp;<c k="v">in</c></a>';
    expect(plain(parseXml(xml, 't').root)).toEqual(oracle(xml));
  });

  it('keeps offsets that patch a value in place and leave the rest as it was', () => {
    const doc = parseXml(DOMAIN, 'domain.xml');
    const devices = childElement(doc.root, 'devices');
    const disk = devices && childElement(devices, 'disk');
    const src = disk && childElement(disk, 'source');
    const file = src && attribute(src, 'file');
    expect(file).toBeDefined();
    if (!file) return;
    expect(DOMAIN.slice(file.start, file.end)).toBe('/var/lib/libvirt/images/web&#x20;1.qcow2');
    const newPath = `/restore/it's "new" & <here>.qcow2`;
    const patched = DOMAIN.slice(0, file.start) + escapeXmlAttribute(newPath, file.quote) + DOMAIN.slice(file.end);
    const again = parseXml(patched, 'p');
    const src2 = childElement(childElement(childElement(again.root, 'devices')!, 'disk')!, 'source')!;
    expect(attribute(src2, 'file')?.value).toBe(newPath);

    const name = childElement(doc.root, 'name')!;
    expect(DOMAIN.slice(name.contentStart, name.contentEnd)).toBe('web &amp; db');
    expect(DOMAIN.slice(name.start, name.end)).toBe('<name>web &amp; db</name>');
    const renamed = DOMAIN.slice(0, name.contentStart) + escapeXmlText('a<b>&c') + DOMAIN.slice(name.contentEnd);
    expect(childElement(parseXml(renamed, 'r').root, 'name')?.text).toBe('a<b>&c');
    expect(oracle(renamed).children[0]?.text).toBe('a<b>&c');
    // an attribute in single quotes is escaped for single quotes
    const mac = childElement(childElement(devices!, 'interface')!, 'mac')!;
    expect(attribute(mac, 'address')?.quote).toBe("'");
    const empty = childElement(disk!, 'driver')!;
    expect(DOMAIN.slice(empty.start, empty.end)).toBe('<driver name="qemu" type="qcow2"/>');
    expect(empty.contentStart).toBe(empty.end);
  });

  it('accepts a plain DOCTYPE and a byte-order mark', () => {
    expect(parseXml('\ufeff<!DOCTYPE domain><domain/>', 'd').root.name).toBe('domain');
  });

  it('refuses entity declarations and external DTDs (billion laughs, XXE)', () => {
    const bomb =
      '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">' +
      '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><lolz>&lol3;</lolz>';
    const e1 = typedError(() => parseXml(bomb, 'bomb.xml'));
    expect(e1).toBeInstanceOf(UnsupportedError);
    expect(e1.code).toBe('XML_DTD');
    const xxe = '<!DOCTYPE d SYSTEM "file:///etc/passwd"><d/>';
    expect(typedError(() => parseXml(xxe, 'x')).code).toBe('XML_DTD');
    const e2 = typedError(() => parseXml('<d>&xxe;</d>', 'x'));
    expect(e2.code).toBe('XML_ENTITY');
    expect(e2.offset).toBe(3);
    expect(typedError(() => parseXml('<d><!ENTITY x "y"></d>', 'x')).code).toBe('XML_DECL');
  });

  it('caps depth, element size, attribute count and the document without recursing', () => {
    const deep = '<a>'.repeat(MAX_XML_DEPTH + 1) + '</a>'.repeat(MAX_XML_DEPTH + 1);
    const e = typedError(() => parseXml(deep, 'deep'));
    expect(e).toBeInstanceOf(LimitError);
    expect(e.code).toBe('XML_DEPTH');
    expect(parseXml('<a>'.repeat(MAX_XML_DEPTH) + '</a>'.repeat(MAX_XML_DEPTH), 'ok').root.name).toBe('a');
    // a million-deep document is one error, not a stack overflow
    expect(typedError(() => parseXml('<a>'.repeat(1_000_000), 'very deep')).code).toBe('XML_DEPTH');

    const huge = `<a v="${'x'.repeat(MAX_XML_VALUE_CHARS + 1)}"/>`;
    expect(typedError(() => parseXml(huge, 'h')).code).toBe('XML_VALUE_LONG');
    const text = `<a>${'x'.repeat(MAX_XML_VALUE_CHARS + 1)}</a>`;
    expect(typedError(() => parseXml(text, 'h')).code).toBe('XML_TEXT_LONG');
    const attrs = `<a ${Array.from({ length: MAX_XML_ATTRIBUTES + 1 }, (_, i) => `a${i}="1"`).join(' ')}/>`;
    expect(typedError(() => parseXml(attrs, 'h')).code).toBe('XML_ATTRIBUTES');
    const big = `<a>${' '.repeat(MAX_XML_CHARS)}</a>`;
    expect(typedError(() => parseXml(big, 'h')).code).toBe('XML_TOO_LARGE');
    expect(typedError(() => parseXml(`<a b="${'x'.repeat(300)}" ${'y'.repeat(300)}="1"/>`, 'n')).code).toBe(
      'XML_NAME_LONG',
    );
  });

  it('gives typed errors for malformed documents', () => {
    const cases: [string, string, typeof CorruptError | typeof TruncatedError][] = [
      ['', 'XML_EMPTY', TruncatedError],
      ['text', 'XML_ROOT', CorruptError],
      ['<a>', 'XML_EOF', TruncatedError],
      ['<a></b>', 'XML_END_TAG', CorruptError],
      ['<a x="1" x="2"/>', 'XML_ATTR_DUP', CorruptError],
      ['<a x=1/>', 'XML_ATTR_QUOTE', CorruptError],
      ['<a x="<"/>', 'XML_ATTR_LT', CorruptError],
      ['<a x="1"y="2"/>', 'XML_ATTR_SPACE', CorruptError],
      ['<a x/>', 'XML_ATTR_EQ', CorruptError],
      ['<a/><b/>', 'XML_TRAILING', CorruptError],
      ['<a>&#0;</a>', 'XML_CHAR_REF', CorruptError],
      ['<a>&#xD800;</a>', 'XML_CHAR_REF', CorruptError],
      ['<a>&#x110000;</a>', 'XML_CHAR_REF', CorruptError],
      ['<a>a & b</a>', 'XML_AMPERSAND', CorruptError],
      ['<a>\u0001</a>', 'XML_CHAR', CorruptError],
      ['<a><!-- open</a>', 'XML_COMMENT_EOF', TruncatedError],
      ['<a><![CDATA[x</a>', 'XML_CDATA_EOF', TruncatedError],
      ['<a x="1', 'XML_ATTR_EOF', TruncatedError],
      ['<a x="1"', 'XML_TAG_EOF', TruncatedError],
      ['<1a/>', 'XML_NAME', CorruptError],
    ];
    for (const [xml, code, cls] of cases) {
      const e = typedError(() => parseXml(xml, 'bad.xml'));
      expect([xml, e.code]).toEqual([xml, code]);
      expect(e).toBeInstanceOf(cls);
      expect(e.layer).toBe('config');
      expect(e.image).toBe('bad.xml');
    }
  });

  it('never throws an untyped error on mutated domain XML', () => {
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const alphabet = '<>/&;"\'=![]-?#x \n';
    for (let i = 0; i < 3000; i++) {
      const chars = [...DOMAIN];
      for (let k = 0, n = 1 + rnd(4); k < n; k++) {
        const at = rnd(chars.length);
        const op = rnd(3);
        const c = alphabet[rnd(alphabet.length)] ?? '<';
        if (op === 0) chars[at] = c;
        else if (op === 1) chars.splice(at, 1);
        else chars.splice(at, 0, c);
      }
      try {
        parseXml(chars.join(''), 'fuzz');
      } catch (e) {
        expect(e).toBeInstanceOf(VdbakError);
      }
    }
  });
});
