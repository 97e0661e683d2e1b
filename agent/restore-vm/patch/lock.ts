/**
 * One patch at a time per backup: an in-process mutex keyed by the backup
 * (the daemon may run two restore jobs of one backup at once) and a lock file
 * in the folder (two processes: the daemon and a CLI). A lock file whose
 * process is gone is taken over.
 */
import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorsFor } from '../../../parsers/errors.js';

export const LOCK_FILE = '.vdbak-patch.lock';
/** How long a patch waits for another process's patch of the same folder. */
export const LOCK_WAIT_MS = 60_000;
const LOCK_POLL_MS = 50;
/** A lock file with no pid in it this old was left by a process killed between creating and writing it. */
const EMPTY_LOCK_STALE_MS = 5_000;

const chains = new Map<string, Promise<void>>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function lockFile(folder: string, waitMs: number): Promise<() => void> {
  const path = join(folder, LOCK_FILE);
  const err = errorsFor({ image: path, layer: 'restore' });
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw err.io('PATCH_LOCK', `cannot create the lock file: ${(e as NodeJS.ErrnoException).code ?? e}`);
      }
    }
    let owner = Number.NaN;
    try {
      owner = Number.parseInt(readFileSync(path, 'utf8'), 10);
    } catch {
      // removed meanwhile: try again
    }
    // a pid that is gone owns nothing (a patch killed with -9 leaves its lock file behind)
    if (Number.isSafeInteger(owner) && owner > 0 && !alive(owner)) {
      rmSync(path, { force: true });
      continue;
    }
    const age = Date.now() - (statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
    if (!(owner > 0) && age > EMPTY_LOCK_STALE_MS) {
      rmSync(path, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw err.io('PATCH_LOCKED', `another patch of this folder (pid ${owner}) did not finish in ${waitMs} ms`);
    }
    await sleep(LOCK_POLL_MS);
  }
}

/** Runs `fn` alone among the patches of `key` in this process, and of `folder` across processes. */
export async function withPatchLock<T>(
  key: string,
  folder: string,
  fn: () => Promise<T> | T,
  waitMs = LOCK_WAIT_MS,
): Promise<T> {
  const prev = chains.get(key) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const tail = prev.then(() => mine);
  chains.set(key, tail);
  await prev;
  try {
    const unlock = await lockFile(folder, waitMs);
    try {
      return await fn();
    } finally {
      unlock();
    }
  } finally {
    release();
    if (chains.get(key) === tail) chains.delete(key);
  }
}
