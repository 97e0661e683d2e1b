/**
 * A VMware snapshot dictionary (.vmsd): which snapshots a VM has, which one
 * is current, and which disk file each snapshot froze for each slot.
 *
 *     snapshot.current = "2"
 *     snapshot0.uid = "1"
 *     snapshot0.displayName = "before update"
 *     snapshot0.filename = "win01-Snapshot1.vmsn"
 *     snapshot0.createTimeHigh = "398204"          (µs since 1970, high and low 32 bits)
 *     snapshot0.createTimeLow = "-1245446528"
 *     snapshot0.disk0.fileName = "win01.vmdk"
 *     snapshot0.disk0.node = "scsi0:0"
 *
 * Kept small: the backup records it, and a whole-VM restore (issue 7) will
 * patch it. Counts in the file (numSnapshots, numDisks) are not trusted: the
 * entries present are what is listed. Pure: it takes the text.
 */
import { errorsFor } from '../../parsers/errors.js';
import { parseDictionary } from './dictionary.js';

/** Most snapshots we list (VMware supports 496 per VM, recommends fewer than 32). */
export const MAX_SNAPSHOTS = 1024;
/** Most disk entries per snapshot. */
export const MAX_SNAPSHOT_DISKS = 1024;

const SNAPSHOT_KEY_RE = /^snapshot(\d{1,4})\.(uid|parent|displayname|filename|createtimehigh|createtimelow)$/;
const DISK_KEY_RE = /^snapshot(\d{1,4})\.disk(\d{1,4})\.(filename|node)$/;
const TWO_32 = 2 ** 32;
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

export interface VmsdSnapshotDisk {
  /** The slot, 'scsi0:0'. */
  node?: string;
  /** The disk file this snapshot froze, relative to the VM's folder or absolute. */
  fileName?: string;
}

export interface VmsdSnapshot {
  /** N in `snapshotN.*`. */
  index: number;
  uid?: string;
  /** uid of the parent snapshot. */
  parent?: string;
  displayName?: string;
  /** The .vmsn (memory/config state) file. */
  filename?: string;
  /** ISO time the snapshot was taken, when the file says it. */
  createTime?: string;
  disks: VmsdSnapshotDisk[];
}

export interface VmsdInfo {
  path: string;
  /** uid of the snapshot the VM runs from. */
  current?: string;
  snapshots: VmsdSnapshot[];
  warnings: string[];
}

function int32(v: string | undefined): number | undefined {
  if (v === undefined || !/^-?\d{1,10}$/.test(v.trim())) return undefined;
  const n = Number(v);
  return n >= INT32_MIN && n <= INT32_MAX ? n : undefined;
}

/** VMware splits µs-since-epoch into a signed high word and a low word written as a signed int. */
function createTime(high: string | undefined, low: string | undefined): string | undefined {
  const h = int32(high);
  const l = int32(low);
  if (h === undefined || l === undefined) return undefined;
  const micros = h * TWO_32 + (l >>> 0);
  const d = new Date(micros / 1000);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

export function parseVmsd(text: string, path: string): VmsdInfo {
  const err = errorsFor({ image: path, layer: 'file' });
  const { entries, warnings } = parseDictionary(text, err, '.vmsd');
  const byIndex = new Map<number, { fields: Record<string, string>; disks: Map<number, VmsdSnapshotDisk> }>();
  const slot = (n: number, offset: number) => {
    let s = byIndex.get(n);
    if (!s) {
      if (byIndex.size >= MAX_SNAPSHOTS) {
        throw err.limit('VMSD_TOO_MANY_SNAPSHOTS', `more than ${MAX_SNAPSHOTS} snapshots`, {
          offset,
          cap: MAX_SNAPSHOTS,
        });
      }
      s = { fields: Object.create(null) as Record<string, string>, disks: new Map() };
      byIndex.set(n, s);
    }
    return s;
  };
  for (const [key, entry] of entries) {
    const sm = SNAPSHOT_KEY_RE.exec(key);
    if (sm) {
      slot(Number(sm[1]), entry.offset).fields[sm[2] ?? ''] = entry.value;
      continue;
    }
    const dm = DISK_KEY_RE.exec(key);
    if (!dm) continue;
    const s = slot(Number(dm[1]), entry.offset);
    const m = Number(dm[2]);
    let d = s.disks.get(m);
    if (!d) {
      if (s.disks.size >= MAX_SNAPSHOT_DISKS) {
        throw err.limit('VMSD_TOO_MANY_DISKS', `snapshot ${dm[1]} lists more than ${MAX_SNAPSHOT_DISKS} disks`, {
          offset: entry.offset,
          cap: MAX_SNAPSHOT_DISKS,
        });
      }
      d = {};
      s.disks.set(m, d);
    }
    if (dm[3] === 'node') d.node = entry.value;
    else d.fileName = entry.value;
  }

  const snapshots: VmsdSnapshot[] = [];
  for (const index of [...byIndex.keys()].sort((a, b) => a - b)) {
    const { fields, disks } = byIndex.get(index) ?? { fields: {}, disks: new Map<number, VmsdSnapshotDisk>() };
    const snap: VmsdSnapshot = {
      index,
      disks: [...disks.entries()].sort((a, b) => a[0] - b[0]).map(([, d]) => d),
    };
    if (fields.uid !== undefined) snap.uid = fields.uid;
    if (fields.parent !== undefined) snap.parent = fields.parent;
    if (fields.displayname !== undefined) snap.displayName = fields.displayname;
    if (fields.filename !== undefined) snap.filename = fields.filename;
    const t = createTime(fields.createtimehigh, fields.createtimelow);
    if (t !== undefined) snap.createTime = t;
    snapshots.push(snap);
  }
  const info: VmsdInfo = { path, snapshots, warnings: [] };
  const current = entries.get('snapshot.current')?.value;
  if (current !== undefined) {
    info.current = current;
    if (!snapshots.some((s) => s.uid === current)) warnings.add(`snapshot.current = "${current}" names no snapshot`);
  }
  info.warnings = warnings.done();
  return info;
}
