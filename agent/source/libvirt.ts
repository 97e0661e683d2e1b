/**
 * libvirt domain XML (what `virsh dumpxml` and `virt-install --print-xml`
 * write, and what /etc/libvirt/qemu/<name>.xml holds): the VM's name, uuid,
 * disks and NICs' MAC addresses.
 *
 *     <domain type='kvm'>
 *       <name>web01</name>
 *       <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
 *       <devices>
 *         <disk type='file' device='disk'>
 *           <driver name='qemu' type='qcow2'/>
 *           <source file='/var/lib/libvirt/images/web01.qcow2'/>
 *           <target dev='vda' bus='virtio'/>
 *         </disk>
 *         <disk type='file' device='cdrom'> …       (not a disk: skipped)
 *         <interface type='network'><mac address='52:54:00:6b:3c:58'/> …
 *
 * Semantics follow libvirt's domain format (docs/formatdomain): only
 * device='disk' (the default when the attribute is absent) is a disk; the
 * image is <source file> for type='file' and <source dev> for type='block';
 * network and pool volumes have no file here and are skipped with a reason.
 * A disk whose <driver type> is absent is raw, as libvirt itself assumes:
 * the format is never guessed from content, where a guest could plant a header.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { errorsFor, isVdbakError } from '../../parsers/errors.js';
import { existsFile } from './images.js';
import type { VmDisk, VmSource } from './resolve.js';
import { attributeValue, childElement, childElements, MAX_XML_CHARS, parseXml, type XmlElement } from './xml.js';

/** Largest domain file read, in bytes (UTF-8 is at most 4 bytes per character of the XML cap). */
export const MAX_DOMAIN_BYTES = MAX_XML_CHARS;
/** Most disks and NICs a domain may list (libvirt allows far fewer in practice). */
export const MAX_DOMAIN_DEVICES = 1024;

/** <driver type> values the disk layer reads, and the format each is opened as. */
const FORMATS: Readonly<Record<string, string>> = { qcow2: 'qcow2', raw: 'raw', vmdk: 'vmdk' };
const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
/** Characters a VM name may not keep (as in resolve.ts): control characters, and '~' which backup refs use. */
const NAME_UNSAFE_RE = /[\x00-\x1f\x7f~]/g;

export interface DomainDisk {
  /** <target dev>: 'vda', 'sdb', 'hda' … ('disk<N>' when the XML names none). */
  slot: string;
  /** 'file' or 'block'. */
  type: 'file' | 'block';
  /** <source file> or <source dev>, as written. */
  source: string;
  /** The format to open it as: qcow2, raw or vmdk. */
  format: string;
  bus?: string;
  readonly?: boolean;
}

export interface DomainSkipped {
  slot: string;
  reason: string;
}

export interface DomainInfo {
  path: string;
  /** <domain type>: kvm, qemu, xen … */
  hypervisor?: string;
  name: string;
  /** Lower-case 8-4-4-4-12. */
  uuid?: string;
  disks: DomainDisk[];
  skipped: DomainSkipped[];
  /** MAC addresses of the NICs, lower case, in document order. */
  macs: string[];
  warnings: string[];
}

const err = (path: string) => errorsFor({ image: path, layer: 'config' });

