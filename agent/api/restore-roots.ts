/**
 * Where a restore requested through the API may write: only inside a
 * configured restore root. The check works on real paths, so a symlink inside
 * a root that points out of it is caught, and it returns the canonical folder,
 * which is what the job is given (it writes where it was checked).
 */
import { lstatSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { badRequest, HttpError } from './http-error.js';

const outside = (to: string) =>
  new HttpError(403, 'RESTORE_OUTSIDE_ROOTS', `${to} is not inside a configured restore folder (restoreRoots)`);

/** The longest existing ancestor's real path, plus the missing tail. */
function canonical(path: string): string {
  const tail: string[] = [];
  let at = path;
  for (;;) {
    try {
      return join(realpathSync(at), ...tail);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') throw badRequest('RESTORE_TO_BAD', `${path} cannot be used as a restore folder (${code})`);
      let exists = false;
      try {
        lstatSync(at);
        exists = true;
      } catch {
        // truly missing: go up one level
      }
      // present but unresolvable: a dangling symlink, which a restore would write through
      if (exists) throw new HttpError(403, 'RESTORE_TO_SYMLINK', `${at} is a symlink to nowhere`);
      const up = dirname(at);
      if (up === at) throw badRequest('RESTORE_TO_BAD', `${path} has no existing ancestor`);
      tail.unshift(basename(at));
      at = up;
    }
  }
}

export function checkRestoreTarget(to: string, roots: readonly string[]): string {
  if (!isAbsolute(to)) throw badRequest('RESTORE_TO_RELATIVE', `'to' must be an absolute folder, not '${to}'`);
  if (to.split(/[\\/]/).includes('..')) throw badRequest('RESTORE_TO_DOTDOT', `'to' may not hold '..': ${to}`);
  const want = canonical(resolve(to));
  for (const root of roots) {
    let r: string;
    try {
      r = realpathSync(root);
    } catch {
      continue; // a root that does not exist (yet) admits nothing
    }
    if (want === r || want.startsWith(r.endsWith(sep) ? r : `${r}${sep}`)) return want;
  }
  throw outside(to);
}
