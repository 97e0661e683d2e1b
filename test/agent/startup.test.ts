/**
 * A command loads only what it needs (issue 5 §5: a single-file restore is
 * mostly process start-up). The built CLI runs with a preload that records
 * every module it resolves (ES modules, through a resolve hook) and every
 * CommonJS module in the require cache at exit; each case then names what it
 * must never have loaded.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newRepo, sampleStore, vdbak, vdbakOk } from '../helpers/vdbak.js';
import { ROOT } from '../helpers/fixtures.js';

const HOOKS = `
import { appendFileSync } from 'node:fs';
let out;
export function initialize(data) { out = data.out; }
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(out, r.url + '\\n');
  return r;
}
`;

const PRELOAD = `
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
const out = process.env.VDBAK_LOAD_TRACE;
register(new URL('./hooks.mjs', import.meta.url), { data: { out } });
const require = createRequire(import.meta.url);
process.on('exit', () => appendFileSync(out, Object.keys(require.cache).map((f) => 'file://' + f + '\\n').join('')));
`;

/** What the backup and daemon side loads: never needed to browse, restore or fail early. */
const HEAVY = [
  'node_modules/piscina/',
  'node_modules/@bokuweb/zstd-wasm/',
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

let dir: string;
let repo: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdbak-startup-'));
  writeFileSync(join(dir, 'hooks.mjs'), HOOKS);
  writeFileSync(join(dir, 'preload.mjs'), PRELOAD);
  repo = newRepo('startup');
  vdbakOk(['backup', '--repo', repo, join(sampleStore(), 'lin01')]);
}, 300_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(join(repo, '..'), { recursive: true, force: true });
});

/** Runs the CLI with the trace; returns its result and the project-relative paths of what it loaded. */
function traced(args: string[]): { code: number | null; stderr: string; loaded: string[] } {
  const trace = join(dir, `trace-${Math.random().toString(36).slice(2)}.txt`);
  writeFileSync(trace, '');
  const r = vdbak(args, {
    env: {
      VDBAK_LOAD_TRACE: trace,
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${join(dir, 'preload.mjs')}`,
    },
  });
  const prefix = `file://${ROOT}/`;
  const loaded = [
    ...new Set(
      readFileSync(trace, 'utf8')
        .split('\n')
        .filter((u) => u.startsWith(prefix))
        .map((u) => u.slice(prefix.length)),
    ),
  ];
  return { code: r.code, stderr: r.stderr, loaded };
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
    const r = traced(['restore', '--repo', repo, 'lin01', '/d0p1/etc/hostname', '--to', to]);
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
    expect(
      r.loaded.filter((p) => p.startsWith('node_modules/piscina/') || p.startsWith('dist/agent/backup/')),
    ).toEqual([]);
    expect(r.loaded).not.toContain('dist/agent/progress.js');
  });

  it('--version and usage errors load the command line and nothing of the catalog', () => {
    for (const args of [['--version'], ['no-such-command']]) {
      const r = traced(args);
      expect(r.code, r.stderr).toBe(args[0] === '--version' ? 0 : 2);
      expect(r.loaded.filter((p) => p.startsWith('node_modules/')), args[0]).toEqual([]);
      expect(r.loaded.filter((p) => p.startsWith('dist/catalog/')), args[0]).toEqual([]);
    }
  });
});
