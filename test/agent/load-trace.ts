/**
 * Runs the vdbak CLI with a preload that records what it loads: every ES
 * module it resolves (through a resolve hook) and every CommonJS module in
 * the require cache at exit, as paths relative to the project root.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
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
import { pathToFileURL } from 'node:url';
const out = process.env.VDBAK_LOAD_TRACE;
register(new URL('./hooks.mjs', import.meta.url), { data: { out } });
const require = createRequire(import.meta.url);
process.on('exit', () => appendFileSync(out, Object.keys(require.cache).map((f) => pathToFileURL(f).href + '\\n').join('')));
`;

export interface Traced {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  /** What was loaded, relative to `root` (files outside it are left out). */
  loaded: string[];
}

/** A folder holding the preload; make one per test file. */
export function traceKit(): (
  script: string,
  args: string[],
  opts?: { root?: string; env?: NodeJS.ProcessEnv },
) => Traced {
  const dir = mkdtempSync(join(tmpdir(), 'vdbak-trace-'));
  writeFileSync(join(dir, 'hooks.mjs'), HOOKS);
  writeFileSync(join(dir, 'preload.mjs'), PRELOAD);
  let n = 0;
  return (script, args, opts = {}) => {
    const trace = join(dir, `trace-${n++}.txt`);
    writeFileSync(trace, '');
    const r = spawnSync(process.execPath, ['--import', join(dir, 'preload.mjs'), script, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...opts.env, VDBAK_LOAD_TRACE: trace },
      maxBuffer: 64 * 1024 * 1024,
    });
    if (r.error) throw r.error;
    const prefix = pathToFileURL(opts.root ?? ROOT).href + '/';
    const lines = readFileSync(trace, 'utf8').split('\n');
    const loaded = [...new Set(lines.filter((u) => u.startsWith(prefix)).map((u) => u.slice(prefix.length)))];
    return { code: r.status, stdout: r.stdout, stderr: r.stderr.toString('utf8'), loaded };
  };
}
