/**
 * The patch plan for a whole-VM restore (issue 7 §3): every change the patcher
 * would make to a restored VM's configuration files, computed without writing,
 * so that `--dry-run` can show it and applyPatch can write it atomically.
 */

export interface DatastoreMapping {
  /** A datastore name ("ds1") or an absolute folder ("/vmfs/volumes/ds1", "/var/lib/libvirt/images"). */
  from: string;
  to: string;
}

export interface DiskRename {
  /** The disk file's name in the backup (a base name; a path's base name is used). */
  old: string;
  /** Its name in the restored folder. */
  new: string;
}

export interface PatchOptions {
  /** The VM's new name (displayName, libvirt <name>, and the names of files named after the VM). */
  name?: string;
  datastoreMap: DatastoreMapping[];
  /** Keep the VM's identities (BIOS/location/vCenter UUIDs, ddb.uuid, libvirt uuid, MAC addresses). */
  keepIdentity?: boolean;
  /** How each restored disk file (descriptors and extents) was renamed. */
  diskFiles: DiskRename[];
  /** Where the hypervisor will see the restored folder (absolute); default the folder itself. */
  targetFolder?: string;
  /** Serialises concurrent patches of one backup (default: the folder's real path). */
  lockKey?: string;
}

export type PatchFileKind = 'vmx' | 'vmsd' | 'vmdk' | 'libvirt';

export interface PatchChange {
  /** Base name of the file as it is now. */
  file: string;
  /** The field as the file writes it ("scsi0:0.fileName", "CID", "domain/devices/disk[1]/source@file"). */
  field: string;
  /** null: the field is added (never: fields are not invented) — kept for symmetry with `new`. */
  old: string | null;
  /** null: the field (its whole line) is removed. */
  new: string | null;
  why: string;
}

/** Bytes written over a range of a file that stays where it is (an embedded VMDK descriptor). */
export interface InPlaceEdit {
  offset: number;
  /** Exactly the reserved length: the new text, NUL-padded. */
  bytes: Buffer;
  /** What the range holds now; applyPatch refuses to write when it changed since planning. */
  expect: Buffer;
}

export interface PatchFilePlan {
  kind: PatchFileKind;
  /** Absolute path of the file now. */
  path: string;
  /** Absolute path it is renamed to (a file named after the VM when the name changes). */
  renameTo?: string;
  changes: PatchChange[];
  /** The whole new content (text files); absent for in-place edits. */
  content?: Buffer;
  /** The content planned from; applyPatch refuses to write when the file changed since. */
  original?: Buffer;
  /** In-place edits (a descriptor embedded in a multi-GiB sparse extent is not copied). */
  inPlace?: InPlaceEdit;
  /** The new descriptor text of an in-place edit, for display. */
  text?: string;
}

/** A file that is only renamed (no content change): a snapshot state file named after the VM. */
export interface PatchRename {
  from: string;
  to: string;
  why: string;
}

export interface PatchPlan {
  folder: string;
  lockKey: string;
  /** Files whose content changes (and maybe their names). Only files with changes are listed. */
  files: PatchFilePlan[];
  /** Files renamed without a content change. */
  renames: PatchRename[];
  warnings: string[];
}
