/**
 * The VMs the catalog knows (present or vanished), and a VM's disks as its
 * latest backup saw them, for GET /vms and GET /vms/{vm}/disks.
 * Presence (datastore, vanished) is what discovery recorded (catalog/inventory.ts).
 */
import type { BackupRow, Catalog, VmRow } from '../../catalog/catalog.js';
import { inventoryVms, type InventoryVm } from '../../catalog/inventory.js';
import { errorsFor } from '../../parsers/errors.js';

export interface VmSummary extends InventoryVm {
  present: boolean;
  /** Complete backups. */
  backups: number;
  lastBackup: { id: number; startedMs: number; finishedMs: number | null } | null;
}

/** The VMs named `name` (display name, identity or id); a typed 404 when none. */
export function findVmsOrThrow(cat: Catalog, name: string): VmRow[] {
  const vms = cat.findVms(name);
  if (vms.length === 0) {
    throw errorsFor({ image: name, layer: 'catalog' }).notFound('VM_NOT_FOUND', `no VM named '${name}' in the catalog`);
  }
  return vms;
}

/** Exactly one VM; several sharing a display name must be named by identity or id. */
export function findOneVm(cat: Catalog, name: string): VmRow {
  const vms = findVmsOrThrow(cat, name);
  if (vms.length > 1) {
    throw errorsFor({ image: name, layer: 'catalog' }).notFound(
      'VM_AMBIGUOUS',
      `several VMs are named '${name}' (${vms.map((v) => `${v.identity} = id ${v.id}`).join(', ')}); use an identity or id`,
    );
  }
  return vms[0]!;
}

export function vmSummaries(cat: Catalog): VmSummary[] {
  const last = new Map<number, { n: number; last: BackupRow }>();
  for (const b of cat.backups()) {
    const agg = last.get(b.vmId);
    if (agg) {
      agg.n++;
      agg.last = b;
    } else last.set(b.vmId, { n: 1, last: b });
  }
  return inventoryVms(cat).map((v) => {
    const agg = last.get(v.id);
    return {
      ...v,
      present: v.vanishedMs === null,
      backups: agg?.n ?? 0,
      lastBackup: agg ? { id: agg.last.id, startedMs: agg.last.startedMs, finishedMs: agg.last.finishedMs } : null,
    };
  });
}

/** A VM's disks and volumes as its latest complete backup recorded them (none before its first backup). */
export function vmDisks(cat: Catalog, vm: VmRow): { backup: number | null; disks: Record<string, unknown>[] } {
  const latest = cat.backups({ vmId: vm.id }).at(-1);
  if (!latest) return { backup: null, disks: [] };
  const volumes = cat.backupVolumes(latest.id);
  return {
    backup: latest.id,
    disks: cat.backupDisks(latest.id).map((d) => ({
      ...d,
      volumes: volumes
        .filter((v) => v.diskIndex === d.diskIndex)
        .map((v) => ({
          name: v.name,
          partIndex: v.partIndex,
          offset: v.offset,
          length: v.length,
          fsType: v.fsType,
          label: v.label,
          uuid: v.uuid,
          mode: v.mode,
          problems: v.problems,
        })),
    })),
  };
}
