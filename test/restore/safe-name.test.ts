import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { NAME_MAX_BYTES, PathMapper, safeName, withCollisionSuffix } from '../../agent/restore/safe-name.js';
import { prng } from '../../transport/prng.js';

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');
const long = (n: number, c = 'a') => c.repeat(n);

/** [guest name, expected safe name, a word the reason must contain] */
const HOSTILE: [string, string, string][] = [
  ['a/b', 'a_b', "'/'"],
  ['a\\b', 'a_b', "'\\'"],
  ['..', '__', 'usable'],
  ['.', '_', 'usable'],
  ['', '_', 'empty'],
  ['a\0b', 'a_b', 'NUL'],
  ['tab\there\n', 'tab_here_', 'control'],
  ['esc\x1b[31m', 'esc_[31m', 'control'],
  ['c1\u0085', 'c1_', 'control'],
  ['del\x7f', 'del_', 'control'],
  ['CON', 'CON_', 'reserved'],
  ['con', 'con_', 'reserved'],
  ['Prn.log', 'Prn_.log', 'reserved'],
  ['aux.tar.gz', 'aux_.tar.gz', 'reserved'],
  ['NUL', 'NUL_', 'reserved'],
  ['com1.txt', 'com1_.txt', 'reserved'],
  ['COM9', 'COM9_', 'reserved'],
  ['lpt1', 'lpt1_', 'reserved'],
  ['LPT\u00b9.x', 'LPT\u00b9_.x', 'reserved'],
  ['nul .txt', 'nul _.txt', 'reserved'],
  ['conin$', 'conin$_', 'reserved'],
  ['name.', 'name._', 'trailing'],
  ['name ', 'name _', 'trailing'],
  ['...', '..._', 'trailing'],
  ['bad\ud800x', 'bad\ufffdx', 'surrogate'],
  ['bad\udc00', 'bad\ufffd', 'surrogate'],
];

const HARMLESS = [
  'report.docx',
  'über straße.txt',
  '日本語のファイル',
  'emoji 😀.png',
  '.bashrc',
  'CONSOLE',
  'com10',
  'lpt',
  'a:b',
  'x..y',
  '-rf',
];

describe('safeName', () => {
  it.each(HOSTILE)('%j becomes %j', (guest, want, reason) => {
    const s = safeName(guest);
    expect(s.name).toBe(want);
    expect(s.changed).toBe(true);
    expect(s.why.join(' ')).toContain(reason);
  });

  it.each(HARMLESS)('%j is left alone', (guest) => {
    expect(safeName(guest)).toEqual({ name: guest, changed: false, why: [] });
  });

  it('replaces what Windows forbids only when asked', () => {
    expect(safeName('a:b<c>?.txt').changed).toBe(false);
    expect(safeName('a:b<c>?.txt', { windows: true }).name).toBe('a_b_c__.txt');
  });

  it('shortens names over 255 UTF-8 bytes, keeping the extension, and keeps two long names apart', () => {
    const a = safeName(long(296) + '.txt');
    const b = safeName(long(297) + '.txt');
    for (const s of [a, b]) {
      expect(bytes(s.name)).toBeLessThanOrEqual(NAME_MAX_BYTES);
      expect(s.name).toMatch(/^a+~[0-9a-f]{8}\.txt$/);
      expect(s.why.join()).toContain('shortened');
    }
    expect(a.name).not.toBe(b.name);
    // exactly 255 bytes is allowed as is
    expect(safeName(long(251) + '.txt').changed).toBe(false);
  });

  it('cuts multi-byte names on a code point boundary', () => {
    for (const c of ['é', '日', '😀']) {
      const s = safeName(long(200, c));
      expect(bytes(s.name)).toBeLessThanOrEqual(NAME_MAX_BYTES);
      expect(Buffer.from(s.name, 'utf8').toString('utf8')).toBe(s.name);
      expect(s.name).not.toContain('\ufffd');
    }
  });

  it('does not treat a long tail after the last dot as an extension', () => {
    const s = safeName('x.' + long(300, 'b'));
    expect(bytes(s.name)).toBeLessThanOrEqual(NAME_MAX_BYTES);
    expect(s.name).toMatch(/^x\.b+~[0-9a-f]{8}$/);
  });

  it('is deterministic', () => {
    for (const [g] of HOSTILE) expect(safeName(g)).toEqual(safeName(g));
    expect(safeName(long(400)).name).toBe(safeName(long(400)).name);
  });

  it('collision suffixes stay within NAME_MAX and keep the extension', () => {
    expect(withCollisionSuffix('report.docx', 2)).toBe('report~2.docx');
    const l = safeName(long(300) + '.bin').name;
    const s = withCollisionSuffix(l, 12);
    expect(bytes(s)).toBeLessThanOrEqual(NAME_MAX_BYTES);
    expect(s.endsWith('~12.bin')).toBe(true);
  });

  describe('the kernel accepts every safe name as one entry of one folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdbak-safe-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    it('writes each safe name in its own folder and reads back exactly that one name', () => {
      const names = [...HOSTILE.map(([g]) => g), long(300), long(100, '日') + '.txt', long(90, '😀')];
      names.forEach((g, i) => {
        const sub = join(dir, String(i));
        mkdirSync(sub);
        const { name } = safeName(g);
        writeFileSync(join(sub, name), 'x');
        expect(readdirSync(sub)).toEqual([name]);
      });
    });
  });
});

