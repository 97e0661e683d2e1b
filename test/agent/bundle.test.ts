/**
 * The bundled command line (dist/vdbak.cjs, made by scripts/bundle-cli.js in
 * `npm run build`) and the code cache bin/vdbak.js keeps for it: the bundle
 * must answer exactly as dist/ does, bin/vdbak.js must run it only while it
 * is fresh, and a code cache must be used only when it is ours.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import * as nodeModule from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/fixtures.js';
import { CLI, newRepo, sampleStore, vdbakOk } from '../helpers/vdbak.js';
import { traceKit } from './load-trace.js';

const DIST = join(ROOT, 'dist');
const BUNDLE = join(DIST, 'vdbak.cjs');
const DIST_CLI = join(DIST, 'agent', 'cli.js');
/** Node >= 22.1 caches compiled code itself; bin/vdbak.js keeps its own cache only below that. */
const NODE_CACHES = typeof (nodeModule as { enableCompileCache?: unknown }).enableCompileCache === 'function';
const trace = traceKit();

let dir: string;
let repo: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdbak-bundle-'));
  repo = newRepo('bundle');
  vdbakOk(['backup', '--repo', repo, join(sampleStore(), 'lin01')]);
}, 300_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(join(repo, '..'), { recursive: true, force: true });
});

function node(script: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [script, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.toString('utf8') };
}

