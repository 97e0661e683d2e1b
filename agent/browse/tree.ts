/**
 * What `vdbak ls <backup> [path]` and GET /backups/{ref}/tree list: the volumes
 * of a backup's root, a folder's entries (or everything below it), or one entry
 * when the path names a file.
 */
import type { BackupRow, BackupVolumeRow, Catalog } from '../../catalog/catalog.js';
import type { VersionRow } from '../../catalog/records.js';
import { errorsFor } from '../../parsers/errors.js';
import { volumeJson, versionJson } from './json.js';
import { resolvePath } from './refs.js';

export type TreeRow =
  | { kind: 'volume'; volume: BackupVolumeRow }
  /** `full` is /<volume>/<path>; `shown` is what `ls` prints (a name, or the full path when recursive or a file). */
  | { kind: 'entry'; version: VersionRow; full: string; shown: string };

/** The rows under `path` of a backup, lazily (a recursive listing of a big volume is streamed, not loaded). */
export function treeRows(cat: Catalog, b: BackupRow, path: string, recursive: boolean): Iterable<TreeRow> {
  const where = resolvePath(cat, b, path);
  if (!where.volume) return cat.backupVolumes(b.id).map((volume) => ({ kind: 'volume' as const, volume }));
  const vol = where.volume;
  const base = `/${vol.name}`;
  const entry = where.inner === '/' ? undefined : cat.lookup(b.id, vol.volumeId, where.inner);
  if (where.inner !== '/' && !entry) {
    throw errorsFor({ image: path, layer: 'catalog' }).notFound('PATH_NOT_FOUND', `${path} is not in backup ${b.id}`);
  }
  if (entry && entry.type !== 'dir') {
    return [{ kind: 'entry', version: entry, full: `${base}${entry.path}`, shown: `${base}${entry.path}` }];
  }
  return (function* (): Generator<TreeRow> {
    const rows = recursive ? cat.walk(b.id, vol.volumeId, where.inner) : cat.list(b.id, vol.volumeId, where.inner);
    for (const v of rows) {
      if (recursive && v.path === '/') continue;
      const full = `${base}${v.path}`;
      yield { kind: 'entry', version: v, full, shown: recursive ? full : v.name };
    }
  })();
}

export function treeRowJson(r: TreeRow): Record<string, unknown> {
  return r.kind === 'volume' ? volumeJson(r.volume) : { ...versionJson(r.version, r.full) };
}
