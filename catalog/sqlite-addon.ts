/**
 * Where better-sqlite3's native addon is, found once per process.
 *
 * Without a `nativeBinding` option the package loads its addon through the
 * `bindings` package, which works out its caller from a stack trace and then
 * tries a list of build folders one `require` at a time, each miss throwing:
 * several milliseconds of a single-file restore that is mostly start-up. The
 * addon that install builds (or downloads) is always in build/Release, so we
 * name that file; when it is not there (an unusual build) the option is left
 * out and the package looks for itself, as before.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const ADDON = join('build', 'Release', 'better_sqlite3.node');

let found: string | null | undefined;

/** The addon's path, or undefined to let better-sqlite3 search. */
export function sqliteAddonPath(): string | undefined {
  if (found === undefined) {
    try {
      const pkg = createRequire(import.meta.url).resolve('better-sqlite3/package.json');
      const path = join(dirname(pkg), ADDON);
      found = existsSync(path) ? path : null;
    } catch {
      found = null; // the package's own lookup reports what is wrong
    }
  }
  return found ?? undefined;
}
