/**
 * Restore: catalog → versions under a path → verified chunks → a sink
 * (a folder or a tar stream). Only the chunks of what is restored are read;
 * neither the VM nor its disks are needed.
 */
import type { BackupRow, Catalog } from '../../catalog/catalog.js';
import { joinPath, type VersionRow } from '../../catalog/records.js';
import { errorsFor } from '../../parsers/errors.js';
import type { EntryType } from '../../parsers/fs/types.js';
import type { Target } from '../../transport/targets/types.js';
import { resolvePath } from '../browse/refs.js';
import { ChunkStore, versionContent } from './chunks.js';
import type { RestoreItem, RestoreReport, RestoreSink } from './sink.js';

export interface RestoreProgress {
  entries: number;
  bytes: number;
  path: string;
}

function toItem(v: VersionRow, relPath: string): RestoreItem {
  const item: RestoreItem = {
    path: relPath,
    type: v.type as EntryType,
    size: v.type === 'file' ? v.size : 0,
    mode: v.mode,
    uid: v.uid,
    gid: v.gid,
    mtimeNs: v.mtimeNs,
    atimeNs: v.atimeNs,
  };
  if (v.linkTarget !== undefined) item.linkTarget = v.linkTarget;
  if (v.streams?.length) item.streams = v.streams.map((s) => ({ name: s.name, size: s.size }));
  const xattrs = v.meta?.xattrs as { name: string; value: string }[] | undefined;
  if (xattrs?.length) item.xattrs = xattrs.map((x) => ({ name: x.name, value: Buffer.from(x.value, 'base64') }));
  return item;
}

function baseName(p: string): string {
  const parts = p.split('/').filter(Boolean);
  return parts[parts.length - 1] ?? '';
}

/**
 * Restores `path` of a backup into `sink`: a file as itself, a folder with
 * everything below it, a volume's root as all its files, the backup root as
 * one folder per volume.
 */
export async function restorePath(
  cat: Catalog,
  target: Target,
  backup: BackupRow,
  path: string,
  sink: RestoreSink,
  onProgress?: (p: RestoreProgress) => void,
): Promise<RestoreReport> {
  const store = new ChunkStore(cat, target);
  const where = resolvePath(cat, backup, path);
  const progress: RestoreProgress = { entries: 0, bytes: 0, path: '' };
  const add = async (v: VersionRow, rel: string) => {
    progress.entries++;
    progress.path = rel;
    await sink.add(toItem(v, rel), (stream?: string) => {
      const it = versionContent(store, v, stream);
      return (async function* () {
        for await (const b of it) {
          progress.bytes += b.length;
          yield b;
        }
      })();
    });
    onProgress?.(progress);
  };
  const volumes = where.volume ? [{ vol: where.volume, inner: where.inner, prefix: '' }] : [];
  if (!where.volume) {
    for (const vol of cat.backupVolumes(backup.id)) volumes.push({ vol, inner: '/', prefix: vol.name });
  }
  for (const { vol, inner, prefix } of volumes) {
    if (inner !== '/') {
      const v = cat.lookup(backup.id, vol.volumeId, inner);
      if (!v) {
        throw errorsFor({ image: path, layer: 'restore' }).notFound(
          'PATH_NOT_FOUND',
          `${path} is not in backup ${backup.id} (${backup.vmName})`,
        );
      }
      const top = baseName(inner);
      await add(v, top);
      if (v.type !== 'dir') continue;
      for (const child of cat.walk(backup.id, vol.volumeId, inner)) {
        await add(child, `${top}${child.path.slice(inner.length)}`);
      }
    } else {
      for (const child of cat.walk(backup.id, vol.volumeId, '/')) {
        if (child.path === '/') continue;
        await add(child, prefix ? joinPath(`/${prefix}`, child.path.slice(1)).slice(1) : child.path.slice(1));
      }
    }
  }
  return sink.finish();
}
