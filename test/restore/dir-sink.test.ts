import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { DirSink, TMP_PREFIX } from '../../agent/restore/dir-sink.js';
import type { ContentSource, RestoreItem, RestoreReport } from '../../agent/restore/sink.js';
import { isVdbakError } from '../../parsers/errors.js';
import { contentOf, item, T0 } from './sink-helpers.js';

const AS_ROOT = process.getuid?.() === 0;
/** fs.utimes takes seconds as a double and sets times to the microsecond. */
const TIME_SLACK_NS = 1_000n;

const NONE: ContentSource = () =>
  (async function* () {
    // nothing
  })();

function file(path: string, text: string, over: Partial<RestoreItem> = {}): [RestoreItem, ContentSource] {
  return [item(path, 'file', { size: Buffer.byteLength(text), ...over }), contentOf({ '': text })];
}

function expectTime(actual: bigint, want: bigint): void {
  const d = actual > want ? actual - want : want - actual;
  expect(d <= TIME_SLACK_NS, `time ${actual} vs ${want}`).toBe(true);
}

/** Every path under `dir`, relative, without following symlinks. */
function walk(dir: string, base = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, base))) {
    const rel = base ? `${base}/${name}` : name;
    out.push(rel);
    if (lstatSync(join(dir, rel)).isDirectory()) out.push(...walk(dir, rel));
  }
  return out;
}

let scratch: string;
let root: string;
let outside: string;
beforeEach(() => {
  scratch = realpathSync(mkdtempSync(join(tmpdir(), 'vdbak-dirsink-')));
  root = join(scratch, 'restore');
  outside = join(scratch, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'passwd'), 'original');
});
afterEach(() => rmSync(scratch, { recursive: true, force: true }));

async function restore(
  entries: [RestoreItem, ContentSource][],
  opts = { overwrite: false },
  into = root,
): Promise<RestoreReport> {
  const sink = new DirSink(into, opts);
  for (const [it, c] of entries) await sink.add(it, c);
  return sink.finish();
}

