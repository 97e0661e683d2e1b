/**
 * Patches a libvirt domain XML for the restored VM: <name>, <uuid> (new
 * unless the identity is kept), each disk's <source file>, each NIC's
 * <mac address> (new locally administered 52:54:00 addresses), and the
 * firmware paths (<loader>, <nvram>) through the datastore map.
 *
 * Values are replaced at the offsets agent/source/xml.ts records; every other
 * character of the file stays as it was. The file is UTF-8 (libvirt writes
 * nothing else); a file that is not valid UTF-8 is refused rather than
 * rewritten with replacement characters.
 */
import { basename } from 'node:path';
import { errorsFor } from '../../../parsers/errors.js';
import {
  attribute,
  childElement,
  childElements,
  escapeXmlAttribute,
  escapeXmlText,
  parseXml,
  type XmlAttribute,
  type XmlElement,
} from '../../source/xml.js';
import { type PlanContext, change } from './context.js';
import { newKvmMac, newLibvirtUuid } from './ids.js';
import { mapDatastore } from './paths.js';
import type { PatchChange, PatchFilePlan } from './types.js';

/** How far into a file we look for the root element's name. */
const SNIFF_CHARS = 4096;
/**
 * A <domain> start tag near the top: the file is read as a domain (and a
 * DOCTYPE or anything else our reader refuses is then an error, not a file
 * silently left unpatched).
 */
const DOMAIN_TAG_RE = /<domain[\s>/]/;

export function isDomainXml(bytes: Buffer): boolean {
  return DOMAIN_TAG_RE.test(bytes.subarray(0, SNIFF_CHARS).toString('utf8'));
}

interface Edit {
  start: number;
  end: number;
  text: string;
}

export function planLibvirt(path: string, bytes: Buffer, ctx: PlanContext): PatchFilePlan {
  const err = errorsFor({ image: path, layer: 'restore' });
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw err.unsupported('PATCH_ENCODING', 'a domain XML that is not UTF-8');
  }
  const root = parseXml(text, path).root;
  const file = basename(path);
  const changes: PatchChange[] = [];
  const edits: Edit[] = [];
  const { opts, paths } = ctx;

  const setText = (el: XmlElement | undefined, field: string, value: string, why: string) => {
    if (!el || el.contentStart === el.end || el.text === value) return;
    edits.push({ start: el.contentStart, end: el.contentEnd, text: escapeXmlText(value) });
    change(changes, file, field, el.text, value, why);
  };
  const setAttr = (a: XmlAttribute | undefined, field: string, value: string, why: string) => {
    if (!a || a.value === value) return;
    edits.push({ start: a.start, end: a.end, text: escapeXmlAttribute(value, a.quote) });
    change(changes, file, field, a.value, value, why);
  };
  const mapPath = (a: XmlAttribute | undefined, field: string) => {
    const mapped = a ? mapDatastore(a.value, paths.datastoreMap) : undefined;
    if (mapped !== undefined) setAttr(a, field, mapped, 'datastore map');
  };

  if (root.name !== 'domain')
    throw err.corrupt('PATCH_FIELD', `root element <${root.name}> is not <domain>`, { field: 'domain' });
  if (opts.name !== undefined)
    setText(childElement(root, 'name'), 'name', opts.name, 'the VM is restored under a new name');
  if (!opts.keepIdentity) {
    setText(
      childElement(root, 'uuid'),
      'uuid',
      newLibvirtUuid(),
      'a restored copy gets its own identity (keep it with --keep-identity)',
    );
  }

  const os = childElement(root, 'os');
  for (const tag of ['loader', 'nvram'] as const) {
    const el = os ? childElement(os, tag) : undefined;
    if (!el) continue;
    const mapped = mapDatastore(el.text.trim(), paths.datastoreMap);
    if (mapped !== undefined) setText(el, `os/${tag}`, mapped, 'datastore map');
    mapPath(attribute(el, 'template'), `os/${tag}@template`);
  }

  const devices = childElement(root, 'devices');
  const disks = devices ? childElements(devices, 'disk') : [];
  disks.forEach((disk, i) => {
    const source = childElement(disk, 'source');
    const src = source ? attribute(source, 'file') : undefined;
    const field = `devices/disk[${i}]/source@file`;
    if (!src) {
      if (source) mapPath(attribute(source, 'dev'), `devices/disk[${i}]/source@dev`);
      return;
    }
    const cdrom = attribute(disk, 'device')?.value === 'cdrom';
    const fate = cdrom ? { kind: 'missing' as const } : paths.fate(src.value);
    if (fate.kind !== 'missing')
      setAttr(src, field, paths.target(fate.name), 'the restored disk, in the restored folder');
    else {
      if (!cdrom) ctx.warnings.push(`${file}: disk ${i} (${src.value}) was not restored`);
      mapPath(src, field);
    }
  });

  const interfaces = devices ? childElements(devices, 'interface') : [];
  if (!opts.keepIdentity) {
    const macs = interfaces
      .map((nic) => childElement(nic, 'mac'))
      .map((m) => (m ? attribute(m, 'address') : undefined));
    const taken = new Set(macs.flatMap((a) => (a ? [a.value.toLowerCase()] : [])));
    macs.forEach((a, i) => {
      if (!a) return;
      const mac = newKvmMac(taken);
      taken.add(mac);
      setAttr(
        a,
        `devices/interface[${i}]/mac@address`,
        mac,
        'a restored copy gets its own addresses (keep them with --keep-identity)',
      );
    });
  }

  const plan: PatchFilePlan = { kind: 'libvirt', path, changes, original: bytes };
  if (edits.length > 0) {
    let out = text;
    for (const e of edits.sort((a, b) => b.start - a.start)) out = out.slice(0, e.start) + e.text + out.slice(e.end);
    plan.content = Buffer.from(out, 'utf8');
  }
  return plan;
}