describe('the bundled command line', () => {
  it('is built with a stamp that names its content, after dist/', () => {
    expect(existsSync(BUNDLE), 'npm run build makes dist/vdbak.cjs').toBe(true);
    const stamp = JSON.parse(readFileSync(join(DIST, 'vdbak.json'), 'utf8')) as Record<string, unknown>;
    const body = readFileSync(BUNDLE);
    expect(stamp.sha256).toBe(createHash('sha256').update(body).digest('hex'));
    expect(stamp.size).toBe(body.length);
    expect(statSync(BUNDLE).mtimeMs).toBeGreaterThanOrEqual(statSync(DIST_CLI).mtimeMs);
    expect(
      body.findIndex((b) => b > 0x7f),
      'ASCII only: bin/vdbak.js reads it as latin1',
    ).toBe(-1);
  });

  it('answers every command as dist/ does: output, errors and exit codes', () => {
    const to = join(dir, 'restored');
    const cases: string[][] = [
      ['--version'],
      ['--help'],
      ['no-such-command'],
      ['restore', '--repo', repo, 'lin01'],
      ['backups', '--repo', repo, '--json'],
      ['ls', '--repo', repo, 'lin01', '/d0p1', '-l', '-R'],
      ['ls', '--repo', repo, 'lin01', '/d0p1', '--json'],
      ['versions', '--repo', repo, 'lin01', '/d0p1/etc/hostname'],
      ['find', '--repo', repo, 'host*', '--json'],
      ['cat', '--repo', repo, 'lin01', '/d0p1/var/log/syslog'],
      ['cat', '--repo', repo, 'lin01', '/d0p1/no/such/file'],
      ['restore', '--repo', repo, 'lin01', '/d0p1/var', '--tar', '-'],
      ['restore', '--repo', repo, 'lin01', '/d0p1/etc', '--to', to, '--overwrite', '--json'],
      ['backup', '--repo', repo, join(dir, 'no-such-vm')],
      ['backups', '--repo', join(dir, 'no-such-repo')],
      ['inspect', join(sampleStore(), 'lin01', 'lin01.vmdk'), '--json'],
    ];
    for (const args of cases) {
      const want = node(DIST_CLI, args);
      const got = node(CLI, args);
      const what = `vdbak ${args.join(' ')}`;
      expect(got.code, what).toBe(want.code);
      expect(got.stderr, what).toBe(want.stderr);
      expect(got.stdout.equals(want.stdout), `${what}: stdout differs`).toBe(true);
    }
  });

  it('opens a catalog through better-sqlite3 without an addon path too (ship-catalog)', () => {
    const r = node(CLI, ['ship-catalog', '--repo', repo, '--json']);
    expect(r.code, r.stderr).toBe(0);
  });

  it('is what bin/vdbak.js runs: no module of dist/ is loaded one by one', () => {
    const r = trace(CLI, ['ls', '--repo', repo, 'lin01', '/d0p1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.loaded.filter((p) => p.startsWith('dist/agent/'))).toEqual([]);
  });

  it('is not run once dist/ was compiled after it: a copy with a newer cli.js runs dist/', () => {
    const copy = join(dir, 'copy');
    mkdirSync(copy);
    cpSync(join(ROOT, 'bin'), join(copy, 'bin'), { recursive: true });
    cpSync(DIST, join(copy, 'dist'), { recursive: true, preserveTimestamps: true });
    cpSync(join(ROOT, 'package.json'), join(copy, 'package.json'));
    symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
    const bin = join(copy, 'bin', 'vdbak.js');
    const args = ['backups', '--repo', repo];
    const fresh = trace(bin, args, { root: copy });
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(fresh.loaded).not.toContain('dist/agent/cli.js');
    const later = new Date(statSync(join(copy, 'dist', 'vdbak.cjs')).mtimeMs + 60_000);
    utimesSync(join(copy, 'dist', 'agent', 'cli.js'), later, later);
    const stale = trace(bin, args, { root: copy });
    expect(stale.code, stale.stderr).toBe(0);
    expect(stale.loaded).toContain('dist/agent/cli.js');
    expect(stale.stdout.equals(fresh.stdout)).toBe(true);
  });
});

describe('the code cache of bin/vdbak.js', () => {
  const cacheHome = () => join(dir, `cache-${Math.random().toString(36).slice(2)}`);
  const files = (home: string) => (existsSync(join(home, 'vdbak')) ? readdirSync(join(home, 'vdbak')) : []);
  const version = (home: string, env: NodeJS.ProcessEnv = {}) => {
    const r = node(CLI, ['--version'], { XDG_CACHE_HOME: home, ...env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toMatch(/^\d+\.\d+\.\d+\n$/);
  };

  it('is written once, private to the user, and then read, not rewritten', () => {
    const home = cacheHome();
    version(home);
    if (NODE_CACHES) {
      // Node keeps the compiled code itself (module.enableCompileCache): no second cache
      expect(files(home)).toEqual([]);
      return;
    }
    const [name, ...more] = files(home);
    expect(more).toEqual([]);
    expect(name).toMatch(/^cli-[0-9a-f]{32}-other-v[\d.]+-\w+\.v8$/);
    const folder = join(home, 'vdbak');
    const path = join(folder, name!);
    expect(statSync(folder).mode & 0o777).toBe(0o700);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const first = readFileSync(path);
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(path, old, old);
    version(home);
    expect(Math.abs(statSync(path).mtimeMs - old.getTime())).toBeLessThan(1);
    expect(readFileSync(path).equals(first)).toBe(true);
  });

  it('answers the same with a warm cache, without one, and while writing one', () => {
    const home = cacheHome();
    const cases = [
      ['ls', '--repo', repo, 'lin01', '/d0p1', '-l', '-R'],
      ['cat', '--repo', repo, 'lin01', '/d0p1/var/log/syslog'],
      ['find', '--repo', repo, 'no-such-name-*'],
    ];
    for (const args of cases) {
      const off = node(CLI, args, { VDBAK_CODE_CACHE: '0', XDG_CACHE_HOME: home });
      const writing = node(CLI, args, { XDG_CACHE_HOME: home });
      const warm = node(CLI, args, { XDG_CACHE_HOME: home });
      for (const r of [writing, warm]) {
        expect(r.code, args.join(' ')).toBe(off.code);
        expect(r.stderr, args.join(' ')).toBe(off.stderr);
        expect(r.stdout.equals(off.stdout), `${args.join(' ')}: stdout differs`).toBe(true);
      }
    }
    // one cache per command: what `--version` compiled would leave most of a restore to compile
    if (!NODE_CACHES)
      expect(
        files(home)
          .map((f) => f.split('-')[2])
          .sort(),
      ).toEqual(['cat', 'find', 'ls']);
  });

  it('a new cache removes those of other builds left unchanged for a week', () => {
    if (NODE_CACHES) return;
    const home = cacheHome();
    const folder = join(home, 'vdbak');
    mkdirSync(folder, { recursive: true, mode: 0o700 });
    const old = join(folder, 'cli-0000-v0-x.v8');
    const recent = join(folder, 'cli-1111-v0-x.v8');
    writeFileSync(old, 'old');
    writeFileSync(recent, 'recent');
    const weeksAgo = new Date(Date.now() - 8 * 24 * 3600 * 1000);
    utimesSync(old, weeksAgo, weeksAgo);
    version(home);
    expect(existsSync(old)).toBe(false);
    expect(existsSync(recent)).toBe(true);
    expect(files(home)).toHaveLength(2);
  });

  it('a damaged cache is refused by V8 and replaced; the command still answers', () => {
    if (NODE_CACHES) return; // Node's own cache, tested by Node
    const home = cacheHome();
    version(home);
    const path = join(home, 'vdbak', files(home)[0]!);
    const good = readFileSync(path);
    const damaged = Buffer.from(good);
    damaged.fill(0x5a, 64, 4096);
    writeFileSync(path, damaged);
    version(home);
    expect(readFileSync(path).equals(damaged)).toBe(false);
    version(home);
  });

  it('is neither read nor written in a folder others may write to, nor when turned off (VDBAK_CODE_CACHE=0)', () => {
    if (NODE_CACHES) return;
    const home = cacheHome();
    version(home);
    const folder = join(home, 'vdbak');
    const path = join(folder, files(home)[0]!);
    writeFileSync(path, 'not a cache');
    chmodSync(folder, 0o777);
    version(home);
    expect(readFileSync(path, 'utf8')).toBe('not a cache');
    // a cache that cannot be written (here its parent is a file: ENOTDIR) costs nothing but the compile
    const notAFolder = join(dir, 'not-a-folder');
    writeFileSync(notAFolder, '');
    version(notAFolder);
    for (const env of [{ VDBAK_CODE_CACHE: '0' }, { NODE_DISABLE_COMPILE_CACHE: '1' }]) {
      const off = cacheHome();
      version(off, env);
      expect(existsSync(join(off, 'vdbak')), JSON.stringify(env)).toBe(false);
    }
  });
});
