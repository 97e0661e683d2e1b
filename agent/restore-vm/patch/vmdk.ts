/**
 * Patches the VMDK descriptors of the restored disks: extent file names,
 * content ids (a fresh CID for each disk, and each child's parentCID set to
 * its parent's new CID, which qemu and VMware check when they open a chain),
 * parentFileNameHint, ddb.uuid and ddb.longContentID.
 *
 * A descriptor is a text file of its own (monolithicFlat, twoGbMaxExtent*,
 * vmfs) or is embedded in a hosted sparse extent (monolithicSparse,
 * streamOptimized) at the header's descriptorOffset, in descriptorSize
 * reserved sectors: that one is rewritten in place, NUL-padded, and only if
 * the new text fits.
 */
import { basename } from 'node:path';
import { u32le } from '../../../parsers/bytes.js';
import { COWD_MAGIC } from '../../../parsers/disk/vmdk/cowd.js';
import {
  CID_NONE,
  type Descriptor,
  looksLikeDescriptor,
  MAX_DESCRIPTOR_BYTES,
  parseDescriptor,
} from '../../../parsers/disk/vmdk/descriptor.js';
import { readEmbeddedDescriptor, readSparseHeader, SPARSE_MAGIC } from '../../../parsers/disk/vmdk/sparse.js';
import { FileSource } from '../../../parsers/disk/file.js';
import { errorsFor } from '../../../parsers/errors.js';
import { type PlanContext, change } from './context.js';
import { DictText, type DictLine } from './dict-text.js';
import { cidText, newCid, newDdbUuid, newLongContentId } from './ids.js';
import type { PatchChange, PatchFilePlan } from './types.js';

/** Bytes read to tell a text descriptor from a flat extent's data. */
const PROBE_BYTES = 4096;

export interface VmdkDescriptorFile {
  path: string;
  /** The descriptor's bytes (embedded: up to the first NUL). */
  bytes: Buffer;
  parsed: Descriptor;
  /**
   * An embedded descriptor: where it sits, the whole reserved range as it is
   * now, and whether its one extent is the file itself (a sparse file of
   * capacity 0 only carries a descriptor naming other extents).
   */
  embedded?: { at: number; reserved: Buffer; selfExtent: boolean };
}

/** Reads the descriptor of a .vmdk, or null for a file that has none (a flat or COWD extent's data). */
export function readVmdkDescriptor(path: string): VmdkDescriptorFile | null {
  const err = errorsFor({ image: path, layer: 'vmdk' });
  const file = new FileSource(path, 'vmdk');
  try {
    const head = file.read(0, Math.min(PROBE_BYTES, file.size), 'descriptor probe');
    const magic = head.length >= 4 ? u32le(head, 0) : -1;
    if (magic === SPARSE_MAGIC) {
      const { header } = readSparseHeader(file);
      const embedded = readEmbeddedDescriptor(file, header);
      if (!embedded) return null;
      const nul = embedded.bytes.indexOf(0);
      const bytes = nul >= 0 ? embedded.bytes.subarray(0, nul) : embedded.bytes;
      return {
        path,
        bytes,
        parsed: parseDescriptor(bytes, err, embedded.at),
        embedded: { at: embedded.at, reserved: embedded.bytes, selfExtent: header.capacity > 0 },
      };
    }
    if (magic === COWD_MAGIC || file.size > MAX_DESCRIPTOR_BYTES || !looksLikeDescriptor(head)) return null;
    const bytes = file.read(0, file.size, 'descriptor');
    return { path, bytes, parsed: parseDescriptor(bytes, err, 0) };
  } finally {
    file.close();
  }
}

/** Plans every descriptor together: a child's parentCID needs its parent's new CID. */
export function planVmdks(disks: readonly VmdkDescriptorFile[], ctx: PlanContext): PatchFilePlan[] {
  const cids = new Map<string, number>();
  for (const d of disks) cids.set(basename(d.path), newCid(d.parsed.cid));
  return disks.map((d) => planOne(d, cids, ctx));
}

function planOne(d: VmdkDescriptorFile, cids: Map<string, number>, ctx: PlanContext): PatchFilePlan {
  const err = errorsFor({ image: d.path, layer: 'restore' });
  const file = basename(d.path);
  const text = new DictText(d.bytes, d.path, 'descriptor');
  const changes: PatchChange[] = [];
  const set = (l: DictLine, old: string, value: string, why: string) => {
    if (old === value) return;
    text.setValue(l, value);
    change(changes, file, l.key, old, value, why);
  };
  const fieldError = (field: string, msg: string) => err.corrupt('PATCH_FIELD', `${field}: ${msg}`, { field });

  let parentName: string | undefined;
  const hint = d.parsed.parentFileNameHint;
  if (hint !== undefined && hint !== '') {
    const fate = ctx.paths.fate(hint);
    if (fate.kind === 'missing')
      throw fieldError('parentFileNameHint', `the parent ${hint} is not in the restored folder`);
    parentName = fate.name;
  }

  for (const l of text.lines) {
    const old = text.value(l).trim();
    if (l.key === 'CID') {
      set(l, old, cidText(cids.get(file) ?? newCid()), 'a fresh content id for the restored disk');
    } else if (l.key === 'parentCID') {
      if (d.parsed.parentCid === CID_NONE) continue;
      const parentCid = parentName === undefined ? undefined : cids.get(parentName);
      if (parentCid === undefined) {
        throw fieldError('parentCID', `names a parent (${hint ?? 'no parentFileNameHint'}) with no descriptor here`);
      }
      set(l, old, cidText(parentCid), "the parent's new content id");
    } else if (l.key === 'parentFileNameHint') {
      if (parentName !== undefined) set(l, old, parentName, 'the parent disk, in the same folder');
    } else if (l.key === 'ddb.uuid') {
      if (!ctx.opts.keepIdentity) set(l, old, newDdbUuid(old), 'a restored copy gets its own disk identity');
    } else if (l.key === 'ddb.longContentID') {
      set(l, old, newLongContentId(), 'a fresh content id for the restored disk');
    }
  }

  text.extents.forEach((e, i) => {
    const old = text.extentFile(e);
    // the one extent of a sparse file with an embedded descriptor is that file itself
    let name: string;
    if (d.embedded?.selfExtent) name = file;
    else {
      const fate = ctx.paths.fate(old);
      if (fate.kind === 'missing') throw fieldError(`extent ${i}`, `its file ${old} is not in the restored folder`);
      name = fate.name;
    }
    if (name !== old) {
      text.setExtentFile(e, name);
      change(changes, file, `extent ${i}`, old, name, 'the extent file, in the same folder');
    }
  });

  const plan: PatchFilePlan = { kind: 'vmdk', path: d.path, changes };
  const out = text.result();
  if (!d.embedded) {
    plan.original = d.bytes;
    if (text.changed) plan.content = out;
    return plan;
  }
  if (!text.changed) return plan;
  if (out.length > d.embedded.reserved.length) {
    throw errorsFor({ image: d.path, layer: 'restore' }).limit(
      'PATCH_DESCRIPTOR_TOO_LARGE',
      `the patched descriptor needs ${out.length} bytes; the sparse header reserves ${d.embedded.reserved.length}`,
      { offset: d.embedded.at, field: 'descriptor', cap: d.embedded.reserved.length },
    );
  }
  const bytes = Buffer.alloc(d.embedded.reserved.length);
  out.copy(bytes);
  plan.inPlace = { offset: d.embedded.at, bytes, expect: d.embedded.reserved };
  plan.text = out.toString('utf8');
  return plan;
}