describe('PathMapper', () => {
  it('gives two guest names with the same safe name distinct results', () => {
    const m = new PathMapper();
    const a = m.map('d/a\0', 'file');
    const b = m.map('d/a_', 'file');
    const c = m.map('d/a/', 'file'); // trailing '/' ignored: same as 'd/a'
    expect(a.ok && a.rel).toBe('d/a_');
    expect(b.ok && b.rel).toBe('d/a_~2');
    expect(c.ok && c.rel).toBe('d/a');
    expect(b.renames[0]?.why).toContain('same safe name');
  });

  it('children follow a renamed parent, and the rename is reported once', () => {
    const m = new PathMapper();
    const d = m.map('..', 'dir');
    const f = m.map('../etc/passwd', 'file');
    expect(d.ok && d.rel).toBe('__');
    expect(f.ok && f.rel).toBe('__/etc/passwd');
    expect(d.renames).toHaveLength(1);
    expect(f.renames).toHaveLength(0);
  });

  it('refuses anything below an entry mapped as a symlink or a file', () => {
    const m = new PathMapper();
    expect(m.map('a', 'symlink').ok).toBe(true);
    const below = m.map('a/passwd', 'file');
    expect(below.ok).toBe(false);
    expect(!below.ok && below.reason).toContain('non-folder');
  });

  it('maps an implicit parent and its later explicit entry to the same place; a second explicit one is a repeat', () => {
    const m = new PathMapper();
    expect(m.map('x/y/f', 'file').ok).toBe(true);
    const y = m.map('x/y', 'dir');
    expect(y.ok && y.rel).toBe('x/y');
    expect(y.ok && y.repeat).toBe(false);
    const again = m.map('x/y', 'dir');
    expect(again.ok && again.repeat).toBe(true);
    expect(m.map('x/y', 'file').ok).toBe(false);
  });

  it('puts a named stream beside its entry without taking a real guest name', () => {
    const m = new PathMapper();
    const real = m.map('f.txt:Zone.Identifier', 'file');
    const side = m.sidecar('f.txt', 'Zone.Identifier');
    expect(real.ok && real.rel).toBe('f.txt:Zone.Identifier');
    expect(side.ok && side.rel).toBe('f.txt:Zone~2.Identifier');
    const evil = m.sidecar('f.txt', '../../x');
    expect(evil.ok && evil.rel).toBe('f.txt:.._.._x');
  });

  it('random hostile paths: always inside the root, components ≤ 255 bytes, never two guest paths on one result', () => {
    const rnd = prng(5);
    const alphabet = ['.', '..', '/', '\\', '\0', 'a', 'A', 'CON', ' ', '\ud800', 'é', '😀', '~2', '_', long(120)];
    const m = new PathMapper();
    const root = resolve('/restore-root');
    const seen = new Map<string, string>();
    for (let i = 0; i < 3000; i++) {
      let p = '';
      const len = 1 + Math.floor(rnd() * 8);
      for (let j = 0; j < len; j++) p += alphabet[Math.floor(rnd() * alphabet.length)]!;
      const r = m.map(p, rnd() < 0.7 ? 'dir' : 'file');
      if (!r.ok) continue;
      if (r.rel === '') continue;
      const abs = resolve(root, r.rel);
      expect(abs.startsWith(root + sep)).toBe(true);
      for (const c of r.parts) {
        expect(c === '' || c === '.' || c === '..').toBe(false);
        expect(bytes(c)).toBeLessThanOrEqual(NAME_MAX_BYTES);
        expect(c).not.toMatch(/[/\\\0]/);
      }
      const key = p.replace(/^\/+/, '').replace(/\/+$/, '');
      const prev = seen.get(r.rel);
      if (prev !== undefined) expect(prev).toBe(key);
      seen.set(r.rel, key);
    }
    expect(seen.size).toBeGreaterThan(1000);
  });
});
