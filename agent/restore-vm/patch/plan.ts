/**
 * planPatch: every change a whole-VM restore makes to the configuration files
 * in its folder, computed without writing anything (issue 7 §3). The plan
 * holds each file's new content (or, for a descriptor embedded in a sparse
 * disk, the bytes of its reserved sectors), so that applyPatch only writes.
 */
import { lstatSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, extname, isAbsolute, join, resolve } from 'node:path';
import { errorsFor } from '../../../parsers/errors.js';
import { type PlanContext, fileBaseFor } from './context.js';
import { isDomainXml, planLibvirt } from './libvirt.js';
import { PathContext } from './paths.js';
import { planVmdks, readVmdkDescriptor, type VmdkDescriptorFile } from './vmdk.js';
import { planVmsd } from './vmsd.js';
import { planVmx } from './vmx.js';
import type { PatchFilePlan, PatchOptions, PatchPlan, PatchRename } from './types.js';

/** Most entries a restored VM folder may hold before we refuse to scan it. */
export const MAX_FOLDER_FILES = 10_000;
/** Largest .vmx/.vmsd/domain XML we patch (the readers cap text at 1 MiB of characters). */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
/** Most datastore mappings and disk renames one request may carry. */
export const MAX_MAPPINGS = 1024;

/** Configuration files named `<vm>.<ext>`: renamed with the VM. */
const NAMED_CONFIG_EXTS = ['.vmx', '.vmsd', '.vmxf', '.nvram'];
/** State files named `<vm>-<something>.<ext>` (snapshots, suspend, memory): renamed with the VM when present. */
const NAMED_STATE_EXTS = new Set(['.vmsn', '.vmss', '.vmem']);

function validate(folder: string, opts: PatchOptions): void {
  const err = errorsFor({ image: folder, layer: 'restore' });
  const bad = (field: string, msg: string) => err.corrupt('PATCH_FIELD', `${field}: ${msg}`, { field });
  if (opts.datastoreMap.length > MAX_MAPPINGS || opts.diskFiles.length > MAX_MAPPINGS) {
    throw err.limit('PATCH_TOO_MANY_MAPPINGS', `more than ${MAX_MAPPINGS} datastore mappings or disk renames`, {
      cap: MAX_MAPPINGS,
    });
  }
  for (const m of opts.datastoreMap) {
    if (m.from.trim() === '' || m.to.trim() === '') throw bad('datastoreMap', `empty side in ${m.from}=${m.to}`);
  }
  for (const d of opts.diskFiles) {
    if (d.old.trim() === '' || d.new.trim() === '') throw bad('diskFiles', `empty name in ${d.old} → ${d.new}`);
    if (/[\\/]/.test(d.new)) throw bad('diskFiles', `${d.new} is not a file name in the folder`);
  }
  if (opts.targetFolder !== undefined && !isAbsolute(opts.targetFolder)) {
    throw bad('targetFolder', `${opts.targetFolder} is not absolute`);
  }
  if (opts.name !== undefined) fileBaseFor(opts.name, folder);
}

