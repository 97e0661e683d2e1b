/**
 * Patches a .vmsd (the snapshot tree) for the restored folder. A snapshot
 * whose disks did not come back (a restore rebuilds the current state of each
 * disk, flattened) cannot be reverted to: it is dropped, its children take
 * its parent, `snapshot.current` moves to the nearest snapshot that remains,
 * and the remaining snapshots are renumbered 0…n-1 as VMware reads them
 * (snapshot0 … snapshot{numSnapshots-1}). Disk and state file references of
 * the snapshots that remain follow their files' new names.
 */
import { basename } from 'node:path';
import { MAX_SNAPSHOTS } from '../../source/vmsd.js';
import { errorsFor } from '../../../parsers/errors.js';
import { type PlanContext, change } from './context.js';
import { DictText, type DictLine } from './dict-text.js';
import { baseName, mapDatastore } from './paths.js';
import type { PatchChange, PatchFilePlan } from './types.js';

const SNAP_KEY_RE = /^snapshot(\d{1,4})\.(.+)$/;
const DISK_FILE_RE = /^disk\d{1,4}\.filename$/;
const MRU_UID_RE = /^snapshot\.mru\d{1,4}\.uid$/;

interface Snap {
  index: number;
  lines: DictLine[];
  uid?: string;
  parent?: string;
  dropped: boolean;
}

export function planVmsd(path: string, bytes: Buffer, ctx: PlanContext): PatchFilePlan {
  const err = errorsFor({ image: path, layer: 'restore' });
  const text = new DictText(bytes, path);
  const file = basename(path);
  const changes: PatchChange[] = [];
  const set = (l: DictLine, old: string, value: string, why: string) => {
    if (old === value) return;
    text.setValue(l, value);
    change(changes, file, l.key, old, value, why);
  };

  const snaps = new Map<number, Snap>();
  for (const l of text.lines) {
    const m = SNAP_KEY_RE.exec(l.lower);
    if (!m) continue;
    const index = Number(m[1]);
    let s = snaps.get(index);
    if (!s) {
      if (snaps.size >= MAX_SNAPSHOTS) {
        throw err.limit('PATCH_TOO_MANY_SNAPSHOTS', `more than ${MAX_SNAPSHOTS} snapshots`, { cap: MAX_SNAPSHOTS });
      }
      s = { index, lines: [], dropped: false };
      snaps.set(index, s);
    }
    s.lines.push(l);
    if (m[2] === 'uid') s.uid = text.value(l);
    else if (m[2] === 'parent') s.parent = text.value(l);
  }

  // which snapshots lost a disk
  for (const s of snaps.values()) {
    for (const l of s.lines) {
      const field = SNAP_KEY_RE.exec(l.lower)?.[2] ?? '';
      if (!DISK_FILE_RE.test(field)) continue;
      const v = text.value(l);
      const fate = ctx.paths.fate(v);
      if (fate.kind === 'missing') {
        s.dropped = true;
        ctx.warnings.push(`${file}: snapshot${s.index} is dropped: its disk ${v} was not restored`);
      }
    }
  }
  const byUid = new Map<string, Snap>();
  for (const s of snaps.values()) if (s.uid !== undefined) byUid.set(s.uid, s);
  /** The nearest snapshot that remains, walking up from `uid` (bounded: a parent cycle in the file ends the walk). */
  const survivor = (uid: string | undefined): string | undefined => {
    for (let hops = 0; uid !== undefined && hops <= snaps.size; hops++) {
      const s = byUid.get(uid);
      if (!s) return undefined;
      if (!s.dropped) return uid;
      uid = s.parent;
    }
    return undefined;
  };

  const remaining = [...snaps.values()].filter((s) => !s.dropped).sort((a, b) => a.index - b.index);
  const newIndex = new Map(remaining.map((s, i) => [s.index, i]));
  for (const s of snaps.values()) {
    for (const l of s.lines) {
      const old = text.value(l);
      const field = SNAP_KEY_RE.exec(l.lower)?.[2] ?? '';
      if (s.dropped) {
        text.remove(l);
        change(changes, file, l.key, old, null, 'the snapshot is dropped: its disks were not restored');
        continue;
      }
      // a uid that names no snapshot at all is left as the file has it (not ours to repair)
      if (field === 'parent' && byUid.has(old) && survivor(old) === undefined) {
        text.remove(l);
        change(changes, file, l.key, old, null, 'its parent snapshot is dropped: it becomes a root');
        continue;
      }
      const to = newIndex.get(s.index) ?? s.index;
      if (to !== s.index) {
        const key = l.key.replace(/^(snapshot)\d+/i, `$1${to}`);
        text.setKey(l, key);
        change(changes, file, l.key, l.key, key, 'snapshots are renumbered after a dropped one');
      }
      if (field === 'parent') {
        set(l, old, survivor(old) ?? old, 'its parent snapshot is dropped: it hangs from the nearest one that remains');
      } else if (DISK_FILE_RE.test(field)) {
        const fate = ctx.paths.fate(old);
        if (fate.kind !== 'missing') set(l, old, fate.name, 'the restored disk, in the same folder');
      } else if (field === 'filename') {
        const renamed = ctx.fileRenames.get(baseName(old));
        if (renamed !== undefined) set(l, old, renamed, 'state file named after the VM');
        else if (ctx.paths.fate(old).kind === 'missing') {
          ctx.warnings.push(`${file}: snapshot${s.index}'s state file ${old} was not restored`);
        }
      } else {
        const mapped = mapDatastore(old, ctx.paths.datastoreMap);
        if (mapped !== undefined) set(l, old, mapped, 'datastore map');
      }
    }
  }

  for (const l of text.lines) {
    if (SNAP_KEY_RE.test(l.lower)) continue;
    const old = text.value(l);
    if (l.lower === 'snapshot.current') {
      if (!byUid.has(old)) continue;
      const cur = survivor(old);
      if (cur === undefined) {
        text.remove(l);
        change(changes, file, l.key, old, null, 'no snapshot remains: the VM runs from its disks alone');
      } else set(l, old, cur, 'the current snapshot is dropped: the nearest one that remains');
    } else if (l.lower === 'snapshot.numsnapshots') {
      set(l, old, String(remaining.length), 'snapshots were dropped');
    } else if (l.lower === 'snapshot.lastuid') {
      // new snapshots take lastUID+1: it must stay above every uid that remains
      const max = Math.max(0, ...remaining.map((s) => Number(s.uid)).filter(Number.isSafeInteger));
      if (!(Number(old) >= max)) set(l, old, String(max), 'below a uid in use: new snapshots would reuse it');
    } else if (MRU_UID_RE.test(l.lower)) {
      if (byUid.get(old)?.dropped) {
        text.remove(l);
        change(changes, file, l.key, old, null, 'names a dropped snapshot');
      }
    } else {
      const mapped = mapDatastore(old, ctx.paths.datastoreMap);
      if (mapped !== undefined) set(l, old, mapped, 'datastore map');
    }
  }
  const plan: PatchFilePlan = { kind: 'vmsd', path, changes, original: bytes };
  if (text.changed) plan.content = text.result();
  return plan;
}
