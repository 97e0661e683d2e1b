/**
 * A VMware virtual machine's configuration (.vmx): its names, identities and
 * the disks attached to it. Pure: it takes the text; resolve.ts reads files.
 *
 * Disks live on four buses, each device keyed `<bus><controller>:<unit>.*`:
 *
 *     scsi0.present = "TRUE"
 *     scsi0:0.present = "TRUE"
 *     scsi0:0.fileName = "win01-000001.vmdk"     (the current disk: a snapshot's delta when one exists)
 *     scsi0:0.mode = "independent-persistent"    (optional)
 *     sata0:1.deviceType = "cdrom-image"         (a CD-ROM: not a disk)
 *
 * Semantics follow VMware as libvirt's VMX reader (src/vmx/vmx.c) models them:
 * a device without `present = "TRUE"` does not exist; a SCSI, SATA or NVMe
 * controller without `present = "TRUE"` takes its devices with it (IDE has
 * no controller entry: it is part of the chipset); CD-ROM device types,
 * `.iso` files and "emptyBackingString" are not disks.
 */
import { errorsFor } from '../../parsers/errors.js';
import { type DictionaryEntry, parseBoolean, parseDictionary, type Warnings } from './dictionary.js';

export type DiskBus = 'scsi' | 'sata' | 'nvme' | 'ide';
/** The order disks are numbered in (d0, d1 …): the buses VMware boots from most often first. */
export const BUS_ORDER: readonly DiskBus[] = ['scsi', 'sata', 'nvme', 'ide'];
/** Most device slots one configuration may declare (vSphere allows 4×64 SCSI + 4×30 SATA + 4×64 NVMe + 4 IDE). */
export const MAX_DEVICE_SLOTS = 1024;

/** Device types that are CD-ROM drives, never disks. */
const CDROM_TYPES = new Set(['cdrom-image', 'atapi-cdrom', 'cdrom-raw']);
/** A host device handed through to the guest: there is no image file to read. */
const PASSTHROUGH_TYPES = new Set(['scsi-passthru']);
/** The fileName VMware writes for an empty CD-ROM drive. */
const EMPTY_BACKING = 'emptybackingstring';

const DEVICE_KEY_RE = /^(scsi|sata|nvme|ide)(\d{1,3}):(\d{1,3})\.(present|filename|devicetype|mode)$/;

export interface VmxDisk {
  /** 'scsi0:0', 'sata1:3', 'nvme0:0', 'ide1:0'. */
  slot: string;
  bus: DiskBus;
  controller: number;
  unit: number;
  /** As written: relative to the .vmx's folder, or absolute (a datastore path on ESXi). */
  fileName: string;
  deviceType?: string;
  /** persistent, independent-persistent, independent-nonpersistent, nonpersistent, undoable … */
  mode?: string;
}

export interface VmxSkipped {
  slot: string;
  reason: string;
}

export interface VmxConfig {
  path: string;
  displayName?: string;
  /** SMBIOS UUID as 8-4-4-4-12 lower-case hex, normalised from VMware's "56 4d … -… " form. */
  uuidBios?: string;
  uuidLocation?: string;
  /** vCenter's instance UUID, normalised the same way. */
  vcUuid?: string;
  guestOS?: string;
  /** Disks, sorted by slot (bus in BUS_ORDER, then controller, then unit, numerically). */
  disks: VmxDisk[];
  /** Declared devices that are not backed up, and why (CD-ROM, not present …). */
  skipped: VmxSkipped[];
  warnings: string[];
  /** Every entry by lower-case key, for later use (restore patches, reports). */
  entries: ReadonlyMap<string, DictionaryEntry>;
}

interface SlotFields {
  bus: DiskBus;
  controller: number;
  unit: number;
  present?: string;
  filename?: string;
  devicetype?: string;
  mode?: string;
}

/** VMware writes UUIDs as 16 hex pairs with spaces and one dash; we keep 8-4-4-4-12. Absent or malformed: undefined. */
export function normaliseUuid(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const hex = v.replace(/[\s-]/g, '').toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex) || /^0+$/.test(hex)) return undefined;
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function compareSlots(
  a: { bus: DiskBus; controller: number; unit: number },
  b: { bus: DiskBus; controller: number; unit: number },
): number {
  return BUS_ORDER.indexOf(a.bus) - BUS_ORDER.indexOf(b.bus) || a.controller - b.controller || a.unit - b.unit;
}

