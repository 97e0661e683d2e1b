/**
 * Discovery: which VMs each datastore holds now, recorded in the catalog by
 * identity (catalog/inventory.ts), so a VM that moves keeps its id and its
 * backups, and one that vanishes stays restorable and comes back as itself.
 *
 * A datastore is scanned at its top folder and one level down (as `vdbak
 * backup <datastore>` does): VMware folders (.vmx / .vmtx), libvirt domain
 * XML files, and loose disk images that belong to neither. Each folder is
 * read on its own: one broken VM is a warning, never the end of the scan.
 * A folder reached through a symlink that leads out of the datastore is not
 * scanned, hidden folders (.snapshot on a filer) are not VMs, and a disk
 * whose file lies outside every datastore is not read: a VM's configuration
 * is written by whoever controls the VM, and must not make the daemon back up
 * (and then serve) a file of the controller's own.
 *
 * A datastore whose scan fails as a whole (unreadable, too many folders)
 * marks nothing vanished: a datastore that could not be read says nothing
 * about its VMs.
 */
import { readdirSync, realpathSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import type { Catalog } from '../../catalog/catalog.js';
import { inventoryVm, markVanished, presentIn, recordSeen } from '../../catalog/inventory.js';
import { isVdbakError } from '../../parsers/errors.js';
import type { DatastoreConfig } from '../config/types.js';
import { realOr } from '../source/images.js';
import { sourceFromDomainXml } from '../source/libvirt.js';
import { MAX_SUBFOLDERS, sourcesInFolder, type VmSource } from '../source/resolve.js';
import { isInside } from '../paths.js';

/** Most libvirt XML files looked at in one folder. */
export const MAX_FOLDER_XML = 1000;
/** Most warnings one discovery returns (a datastore full of junk must not make a huge report). */
export const MAX_DISCOVERY_WARNINGS = 500;

export interface DiscoveredVm {
  source: VmSource;
  /** The datastore's name. */
  datastore: string;
  /** The catalog's vms.id. */
  vmId: number;
  identity: string;
  name: string;
}

export interface VmPlace {
  datastore: string | null;
  configPath: string | null;
}

export interface VmChange {
  vmId: number;
  identity: string;
  name: string;
}

export interface DiscoveryResult {
  vms: DiscoveredVm[];
  /** Seen by discovery for the first time (`from` set when a CLI backup knew it already), or (returned) found again after it vanished. */
  appeared: (VmChange & { to: VmPlace; returned: boolean; from?: VmPlace })[];
  /** Present before and now, at another place. */
  moved: (VmChange & { from: VmPlace; to: VmPlace })[];
  /** Present before in a datastore scanned now, and not found. */
  vanished: (VmChange & { from: VmPlace })[];
  /** About the scan (folders not read, VMs not listed); each VM's own warnings stay in its source. */
  warnings: string[];
}

/** What discovery logs to (the daemon's pino logger fits). */
export interface DiscoveryLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

interface Root {
  ds: DatastoreConfig;
  real: string;
}

class Notes {
  readonly list: string[] = [];
  private dropped = 0;
  add(s: string): void {
    if (this.list.length < MAX_DISCOVERY_WARNINGS) this.list.push(s);
    else this.dropped++;
  }
  done(): string[] {
    if (this.dropped > 0) this.list.push(`${this.dropped} more warnings not shown`);
    return this.list;
  }
}

function rootsOf(datastores: readonly DatastoreConfig[], notes: Notes): Root[] {
  const out: Root[] = [];
  for (const ds of datastores) {
    try {
      out.push({ ds, real: realpathSync(ds.path) });
    } catch (e) {
      notes.add(`datastore ${ds.name} (${ds.path}) cannot be read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  }
  return out;
}

/** The folders of a datastore to look into: its top and its sub-folders that stay inside it. */
function foldersOf(root: Root, notes: Notes): string[] | undefined {
  let entries;
  try {
    entries = readdirSync(root.real, { withFileTypes: true });
  } catch (e) {
    notes.add(`datastore ${root.ds.name}: cannot list ${root.real}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    return undefined;
  }
  const dirs: string[] = [];
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    if (!e.isDirectory() && !e.isSymbolicLink()) continue;
    const p = join(root.real, e.name);
    if (e.isSymbolicLink()) {
      let real: string;
      try {
        real = realpathSync(p);
      } catch {
        continue; // a dangling link
      }
      if (!isInside(real, root.real)) {
        notes.add(`datastore ${root.ds.name}: ${e.name} leads out of the datastore (${real}); not scanned`);
        continue;
      }
      // a link to a folder of the same datastore: that folder is scanned under its own name
      continue;
    }
    dirs.push(p);
  }
  if (dirs.length > MAX_SUBFOLDERS) {
    notes.add(`datastore ${root.ds.name}: more than ${MAX_SUBFOLDERS} folders; not scanned`);
    return undefined;
  }
  return [root.real, ...dirs.sort()];
}

function libvirtFiles(folder: string, notes: Notes): string[] {
  let entries;
  try {
    entries = readdirSync(folder, { withFileTypes: true });
  } catch {
    return []; // sourcesInFolder reports an unreadable folder
  }
  const xml = entries
    .filter((e) => e.isFile() && !e.name.startsWith('.') && extname(e.name).toLowerCase() === '.xml')
    .map((e) => join(folder, e.name))
    .sort();
  if (xml.length > MAX_FOLDER_XML) {
    notes.add(`${folder}: more than ${MAX_FOLDER_XML} .xml files; only the first ${MAX_FOLDER_XML} are read`);
    return xml.slice(0, MAX_FOLDER_XML);
  }
  return xml;
}

/** The VMs of one folder: its .vmx files or loose images, and its libvirt domains. */
function scanFolder(folder: string, notes: Notes): VmSource[] {
  const vms: VmSource[] = [];
  try {
    vms.push(...sourcesInFolder(folder, false));
  } catch (e) {
    if (!isVdbakError(e)) throw e;
    if (e.code !== 'SOURCE_NO_VM') notes.add(`${folder}: ${e.message}`);
  }
  for (const xml of libvirtFiles(folder, notes)) {
    try {
      vms.push(sourceFromDomainXml(xml));
    } catch (e) {
      if (!isVdbakError(e)) throw e;
      // any other XML (an OVF, a tool's settings) is not a domain and not a problem
      if (e.code !== 'LIBVIRT_NOT_DOMAIN') notes.add(`${xml}: ${e.message}`);
    }
  }
  return vms;
}

/** Drops the disks whose file lies outside every datastore (a configuration naming /etc/shadow is not obeyed). */
function confine(vm: VmSource, roots: readonly Root[]): void {
  const kept = vm.disks.filter((d) => {
    const real = realOr(d.path);
    if (roots.some((r) => isInside(real, r.real))) return true;
    vm.warnings.push(`${d.slot}: ${d.path} lies outside every datastore; not read`);
    return false;
  });
  vm.disks = kept;
}

/** The place a VM is recorded at: its configuration file, or its image for a loose one. */
function placeOf(vm: VmSource): string {
  return vm.configPath ?? vm.disks[0]?.path ?? vm.folder;
}

/**
 * One VM per configuration file, and no loose image that is some VM's disk
 * (a libvirt domain's qcow2 sits in a folder discovery also reads as images).
 */
function dedupe(found: { source: VmSource; root: Root }[]): { source: VmSource; root: Root }[] {
  const byPlace = new Map<string, { source: VmSource; root: Root }>();
  for (const f of found) {
    const key = `${f.source.kind}:${realOr(placeOf(f.source))}`;
    if (!byPlace.has(key)) byPlace.set(key, f);
  }
  const owned = new Set<string>();
  for (const f of byPlace.values()) {
    if (f.source.kind !== 'image') for (const d of f.source.disks) owned.add(realOr(d.path));
  }
  return [...byPlace.values()].filter(
    (f) => f.source.kind !== 'image' || !owned.has(realOr(f.source.disks[0]?.path ?? '')),
  );
}

/**
 * A copied VM keeps its uuid: two VMs with one identity. The one at the place
 * the catalog knows keeps the identity (and its backups); the others are told
 * apart by their path.
 */
function separate(cat: Catalog, found: { source: VmSource; root: Root }[], notes: Notes): void {
  const groups = new Map<string, VmSource[]>();
  for (const f of found) groups.set(f.source.identity, [...(groups.get(f.source.identity) ?? []), f.source]);
  for (const [identity, group] of groups) {
    if (group.length < 2) continue;
    const known = inventoryVm(cat, identity)?.configPath;
    const keeper = group.find((v) => known != null && v.configPath === known) ?? group[0];
    for (const v of group) {
      if (v === keeper) continue;
      v.identity = `${identity}@${realOr(placeOf(v))}`;
      v.warnings.push(`another VM has the identity ${identity} (a copy?); this one is told apart by its path`);
      notes.add(
        `${placeOf(v)}: identity ${identity} is also ${keeper ? placeOf(keeper) : '?'}'s; tracked as ${v.identity}`,
      );
    }
  }
}

function scan(
  cat: Catalog,
  datastores: readonly DatastoreConfig[],
  notes: Notes,
  only?: { root: Root; folder: string },
): { found: { source: VmSource; root: Root }[]; scanned: string[]; roots: Root[] } {
  const roots = rootsOf(datastores, notes);
  const found: { source: VmSource; root: Root }[] = [];
  const scanned: string[] = [];
  for (const root of only ? [only.root] : roots) {
    const folders = only ? [only.folder] : foldersOf(root, notes);
    if (!folders) continue;
    for (const folder of folders) {
      for (const source of scanFolder(folder, notes)) found.push({ source, root });
    }
    scanned.push(root.ds.name);
  }
  const unique = dedupe(found);
  for (const f of unique) confine(f.source, roots);
  separate(cat, unique, notes);
  return { found: unique, scanned, roots };
}

/**
 * Scans every datastore, records what it found in the catalog (one
 * transaction), and says what appeared, moved and vanished since the last scan.
 */
export function discover(
  cat: Catalog,
  datastores: readonly DatastoreConfig[],
  nowMs: number,
  log?: DiscoveryLog,
): DiscoveryResult {
  const notes = new Notes();
  const { found, scanned } = scan(cat, datastores, notes);
  const result: DiscoveryResult = { vms: [], appeared: [], moved: [], vanished: [], warnings: [] };
  // outside a running backup's open batch: its rollback must not take discovery's rows
  cat.writeOutsideBatch(() => {
    const seen = new Set<number>();
    for (const { source, root } of found) {
      const to: VmPlace = { datastore: root.ds.name, configPath: source.configPath ?? null };
      const { id, before } = recordSeen(
        cat,
        {
          identity: source.identity,
          name: source.name,
          kind: source.kind,
          configPath: source.configPath,
          datastore: root.ds.name,
        },
        nowMs,
      );
      seen.add(id);
      result.vms.push({ source, datastore: root.ds.name, vmId: id, identity: source.identity, name: source.name });
      const change: VmChange = { vmId: id, identity: source.identity, name: source.name };
      if (!before) {
        result.appeared.push({ ...change, to, returned: false });
        continue;
      }
      const from: VmPlace = { datastore: before.datastore, configPath: before.configPath };
      if (before.datastore === null && before.vanishedMs === null) {
        // known from a CLI backup, found by discovery for the first time
        result.appeared.push({ ...change, to, returned: false, from });
      } else if (before.vanishedMs !== null) {
        result.appeared.push({ ...change, to, returned: true, from });
      } else if (
        (from.configPath !== null && from.configPath !== to.configPath) ||
        (from.datastore !== null && from.datastore !== to.datastore)
      ) {
        result.moved.push({ ...change, from, to });
      }
    }
    const gone = presentIn(cat, scanned).filter((v) => !seen.has(v.id));
    markVanished(
      cat,
      gone.map((v) => v.id),
      nowMs,
    );
    for (const v of gone) {
      result.vanished.push({
        vmId: v.id,
        identity: v.identity,
        name: v.name,
        from: { datastore: v.datastore, configPath: v.configPath },
      });
    }
  });
  result.warnings = notes.done();
  if (log) {
    for (const a of result.appeared)
      log.info({ vm: a.name, identity: a.identity, ...a.to }, a.returned ? 'VM is back' : 'VM found');
    for (const m of result.moved) log.info({ vm: m.name, identity: m.identity, from: m.from, to: m.to }, 'VM moved');
    for (const v of result.vanished) {
      log.info({ vm: v.name, identity: v.identity, ...v.from }, 'VM vanished (its backups stay restorable)');
    }
    for (const w of result.warnings) log.warn({ discovery: true }, w);
  }
  return result;
}

/** discover(), returning only the VMs present now (what the scheduler needs). */
export function discoverVms(
  cat: Catalog,
  datastores: readonly DatastoreConfig[],
  nowMs: number,
  log?: DiscoveryLog,
): DiscoveredVm[] {
  return discover(cat, datastores, nowMs, log).vms;
}

/** The folder a recorded VM was last seen in, to look there first. */
function recordedFolder(identity: string, configPath: string | null): string | undefined {
  if (configPath !== null) return dirname(configPath);
  // a loose image's identity is its path: image:<real folder>/<family name>
  return identity.startsWith('image:') ? dirname(identity.slice('image:'.length)) : undefined;
}

/**
 * Where the VM with this identity is now, for a backup job: the folder the
 * catalog last saw it in first, then a full discovery (which records a move).
 * Undefined when no datastore holds it.
 */
export function locateVm(
  cat: Catalog,
  datastores: readonly DatastoreConfig[],
  identity: string,
  log?: DiscoveryLog,
): VmSource | undefined {
  const row = inventoryVm(cat, identity);
  const folder = row ? recordedFolder(identity, row.configPath) : undefined;
  if (folder !== undefined && !identity.includes('@')) {
    const notes = new Notes();
    const realFolder = realOr(folder);
    const root = rootsOf(datastores, notes).find((r) => isInside(realFolder, r.real));
    if (root && basename(realFolder) !== '' && !basename(realFolder).startsWith('.')) {
      const hit = scan(cat, datastores, notes, { root, folder: realFolder }).found.find(
        (f) => f.source.identity === identity,
      );
      if (hit && (row?.configPath ?? null) === (hit.source.configPath ?? null)) return hit.source;
    }
  }
  return discover(cat, datastores, Date.now(), log).vms.find((v) => v.identity === identity)?.source;
}
