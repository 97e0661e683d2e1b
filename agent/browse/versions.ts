/** Every version of one path of a VM across its backups (`vdbak versions`, GET /versions). */
import type { Catalog } from '../../catalog/catalog.js';
import type { VersionRow } from '../../catalog/records.js';
import { versionJson, type VersionJson } from './json.js';
import { splitUserPath } from './refs.js';
import { findVmsOrThrow } from './vms.js';

export interface PathVersion {
  version: VersionRow;
  /** /<volume>/<path> */
  full: string;
  backups: number[];
}

/** The volume part of the path is a volume name (d0p2) or, as in the VM's latest backup, its label. */
export function pathVersions(cat: Catalog, vmName: string, path: string): PathVersion[] {
  const vms = findVmsOrThrow(cat, vmName);
  const parts = splitUserPath(path);
  const volName = parts[0] ?? '';
  const inner = `/${parts.slice(1).join('/')}`;
  const out: PathVersion[] = [];
  for (const vm of vms) {
    const latest = cat.backups({ vmId: vm.id }).at(-1);
    const labels = new Map((latest ? cat.backupVolumes(latest.id) : []).map((x) => [x.volumeId, x.label ?? '']));
    for (const vol of cat.vmVolumes(vm.id)) {
      if (vol.name !== volName && (labels.get(vol.id) ?? '').toLowerCase() !== volName.toLowerCase()) continue;
      for (const h of cat.history(vol.id, inner)) {
        out.push({ version: h.version, full: `/${vol.name}${inner}`, backups: h.backups });
      }
    }
  }
  return out;
}

export function pathVersionJson(p: PathVersion): VersionJson & { backups: number[] } {
  return { ...versionJson(p.version, p.full), backups: p.backups };
}
