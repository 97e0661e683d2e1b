/**
 * How the patcher rewrites a path held in a configuration value: a restored
 * disk's file gets its new name (it sits next to the configuration), and a
 * datastore path is mapped through the datastore map. VMware writes datastore
 * paths two ways, "/vmfs/volumes/ds1/vm/disk.vmdk" and "[ds1] vm/disk.vmdk";
 * libvirt writes plain absolute paths.
 */
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { DatastoreMapping, DiskRename } from './types.js';

const VMFS_ROOT = '/vmfs/volumes/';
const BRACKET_RE = /^\[([^\]]*)\]\s*(.*)$/s;

/** The last component of a path written on any host ("C:\\vms\\a.vmdk", "[ds1] vm/a.vmdk", "a.vmdk"). */
export function baseName(v: string): string {
  const parts = v.split(/[\\/]/);
  return (parts[parts.length - 1] ?? '').replace(BRACKET_RE, '$2');
}

/** True when a value looks like a path on a datastore (not a bare file name). */
export function isDatastorePath(v: string): boolean {
  return v.startsWith(VMFS_ROOT) || BRACKET_RE.test(v);
}

function trimSlash(p: string): string {
  return p.length > 1 ? p.replace(/\/+$/, '') : p;
}

/** Maps a path through the first datastore rule that matches it; undefined when none does. */
export function mapDatastore(v: string, map: readonly DatastoreMapping[]): string | undefined {
  for (const { from, to } of map) {
    if (from.startsWith('/')) {
      const f = trimSlash(from);
      if (v === f) return trimSlash(to);
      if (v.startsWith(`${f}/`)) return `${trimSlash(to)}${v.slice(f.length)}`;
      continue;
    }
    const prefix = `${VMFS_ROOT}${from}/`;
    if (v.startsWith(prefix)) {
      const rest = v.slice(prefix.length);
      return to.startsWith('/') ? `${trimSlash(to)}/${rest}` : `${VMFS_ROOT}${to}/${rest}`;
    }
    const m = BRACKET_RE.exec(v);
    if (m && m[1] === from) {
      const rest = m[2] ?? '';
      return to.startsWith('/') ? `${trimSlash(to)}/${rest}` : `[${to}] ${rest}`;
    }
  }
  return undefined;
}

/** What became of a file a configuration names. */
export type FileFate =
  /** A restored disk file: its name in the folder now. */
  | { kind: 'restored'; name: string }
  /** A file in the folder that was not renamed. */
  | { kind: 'present'; name: string }
  /** Not in the restored folder. */
  | { kind: 'missing' };

export class PathContext {
  private readonly renames = new Map<string, string>();
  private readonly newNames = new Set<string>();

  constructor(
    readonly folder: string,
    readonly targetFolder: string,
    diskFiles: readonly DiskRename[],
    readonly datastoreMap: readonly DatastoreMapping[],
  ) {
    for (const d of diskFiles) {
      this.renames.set(baseName(d.old), baseName(d.new));
      this.newNames.add(baseName(d.new));
    }
  }

  /**
   * Where a named file is now. A name that is some restored disk's new name
   * but not its old one is a different file now (the flattened disk took the
   * base disk's name): the reference is missing, not present.
   */
  fate(value: string): FileFate {
    const base = baseName(value);
    const renamed = this.renames.get(base);
    if (renamed !== undefined) return { kind: 'restored', name: renamed };
    // a regular file, not '..' or a folder or a link out of the folder
    const here = base === '' ? undefined : lstatSync(join(this.folder, base), { throwIfNoEntry: false });
    if (here?.isFile() && !this.newNames.has(base)) return { kind: 'present', name: base };
    return { kind: 'missing' };
  }

  /** The file's absolute path where the hypervisor will see it. */
  target(name: string): string {
    return join(this.targetFolder, name);
  }
}
