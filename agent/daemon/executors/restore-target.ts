/**
 * Where a restore job may write: `to` must resolve, symlinks followed, to a
 * folder inside one of the configured restore roots. The API checks a request
 * with this before queueing it, and the job checks again when it runs (a
 * symlink may have changed in between).
 */
import { lstatSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { errorsFor } from '../../../parsers/errors.js';
import { isInside } from '../../paths.js';

/** Components walked up looking for an existing ancestor (a bound on a hostile `to`). */
const MAX_MISSING_COMPONENTS = 64;

const err = (to: string) => errorsFor({ image: to, layer: 'restore' });

function realOf(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/** The real path `to` names: its deepest existing ancestor resolved, the missing rest appended as given. */
function resolveThroughExisting(to: string): string {
  const missing: string[] = [];
  let cur = to;
  for (;;) {
    let exists = true;
    try {
      lstatSync(cur);
    } catch {
      exists = false;
    }
    if (exists) {
      const real = realOf(cur);
      if (real === undefined) {
        throw err(to).io('RESTORE_TO_UNRESOLVABLE', `${cur} cannot be resolved (a dangling or looping symlink?)`);
      }
      return missing.length ? join(real, ...missing.reverse()) : real;
    }
    const up = dirname(cur);
    if (up === cur || missing.length >= MAX_MISSING_COMPONENTS) {
      throw err(to).notFound('RESTORE_TO_UNRESOLVABLE', `no existing folder above ${to}`);
    }
    missing.push(basename(cur));
    cur = up;
  }
}

/** Returns the real folder a restore into `to` writes to, or a typed error when it is outside every root. */
export function resolveRestoreTarget(to: string, roots: readonly string[]): string {
  if (typeof to !== 'string' || to.length === 0 || to.includes('\0')) {
    throw err(String(to)).unsupported('RESTORE_TO_BAD', 'the restore folder must be a non-empty path without NUL');
  }
  if (!isAbsolute(to)) {
    throw err(to).unsupported('RESTORE_TO_NOT_ABSOLUTE', `the restore folder must be an absolute path, not '${to}'`);
  }
  if (to.split(/[/\\]/).includes('..')) {
    throw err(to).unsupported('RESTORE_TO_OUTSIDE_ROOTS', `the restore folder may not contain '..': ${to}`);
  }
  if (roots.length === 0) {
    throw err(to).unsupported('RESTORE_TO_OUTSIDE_ROOTS', 'no restore folders are configured (restoreRoots)');
  }
  const real = resolveThroughExisting(to);
  for (const root of roots) {
    // a root not made yet (the default one inside the repository) is resolved like `to`: through its existing ancestors
    let r: string;
    try {
      r = resolveThroughExisting(root);
    } catch {
      continue;
    }
    if (isInside(real, r)) return real;
  }
  throw err(to).unsupported(
    'RESTORE_TO_OUTSIDE_ROOTS',
    `${to} (${real}) is not inside a configured restore folder (${roots.join(', ')})`,
  );
}
