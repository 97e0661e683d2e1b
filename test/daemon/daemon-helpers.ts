/**
 * Running the built daemon (`node bin/vdbak.js daemon --config F`, after
 * `npm run build`) as an administrator does, for the lifecycle and soak
 * tests: its log goes to a file (a pipe the test does not drain could stall
 * it), and the tests poll it through `vdbak status --json`.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { DaemonStatus, JobRow } from '../../agent/daemon/types.js';
import { ROOT } from '../helpers/fixtures.js';
import { CLI, vdbak } from '../helpers/vdbak.js';

export interface LogLine {
  level: number;
  msg: string;
  job?: number;
  [k: string]: unknown;
}

export interface DaemonProc {
  child: ChildProcess;
  logFile: string;
  /** Resolves when the process ends. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The JSON lines logged so far (non-JSON lines, e.g. a crash's stack, are kept as msg). */
  logs(): LogLine[];
}

export function startDaemon(configPath: string, logFile: string): DaemonProc {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [CLI, 'daemon', '--config', configPath], {
    cwd: ROOT,
    stdio: ['ignore', fd, fd],
    env: { ...process.env },
  });
  closeSync(fd);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    child.once('exit', (code, signal) => res({ code, signal }));
  });
  return {
    child,
    logFile,
    exited,
    logs: () => readLog(logFile),
  };
}

export function readLog(file: string): LogLine[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      try {
        return JSON.parse(l) as LogLine;
      } catch {
        return { level: 60, msg: l };
      }
    });
}

/** A port nothing listens on now (the daemon's config needs a fixed one). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => res(port));
    });
  });
}

/** Polls `fn` until it returns something other than undefined/false; throws with `what` and the last value on timeout. */
export async function waitFor<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs: number,
  intervalMs = 250,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
      lastErr = undefined;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > until) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export interface StatusJson {
  running: boolean;
  status?: DaemonStatus;
  jobs?: JobRow[];
}

export function statusJson(configPath: string): StatusJson {
  return vdbak(['status', '--config', configPath, '--json']).json<StatusJson>();
}

export function jobJson(repo: string, id: number): JobRow {
  const r = vdbak(['job', String(id), '--repo', repo, '--json']);
  return r.json<JobRow>();
}

export function writeConfig(path: string, cfg: Record<string, unknown>): void {
  writeFileSync(path, stringify(cfg));
}

/** Copies VM folders of the sample store into a datastore folder (sparse files stay sparse). */
export function copyVms(store: string, datastore: string, vms: string[]): void {
  mkdirSync(datastore, { recursive: true });
  for (const vm of vms) {
    const r = spawnSync('cp', ['-a', '--sparse=always', join(store, vm), datastore], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cp ${vm}: ${r.stderr}`);
  }
}

/** Waits for the process to end, at most `ms`; undefined when it did not. */
export async function exitWithin(
  d: DaemonProc,
  ms: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
  let t: NodeJS.Timeout | undefined;
  const r = await Promise.race([
    d.exited,
    new Promise<undefined>((res) => {
      t = setTimeout(() => res(undefined), ms);
    }),
  ]);
  clearTimeout(t);
  return r;
}

/** Ends a daemon a test left running (a failed assertion must not leave it behind). */
export async function killDaemon(d: DaemonProc | undefined): Promise<void> {
  if (!d || d.child.exitCode !== null || d.child.signalCode !== null) return;
  d.child.kill('SIGTERM');
  if (!(await exitWithin(d, 12_000))) d.child.kill('SIGKILL');
}
