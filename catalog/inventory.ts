/**
 * The VM inventory discovery keeps in the catalog (table vms, schema 2): where
 * each VM was last seen (datastore, configuration file), when, and when it
 * vanished. A VM is one row per identity for its whole life: it keeps its id,
 * and so its backups, when it moves between folders or datastores, vanishes,
 * or comes back.
 *
 * Plain functions over the catalog's connection; the caller (discovery, the
 * only writer of these columns besides a backup's upsertVm) wraps a scan's
 * writes in one transaction.
 */
import type { Catalog } from './catalog.js';

export interface InventoryVm {
  id: number;
  identity: string;
  name: string;
  kind: string;
  configPath: string | null;
  /** The datastore (config name) it was last seen in; null for a VM only ever backed up from the CLI. */
  datastore: string | null;
  firstSeenMs: number;
  lastSeenMs: number;
  /** When a scan of its datastore no longer found it; null while present. */
  vanishedMs: number | null;
}

export interface SeenVm {
  identity: string;
  name: string;
  kind: string;
  configPath?: string | undefined;
  datastore: string;
}

type Row = Record<string, unknown>;

const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

const COLUMNS = 'id, identity, name, kind, config_path, datastore, first_seen_ms, last_seen_ms, vanished_ms';

function toVm(r: Row): InventoryVm {
  return {
    id: num(r.id),
    identity: r.identity as string,
    name: r.name as string,
    kind: r.kind as string,
    configPath: (r.config_path as string | null) ?? null,
    datastore: (r.datastore as string | null) ?? null,
    firstSeenMs: num(r.first_seen_ms),
    lastSeenMs: num(r.last_seen_ms),
    vanishedMs: numOrNull(r.vanished_ms),
  };
}

/** Every VM the catalog knows, present or vanished, by name. */
export function inventoryVms(cat: Catalog): InventoryVm[] {
  return (cat.db.prepare(`SELECT ${COLUMNS} FROM vms ORDER BY name, id`).all() as Row[]).map(toVm);
}

export function inventoryVm(cat: Catalog, identity: string): InventoryVm | undefined {
  const r = cat.db.prepare(`SELECT ${COLUMNS} FROM vms WHERE identity = ?`).get(identity) as Row | undefined;
  return r ? toVm(r) : undefined;
}

/**
 * Records that a scan found `vm` now: a new row, or the existing one (same
 * identity) updated with where it is and marked present. Returns the row as
 * it was before (undefined for a VM never seen) and the row id.
 */
export function recordSeen(cat: Catalog, vm: SeenVm, nowMs: number): { id: number; before?: InventoryVm } {
  const before = inventoryVm(cat, vm.identity);
  const r = cat.db
    .prepare(
      `INSERT INTO vms(identity, name, kind, config_path, datastore, first_seen_ms, last_seen_ms, vanished_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, NULL)
       ON CONFLICT(identity) DO UPDATE SET name = excluded.name, kind = excluded.kind,
         config_path = excluded.config_path, datastore = excluded.datastore,
         last_seen_ms = excluded.last_seen_ms, vanished_ms = NULL
       RETURNING id`,
    )
    .get(vm.identity, vm.name, vm.kind, vm.configPath ?? null, vm.datastore, nowMs, nowMs) as Row;
  return before ? { id: num(r.id), before } : { id: num(r.id) };
}

/** VMs last seen in one of `datastores` and not marked vanished. */
export function presentIn(cat: Catalog, datastores: readonly string[]): InventoryVm[] {
  if (datastores.length === 0) return [];
  const marks = datastores.map(() => '?').join(', ');
  return (
    cat.db
      .prepare(`SELECT ${COLUMNS} FROM vms WHERE vanished_ms IS NULL AND datastore IN (${marks}) ORDER BY id`)
      .all(...datastores) as Row[]
  ).map(toVm);
}

/** Marks VMs vanished (their rows and backups stay: a vanished VM stays restorable). */
export function markVanished(cat: Catalog, ids: readonly number[], nowMs: number): void {
  const st = cat.db.prepare('UPDATE vms SET vanished_ms = ? WHERE id = ? AND vanished_ms IS NULL');
  for (const id of ids) st.run(nowMs, id);
}
