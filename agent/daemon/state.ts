/**
 * The daemon's state file, <repo>/daemon.json: who runs the daemon of this
 * repository (pid, host), where its API listens, since when, and which config
 * it runs. It is what keeps a second daemon off the same repository (the file
 * is created exclusively; one left by a dead process is taken over), and what
 * the CLI reads to find the running daemon. It holds no secret: the API token
 * stays in the config or the token file.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { errorsFor } from '../../parsers/errors.js';
import { processAlive } from '../repo.js';

export const STATE_FILE = 'daemon.json';
/** A state file is a few hundred bytes; anything far larger is not ours. */
const MAX_STATE_BYTES = 64 * 1024;

export interface DaemonState {
  pid: number;
  host: string;
  /** Epoch ms. */
  startedMs: number;
  /** The config file (or "embedded defaults"). */
  configSource: string;
  version: string;
  /** Where the API listens, once it does. */
  api?: { host: string; port: number };
}

const stateErr = (root: string) => errorsFor({ image: join(root, STATE_FILE), layer: 'repo' });

function isState(v: unknown): v is DaemonState {
  const s = v as Partial<DaemonState> | null;
  return (
    typeof s === 'object' &&
    s !== null &&
    Number.isSafeInteger(s.pid) &&
    typeof s.host === 'string' &&
    typeof s.startedMs === 'number' &&
    typeof s.configSource === 'string'
  );
}

/** The state file as written, or undefined when there is none or it is not one. */
export function readDaemonState(root: string): DaemonState | undefined {
  let text: string;
  try {
    const buf = readFileSync(join(root, STATE_FILE));
    if (buf.length > MAX_STATE_BYTES) return undefined;
    text = buf.toString('utf8');
  } catch {
    return undefined;
  }
  try {
    const v: unknown = JSON.parse(text);
    return isState(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The daemon running on this repository (its process alive), if any. */
export function runningDaemon(root: string): DaemonState | undefined {
  const s = readDaemonState(root);
  return s && processAlive(s.pid, s.host) ? s : undefined;
}

/** A state file written this recently and unreadable is still being written. */
const FRESH_MS = 10_000;

function writtenRecently(path: string): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs < FRESH_MS;
  } catch {
    return false;
  }
}

function writeExclusive(path: string, text: string): void {
  const fd = openSync(path, 'wx', 0o644);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface StateHandle {
  readonly state: DaemonState;
  /** Rewrites the file (atomically) with these fields changed. */
  update(fields: Partial<Pick<DaemonState, 'api' | 'configSource'>>): void;
  /** Removes the file if it is still ours. */
  release(): void;
}

/**
 * Claims the repository for this daemon: creates the state file, or takes
 * over one whose process is dead. A live daemon's file is a typed error
 * (DAEMON_RUNNING) naming its pid and host.
 */
export function claimDaemonState(root: string, init: Omit<DaemonState, 'pid' | 'host'>): StateHandle {
  const path = join(root, STATE_FILE);
  const state: DaemonState = { ...init, pid: process.pid, host: hostname() };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeExclusive(path, `${JSON.stringify(state)}\n`);
      return handle(root, state);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const other = readDaemonState(root);
      if (other && processAlive(other.pid, other.host)) {
        const where = other.api ? `, API on ${other.api.host}:${other.api.port}` : '';
        throw stateErr(root).io(
          'DAEMON_RUNNING',
          `a vdbak daemon already runs on ${root} (pid ${other.pid} on ${other.host}${where}, since ${new Date(other.startedMs).toISOString()})`,
        );
      }
      if (!other && writtenRecently(path)) {
        // unreadable and fresh: another daemon is between creating and writing it
        throw stateErr(root).io(
          'DAEMON_RUNNING',
          `another vdbak daemon is starting on ${root} (${path} is being written)`,
        );
      }
      // a dead daemon's file (or an unreadable one left by a crash mid-write): take it over
      try {
        unlinkSync(path);
      } catch {
        // someone else took it over first: the next attempt sees theirs
      }
    }
  }
  throw stateErr(root).io('DAEMON_RUNNING', `could not claim ${path}: another daemon is starting`);
}

function handle(root: string, state: DaemonState): StateHandle {
  const path = join(root, STATE_FILE);
  let released = false;
  const ours = () => {
    const now = readDaemonState(root);
    return now !== undefined && now.pid === state.pid && now.host === state.host;
  };
  return {
    state,
    update(fields) {
      if (released) return;
      Object.assign(state, fields);
      const tmp = `${path}.${process.pid}.tmp`;
      try {
        unlinkSync(tmp);
      } catch {
        // no leftover
      }
      writeExclusive(tmp, `${JSON.stringify(state)}\n`);
      renameSync(tmp, path);
    },
    release() {
      if (released) return;
      released = true;
      if (!ours()) return;
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    },
  };
}
