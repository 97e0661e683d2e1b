/**
 * The VMs the catalog knows (present or vanished), and a VM's disks as its
 * latest backup saw them, for GET /vms and GET /vms/{vm}/disks.
 *
 * The presence columns (vms.datastore, vms.vanished_ms) come with catalog
 * schema 2; a catalog opened read-only before its upgrade lacks them, so they
 * are read with SELECT * and default to "present, datastore unknown".
 */
import type { Catalog, VmRow } from '../../catalog/catalog.js';
import { errorsFor } from '../../parsers/errors.js';

export interface VmSummary {
  id: number;
  identity: string;
  name: string;
  kind: string;
  configPath: string | null;
  datastore: string | null;
  present: boolean;
  vanishedMs: number | null;
  firstSeenMs: number;
  lastSeenMs: number;
  backups: number;
  lastBackup: { id: number; startedMs: number; finishedMs: number | null } | null;
}

type Row = Record<string, unknown>;
const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

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
  const last = new Map<number, Row>();
  for (const r of cat.db
    .prepare(
      `SELECT b.vm_id, COUNT(*) AS n, MAX(b.id) AS last_id FROM backups b WHERE b.state = 'complete' GROUP BY b.vm_id`,
    )
    .all() as Row[]) {
    last.set(num(r.vm_id), r);
  }
  return (cat.db.prepare('SELECT * FROM vms ORDER BY name, id').all() as Row[]).map((r) => {
    const id = num(r.id);
    const agg = last.get(id);
    const lastBackup = agg ? cat.backup(num(agg.last_id)) : undefined;
    const vanishedMs = numOrNull(r.vanished_ms);
    return {
      id,
      identity: r.identity as string,
      name: r.name as string,
      kind: r.kind as string,
      configPath: (r.config_path as string | null) ?? null,
      datastore: (r.datastore as string | null | undefined) ?? null,
      present: vanishedMs === null,
      vanishedMs,
      firstSeenMs: num(r.first_seen_ms),
      lastSeenMs: num(r.last_seen_ms),
      backups: agg ? num(agg.n) : 0,
      lastBackup: lastBackup
        ? { id: lastBackup.id, startedMs: lastBackup.startedMs, finishedMs: lastBackup.finishedMs }
        : null,
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
