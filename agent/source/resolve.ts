/**
 * The "source" step of a backup: what the user names on
 * `vdbak backup <vm folder | .vmx | disk image>...` becomes a list of VMs,
 * each with its disks (the leaf of each snapshot chain: the file the VM
 * writes to now; the disk layer follows the parents from there).
 *
 * - a .vmx: one VM; its disks are the present, non-CD-ROM devices (vmx.ts).
 * - a folder with .vmx files: one VM per .vmx.
 * - a folder without one: one VM per loose leaf image (images.ts), named
 *   after the folder when it holds exactly one.
 * - a folder with neither (a datastore): the same, one level down, for every
 *   sub-folder that holds a VM.
 * - a disk image: one VM named after the file.
 *
 * The same VM named twice (a folder and its .vmx; an image that is also a
 * VM's disk) is backed up once. Names are unique in the result.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { errorsFor, isVdbakError } from '../../parsers/errors.js';
import { MAX_DICTIONARY_CHARS, decodeDictionary } from './dictionary.js';
import {
  existsFile,
  findLeaves,
  formatByName,
  isImageName,
  listImages,
  looksLikeExtentName,
  readImageRefs,
  realOr,
} from './images.js';
import { sourceFromDomainXml } from './libvirt.js';
import { parseVmsd, type VmsdInfo } from './vmsd.js';
import { parseVmx, type VmxDisk } from './vmx.js';

export interface VmDisk {
  /** 'scsi0:0' for a VM's disk, 'disk0' for a loose image. */
  slot: string;
  /** Absolute path of the image to open: the leaf (current) of the snapshot chain. */
  path: string;
  /** The format the configuration or file name promises; open it as that, not by guessing from content. */
  format?: string;
  /** The .vmx's mode (independent-nonpersistent …), recorded as found. */
  mode?: string;
}

export interface VmSource {
  name: string;
  /**
   * Stable across backups: 'vmware:<uuid.bios>' or 'vc:<vc.uuid>' (8-4-4-4-12 hex);
   * 'vmx:<realpath of the .vmx>' when it has neither; 'image:<real folder>/<file
   * name without a VMware -NNNNNN snapshot suffix>' for a loose image, so taking
   * a snapshot does not make it a new VM. When two VMs of one run share an
   * identity (a copied VM keeps its uuid.bios), '@<realpath>' is appended to each.
   */
  identity: string;
  /** 'libvirt': a libvirt domain XML (libvirt.ts), identity 'libvirt:<uuid>'. */
  kind: 'vmware' | 'image' | 'libvirt';
  configPath?: string;
  folder: string;
  disks: VmDisk[];
  warnings: string[];
  guestOS?: string;
  /** The .vmsd next to the .vmx, when there is a non-empty one that parses. */
  snapshots?: VmsdInfo;
}

/** Most sub-folders of a datastore folder we look into. */
export const MAX_SUBFOLDERS = 10_000;
/** Largest .vmx / .vmsd file we read (bytes; the text cap is in dictionary.ts). */
export const MAX_CONFIG_BYTES = MAX_DICTIONARY_CHARS * 4;
/** VM configurations: .vmx, and .vmtx for an ESXi template (the same format). */
const CONFIG_EXTENSIONS = ['.vmx', '.vmtx'];
/** VMware names snapshot deltas <disk>-000001.vmdk, <disk>-000002.vmdk … */
const SNAPSHOT_SUFFIX_RE = /-\d{6}$/;
/** Characters a VM name may not keep: control characters, and '~' which backup refs use (VM~N). */
const NAME_UNSAFE_RE = /[\x00-\x1f\x7f~]/g;

function isConfigName(name: string): boolean {
  return CONFIG_EXTENSIONS.includes(extname(name).toLowerCase());
}

const argErr = (path: string) => errorsFor({ image: path, layer: 'file' });

function statOrThrow(path: string) {
  try {
    return statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw argErr(path).notFound('SOURCE_NOT_FOUND', 'no such file or folder');
    throw argErr(path).io('SOURCE_STAT', `cannot stat: ${code}`);
  }
}

