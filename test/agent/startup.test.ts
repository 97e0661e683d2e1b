/**
 * A command loads only what it needs (issue 5 §5: a single-file restore is
 * mostly process start-up). The built CLI runs with a preload that records
 * what it loads (load-trace.ts); each case names what it must never have
 * loaded. dist/agent/cli.js is run directly, so every module of dist/ shows;
 * bin/vdbak.js runs the bundle when there is one, where only npm packages show.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/fixtures.js';
import { CLI, newRepo, sampleStore, vdbakOk } from '../helpers/vdbak.js';
import { traceKit, type Traced } from './load-trace.js';

/** What the backup and daemon side loads: never needed to browse, restore or fail early. */
const HEAVY = [
  'node_modules/piscina/',
  'node_modules/@bokuweb/zstd-wasm/',
  'node_modules/zstd-napi/',
  'node_modules/fzstd/',
  'node_modules/xxhash-wasm/',
  'node_modules/pino/',
  'node_modules/yaml/',
  'node_modules/node-cron/',
  'node_modules/tar-stream/',
  'dist/agent/backup/',
  'dist/agent/daemon/',
  'dist/agent/api/',
  'dist/agent/progress.js',
  'dist/parsers/disk/',
  'dist/parsers/fs/',
];

const DIST_CLI = join(ROOT, 'dist', 'agent', 'cli.js');
const run = traceKit();

let dir: string;
let repo: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdbak-startup-'));
  repo = newRepo('startup');
  vdbakOk(['backup', '--repo', repo, join(sampleStore(), 'lin01')]);
}, 300_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(join(repo, '..'), { recursive: true, force: true });
});

/** The command through dist/ unbundled, then through bin/vdbak.js; the first result, with what both loaded. */
function traced(args: string[]): Traced {
  const direct = run(DIST_CLI, args);
  const bin = run(CLI, args);
  expect(bin.code, `bin/vdbak.js ${args.join(' ')}: ${bin.stderr}`).toBe(direct.code);
  return { ...direct, loaded: [...new Set([...direct.loaded, ...bin.loaded])] };
}

function heavyIn(loaded: string[]): string[] {
  return loaded.filter((p) => HEAVY.some((h) => p.startsWith(h)));
}

describe('start-up: each command loads only what it needs', () => {
  it('the trace sees what a backup loads (so an empty list below means something)', () => {
    const r = traced(['backup', '--repo', repo, '--json', join(sampleStore(), 'lin01')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.loaded).toContain('node_modules/piscina/dist/main.js');
    expect(r.loaded).toContain('dist/agent/backup/job.js');
    expect(r.loaded.some((p) => p.startsWith('node_modules/better-sqlite3/'))).toBe(true);
  }, 120_000);

  it('a single-file restore loads no backup, daemon, parser or compression module', () => {
    const to = join(dir, 'restored');
    mkdirSync(to);
    const r = traced(['restore', '--repo', repo, 'lin01', '/d0p1/etc/hostname', '--to', to, '--overwrite']);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(to, 'hostname'), 'utf8').length).toBeGreaterThan(0);
    expect(heavyIn(r.loaded)).toEqual([]);
    // better-sqlite3's addon is named by path, not searched for by the `bindings` package
    expect(r.loaded.filter((p) => p.startsWith('node_modules/bindings/'))).toEqual([]);
  });

  it('ls, versions and find load no backup, daemon, parser or compression module', () => {
    for (const args of [
      ['ls', '--repo', repo, 'lin01', '/d0p1/etc'],
      ['versions', '--repo', repo, 'lin01', '/d0p1/etc/hostname'],
      ['find', '--repo', repo, 'hostname'],
      ['backups', '--repo', repo],
    ]) {
      const r = traced(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      expect(heavyIn(r.loaded), args.join(' ')).toEqual([]);
    }
  });

  it('a backup of a missing path fails before loading the job, the pool or the progress bar', () => {
    const r = traced(['backup', '--repo', repo, join(dir, 'no-such-vm')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no-such-vm/);
    expect(r.loaded.filter((p) => p.startsWith('node_modules/piscina/') || p.startsWith('dist/agent/backup/'))).toEqual(
      [],
    );
    expect(r.loaded).not.toContain('dist/agent/progress.js');
  });

  it('--version and usage errors load the command line and nothing of the catalog', () => {
    for (const args of [['--version'], ['no-such-command']]) {
      const r = traced(args);
      expect(r.code, r.stderr).toBe(args[0] === '--version' ? 0 : 2);
      expect(
        r.loaded.filter((p) => p.startsWith('node_modules/')),
        args[0],
      ).toEqual([]);
      expect(
        r.loaded.filter((p) => p.startsWith('dist/catalog/')),
        args[0],
      ).toEqual([]);
    }
  });
});
