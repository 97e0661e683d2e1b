/**
 * Which host files are a VM's configuration (issue 7 §2 restores them next
 * to the rebuilt disks): the file the VM was found by (BackupSource.
 * configPath: a .vmx/.vmtx, or a libvirt domain XML) and, for VMware, the
 * files beside it that belong to the same VM — the .vmsd, .vmxf and .nvram
 * of the same name, and the nvram / extendedConfigFile the .vmx names.
 * Never disks, logs, swap or lock files: only the extensions below.
 *
 * Pure listing (stat only); the backup reads and chunks them. A file over
 * MAX_CONFIG_FILE_BYTES, or one we cannot stat, is left out with a warning.
 */
import { readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { decodeDictionary, parseDictionary } from '../source/dictionary.js';
import { MAX_CONFIG_BYTES } from '../source/resolve.js';
import { errorsFor } from '../../parsers/errors.js';

/** A configuration file larger than this is not configuration: skipped with a warning. */
export const MAX_CONFIG_FILE_BYTES = 64 * 1024 * 1024;
/** VMware's own per-VM configuration files besides the .vmx. */
const VMWARE_SIBLINGS = ['.vmsd', '.vmxf', '.nvram'];
const VMWARE_CONFIGS = ['.vmx', '.vmtx'];
/** .vmx keys that name another configuration file of the VM. */
const VMX_FILE_KEYS = ['nvram', 'extendedconfigfile'];

export interface ConfigFile {
  /** File name: the version is stored at `/<name>` of the `config` volume. */
  name: string;
  path: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  dev: bigint;
  ino: number;
  mtimeNs: bigint;
  atimeNs: bigint;
  ctimeNs: bigint;
  btimeNs: bigint;
}

export interface ConfigSource {
  configPath?: string;
  disks: { path: string }[];
}

/** The VM's configuration files, sorted by name, and what was left out. */
export function configFiles(source: ConfigSource): { files: ConfigFile[]; warnings: string[] } {
  const warnings: string[] = [];
  if (!source.configPath) return { files: [], warnings };
  const main = resolve(source.configPath);
  const dir = dirname(main);
  const names = new Set<string>([basename(main)]);
  if (VMWARE_CONFIGS.includes(extname(main).toLowerCase())) {
    const stem = basename(main, extname(main));
    for (const ext of VMWARE_SIBLINGS) names.add(`${stem}${ext}`);
    for (const n of referencedFiles(main, warnings)) names.add(n);
  }
  const disks = new Set(source.disks.map((d) => resolve(d.path)));
  const files: ConfigFile[] = [];
  for (const name of [...names].sort()) {
    const path = join(dir, name);
    if (disks.has(path)) continue;
    let st;
    try {
      st = statSync(path, { bigint: true });
    } catch (e) {
      // the siblings are guesses: only the main file must exist
      if (path === main) warnings.push(`${path}: configuration file not readable: ${(e as Error).message}`);
      continue;
    }
    if (!st.isFile()) continue;
    if (st.size > BigInt(MAX_CONFIG_FILE_BYTES)) {
      warnings.push(
        `${path}: ${st.size} bytes is too large for a configuration file (cap ${MAX_CONFIG_FILE_BYTES}); not kept`,
      );
      continue;
    }
    files.push({
      name,
      path,
      size: Number(st.size),
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      dev: st.dev,
      ino: Number(st.ino),
      mtimeNs: st.mtimeNs,
      atimeNs: st.atimeNs,
      ctimeNs: st.ctimeNs,
      btimeNs: st.birthtimeNs,
    });
  }
  return { files, warnings };
}

/** Plain file names (same folder) that the .vmx's nvram / extendedConfigFile keys give. */
function referencedFiles(vmx: string, warnings: string[]): string[] {
  try {
    if (statSync(vmx).size > MAX_CONFIG_BYTES) return [];
    const text = decodeDictionary(readFileSync(vmx), vmx);
    const dict = parseDictionary(text, errorsFor({ image: vmx, layer: 'file' }), 'vmx');
    const out: string[] = [];
    for (const k of VMX_FILE_KEYS) {
      const v = dict.entries.get(k)?.value;
      // a path elsewhere is another VM's or the host's business, not this folder's
      if (v && !/[/\\]/.test(v) && v !== '.' && v !== '..') out.push(v);
    }
    return out;
  } catch (e) {
    warnings.push(`${vmx}: ${(e as Error).message}`);
    return [];
  }
}
