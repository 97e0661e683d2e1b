/**
 * Whole-VM restore (issue 7 §2): every disk of a backup rebuilt into a
 * folder in the format asked for, the VM's configuration files (the backup's
 * `/config` volume) beside them, then the configuration patched for its new
 * place (agent/restore-vm/patch): the disks' new names, the datastore map,
 * new identities unless kept.
 *
 * Nothing is written outside the folder: every name is one safe component,
 * every file is created O_EXCL | O_NOFOLLOW (or replaced with --overwrite,
 * after checking them all before writing any). A failure removes what this
 * restore wrote, so the folder is left as it was found (except replaced files).
 */
import { lstatSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import type { BackupRow, Catalog } from '../../catalog/catalog.js';
import { errorsFor, isVdbakError } from '../../parsers/errors.js';
import type { Target } from '../../transport/targets/types.js';
import type { JobProgress } from '../daemon/types.js';
import { CONFIG_VOLUME } from '../backup/job.js';
import { restorePath } from '../restore/engine.js';
import { DirSink } from '../restore/dir-sink.js';
import { safeName } from '../restore/safe-name.js';
import type { RestoreReport } from '../restore/sink.js';
import { type DatastoreMapping, type DiskRename, formatPlan, patchFolder, planJson, planPatch } from './patch/index.js';
import { backupDiskIndexes, type DiskPlan, planDisk, rebuildDisk } from './rebuild.js';
import { openWriter } from './writers/open.js';
import { DEFAULT_ADAPTER, type DiskFormat, formatFileNames } from './writers/types.js';

export const DEFAULT_FORMAT: DiskFormat = 'vmdk-sparse';
/** VMware names a snapshot's delta disk `<base>-000001.vmdk`: a flattened restore drops the suffix. */
const SNAPSHOT_SUFFIX = /-\d{6}$/;
/** Progress is reported at most this often. */
const PROGRESS_EVERY_MS = 250;

export interface RestoreVmOptions {
  /** The folder the VM is restored into (created if missing). */
  to: string;
  /** The VM's new name: disk files are named after it, and the patcher renames the VM. */
  name?: string;
  datastoreMap?: DatastoreMapping[];
  format?: DiskFormat;
  keepIdentity?: boolean;
  overwrite?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: JobProgress) => void;
}

export interface PlannedDisk extends DiskPlan {
  /** Base name of the file the configuration names (descriptor for VMDK). */
  name: string;
  /** Every file written for this disk, absolute. */
  outputs: string[];
}

export interface RestoreVmPlan {
  backupId: number;
  vm: string;
  folder: string;
  format: DiskFormat;
  disks: PlannedDisk[];
  /** The configuration files restored beside the disks (base names as the backup has them). */
  config: { name: string; size: number }[];
  diskFiles: DiskRename[];
}

export interface RestoreVmResult extends RestoreVmPlan {
  /** success: every disk complete and patched; incomplete: written, but some disk lacks bytes (see each disk). */
  status: 'success' | 'incomplete';
  disks: (PlannedDisk & { written: number })[];
  configReport: RestoreReport | null;
  patch: { changes: number; written: string[]; renamed: { from: string; to: string }[]; warnings: string[] } | null;
  durationMs: number;
}

export interface DryRunResult extends RestoreVmPlan {
  status: 'dry-run';
  /** The patch plan computed on the configuration files (restored into a scratch folder, then removed). */
  patch: { text: string; json: unknown } | null;
}

function errs(what: string) {
  return errorsFor({ image: what, layer: 'restore' });
}

function diskStem(imagePath: string): string {
  const base = basename(imagePath);
  return base.slice(0, base.length - extname(base).length).replace(SNAPSHOT_SUFFIX, '') || 'disk';
}

/** The adapter a VMDK descriptor names, from the controller the disk hung on (`ide0:1`, `scsi0:0`). */
function adapterFor(slot: string): string {
  return slot.startsWith('ide') ? 'ide' : DEFAULT_ADAPTER;
}

function configVolume(cat: Catalog, backup: BackupRow) {
  return cat.backupVolumes(backup.id).find((v) => v.name === CONFIG_VOLUME && v.diskIndex < 0);
}

