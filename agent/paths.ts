/**
 * Host path helpers shared by the daemon's checks (datastores, restore
 * folders, discovery). Both sides must already be absolute and resolved (or
 * real, when symlinks matter): this compares strings, it does not touch disk.
 */
import { sep } from 'node:path';

/** True when `path` is `folder` itself or lies below it ("/a/bc" is not inside "/a/b"). */
export function isInside(path: string, folder: string): boolean {
  return path === folder || path.startsWith(folder.endsWith(sep) ? folder : folder + sep);
}
