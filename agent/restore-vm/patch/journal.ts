/**
 * The patch's commit record. When every patched copy is written and synced,
 * the list of what is left to do (renames, unlinks, in-place descriptor
 * writes) is written to `.vdbak-patch.journal` and synced: that rename is the
 * commit point. Every step in it can be done again without harm, so a patch
 * killed after the commit is finished by the next one (redo), and a patch
 * killed before it leaves only temporaries that the next one removes. Either
 * way a folder is never left half patched.
 */
import {
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { errorsFor } from '../../../parsers/errors.js';

export const JOURNAL_FILE = '.vdbak-patch.journal';
/** Largest journal we read back: descriptors are at most 1 MiB each, a folder holds a few disks. */
const MAX_JOURNAL_BYTES = 64 * 1024 * 1024;
const JOURNAL_VERSION = 1;

/** File names are base names in the folder: the journal stays valid whatever path the folder is reached by. */
export type JournalStep =
  /** Rename `from` to `to` if `from` is still there; then unlink `unlink` if it is there and is not `to`. */
  | { op: 'rename'; from: string; to: string; unlink?: string }
  /** Write `bytes` (base64) at `offset` of `file`. */
  | { op: 'write'; file: string; offset: number; bytes: string };

interface Journal {
  version: number;
  steps: JournalStep[];
}

function io(file: string, what: string, e: unknown) {
  const code = (e as NodeJS.ErrnoException).code ?? String(e);
  return errorsFor({ image: file, layer: 'restore' }).io('PATCH_WRITE', `${what}: ${code}`);
}

export function fsyncFolder(folder: string): void {
  const fd = openSync(folder, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes the journal durably (temp, fsync, rename, fsync the folder): after this the patch will happen. */
export function commitJournal(folder: string, steps: JournalStep[]): void {
  const path = join(folder, JOURNAL_FILE);
  const tmp = `${path}.tmp`;
  try {
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify({ version: JOURNAL_VERSION, steps } satisfies Journal));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    fsyncFolder(folder);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw io(path, 'cannot write the patch journal', e);
  }
}

function runStep(folder: string, s: JournalStep): void {
  if (s.op === 'rename') {
    const [from, to] = [join(folder, s.from), join(folder, s.to)];
    try {
      if (existsSync(from)) renameSync(from, to);
      if (s.unlink !== undefined && s.unlink !== s.to) rmSync(join(folder, s.unlink), { force: true });
    } catch (e) {
      throw io(join(folder, s.unlink ?? s.to), `cannot rename ${s.from} to ${s.to}`, e);
    }
    return;
  }
  const path = join(folder, s.file);
  let fd: number | undefined;
  try {
    // never through a link: the plan only takes regular files, and one swapped for a link since is refused
    fd = openSync(path, constants.O_RDWR | constants.O_NOFOLLOW);
    const b = Buffer.from(s.bytes, 'base64');
    writeSync(fd, b, 0, b.length, s.offset);
    fsyncSync(fd);
  } catch (e) {
    throw io(path, 'cannot write the embedded descriptor', e);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Does every step, syncs the folder, and removes the journal. */
export function runJournal(folder: string, steps: JournalStep[]): void {
  for (const s of steps) runStep(folder, s);
  fsyncFolder(folder);
  rmSync(join(folder, JOURNAL_FILE), { force: true });
  fsyncFolder(folder);
}

/**
 * Finishes a patch that was killed after its commit. Returns whether there
 * was one. The caller holds the patch lock.
 */
export function recoverJournal(folder: string): boolean {
  const path = join(folder, JOURNAL_FILE);
  rmSync(`${path}.tmp`, { force: true });
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) return false;
  const err = errorsFor({ image: path, layer: 'restore' });
  if (st.size > MAX_JOURNAL_BYTES) {
    throw err.limit('PATCH_JOURNAL', `a patch journal of ${st.size} bytes`, { cap: MAX_JOURNAL_BYTES });
  }
  let j: Journal;
  try {
    j = JSON.parse(readFileSync(path, 'utf8')) as Journal;
  } catch {
    throw err.corrupt('PATCH_JOURNAL', 'the patch journal is not JSON');
  }
  if (j.version !== JOURNAL_VERSION || !Array.isArray(j.steps)) {
    throw err.corrupt('PATCH_JOURNAL', `patch journal version ${String(j.version)}`);
  }
  // the journal is ours, but a step must still name a file of this folder and nothing else
  for (const s of j.steps) {
    if (s.op === 'write' && (!Number.isSafeInteger(s.offset) || s.offset < 0 || typeof s.bytes !== 'string')) {
      throw err.corrupt('PATCH_JOURNAL', `a journal write step at offset ${String(s.offset)}`);
    }
    const names = s.op === 'rename' ? [s.from, s.to, s.unlink] : s.op === 'write' ? [s.file] : [undefined, null];
    for (const n of names) {
      if (n !== undefined && (typeof n !== 'string' || n === '' || n === '.' || n === '..' || basename(n) !== n)) {
        throw err.corrupt('PATCH_JOURNAL', `a journal step names ${String(n)}, not a file of the folder`);
      }
    }
  }
  runJournal(folder, j.steps);
  return true;
}