function readConfigText(path: string): string {
  const st = statOrThrow(path);
  if (!st.isFile()) throw argErr(path).unsupported('SOURCE_NOT_REGULAR', 'not a regular file');
  if (st.size > MAX_CONFIG_BYTES) {
    throw argErr(path).limit('VMX_TOO_LARGE', `configuration file of ${st.size} bytes`, { cap: MAX_CONFIG_BYTES });
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw argErr(path).io('SOURCE_READ', `cannot read: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  return decodeDictionary(bytes, path);
}

/**
 * Where a .vmx disk's fileName points. Relative names are relative to the
 * .vmx's folder. An absolute name from the host that wrote it (an ESXi
 * /vmfs/volumes/… path, a Windows C:\… path) that does not exist here is
 * looked for next to the .vmx, where a copied or NFS-mounted VM keeps it.
 */
function diskPath(d: VmxDisk, vmx: string, warnings: string[]): string {
  const dir = dirname(vmx);
  const name = d.fileName.trim();
  const windowsAbsolute = /^[A-Za-z]:[\\/]/.test(name) || name.startsWith('\\');
  const portable = name.replace(/\\/g, '/');
  const absolute = isAbsolute(name) || windowsAbsolute;
  const direct = absolute ? (windowsAbsolute ? null : resolve(name)) : join(dir, portable);
  if (direct !== null && existsFile(direct)) return direct;
  if (absolute) {
    const local = join(dir, basename(portable));
    if (existsFile(local)) {
      warnings.push(`${d.slot}: "${name}" is not here; using ${basename(portable)} next to the .vmx`);
      return local;
    }
  }
  throw argErr(vmx).notFound('VMX_DISK_MISSING', `${d.slot}: disk file "${name}" not found`, {
    slot: d.slot,
    fileName: name,
  });
}

function readSnapshots(vmx: string, warnings: string[]): VmsdInfo | undefined {
  const vmsd = join(dirname(vmx), `${basename(vmx, extname(vmx))}.vmsd`);
  try {
    if (!existsFile(vmsd) || statSync(vmsd).size === 0) return undefined;
    const info = parseVmsd(readConfigText(vmsd), vmsd);
    for (const w of info.warnings) warnings.push(`${basename(vmsd)}: ${w}`);
    return info;
  } catch (e) {
    // the snapshot list is for the record: a bad one must not stop the backup of the disks
    if (!isVdbakError(e)) throw e;
    warnings.push(`${basename(vmsd)} not read: ${e.message}`);
    return undefined;
  }
}

/** One VM from its .vmx. */
export function sourceFromVmx(path: string): VmSource {
  const vmx = resolve(path);
  const cfg = parseVmx(readConfigText(vmx), vmx);
  const warnings = cfg.warnings.map((w) => `${basename(vmx)}: ${w}`);
  const disks: VmDisk[] = [];
  const seen = new Map<string, string>();
  for (const d of cfg.disks) {
    const p = diskPath(d, vmx, warnings);
    const real = realOr(p);
    const other = seen.get(real);
    if (other !== undefined) warnings.push(`${d.slot} and ${other} name the same file ${p}`);
    seen.set(real, d.slot);
    const disk: VmDisk = { slot: d.slot, path: p };
    if (extname(p).toLowerCase() === '.vmdk') disk.format = 'vmdk';
    if (d.mode !== undefined) disk.mode = d.mode;
    disks.push(disk);
  }
  if (disks.length === 0) warnings.push(`${basename(vmx)} has no disk to back up`);

  let identity: string;
  if (cfg.uuidBios) identity = `vmware:${cfg.uuidBios}`;
  else if (cfg.vcUuid) identity = `vc:${cfg.vcUuid}`;
  else {
    identity = `vmx:${realOr(vmx)}`;
    warnings.push(`${basename(vmx)} has neither uuid.bios nor vc.uuid: the VM is known by its path`);
  }
  const src: VmSource = {
    name: cfg.displayName ?? basename(vmx, extname(vmx)),
    identity,
    kind: 'vmware',
    configPath: vmx,
    folder: dirname(vmx),
    disks,
    warnings,
  };
  if (cfg.guestOS !== undefined) src.guestOS = cfg.guestOS;
  const snapshots = readSnapshots(vmx, warnings);
  if (snapshots) src.snapshots = snapshots;
  return src;
}

/** A loose image's name without its extension and VMware snapshot suffix: win01-000001.vmdk → win01. */
function familyName(file: string): string {
  return basename(file, extname(file)).replace(SNAPSHOT_SUFFIX_RE, '');
}

/** One VM from one loose image; `name` defaults to the image's family name. */
export function sourceFromImage(path: string, name?: string): VmSource {
  const abs = resolve(path);
  const st = statOrThrow(abs);
  if (!st.isFile()) throw argErr(abs).unsupported('SOURCE_NOT_REGULAR', 'not a regular file');
  const file = basename(abs);
  const warnings: string[] = [];
  const format = formatByName(file);
  const refs = readImageRefs(abs, format);
  if (refs.kind === 'vmdk-extent' || (!refs.selfDescribing && looksLikeExtentName(file))) {
    warnings.push(`${file} looks like an extent of a VMDK, not a whole disk; name its descriptor instead`);
  }
  const disk: VmDisk = { slot: 'disk0', path: abs };
  if (format !== undefined) disk.format = format;
  const ext = extname(file);
  return {
    name: name ?? familyName(file),
    identity: `image:${join(realOr(dirname(abs)), familyName(file) + ext)}`,
    kind: 'image',
    folder: dirname(abs),
    disks: [disk],
    warnings,
  };
}

function noVm(folder: string): Error {
  return argErr(folder).notFound('SOURCE_NO_VM', 'no .vmx and no disk image in this folder');
}

function readFolder(folder: string): { files: string[]; dirs: string[] } {
  let names: string[];
  try {
    names = readdirSync(folder).sort();
  } catch (e) {
    throw argErr(folder).io('SOURCE_READDIR', `cannot list: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  const files: string[] = [];
  const dirs: string[] = [];
  for (const n of names) {
    const p = join(folder, n);
    // hidden files are not VMs: macOS leaves "._win01.vmx" AppleDouble junk on shared datastores
    if (n.startsWith('.')) continue;
    if (isConfigName(n) && existsFile(p)) files.push(p);
    else if (!isImageName(n)) {
      try {
        if (statSync(p).isDirectory()) dirs.push(p);
      } catch {
        // vanished or unreadable entry: not a VM folder
      }
    }
  }
  return { files, dirs };
}

/** The VMs of one folder; `datastore` lets it look one level down when the folder holds none itself. */
export function sourcesInFolder(path: string, datastore = true): VmSource[] {
  const folder = resolve(path);
  const { files: vmxs, dirs } = readFolder(folder);
  const images = listImages(folder);

  if (vmxs.length > 0) {
    const vms = vmxs.map(sourceFromVmx);
    const first = vms[0];
    if (images.length > 0 && first) {
      // loose images no .vmx here uses are not backed up: say so rather than drop them silently
      const attached = new Set(vms.flatMap((v) => v.disks.map((d) => realOr(d.path))));
      const { leaves, warnings } = findLeaves(images);
      for (const leaf of leaves) {
        if (!attached.has(realOr(leaf))) {
          first.warnings.push(`${basename(leaf)} is attached to no .vmx in ${folder}; not backed up (name it to)`);
        }
      }
      first.warnings.push(...warnings);
    }
    return vms;
  }
  if (images.length > 0) {
    const { leaves, warnings } = findLeaves(images);
    if (leaves.length === 0) {
      throw argErr(folder).notFound('SOURCE_NO_LEAF', `no disk image here is a chain's leaf: ${warnings.join('; ')}`);
    }
    const folderName = basename(folder);
    const vms = leaves.map((leaf) => sourceFromImage(leaf, leaves.length === 1 && folderName ? folderName : undefined));
    vms[0]?.warnings.push(...warnings);
    return vms;
  }
  if (!datastore) throw noVm(folder);
  if (dirs.length > MAX_SUBFOLDERS) {
    throw argErr(folder).limit('SOURCE_TOO_MANY_FOLDERS', `more than ${MAX_SUBFOLDERS} sub-folders`, {
      cap: MAX_SUBFOLDERS,
    });
  }
  const vms: VmSource[] = [];
  for (const dir of dirs) {
    try {
      vms.push(...sourcesInFolder(dir, false));
    } catch (e) {
      // a sub-folder without a VM (an ISO library, a log folder) is not an error in a datastore
      if (isVdbakError(e) && e.code === 'SOURCE_NO_VM') continue;
      throw e;
    }
  }
  if (vms.length === 0) throw noVm(folder);
  return vms;
}

/** The VMs one command-line argument names. */
function sourcesOf(arg: string): VmSource[] {
  const abs = resolve(arg);
  const st = statOrThrow(abs);
  if (st.isDirectory()) return sourcesInFolder(abs);
  if (!st.isFile()) throw argErr(abs).unsupported('SOURCE_NOT_REGULAR', 'neither a folder nor a regular file');
  if (isConfigName(abs)) return [sourceFromVmx(abs)];
  if (extname(abs).toLowerCase() === '.xml') return [sourceFromDomainXml(abs)];
  if (isImageName(abs)) return [sourceFromImage(abs)];
  throw argErr(abs).unsupported(
    'SOURCE_KIND',
    'not a VM folder, a .vmx / .vmtx, a libvirt domain .xml or a disk image (.vmdk, .qcow2, .img, .raw)',
  );
}

function mergeKey(v: VmSource): string {
  if (v.kind === 'image') return `img:${realOr(v.disks[0]?.path ?? '')}`;
  return `${v.kind}:${realOr(v.configPath ?? '')}`;
}

/** Drops repeats and loose images that are already some VM's disk. */
function merge(all: VmSource[]): VmSource[] {
  const byKey = new Map<string, VmSource>();
  for (const v of all) if (!byKey.has(mergeKey(v))) byKey.set(mergeKey(v), v);
  const vms = [...byKey.values()];
  const diskOwner = new Map<string, { vm: VmSource; slot: string }>();
  for (const v of vms) {
    if (v.kind !== 'image') for (const d of v.disks) diskOwner.set(realOr(d.path), { vm: v, slot: d.slot });
  }
  return vms.filter((v) => {
    if (v.kind !== 'image') return true;
    const path = v.disks[0]?.path ?? '';
    const owner = diskOwner.get(realOr(path));
    if (!owner) return true;
    owner.vm.warnings.push(`${path} was also named on its own; it is backed up once, as ${owner.slot} of this VM`);
    return false;
  });
}

/** Two VMs that share an identity (a copied VM keeps its uuid.bios) get their real path appended. */
function separateIdentities(vms: VmSource[]): void {
  const count = new Map<string, number>();
  for (const v of vms) count.set(v.identity, (count.get(v.identity) ?? 0) + 1);
  for (const v of vms) {
    if ((count.get(v.identity) ?? 0) < 2) continue;
    const where = realOr(v.configPath ?? v.disks[0]?.path ?? v.folder);
    v.warnings.push(
      `another VM in this run has the identity ${v.identity} (a copy?); this one is told apart by its path`,
    );
    v.identity = `${v.identity}@${where}`;
  }
}

/** Names safe for the CLI and unique in the result: a repeat becomes name-2, name-3 … */
function uniqueNames(vms: VmSource[]): void {
  const taken = new Set<string>();
  for (const v of vms) {
    let name = v.name.replace(NAME_UNSAFE_RE, (c) => (c === '~' ? '-' : '')).trim();
    if (name === '') name = 'vm';
    if (name !== v.name) v.warnings.push(`name "${v.name}" is used as "${name}"`);
    let unique = name;
    for (let n = 2; taken.has(unique); n++) unique = `${name}-${n}`;
    if (unique !== name) v.warnings.push(`another VM in this run is named "${name}"; this one is "${unique}"`);
    taken.add(unique);
    v.name = unique;
  }
}

/**
 * Turns the arguments of `vdbak backup` into VMs with their disks, in the
 * order named. Throws a typed error for an argument that names nothing
 * usable or a .vmx whose disk is missing.
 */
export function resolveSources(args: string[]): VmSource[] {
  const vms = merge(args.flatMap(sourcesOf));
  separateIdentities(vms);
  uniqueNames(vms);
  return vms;
}
