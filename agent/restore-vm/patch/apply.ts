/**
 * applyPatch: writes a patch plan, all files or none. Every new content goes
 * to `<file>.tmp-<pid>` first (written, fsynced); only when all of them are
 * written are they renamed over the originals, then the folder is fsynced. An
 * error or a kill before the renames leaves every original as it was (the
 * next patch of the folder removes the stray temporaries).
 *
 * A descriptor embedded in a sparse disk is rewritten in place instead (its
 * reserved sectors, after the renames): copying a disk of many GiB to change
 * 10 KiB would cost more than the restore. A crash in the middle of that one
 * write of a few sectors is the one window this does not close.
 *
 * The plan remembers what each file held when it was planned; a file that
 * changed since is not overwritten (PATCH_STALE).
 */
import {
  closeSync,
  fchownSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { errorsFor } from '../../../parsers/errors.js';
import { withPatchLock } from './lock.js';
import { planPatch } from './plan.js';
import type { PatchFilePlan, PatchOptions, PatchPlan } from './types.js';

/** Where a test may stop the process: after every temporary is written, after every rename. */
export type PatchStep = 'temps-written' | 'renamed';

export interface ApplyOptions {
  /** Test hook (crash tests kill the process here). */
  hook?: (step: PatchStep) => void;
}

export interface ApplyResult {
  /** Final paths of the files written. */
  written: string[];
  renamed: { from: string; to: string }[];
}

const TEMP_RE = /\.tmp-\d+$/;

function io(file: string, what: string, e: unknown) {
  const code = (e as NodeJS.ErrnoException).code ?? String(e);
  return errorsFor({ image: file, layer: 'restore' }).io('PATCH_WRITE', `${what}: ${code}`);
}

function readRange(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(length);
    const n = readSync(fd, b, 0, length, offset);
    return b.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** Refuses a plan whose files changed since it was made. */
function checkUnchanged(plan: PatchPlan): void {
  const stale = (f: string, what: string) =>
    errorsFor({ image: f, layer: 'restore' }).corrupt('PATCH_STALE', `${what} changed since the plan was made`, {
      field: 'content',
    });
  for (const f of plan.files) {
    let now: Buffer;
    try {
      now = f.inPlace ? readRange(f.path, f.inPlace.offset, f.inPlace.expect.length) : readFileSync(f.path);
    } catch (e) {
      throw io(f.path, 'cannot read', e);
    }
    if (f.inPlace && !now.equals(f.inPlace.expect)) throw stale(f.path, 'the embedded descriptor');
    if (f.original && !now.equals(f.original)) throw stale(f.path, 'the file');
  }
  for (const r of plan.renames) {
    if (statSync(r.from, { throwIfNoEntry: false }) === undefined) throw stale(r.from, 'the file is gone;');
  }
}

function writeTemp(f: PatchFilePlan, content: Buffer): string {
  const tmp = `${f.path}.tmp-${process.pid}`;
  let fd: number | undefined;
  try {
    rmSync(tmp, { force: true });
    const st = statSync(f.path);
    fd = openSync(tmp, 'wx', st.mode & 0o7777);
    // the patched file keeps its owner where we may give it (as root); else it is ours, as any file we write
    try {
      fchownSync(fd, st.uid, st.gid);
    } catch {
      // not permitted: keep going
    }
    writeSync(fd, content);
    fsyncSync(fd);
  } catch (e) {
    throw io(tmp, 'cannot write the patched copy', e);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return tmp;
}

function writeInPlace(path: string, offset: number, bytes: Buffer): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r+');
    writeSync(fd, bytes, 0, bytes.length, offset);
    fsyncSync(fd);
  } catch (e) {
    throw io(path, 'cannot write the embedded descriptor', e);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function fsyncFolder(folder: string): void {
  const fd = openSync(folder, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Temporaries of a patch that died (`<file>.tmp-<pid>` beside its file): we hold the lock, so no live patch owns any. */
function removeStrayTemps(folder: string): void {
  const names = new Set(readdirSync(folder));
  for (const n of names) {
    const path = join(folder, n);
    if (TEMP_RE.test(n) && names.has(n.replace(TEMP_RE, '')) && statSync(path, { throwIfNoEntry: false })?.isFile()) {
      rmSync(path, { force: true });
    }
  }
}

function applyLocked(plan: PatchPlan, o: ApplyOptions): ApplyResult {
  removeStrayTemps(plan.folder);
  checkUnchanged(plan);
  const temps: { f: PatchFilePlan; tmp: string }[] = [];
  try {
    for (const f of plan.files) if (f.content) temps.push({ f, tmp: writeTemp(f, f.content) });
  } catch (e) {
    for (const t of temps) rmSync(t.tmp, { force: true });
    throw e;
  }
  o.hook?.('temps-written');

  const result: ApplyResult = { written: [], renamed: [] };
  const rename = (from: string, to: string, file: string) => {
    try {
      renameSync(from, to);
    } catch (e) {
      throw io(file, `cannot rename ${basename(from)} to ${basename(to)}`, e);
    }
  };
  for (const { f, tmp } of temps) {
    const to = f.renameTo ?? f.path;
    rename(tmp, to, f.path);
    if (f.renameTo) {
      rmSync(f.path, { force: true });
      result.renamed.push({ from: f.path, to: f.renameTo });
    }
    result.written.push(to);
  }
  for (const f of plan.files) {
    if (f.inPlace) {
      writeInPlace(f.path, f.inPlace.offset, f.inPlace.bytes);
      result.written.push(f.path);
    }
    if (f.renameTo && !f.content) {
      rename(f.path, f.renameTo, f.path);
      result.renamed.push({ from: f.path, to: f.renameTo });
    }
  }
  for (const r of plan.renames) {
    rename(r.from, r.to, r.from);
    result.renamed.push({ from: r.from, to: r.to });
  }
  fsyncFolder(plan.folder);
  o.hook?.('renamed');
  return result;
}

/** Applies a plan made by planPatch, serialised with every other patch of the same backup. */
export function applyPatch(plan: PatchPlan, o: ApplyOptions = {}): Promise<ApplyResult> {
  return withPatchLock(plan.lockKey, plan.folder, () => applyLocked(plan, o));
}

/**
 * Plans and applies under one lock, so that a second request for the same
 * backup plans from what the first one wrote.
 */
export function patchFolder(
  folder: string,
  opts: PatchOptions,
  o: ApplyOptions = {},
): Promise<{ plan: PatchPlan; result: ApplyResult }> {
  const dir = resolve(folder);
  return withPatchLock(opts.lockKey ?? realpathSync(dir), dir, () => {
    const plan = planPatch(dir, opts);
    return { plan, result: applyLocked(plan, o) };
  });
}
