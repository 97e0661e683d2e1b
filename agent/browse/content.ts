/**
 * Which file (and which named stream) a `path[:stream]` names in a backup, for
 * `vdbak cat` and the API's file download.
 */
import type { BackupRow, Catalog } from '../../catalog/catalog.js';
import type { VersionRow } from '../../catalog/records.js';
import { errorsFor } from '../../parsers/errors.js';
import { resolvePath } from './refs.js';

export interface ContentRef {
  version: VersionRow;
  /** The named stream, or undefined for the main data. */
  stream?: string;
  /** Bytes that will be read. */
  size: number;
}

/**
 * The whole text is tried as a path first (Linux names may hold ':'), then each
 * ':' of the last component from the left as the start of a stream name, then a
 * ':' before the last '/' (an NTFS stream name may hold '/').
 */
export function resolveContent(cat: Catalog, b: BackupRow, spec: string): ContentRef {
  const slash = spec.lastIndexOf('/');
  const candidates: { path: string; stream?: string }[] = [{ path: spec }];
  for (let i = spec.indexOf(':', slash + 1); i > slash + 1; i = spec.indexOf(':', i + 1)) {
    candidates.push({ path: spec.slice(0, i), stream: spec.slice(i + 1) });
  }
  for (let i = spec.indexOf(':'); i >= 0 && i < slash; i = spec.indexOf(':', i + 1)) {
    candidates.push({ path: spec.slice(0, i), stream: spec.slice(i + 1) });
  }
  const err = errorsFor({ image: spec, layer: 'catalog' });
  for (const c of candidates) {
    const where = resolvePath(cat, b, c.path);
    const hit = where.volume ? cat.lookup(b.id, where.volume.volumeId, where.inner) : undefined;
    if (!hit) continue;
    if (c.stream === undefined) {
      if (hit.type !== 'file') throw err.unsupported('NOT_A_FILE', `${spec} is a ${hit.type}`);
      return { version: hit, size: hit.size };
    }
    const s = hit.streams?.find((x) => x.name === c.stream);
    if (s) return { version: hit, stream: c.stream, size: s.size };
  }
  throw err.notFound('PATH_NOT_FOUND', `${spec} is not in backup ${b.id}`);
}