/** What a restore would write, checked: names, sizes, completeness, no overlaps. Writes nothing. */
export function planRestoreVm(cat: Catalog, backup: BackupRow, opts: RestoreVmOptions): RestoreVmPlan {
  const folder = resolve(opts.to);
  const format = opts.format ?? DEFAULT_FORMAT;
  if (opts.name !== undefined) {
    const s = safeName(opts.name);
    if (s.changed || opts.name.trim() === '') {
      throw errs(opts.name).unsupported(
        'RESTORE_VM_BAD_NAME',
        `'${opts.name}' cannot name files (${s.why.join(', ')})`,
        {
          field: 'name',
        },
      );
    }
  }
  const config = [];
  const cv = configVolume(cat, backup);
  if (cv) {
    for (const v of cat.walk(backup.id, cv.volumeId, '/')) {
      if (v.path !== '/' && v.type === 'file') config.push({ name: v.path.slice(1), size: v.size });
    }
  }
  const taken = new Set(config.map((c) => safeName(c.name).name));
  const disks: PlannedDisk[] = [];
  const diskFiles: DiskRename[] = [];
  for (const [i, diskIndex] of backupDiskIndexes(cat, backup).entries()) {
    const plan = planDisk(cat, backup, diskIndex);
    let stem = opts.name !== undefined ? (i === 0 ? opts.name : `${opts.name}_${i}`) : diskStem(plan.imagePath);
    stem = safeName(stem).name;
    let names = formatFileNames(format, stem);
    for (let n = 2; names.some((x) => taken.has(x)); n++) names = formatFileNames(format, `${stem}_${n}`);
    for (const x of names) taken.add(x);
    disks.push({ ...plan, name: names[0]!, outputs: names.map((x) => join(folder, x)) });
    diskFiles.push({ old: basename(plan.imagePath), new: names[0]! });
  }
  return { backupId: backup.id, vm: backup.vmName, folder, format, disks, config, diskFiles };
}

/** Every file the restore writes, refused up front when one exists and --overwrite was not given. */
function checkTargets(plan: RestoreVmPlan, overwrite: boolean): void {
  const paths = [
    ...plan.disks.flatMap((d) => d.outputs),
    ...plan.config.map((c) => join(plan.folder, safeName(c.name).name)),
  ];
  for (const p of paths) {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      continue;
    }
    if (!overwrite) throw errs(p).unsupported('RESTORE_VM_EXISTS', `${p} exists (use --overwrite)`, { field: 'to' });
    if (!st.isFile())
      throw errs(p).unsupported('RESTORE_VM_NOT_A_FILE', `${p} exists and is not a file`, { field: 'to' });
  }
}

async function restoreConfig(
  cat: Catalog,
  target: Target,
  backup: BackupRow,
  folder: string,
  overwrite: boolean,
): Promise<RestoreReport | null> {
  if (!configVolume(cat, backup)) return null;
  const sink = new DirSink(folder, { overwrite });
  const report = await restorePath(cat, target, backup, `/${CONFIG_VOLUME}`, sink);
  const failed = report.notes.find((n) => n.kind === 'failed' || n.kind === 'exists');
  if (failed) {
    throw errs(join(folder, failed.path)).io('RESTORE_VM_CONFIG', `configuration file not restored: ${failed.detail}`, {
      field: 'config',
    });
  }
  return report;
}