function collectSlots(entries: Map<string, DictionaryEntry>, path: string): Map<string, SlotFields> {
  const slots = new Map<string, SlotFields>();
  for (const [key, entry] of entries) {
    const m = DEVICE_KEY_RE.exec(key);
    if (!m) continue;
    const bus = m[1] as DiskBus;
    const controller = Number(m[2]);
    const unit = Number(m[3]);
    const slot = `${bus}${controller}:${unit}`;
    let s = slots.get(slot);
    if (!s) {
      if (slots.size >= MAX_DEVICE_SLOTS) {
        throw errorsFor({ image: path, layer: 'file' }).limit(
          'VMX_TOO_MANY_DEVICES',
          `more than ${MAX_DEVICE_SLOTS} disk/CD-ROM slots`,
          { offset: entry.offset, cap: MAX_DEVICE_SLOTS },
        );
      }
      s = { bus, controller, unit };
      slots.set(slot, s);
    }
    s[m[4] as 'present' | 'filename' | 'devicetype' | 'mode'] = entry.value;
  }
  return slots;
}

/** Why a declared slot is not a disk to back up, or null when it is one. */
function skipReason(
  slot: string,
  s: SlotFields,
  entries: Map<string, DictionaryEntry>,
  warnings: Warnings,
): string | null {
  const present = parseBoolean(s.present);
  if (s.present !== undefined && present === undefined)
    warnings.add(`${slot}.present = "${s.present}" is not a boolean`);
  if (present !== true) return 'not present';
  if (s.bus !== 'ide') {
    const ctl = `${s.bus}${s.controller}`;
    const ctlPresent = entries.get(`${ctl}.present`)?.value;
    if (parseBoolean(ctlPresent) !== true) {
      if (ctlPresent === undefined) warnings.add(`${slot} is skipped: its controller ${ctl} is not declared present`);
      return `controller ${ctl} not present`;
    }
  }
  const type = s.devicetype?.toLowerCase();
  const file = s.filename?.trim();
  if ((type !== undefined && CDROM_TYPES.has(type)) || file?.toLowerCase().endsWith('.iso')) return 'CD-ROM';
  if (file?.toLowerCase() === EMPTY_BACKING) return 'CD-ROM';
  if (type !== undefined && PASSTHROUGH_TYPES.has(type)) return 'host device passthrough';
  if (file === undefined || file === '') {
    warnings.add(`${slot} is present but names no file`);
    return 'no fileName';
  }
  return null;
}

/** Parses a .vmx text. `path` only names the file in errors and warnings. */
export function parseVmx(text: string, path: string): VmxConfig {
  const err = errorsFor({ image: path, layer: 'file' });
  const { entries, warnings } = parseDictionary(text, err, '.vmx');
  const get = (k: string): string | undefined => entries.get(k)?.value;

  const disks: VmxDisk[] = [];
  const skipped: VmxSkipped[] = [];
  for (const [slot, s] of collectSlots(entries, path)) {
    const why = skipReason(slot, s, entries, warnings);
    if (why !== null) {
      skipped.push({ slot, reason: why });
      continue;
    }
    const disk: VmxDisk = { slot, bus: s.bus, controller: s.controller, unit: s.unit, fileName: s.filename ?? '' };
    if (s.devicetype !== undefined) disk.deviceType = s.devicetype;
    if (s.mode !== undefined) disk.mode = s.mode;
    disks.push(disk);
  }
  disks.sort(compareSlots);
  skipped.sort((a, b) => a.slot.localeCompare(b.slot));

  const cfg: VmxConfig = { path, disks, skipped, warnings: [], entries };
  const displayName = get('displayname')?.trim();
  if (displayName) cfg.displayName = displayName;
  const guestOS = get('guestos')?.trim();
  if (guestOS) cfg.guestOS = guestOS;
  for (const [key, field] of [
    ['uuid.bios', 'uuidBios'],
    ['uuid.location', 'uuidLocation'],
    ['vc.uuid', 'vcUuid'],
  ] as const) {
    const raw = get(key);
    const uuid = normaliseUuid(raw);
    if (uuid !== undefined) cfg[field] = uuid;
    else if (raw !== undefined) warnings.add(`${key} = "${raw}" is not a UUID; ignored`);
  }
  cfg.warnings = warnings.done();
  return cfg;
}