/** "4DEA22B31D52D8F32516782E98AB3FA0" or dashed → "4dea22b3-1d52-d8f3-2516-782e98ab3fa0". */
export function normaliseUuid(s: string): string | undefined {
  const t = s.trim();
  if (!UUID_RE.test(t)) return undefined;
  const h = t.replace(/-/g, '').toLowerCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function readDisk(el: XmlElement, index: number, info: DomainInfo): void {
  const target = childElement(el, 'target');
  const dev = attributeValue(target, 'dev')?.trim();
  const slot = dev !== undefined && dev !== '' ? dev : `disk${index}`;
  const device = attributeValue(el, 'device') ?? 'disk';
  if (device !== 'disk') {
    info.skipped.push({ slot, reason: `a ${device}, not a disk` });
    return;
  }
  const type = attributeValue(el, 'type') ?? 'file';
  const source = childElement(el, 'source');
  if (type !== 'file' && type !== 'block') {
    info.skipped.push({ slot, reason: `a disk of type '${type}' has no image file here` });
    return;
  }
  const where = attributeValue(source, type === 'file' ? 'file' : 'dev');
  if (where === undefined || where.trim() === '') {
    // libvirt allows an empty source for a removable medium: nothing to read
    info.skipped.push({ slot, reason: `no <source ${type === 'file' ? 'file' : 'dev'}>` });
    return;
  }
  const driverType = attributeValue(childElement(el, 'driver'), 'type');
  const format = driverType === undefined ? 'raw' : FORMATS[driverType];
  if (format === undefined) {
    info.skipped.push({ slot, reason: `format '${driverType ?? ''}' is not one vdbak reads (qcow2, raw, vmdk)` });
    return;
  }
  if (dev === undefined || dev === '') info.warnings.push(`disk ${index} has no <target dev>; called ${slot}`);
  const disk: DomainDisk = { slot, type, source: where, format };
  const bus = attributeValue(target, 'bus');
  if (bus !== undefined) disk.bus = bus;
  if (childElement(el, 'readonly')) disk.readonly = true;
  info.disks.push(disk);
}

/** Parses a domain's XML text; `path` names it in errors. Typed errors only. */
export function parseDomainXml(text: string, path: string): DomainInfo {
  const doc = parseXml(text, path);
  const root = doc.root;
  if (root.name !== 'domain') {
    throw err(path).unsupported('LIBVIRT_NOT_DOMAIN', `the root element is <${root.name}>, not <domain>`, {
      offset: root.start,
    });
  }
  const nameEl = childElement(root, 'name');
  const name = nameEl?.text.trim() ?? '';
  if (name === '') throw err(path).corrupt('LIBVIRT_NO_NAME', 'the domain has no <name>', { offset: root.start });
  const info: DomainInfo = { path, name, disks: [], skipped: [], macs: [], warnings: [] };
  const hypervisor = attributeValue(root, 'type');
  if (hypervisor !== undefined) info.hypervisor = hypervisor;
  const uuidEl = childElement(root, 'uuid');
  if (uuidEl) {
    const uuid = normaliseUuid(uuidEl.text);
    if (uuid === undefined) {
      throw err(path).corrupt('LIBVIRT_BAD_UUID', `<uuid> "${uuidEl.text.trim().slice(0, 64)}" is not a UUID`, {
        offset: uuidEl.start,
      });
    }
    info.uuid = uuid;
  }
  const devices = childElement(root, 'devices');
  const disks = devices ? childElements(devices, 'disk') : [];
  const nics = devices ? childElements(devices, 'interface') : [];
  if (disks.length + nics.length > MAX_DOMAIN_DEVICES) {
    throw err(path).limit('LIBVIRT_DEVICES', `${disks.length} disks and ${nics.length} interfaces`, {
      cap: MAX_DOMAIN_DEVICES,
    });
  }
  disks.forEach((d, i) => readDisk(d, i, info));
  const slots = new Set<string>();
  for (const d of info.disks) {
    if (slots.has(d.slot)) info.warnings.push(`two disks use target ${d.slot}`);
    slots.add(d.slot);
  }
  for (const nic of nics) {
    const mac = attributeValue(childElement(nic, 'mac'), 'address')?.trim();
    if (mac === undefined) continue; // libvirt generates one at define time; an undefined domain may lack it
    if (MAC_RE.test(mac)) info.macs.push(mac.toLowerCase());
    else info.warnings.push(`interface MAC "${mac.slice(0, 40)}" is not a MAC address`);
  }
  return info;
}

function readDomainText(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    if (code === 'ENOENT') throw err(path).notFound('SOURCE_NOT_FOUND', 'no such file');
    throw err(path).io('SOURCE_READ', `cannot open: ${code}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw err(path).unsupported('SOURCE_NOT_REGULAR', 'not a regular file');
    if (st.size > MAX_DOMAIN_BYTES) {
      throw err(path).limit('LIBVIRT_TOO_LARGE', `domain file of ${st.size} bytes`, { cap: MAX_DOMAIN_BYTES });
    }
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got).toString('utf8');
  } catch (e) {
    if (isVdbakError(e)) throw e;
    throw err(path).io('SOURCE_READ', `cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  } finally {
    closeSync(fd);
  }
}

/**
 * Where a disk's source is on this machine. The path the hypervisor host
 * wrote (/var/lib/libvirt/images/…) is often not where the controller mounts
 * the same datastore: a missing absolute path is looked for next to the XML,
 * as resolve.ts does for a .vmx. A relative path (libvirt refuses them) is
 * taken relative to the XML's folder.
 */
function diskPath(d: DomainDisk, xml: string, warnings: string[]): string {
  const dir = dirname(xml);
  const direct = isAbsolute(d.source) ? resolve(d.source) : join(dir, d.source);
  if (d.type === 'block' || existsFile(direct)) return direct;
  const local = join(dir, basename(d.source));
  if (existsFile(local)) {
    warnings.push(
      `${basename(xml)}: ${d.slot}: "${d.source}" is not here; using ${basename(d.source)} next to the domain XML`,
    );
    return local;
  }
  throw err(xml).notFound('LIBVIRT_DISK_MISSING', `${d.slot}: disk file "${d.source}" not found`, {
    slot: d.slot,
    fileName: d.source,
  });
}

/** One VM from a libvirt domain XML file. Identity 'libvirt:<uuid>' ('libvirt-xml:<path>' without a uuid). */
export function sourceFromDomainXml(path: string): VmSource {
  const xml = resolve(path);
  const info = parseDomainXml(readDomainText(xml), xml);
  const file = basename(xml);
  const warnings = info.warnings.map((w) => `${file}: ${w}`);
  for (const s of info.skipped) warnings.push(`${file}: ${s.slot} not backed up: ${s.reason}`);
  const disks: VmDisk[] = info.disks.map((d) => ({ slot: d.slot, path: diskPath(d, xml, warnings), format: d.format }));
  if (disks.length === 0) warnings.push(`${file} has no disk to back up`);
  let identity: string;
  if (info.uuid !== undefined) identity = `libvirt:${info.uuid}`;
  else {
    identity = `libvirt-xml:${xml}`;
    warnings.push(`${file} has no <uuid>: the VM is known by its path`);
  }
  const cleaned = info.name.replace(NAME_UNSAFE_RE, (c) => (c === '~' ? '-' : '')).trim();
  const name = cleaned === '' ? basename(xml, extname(xml)) : cleaned;
  if (name !== info.name) warnings.push(`${file}: name "${info.name}" is used as "${name}"`);
  return { name, identity, kind: 'libvirt', configPath: xml, folder: dirname(xml), disks, warnings };
}