describe('DirSink', () => {
  it('restores a small tree with contents, modes, times and symlinks', async () => {
    const r = await restore([
      [item('docs', 'dir', { mode: 0o750, mtimeNs: T0 - 5_000_000_000n, atimeNs: T0 - 7_000_000_000n }), NONE],
      file('docs/a.txt', 'hello world', { mode: 0o640, mtimeNs: T0 + 1n, atimeNs: T0 + 2n }),
      [item('docs/link', 'symlink', { linkTarget: 'a.txt', mtimeNs: T0 + 3_000n, atimeNs: T0 + 3_000n }), NONE],
      [item('docs/ro', 'dir', { mode: 0o555 }), NONE],
      file('docs/ro/inside.bin', 'x'.repeat(100_000), { mode: 0o600 }),
      file('deep/er/implicit.txt', 'no parents given'),
      file('old.txt', 'before 1970', { mtimeNs: -1_500_000_000n, atimeNs: 0n }),
    ]);
    expect(r).toMatchObject({ files: 4, dirs: 2, links: 1, bytes: 11 + 100_000 + 16 + 11 });
    expect(r.notes).toEqual([]);

    const a = statSync(join(root, 'docs/a.txt'), { bigint: true });
    expect(Number(a.mode) & 0o7777).toBe(0o640);
    expectTime(a.mtimeNs, T0 + 1n);
    expectTime(a.atimeNs, T0 + 2n);
    const docs = statSync(join(root, 'docs'), { bigint: true });
    expect(Number(docs.mode) & 0o7777).toBe(0o750);
    // set after its contents were written, so it is the backup's time, not "now"
    expectTime(docs.mtimeNs, T0 - 5_000_000_000n);
    expectTime(docs.atimeNs, T0 - 7_000_000_000n);
    expect(Number(statSync(join(root, 'docs/ro')).mode) & 0o7777).toBe(0o555);
    expect(Number(statSync(join(root, 'deep')).mode) & 0o7777).toBe(0o755);
    expectTime(lstatSync(join(root, 'docs/link'), { bigint: true }).mtimeNs, T0 + 3_000n);
    expectTime(statSync(join(root, 'old.txt'), { bigint: true }).mtimeNs, -1_500_000_000n);
    expect(walk(root).some((p) => p.includes(TMP_PREFIX))).toBe(false);
    // contents last: reading a file moves its atime
    expect(readFileSync(join(root, 'docs/a.txt'), 'utf8')).toBe('hello world');
    expect(readFileSync(join(root, 'docs/ro/inside.bin'), 'utf8')).toBe('x'.repeat(100_000));
    expect(readFileSync(join(root, 'deep/er/implicit.txt'), 'utf8')).toBe('no parents given');
    expect(readlinkSync(join(root, 'docs/link'))).toBe('a.txt');
  });

  it('never follows a guest symlink: `evil -> outside` then `evil/passwd` writes nothing outside', async () => {
    const r = await restore([
      [item('evil', 'symlink', { linkTarget: outside }), NONE],
      file('evil/passwd', 'pwned'),
      [item('abs', 'symlink', { linkTarget: '/etc' }), NONE],
      file('abs/passwd', 'pwned'),
      file('abs/x/y/z', 'pwned'),
    ]);
    expect(readFileSync(join(outside, 'passwd'), 'utf8')).toBe('original');
    expect(readdirSync(outside)).toEqual(['passwd']);
    expect(readlinkSync(join(root, 'evil'))).toBe(outside);
    expect(r.links).toBe(2);
    expect(r.files).toBe(0);
    const skipped = r.notes.filter((n) => n.kind === 'skipped').map((n) => n.path);
    expect(skipped).toEqual(['evil/passwd', 'abs/passwd', 'abs/x/y/z']);
  });

  it('never writes through a symlink that was already inside the destination', async () => {
    mkdirSync(root);
    symlinkSync(outside, join(root, 'pre'));
    symlinkSync(join(outside, 'passwd'), join(root, 'victim.txt'));
    const r = await restore([file('pre/passwd', 'pwned'), file('pre/a/b', 'pwned'), file('victim.txt', 'pwned')]);
    expect(readFileSync(join(outside, 'passwd'), 'utf8')).toBe('original');
    expect(r.notes.map((n) => [n.path, n.kind])).toEqual([
      ['pre/passwd', 'skipped'],
      ['victim.txt', 'exists'],
      ['pre/passwd', 'skipped'], // the tally: entries below a blocked folder
    ]);
    expect(r.notes[2]?.detail).toContain('1 entries below');

    // --overwrite replaces the symlink itself, never what it points to
    const o = await restore([file('victim.txt', 'mine')], { overwrite: true });
    expect(o.files).toBe(1);
    expect(readFileSync(join(outside, 'passwd'), 'utf8')).toBe('original');
    expect(lstatSync(join(root, 'victim.txt')).isFile()).toBe(true);
    expect(readFileSync(join(root, 'victim.txt'), 'utf8')).toBe('mine');
  });

  it('makes hostile names safe, keeps them inside the root and reports each rename', async () => {
    // each as the last component below a folder named '..', plus an empty component and a climb
    const hostile = ['.', 'a\\b', 'a\0b', 'a_b', 'CON', 'com1.txt', 'x'.repeat(300) + '.txt', 'trail. ', '\ud800'];
    const entries: [RestoreItem, ContentSource][] = [[item('..', 'dir'), NONE]];
    for (const h of hostile) entries.push(file(`../${h}`, `content of ${JSON.stringify(h)}`));
    entries.push(file('e//mpty', 'content of ""'), file('up/../../../../passwd', 'pwned'), file('/abs', 'slash'));
    const r = await restore(entries);
    expect(r.notes.filter((n) => n.kind !== 'renamed')).toEqual([]);
    expect(r.files).toBe(hostile.length + 3);
    expect(readFileSync(join(outside, 'passwd'), 'utf8')).toBe('original');
    expect(readdirSync(scratch).sort()).toEqual(['outside', 'restore']);
    const all = walk(root);
    for (const p of all) expect(realpathSync(join(root, p)).startsWith(root + sep)).toBe(true);
    // every hostile file is there with its own content
    const contents = all
      .filter((p) => lstatSync(join(root, p)).isFile())
      .map((p) => readFileSync(join(root, p), 'utf8'));
    for (const h of [...hostile, '']) expect(contents).toContain(`content of ${JSON.stringify(h)}`);
    expect(readFileSync(join(root, 'up/__/__/__/__/passwd'), 'utf8')).toBe('pwned');
    const renamed = r.notes.filter((n) => n.kind === 'renamed');
    expect(renamed.map((n) => n.path)).toContain('..');
    expect(renamed.find((n) => n.path === '../CON')?.restoredAs).toBe('__/CON_');
    expect(readFileSync(join(root, '__/CON_'), 'utf8')).toBe('content of "CON"');
    expect(existsSync(join(root, 'abs'))).toBe(true);
  });

  it('refuses to overwrite without --overwrite, and replaces with it', async () => {
    mkdirSync(root);
    writeFileSync(join(root, 'a.txt'), 'old');
    mkdirSync(join(root, 'dir'));
    const r = await restore([file('a.txt', 'new'), file('dir', 'a file where a folder is'), file('b.txt', 'b')]);
    expect(readFileSync(join(root, 'a.txt'), 'utf8')).toBe('old');
    expect(r.notes.map((n) => [n.path, n.kind])).toEqual([
      ['a.txt', 'exists'],
      ['dir', 'exists'],
    ]);
    expect(r.files).toBe(1);
    const o = await restore([file('a.txt', 'new'), file('dir', 'still not')], { overwrite: true });
    expect(readFileSync(join(root, 'a.txt'), 'utf8')).toBe('new');
    expect(lstatSync(join(root, 'dir')).isDirectory()).toBe(true);
    expect(o.notes.map((n) => n.kind)).toEqual(['exists']);
  });

  it('drops setuid/setgid, restores ownership as root, and notes what a folder cannot hold', async () => {
    const r = await restore([
      file('suid', '#!/bin/sh', { mode: 0o4755, uid: 1234, gid: 5678 }),
      file('sgid', 'x', { mode: 0o2711 }),
      [item('shared', 'dir', { mode: 0o3775 }), NONE],
      file('attrs', 'x', { xattrs: [{ name: 'user.a', value: Buffer.from('v') }] }),
      [item('fifo', 'fifo'), NONE],
      [item('dev', 'chardev'), NONE],
    ]);
    expect(Number(statSync(join(root, 'suid')).mode) & 0o7777).toBe(0o755);
    expect(Number(statSync(join(root, 'sgid')).mode) & 0o7777).toBe(0o711);
    expect(Number(statSync(join(root, 'shared')).mode) & 0o7777).toBe(0o3775);
    const st = statSync(join(root, 'suid'));
    expect([st.uid, st.gid]).toEqual(AS_ROOT ? [1234, 5678] : [process.getuid?.(), process.getgid?.()]);
    const kinds = r.notes.map((n) => `${n.path}:${n.kind}`);
    expect(kinds).toEqual(['fifo:unsupported', 'dev:unsupported', 'suid:unsupported', 'attrs:unsupported']);
    expect(r.notes[2]?.detail).toContain('2 entries');
  });

  it('keeps setuid when asked', async () => {
    const sink = new DirSink(root, { overwrite: false, keepSetid: true });
    await sink.add(...file('suid', 'x', { mode: 0o4755 }));
    await sink.finish();
    expect(Number(statSync(join(root, 'suid')).mode) & 0o7777).toBe(0o4755);
  });

  it('writes named streams as sidecar files beside their entry', async () => {
    const zone = '[ZoneTransfer]\r\nZoneId=3\r\n';
    const r = await restore([
      [
        item('dl.exe', 'file', {
          size: 4,
          streams: [
            { name: 'Zone.Identifier', size: zone.length },
            { name: '../../escape', size: 2 },
          ],
        }),
        contentOf({ '': 'MZ\0\0', 'Zone.Identifier': zone, '../../escape': 'no' }),
      ],
      [item('folder', 'dir', { streams: [{ name: 's', size: 1 }] }), contentOf({ s: '!' })],
    ]);
    expect(readFileSync(join(root, 'dl.exe:Zone.Identifier'), 'utf8')).toBe(zone);
    expect(readFileSync(join(root, 'dl.exe:.._.._escape'), 'utf8')).toBe('no');
    expect(readFileSync(join(root, 'folder:s'), 'utf8')).toBe('!');
    expect(r.bytes).toBe(4 + zone.length + 2 + 1);
    expect(r.notes.filter((n) => n.kind === 'renamed').map((n) => n.restoredAs)).toEqual([
      'dl.exe:Zone.Identifier',
      'dl.exe:.._.._escape',
      'folder:s',
    ]);
    expectTime(statSync(join(root, 'dl.exe:Zone.Identifier'), { bigint: true }).mtimeNs, T0);
  });

  it('a file whose content fails or has the wrong size is noted and leaves nothing behind', async () => {
    const broken: ContentSource = () =>
      (async function* () {
        yield Buffer.from('part');
        throw new Error('chunk 3 hash mismatch');
      })();
    const r = await restore([
      [item('broken', 'file', { size: 10 }), broken],
      file('short', 'abc', { size: 5 }),
      file('long', 'abcdef', { size: 2 }),
      file('ok', 'fine'),
    ]);
    expect(r.notes.map((n) => `${n.path}:${n.kind}`)).toEqual(['broken:failed', 'short:failed', 'long:failed']);
    expect(r.notes[0]?.detail).toContain('hash mismatch');
    expect(walk(root)).toEqual(['ok']);
    expect(r.files).toBe(1);
  });

  it('takes concurrent add() calls in call order, and refuses add() after finish()', async () => {
    const sink = new DirSink(root, { overwrite: false });
    const names = Array.from({ length: 50 }, (_, i) => `d${i % 5}/f${i}`);
    await Promise.all(names.map((n) => sink.add(...file(n, n))));
    const r = await sink.finish();
    expect(r.files).toBe(50);
    for (const n of names) expect(readFileSync(join(root, n), 'utf8')).toBe(n);
    const e = await sink.add(...file('late', 'x')).catch((err: unknown) => err);
    expect(isVdbakError(e) && e.code).toBe('RESTORE_SINK_FINISHED');
  });

  it('refuses a destination that is a file, with a typed error', async () => {
    writeFileSync(join(scratch, 'afile'), '');
    const sink = new DirSink(join(scratch, 'afile'), { overwrite: false });
    const e = await sink.add(...file('x', 'x')).catch((err: unknown) => err);
    expect(isVdbakError(e) && e.code).toMatch(/^RESTORE_DEST_/);
  });
});
