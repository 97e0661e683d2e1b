/**
 * How users name things in the repository:
 * - a backup: its id (`12`), a VM's name (its latest complete backup), or
 *   `VM~N` (N backups before the latest);
 * - a path in a backup: `/<volume>/<path in the volume>` where the volume is
 *   `d<disk>p<partition>` or, when unique in that backup, its label.
 */
import type { BackupRow, BackupVolumeRow, Catalog } from '../../catalog/catalog.js';
import { errorsFor } from '../../parsers/errors.js';

const err = (what: string) => errorsFor({ image: what, layer: 'catalog' });

export function resolveBackup(cat: Catalog, ref: string): BackupRow {
  if (/^\d+$/.test(ref)) {
    const b = cat.backup(Number(ref));
    if (!b || b.state !== 'complete') {
      throw err(ref).notFound('BACKUP_NOT_FOUND', `no complete backup ${ref}${b ? ` (it is ${b.state})` : ''}`);
    }
    return b;
  }
  const m = /^(.*?)(?:~(\d+))?$/.exec(ref);
  const name = m?.[1] ?? ref;
  const back = m?.[2] ? Number(m[2]) : 0;
  const vms = cat.findVms(name);
  if (vms.length === 0) throw err(ref).notFound('VM_NOT_FOUND', `no VM named '${name}' in the catalog`);
  if (vms.length > 1) {
    throw err(ref).notFound(
      'VM_AMBIGUOUS',
      `several VMs are named '${name}' (${vms.map((v) => `${v.identity} = id ${v.id}`).join(', ')}); use a backup id`,
    );
  }
  const list = cat.backups({ vmId: vms[0]!.id });
  const b = list[list.length - 1 - back];
  if (!b) {
    throw err(ref).notFound(
      'BACKUP_NOT_FOUND',
      `VM '${name}' has ${list.length} complete backup(s); ${ref} is not one`,
    );
  }
  return b;
}

export interface ResolvedPath {
  /** Undefined for the backup's root (the list of volumes). */
  volume?: BackupVolumeRow;
  /** Path inside the volume, '/'-separated, starting with '/'. */
  inner: string;
}

/** Normalises a user path: '/' separators, no empty, '.' or '..' segments (a '..' is refused, not resolved). */
export function splitUserPath(path: string): string[] {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw err(path).unsupported('PATH_DOTDOT', `'..' is not allowed in a backup path: ${path}`);
  return parts;
}

export function resolvePath(cat: Catalog, backup: BackupRow, path: string): ResolvedPath {
  const parts = splitUserPath(path);
  if (parts.length === 0) return { inner: '/' };
  const vols = cat.backupVolumes(backup.id);
  const head = parts[0]!;
  let volume = vols.find((v) => v.name === head);
  if (!volume) {
    const byLabel = vols.filter((v) => v.label && v.label.toLowerCase() === head.toLowerCase());
    if (byLabel.length === 1) volume = byLabel[0];
    else if (byLabel.length > 1) {
      throw err(path).notFound(
        'VOLUME_AMBIGUOUS',
        `label '${head}' names several volumes (${byLabel.map((v) => v.name).join(', ')}): use one of those`,
      );
    }
  }
  if (!volume) {
    throw err(path).notFound(
      'VOLUME_NOT_FOUND',
      `backup ${backup.id} has no volume '${head}'; volumes: ${vols.map((v) => (v.label ? `${v.name} (${v.label})` : v.name)).join(', ')}`,
    );
  }
  return { volume, inner: `/${parts.slice(1).join('/')}` };
}

/** How a volume is shown: `d0p2` or `d0p2 (WINDOWS)`. */
export function volumeTitle(v: { name: string; label: string | null }): string {
  return v.label ? `${v.name} (${v.label})` : v.name;
}
