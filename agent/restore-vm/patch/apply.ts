/**
 * applyPatch: writes a patch plan, all files or none. Every new content goes
 * to `<file>.tmp-<pid>` first (written, fsynced). When all are written, the
 * steps left (renames over the originals, renames of files named after the
 * VM, in-place descriptor writes) are committed to a journal (journal.ts),
 * then done, and the folder is fsynced. A failure or a kill before the commit
 * leaves every original as it was (the next patch removes the temporaries);
 * a kill after it is finished by the next patch of the folder.
 *
 * A descriptor embedded in a sparse disk is rewritten in place (its reserved
 * sectors): copying a disk of many GiB to change 10 KiB would cost more than
 * the restore. Its bytes are in the journal, so a torn write is redone.
 *
 * The plan remembers what each file held when it was planned; a file that
 * changed since is not overwritten (PATCH_STALE).
 */
import {
  closeSync,
  fchownSync,
  fsyncSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  realpathSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { errorsFor } from '../../../parsers/errors.js';
import { commitJournal, type JournalStep, recoverJournal, runJournal } from './journal.js';
import { withPatchLock } from './lock.js';
import { planPatch } from './plan.js';
import type { PatchFilePlan, PatchOptions, PatchPlan } from './types.js';

/** Where a test may stop the process: temporaries written, journal committed, every step done. */
export type PatchStep = 'temps-written' | 'committed' | 'renamed';

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
    if (statSync(r.from, { throwIfNoEntry: false }) === undefined) throw stale(r.from, 'the file (now gone)');
  }
  // a rename must not replace a file that appeared at the new name since (one that moves away itself may)
  const leaving = new Set([
    ...plan.files.filter((f) => f.renameTo).map((f) => f.path),
    ...plan.renames.map((r) => r.from),
  ]);
  for (const to of [...plan.files.flatMap((f) => (f.renameTo ? [f.renameTo] : [])), ...plan.renames.map((r) => r.to)]) {
    if (!leaving.has(to) && lstatSync(to, { throwIfNoEntry: false }) !== undefined) {
      throw stale(to, 'the folder (a file now has this name)');
    }
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
  const { folder } = plan;
  recoverJournal(folder);
  removeStrayTemps(folder);
  checkUnchanged(plan);
  const temps: { f: PatchFilePlan; tmp: string }[] = [];
  const steps: JournalStep[] = [];
  const result: ApplyResult = { written: [], renamed: [] };
  try {
    for (const f of plan.files) if (f.content) temps.push({ f, tmp: writeTemp(f, f.content) });
    o.hook?.('temps-written');
    for (const { f, tmp } of temps) {
      const to = f.renameTo ?? f.path;
      steps.push({
        op: 'rename',
        from: basename(tmp),
        to: basename(to),
        ...(f.renameTo ? { unlink: basename(f.path) } : {}),
      });
      result.written.push(to);
      if (f.renameTo) result.renamed.push({ from: f.path, to: f.renameTo });
    }
    for (const f of plan.files) {
      if (f.inPlace) {
        steps.push({
          op: 'write',
          file: basename(f.path),
          offset: f.inPlace.offset,
          bytes: f.inPlace.bytes.toString('base64'),
        });
        result.written.push(f.path);
      }
      if (f.renameTo && !f.content) {
        steps.push({ op: 'rename', from: basename(f.path), to: basename(f.renameTo) });
        result.renamed.push({ from: f.path, to: f.renameTo });
      }
    }
    for (const r of plan.renames) {
      steps.push({ op: 'rename', from: basename(r.from), to: basename(r.to) });
      result.renamed.push({ from: r.from, to: r.to });
    }
    commitJournal(folder, steps);
  } catch (e) {
    for (const t of temps) rmSync(t.tmp, { force: true });
    throw e;
  }
  o.hook?.('committed');
  runJournal(folder, steps);
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
    // a patch killed after its commit is finished first: this one plans from its result
    recoverJournal(dir);
    const plan = planPatch(dir, opts);
    return { plan, result: applyLocked(plan, o) };
  });
}

/**
 * Finishes a patch of `folder` that was killed after its commit, and removes
 * the temporaries of one killed before it. Returns whether a patch was
 * finished. patchFolder and applyPatch do this themselves first.
 */
export function recoverPatch(folder: string, lockKey?: string): Promise<boolean> {
  const dir = resolve(folder);
  return withPatchLock(lockKey ?? realpathSync(dir), dir, () => {
    const done = recoverJournal(dir);
    removeStrayTemps(dir);
    return done;
  });
}
