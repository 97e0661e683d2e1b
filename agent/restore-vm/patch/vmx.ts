/**
 * Patches a .vmx for where the VM comes back: its name, its identities, its
 * disks' file names, datastore paths, generated MAC addresses, and the
 * runtime and state files that do not come back with it.
 */
import { basename } from 'node:path';
import { parseBoolean } from '../../source/dictionary.js';
import { type PlanContext, change } from './context.js';
import { DictText, type DictLine } from './dict-text.js';
import { baseName, isDatastorePath, mapDatastore } from './paths.js';
import { newVcUuid, newVmwareBiosUuid } from './ids.js';
import type { PatchChange, PatchFilePlan } from './types.js';

const DISK_FILE_RE = /^(scsi|sata|nvme|ide)(\d{1,3}):(\d{1,3})\.filename$/;
const GENERATED_MAC_RE = /^ethernet\d{1,3}\.generatedaddress(offset)?$/;
/** Device types and file names of CD-ROM drives: their fileName is an ISO or a host device, not a restored disk. */
const CDROM_TYPES = new Set(['cdrom-image', 'atapi-cdrom', 'cdrom-raw']);
/** Values VMware derives again when the VM powers on; stale paths into the old datastore otherwise. */
const DERIVED_KEYS = new Set(['sched.swap.derivedname']);
const VM_STATE_KEY = 'checkpoint.vmstate';

function isCdrom(text: DictText, m: RegExpExecArray, value: string): boolean {
  const type = text.get(`${m[1]}${m[2]}:${m[3]}.devicetype`)?.toLowerCase();
  const v = value.trim().toLowerCase();
  return (type !== undefined && CDROM_TYPES.has(type)) || v.endsWith('.iso') || v === 'emptybackingstring';
}

export function planVmx(path: string, bytes: Buffer, ctx: PlanContext): PatchFilePlan {
  const text = new DictText(bytes, path);
  const changes: PatchChange[] = [];
  const file = basename(path);
  const { opts, paths } = ctx;
  const set = (l: DictLine, old: string, value: string, why: string) => {
    if (old === value) return;
    text.setValue(l, value);
    change(changes, file, l.key, old, value, why);
  };
  const drop = (l: DictLine, old: string, why: string) => {
    text.remove(l);
    change(changes, file, l.key, old, null, why);
  };

  // one new value per old value: a uuid.location equal to uuid.bios (a VM never moved) stays equal to it
  const newIds = new Map<string, string>();
  const identity = (l: DictLine, old: string): string => {
    const key = old.replace(/[\s-]/g, '').toLowerCase();
    let v = newIds.get(`${l.lower === 'vc.uuid' ? 'vc' : 'bios'}:${key}`);
    if (v === undefined) {
      v = l.lower === 'vc.uuid' ? newVcUuid() : newVmwareBiosUuid();
      newIds.set(`${l.lower === 'vc.uuid' ? 'vc' : 'bios'}:${key}`, v);
    }
    return v;
  };

  for (const l of text.lines) {
    const old = text.value(l);
    const disk = DISK_FILE_RE.exec(l.lower);
    if (l.lower === 'displayname') {
      if (opts.name !== undefined) set(l, old, opts.name, 'the VM is restored under a new name');
    } else if (l.lower === 'uuid.bios' || l.lower === 'uuid.location' || l.lower === 'vc.uuid') {
      if (!opts.keepIdentity)
        set(l, old, identity(l, old), 'a restored copy gets its own identity (keep it with --keep-identity)');
    } else if (GENERATED_MAC_RE.test(l.lower)) {
      if (!opts.keepIdentity) drop(l, old, 'VMware generates a new address for a VM with a new identity');
    } else if (DERIVED_KEYS.has(l.lower)) {
      drop(l, old, 'VMware derives it again at power-on; the old one points into the source datastore');
    } else if (disk && !isCdrom(text, disk, old)) {
      const fate = paths.fate(old);
      if (fate.kind !== 'missing') {
        set(l, old, fate.name, 'the restored disk, next to the .vmx');
        continue;
      }
      // a device that is not present was not backed up: only its path is mapped, without a warning
      if (parseBoolean(text.get(`${disk[1]}${disk[2]}:${disk[3]}.present`)) === true) {
        ctx.warnings.push(`${file}: ${l.key} names ${old}, which was not restored`);
      }
      const mapped = mapDatastore(old, paths.datastoreMap);
      if (mapped !== undefined) set(l, old, mapped, 'datastore map');
    } else if (l.lower === VM_STATE_KEY) {
      if (old.trim() === '') continue;
      const fate = paths.fate(old);
      const renamed = ctx.fileRenames.get(baseName(old));
      if (fate.kind === 'missing') set(l, old, '', 'the suspended state file was not restored: the VM boots afresh');
      else if (renamed !== undefined) set(l, old, renamed, 'state file named after the VM');
    } else {
      const base = baseName(old);
      const renamed = ctx.fileRenames.get(base);
      const v = renamed === undefined ? old : old.slice(0, old.length - base.length) + renamed;
      const mapped = isDatastorePath(v) || v.startsWith('/') ? mapDatastore(v, paths.datastoreMap) : undefined;
      const why = [renamed !== undefined ? 'file named after the VM' : '', mapped !== undefined ? 'datastore map' : '']
        .filter(Boolean)
        .join('; ');
      set(l, old, mapped ?? v, why);
    }
  }
  const plan: PatchFilePlan = { kind: 'vmx', path, changes, original: bytes };
  if (text.changed) plan.content = text.result();
  return plan;
}