function listFiles(folder: string): string[] {
  const err = errorsFor({ image: folder, layer: 'restore' });
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch (e) {
    throw err.io('PATCH_FOLDER', `cannot list the folder: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  if (names.length > MAX_FOLDER_FILES) {
    throw err.limit('PATCH_FOLDER_TOO_LARGE', `${names.length} entries`, { cap: MAX_FOLDER_FILES });
  }
  // our own lock, journal and temporary files are not the VM's; a symlink is not followed (a patch
  // writes in place into disks, and must never write through a link to a file outside the folder)
  return names
    .filter((n) => !n.startsWith('.') && !/\.tmp-\d+$/.test(n))
    .filter((n) => lstatSync(join(folder, n), { throwIfNoEntry: false })?.isFile() === true)
    .sort();
}

function readConfig(path: string): Buffer {
  const err = errorsFor({ image: path, layer: 'restore' });
  const size = statSync(path).size;
  if (size > MAX_CONFIG_BYTES) {
    throw err.limit('PATCH_FILE_TOO_LARGE', `configuration file of ${size} bytes`, { cap: MAX_CONFIG_BYTES });
  }
  return readFileSync(path);
}

/** Files named after the VM and what they are called after the rename (base names). */
function namedFileRenames(folder: string, files: string[], vmx: string | undefined, name: string | undefined) {
  const renames = new Map<string, string>();
  if (vmx === undefined || name === undefined) return renames;
  const oldBase = basename(vmx, extname(vmx));
  const newBase = fileBaseFor(name, folder);
  if (oldBase === newBase) return renames;
  for (const ext of NAMED_CONFIG_EXTS) renames.set(`${oldBase}${ext}`, `${newBase}${ext}`);
  for (const f of files) {
    const ext = extname(f);
    if (f.toLowerCase() === `${oldBase}${ext}`.toLowerCase() && NAMED_CONFIG_EXTS.includes(ext.toLowerCase())) {
      renames.set(f, `${newBase}${ext}`);
    } else if (f.startsWith(`${oldBase}-`) && NAMED_STATE_EXTS.has(ext.toLowerCase())) {
      renames.set(f, `${newBase}${f.slice(oldBase.length)}`);
    }
  }
  return renames;
}

export function planPatch(folderArg: string, opts: PatchOptions): PatchPlan {
  const folder = resolve(folderArg);
  validate(folder, opts);
  const err = errorsFor({ image: folder, layer: 'restore' });
  const files = listFiles(folder);
  const byExt = (ext: string) => files.filter((f) => extname(f).toLowerCase() === ext);
  const vmxs = byExt('.vmx');
  if (vmxs.length > 1) {
    throw err.unsupported(
      'PATCH_MANY_VMX',
      `the folder holds ${vmxs.length} .vmx files (${vmxs.join(', ')}): one VM per folder`,
    );
  }
  const fileRenames = namedFileRenames(folder, files, vmxs[0], opts.name);
  const ctx: PlanContext = {
    opts,
    paths: new PathContext(folder, opts.targetFolder ?? folder, opts.diskFiles, opts.datastoreMap),
    fileRenames,
    warnings: [],
  };

  const plans: PatchFilePlan[] = [];
  for (const f of vmxs) plans.push(planVmx(join(folder, f), readConfig(join(folder, f)), ctx));
  for (const f of byExt('.vmsd')) plans.push(planVmsd(join(folder, f), readConfig(join(folder, f)), ctx));
  const disks: VmdkDescriptorFile[] = [];
  for (const f of byExt('.vmdk')) {
    const d = readVmdkDescriptor(join(folder, f));
    if (d) disks.push(d);
  }
  plans.push(...planVmdks(disks, ctx));
  for (const f of byExt('.xml')) {
    const bytes = readConfig(join(folder, f));
    if (isDomainXml(bytes)) plans.push(planLibvirt(join(folder, f), bytes, ctx));
  }

  const renames: PatchRename[] = [];
  const planned = new Set(plans.map((p) => basename(p.path)));
  for (const p of plans) {
    const to = fileRenames.get(basename(p.path));
    if (to !== undefined) p.renameTo = join(folder, to);
  }
  for (const f of files) {
    const to = fileRenames.get(f);
    if (to !== undefined && !planned.has(f))
      renames.push({ from: join(folder, f), to: join(folder, to), why: 'named after the VM' });
  }
  const leaving = new Set([
    ...plans.filter((p) => p.renameTo).map((p) => basename(p.path)),
    ...renames.map((r) => basename(r.from)),
  ]);
  for (const to of [...plans.flatMap((p) => (p.renameTo ? [p.renameTo] : [])), ...renames.map((r) => r.to)]) {
    if (files.includes(basename(to)) && !leaving.has(basename(to))) {
      throw err.corrupt('PATCH_RENAME_EXISTS', `${basename(to)} already exists in the folder`, { field: 'name' });
    }
  }
  return {
    folder,
    lockKey: opts.lockKey ?? realpathSync(folder),
    files: plans.filter((p) => p.changes.length > 0 || p.renameTo !== undefined),
    renames,
    warnings: ctx.warnings,
  };
}
