import { execFileSync } from 'node:child_process';
import {
  createWriteStream,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { Writable } from 'node:stream';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { ContentSource, RestoreItem, RestoreReport } from '../../agent/restore/sink.js';
import { TarSink } from '../../agent/restore/tar-sink.js';
import { isVdbakError } from '../../parsers/errors.js';
import { contentOf, item, T0 } from './sink-helpers.js';

const NONE: ContentSource = () =>
  (async function* () {
    // nothing
  })();

function file(path: string, text: string | Buffer, over: Partial<RestoreItem> = {}): [RestoreItem, ContentSource] {
  return [item(path, 'file', { size: Buffer.byteLength(text), ...over }), contentOf({ '': text })];
}

let scratch: string;
beforeEach(() => {
  scratch = realpathSync(mkdtempSync(join(tmpdir(), 'vdbak-tarsink-')));
});
afterEach(() => rmSync(scratch, { recursive: true, force: true }));

async function toTar(
  entries: [RestoreItem, ContentSource][],
  name = 'out.tar',
): Promise<{ tar: string; report: RestoreReport }> {
  const tar = join(scratch, name);
  const sink = new TarSink(createWriteStream(tar));
  for (const [it, c] of entries) await sink.add(it, c);
  return { tar, report: await sink.finish() };
}

/** GNU tar's listing of names, one per line. */
function gnuList(tar: string): string[] {
  return execFileSync('tar', ['-tf', tar], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/** Extracts with GNU tar into a fresh folder and returns it. */
function gnuExtract(tar: string, extra: string[] = []): string {
  const dir = join(scratch, `x${readdirSync(scratch).length}`);
  mkdirSync(dir);
  // stderr kept (it is in the error if tar fails): GNU tar warns about pre-1970 times, which the test wants
  execFileSync('tar', ['-xf', tar, '-C', dir, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  return dir;
}

describe('TarSink', () => {
  it('writes a tree GNU tar lists and extracts with the same contents, modes and nanosecond times', async () => {
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
    const deep = 'level-one/' + 'sub-folder-with-a-long-name/'.repeat(6); // > 100 bytes: needs pax
    const { tar, report } = await toTar([
      [item('docs', 'dir', { mode: 0o750, mtimeNs: T0 - 5_000_000_000n }), NONE],
      file('docs/a.txt', 'hello world', { mode: 0o640, mtimeNs: T0 + 1n }),
      file('docs/big.bin', big, { mtimeNs: T0 + 2n }),
      file('docs/empty', ''),
      [item('docs/link', 'symlink', { linkTarget: 'a.txt' }), NONE],
      [item('docs/abs-link', 'symlink', { linkTarget: '/nowhere/at/all' }), NONE],
      file(`${deep}leaf.txt`, 'deep'),
      file('über/日本語.txt', 'unicode', { mtimeNs: -1_500_000_000n }),
      [item('pipe', 'fifo'), NONE],
      file('owned', 'x', { uid: 3_000_000, gid: 1234 }),
    ]);
    expect(report).toMatchObject({ files: 6, dirs: 1, links: 2, bytes: 11 + 300_000 + 4 + 7 + 1, notes: [] });
    const names = gnuList(tar);
    expect(names).toContain('docs/');
    expect(names).toContain(`${deep}leaf.txt`);
    expect(names).toContain('über/日本語.txt');

    const x = gnuExtract(tar);
    expect(readFileSync(join(x, 'docs/a.txt'), 'utf8')).toBe('hello world');
    expect(readFileSync(join(x, 'docs/big.bin')).equals(big)).toBe(true);
    expect(readFileSync(join(x, 'docs/empty')).length).toBe(0);
    expect(readFileSync(join(x, `${deep}leaf.txt`), 'utf8')).toBe('deep');
    expect(readlinkSync(join(x, 'docs/link'))).toBe('a.txt');
    expect(readlinkSync(join(x, 'docs/abs-link'))).toBe('/nowhere/at/all');
    expect(lstatSync(join(x, 'pipe')).isFIFO()).toBe(true);
    // GNU tar restores the pax mtime to the nanosecond
    expect(statSync(join(x, 'docs/a.txt'), { bigint: true }).mtimeNs).toBe(T0 + 1n);
    expect(statSync(join(x, 'docs/big.bin'), { bigint: true }).mtimeNs).toBe(T0 + 2n);
    expect(statSync(join(x, 'docs'), { bigint: true }).mtimeNs).toBe(T0 - 5_000_000_000n);
    expect(statSync(join(x, 'über/日本語.txt'), { bigint: true }).mtimeNs).toBe(-1_500_000_000n);
    expect(Number(statSync(join(x, 'docs/a.txt')).mode) & 0o7777).toBe(0o640);
    expect(Number(statSync(join(x, 'docs')).mode) & 0o7777).toBe(0o750);
    // numeric owners beyond ustar's field, as GNU tar reads them
    const verbose = execFileSync('tar', ['-tvf', tar, '--numeric-owner', 'owned'], { encoding: 'utf8' });
    expect(verbose).toMatch(/^-rw-r--r-- 3000000\/1234 /);
  });

  it('makes hostile names safe: no absolute path, no `..`, nothing below a guest symlink', async () => {
    const outside = join(scratch, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'passwd'), 'original');
    const { tar, report } = await toTar([
      [item('evil', 'symlink', { linkTarget: outside }), NONE],
      file('evil/passwd', 'pwned'),
      file('../../../etc/passwd', 'climb'),
      file('/abs/name', 'abs'),
      file('a\\b', 'backslash'),
      file('CON', 'device'),
      file('nul\0byte', 'nul'),
      file('x'.repeat(300) + '.txt', 'long'),
      file('x'.repeat(301) + '.txt', 'long too'),
      file('dup\0', 'one'),
      file('dup_', 'two'),
    ]);
    const names = gnuList(tar);
    for (const n of names) {
      expect(n.startsWith('/')).toBe(false);
      expect(n.split('/')).not.toContain('..');
      for (const c of n.split('/')) expect(Buffer.byteLength(c)).toBeLessThanOrEqual(255);
    }
    expect(names).not.toContain('evil/passwd');
    expect(names).toContain('__/__/__/etc/passwd');
    expect(names).toContain('abs/name');
    expect(names).toEqual(expect.arrayContaining(['a_b', 'CON_', 'nul_byte', 'dup_', 'dup_~2']));
    expect(names.filter((n) => n.startsWith('xxx')).length).toBe(2);
    expect(report.notes.find((n) => n.path === 'evil/passwd')?.kind).toBe('skipped');

    // what GNU tar extracts stays in its folder
    const x = gnuExtract(tar);
    expect(readFileSync(join(outside, 'passwd'), 'utf8')).toBe('original');
    expect(readFileSync(join(x, 'dup_~2'), 'utf8')).toBe('two');
    expect(realpathSync(join(x, '__/__/__/etc/passwd')).startsWith(x + sep)).toBe(true);
  });

  it('writes named streams as extra entries and xattrs as SCHILY.xattr pax records GNU tar restores', async () => {
    const zone = '[ZoneTransfer]\r\nZoneId=3\r\n';
    const { tar, report } = await toTar([
      [
        item('dl.exe', 'file', {
          size: 2,
          streams: [{ name: 'Zone.Identifier', size: zone.length }],
          xattrs: [
            { name: 'user.comment', value: Buffer.from('restored by vdbak') },
            { name: 'user.binary', value: Buffer.from([0xff, 0xfe, 0x00]) },
          ],
        }),
        contentOf({ '': 'MZ', 'Zone.Identifier': zone }),
      ],
    ]);
    expect(gnuList(tar)).toEqual(['dl.exe', 'dl.exe:Zone.Identifier']);
    expect(report.notes.map((n) => `${n.kind}:${n.restoredAs ?? n.path}`)).toEqual([
      'renamed:dl.exe:Zone.Identifier',
      'unsupported:dl.exe',
    ]);
    const x = gnuExtract(tar, ['--xattrs', '--xattrs-include=user.*']);
    expect(readFileSync(join(x, 'dl.exe:Zone.Identifier'), 'utf8')).toBe(zone);
    // python reads the xattr back: an oracle independent of tar and of us
    const got = execFileSync(
      'python3',
      ['-c', 'import os,sys;sys.stdout.write(os.getxattr(sys.argv[1],"user.comment").decode())', join(x, 'dl.exe')],
      {
        encoding: 'utf8',
      },
    );
    expect(got).toBe('restored by vdbak');
  });

  it('keeps the tar valid when one file fails: zeros to its recorded size, noted', async () => {
    const broken: ContentSource = () =>
      (async function* () {
        yield Buffer.from('abc');
        throw new Error('pack 7 is missing');
      })();
    const { tar, report } = await toTar([
      [item('broken', 'file', { size: 8 }), broken],
      file('long', 'abcdef', { size: 3 }),
      file('after', 'still here'),
    ]);
    expect(report.notes.map((n) => `${n.path}:${n.kind}`)).toEqual(['broken:failed', 'long:failed']);
    expect(report.notes[0]?.detail).toContain('pack 7 is missing');
    const x = gnuExtract(tar);
    expect(readFileSync(join(x, 'broken'))).toEqual(Buffer.from('abc\0\0\0\0\0'));
    expect(readFileSync(join(x, 'long'), 'utf8')).toBe('abc');
    expect(readFileSync(join(x, 'after'), 'utf8')).toBe('still here');
  });

  it('drops setuid/setgid bits unless asked, and leaves devices and sockets out', async () => {
    const { tar, report } = await toTar([
      file('suid', 'x', { mode: 0o4755 }),
      [item('shared', 'dir', { mode: 0o2775 }), NONE],
      [item('dev', 'blockdev'), NONE],
      [item('sock', 'socket'), NONE],
    ]);
    expect(gnuList(tar)).toEqual(['suid', 'shared/']);
    const x = gnuExtract(tar);
    expect(Number(statSync(join(x, 'suid')).mode) & 0o7777).toBe(0o755);
    expect(Number(statSync(join(x, 'shared')).mode) & 0o7777).toBe(0o2775);
    expect(report.notes.map((n) => `${n.path}:${n.kind}`)).toEqual([
      'dev:unsupported',
      'sock:unsupported',
      'suid:unsupported',
    ]);
  });

  it('respects backpressure: the reader is never far ahead of a slow output', async () => {
    const TOTAL = 8 * 1024 * 1024;
    const PIECE = 64 * 1024;
    let produced = 0;
    let consumed = 0;
    let maxAhead = 0;
    const parts: Buffer[] = [];
    const slow = new Writable({
      highWaterMark: 16 * 1024,
      write(chunk: Buffer, _enc, cb) {
        parts.push(chunk);
        consumed += chunk.length;
        setImmediate(cb);
      },
    });
    const source: ContentSource = () =>
      (async function* () {
        for (let off = 0; off < TOTAL; off += PIECE) {
          maxAhead = Math.max(maxAhead, produced - consumed);
          produced += PIECE;
          yield Buffer.alloc(PIECE, off / PIECE);
        }
      })();
    const sink = new TarSink(slow);
    await sink.add(item('big', 'file', { size: TOTAL }), source);
    const report = await sink.finish();
    expect(report.bytes).toBe(TOTAL);
    expect(maxAhead).toBeLessThan(1024 * 1024);
    const tar = join(scratch, 'slow.tar');
    writeFileSync(tar, Buffer.concat(parts));
    const x = gnuExtract(tar);
    const back = readFileSync(join(x, 'big'));
    expect(back.length).toBe(TOTAL);
    expect(back[TOTAL - 1]).toBe((TOTAL / PIECE - 1) & 0xff);
  });

  it('a failing output stops the restore with a typed error instead of hanging', async () => {
    const broken = new Writable({
      write(_chunk, _enc, cb) {
        cb(Object.assign(new Error('EPIPE: broken pipe'), { code: 'EPIPE' }));
      },
    });
    const sink = new TarSink(broken);
    const big = Buffer.alloc(1024 * 1024);
    const e = await (async () => {
      await sink.add(...file('a', big));
      await sink.add(...file('b', big));
      return sink.finish();
    })().catch((err: unknown) => err);
    expect(isVdbakError(e) && e.code).toBe('RESTORE_TAR_OUTPUT');
  });
  it('an output closed while content was awaited (a client that left) ends the restore instead of hanging', async () => {
    const out = new Writable({
      highWaterMark: 1024,
      write(_c, _e, cb) {
        cb();
      },
    });
    const sink = new TarSink(out);
    const big = Buffer.alloc(128 * 1024);
    const slow = async function* () {
      for (let i = 0; i < 8; i++) {
        if (i === 2) out.destroy();
        await new Promise((r) => setTimeout(r, 20));
        yield big;
      }
    };
    const e = await sink
      .add(item('f', 'file', { size: big.length * 8 }), slow)
      .then(() => sink.finish())
      .catch((err: unknown) => err);
    expect(e).toBeInstanceOf(Error);
  }, 10_000);
});