/** Shows what restoreVm would do, patch plan included; writes nothing in the folder. */
export async function dryRunRestoreVm(
  cat: Catalog,
  target: Target,
  backup: BackupRow,
  opts: RestoreVmOptions,
): Promise<DryRunResult> {
  const plan = planRestoreVm(cat, backup, opts);
  checkTargets(plan, opts.overwrite ?? false);
  let patch: DryRunResult['patch'] = null;
  if (plan.config.length > 0) {
    // the patcher plans from files: the configuration goes to a scratch folder outside FOLDER
    const scratch = mkdtempSync(join(tmpdir(), 'vdbak-restore-vm-plan-'));
    try {
      await restoreConfig(cat, target, backup, scratch, false);
      const p = planPatch(scratch, patchOptions(plan, opts));
      patch = { text: formatPlan(p), json: planJson(p) };
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }
  return { ...plan, status: 'dry-run', patch };
}

function patchOptions(plan: RestoreVmPlan, opts: RestoreVmOptions) {
  return {
    name: opts.name,
    datastoreMap: opts.datastoreMap ?? [],
    keepIdentity: opts.keepIdentity ?? false,
    diskFiles: plan.diskFiles,
    // a dry run plans from a scratch folder: paths in the plan must still name FOLDER
    targetFolder: plan.folder,
    lockKey: `backup:${plan.backupId}`,
  };
}

/** Removes `folder` and its parents up to `top` (those this restore made), while they are empty. */
async function removeEmptyDirs(folder: string, top: string): Promise<void> {
  for (let dir = folder; ; dir = dirname(dir)) {
    try {
      await rmdir(dir);
    } catch {
      return; // not empty (or gone): stop
    }
    if (dir === resolve(top) || dirname(dir) === dir) return;
  }
}

/**
 * Restores a whole VM. Throws a typed error (naming the file and, where it
 * applies, the field) when it fails; what it wrote is removed.
 */
export async function restoreVm(
  cat: Catalog,
  target: Target,
  backup: BackupRow,
  opts: RestoreVmOptions,
): Promise<RestoreVmResult> {
  const t0 = Date.now();
  const overwrite = opts.overwrite ?? false;
  const plan = planRestoreVm(cat, backup, opts);
  checkTargets(plan, overwrite);
  // the first folder mkdir made (undefined: the folder was there): removed again on failure if still empty
  let madeFolder: string | undefined;
  try {
    madeFolder = mkdirSync(plan.folder, { recursive: true });
  } catch (e) {
    throw errs(plan.folder).io('RESTORE_VM_FOLDER', `cannot create: ${(e as Error).message}`, { field: 'to' });
  }
  const created: string[] = [];
  const total = plan.disks.reduce((a, d) => a + d.bytes, 0);
  let before = 0;
  let lastProgress = 0;
  const progress = (phase: string, bytesDone: number, current?: string, force = false) => {
    const now = Date.now();
    if (!opts.onProgress || (!force && now - lastProgress < PROGRESS_EVERY_MS)) return;
    lastProgress = now;
    opts.onProgress({ phase, bytesDone, bytesTotal: total, current, updatedMs: now });
  };
  try {
    progress('configuration files', 0, undefined, true);
    const configReport = await restoreConfig(cat, target, backup, plan.folder, overwrite);
    for (const c of plan.config) created.push(join(plan.folder, safeName(c.name).name));
    const disks: RestoreVmResult['disks'] = [];
    for (const d of plan.disks) {
      const writer = await openWriter(plan.format, d.outputs[0]!, d.size, {
        overwrite,
        adapterType: adapterFor(d.slot),
      });
      created.push(...writer.files);
      try {
        const report = await rebuildDisk(cat, target, backup, d.diskIndex, writer, opts.signal, (p) =>
          progress(`disk ${d.diskIndex}`, before + p.bytesDone, `${d.name}: ${p.current}`),
        );
        disks.push({ ...d, ...report, name: d.name, outputs: d.outputs });
      } catch (e) {
        await writer.abort();
        throw e;
      }
      before += d.bytes;
    }
    let patch: RestoreVmResult['patch'] = null;
    if (plan.config.length > 0) {
      progress('patching', before, undefined, true);
      const { plan: p, result } = await patchFolder(plan.folder, patchOptions(plan, opts));
      patch = {
        changes: p.files.reduce((a, f) => a + f.changes.length, 0),
        written: result.written,
        renamed: result.renamed,
        warnings: p.warnings,
      };
    }
    progress('done', before, undefined, true);
    return {
      ...plan,
      status: disks.every((d) => d.complete) ? 'success' : 'incomplete',
      disks,
      configReport,
      patch,
      durationMs: Date.now() - t0,
    };
  } catch (e) {
    for (const p of created) await rm(p, { force: true }).catch(() => undefined);
    if (madeFolder !== undefined) await removeEmptyDirs(plan.folder, madeFolder);
    if (isVdbakError(e)) throw e;
    throw errs(plan.folder).io('RESTORE_VM_FAILED', e instanceof Error ? e.message : String(e));
  }
}
