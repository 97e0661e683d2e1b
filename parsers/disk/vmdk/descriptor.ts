/**
 * The VMDK text descriptor: a small "key=value" text that names the disk's
 * content id (CID), its parent (parentCID, parentFileNameHint), its kind
 * (createType) and the extents that hold its bytes, one line each:
 *
 *     RW 4192256 SPARSE "disk-s001.vmdk"
 *     RW 20480 FLAT "disk-flat.vmdk" 0        (offset in sectors)
 *     RW 20480 VMFS "4-flat.vmdk" 0           (vdiskmanager form; qemu rejects it)
 *     RW 2048 ZERO
 *
 * It is either a file of its own or embedded in a hosted sparse extent at the
 * header's descriptorOffset. Spec: VMware "Virtual Disk Format 5.0"
 * (section "The Descriptor File") and libyal's libvmdk "VMware Virtual Disk
 * (VMDK) format" document; qemu block/vmdk.c (vmdk_parse_extents) for what
 * real tools write.
 */
import { MAX_DISK_SIZE } from '../../bytes.js';
import type { Errors } from '../../errors.js';

/** Largest descriptor text we read (qemu reads at most 1 MiB too). */
export const MAX_DESCRIPTOR_BYTES = 1024 * 1024;
/** Most lines a descriptor may have. */
export const MAX_DESCRIPTOR_LINES = 20_000;
/** Most extents one descriptor may list (a 62 TiB twoGbMaxExtent disk has ~31 744). */
export const MAX_EXTENTS = 32_768;
/** parentCID value that means "no parent". */
export const CID_NONE = 0xffffffff;
export const SECTOR = 512;

export const DESCRIPTOR_SIGNATURE = '# Disk DescriptorFile';

export type ExtentAccess = 'RW' | 'RDONLY' | 'NOACCESS';
export const EXTENT_TYPES = ['FLAT', 'SPARSE', 'ZERO', 'VMFS', 'VMFSSPARSE', 'SESPARSE', 'VMFSRDM', 'VMFSRAW'] as const;
export type ExtentType = (typeof EXTENT_TYPES)[number];

export interface ExtentLine {
  access: ExtentAccess;
  /** Length in sectors. */
  sectors: number;
  type: ExtentType;
  /** File name as written (relative to the descriptor's folder unless absolute); '' for ZERO. */
  fileName: string;
  /** Start inside the file, in sectors (flat extents only). */
  offset: number;
  /** Byte offset of the line in the descriptor's file, for error messages. */
  at: number;
}

export interface Descriptor {
  version?: number;
  cid?: number;
  parentCid: number;
  createType?: string;
  parentFileNameHint?: string;
  extents: ExtentLine[];
  /** ddb.* entries, unquoted. */
  ddb: Record<string, string>;
  /** Every other key=value entry, unquoted. */
  entries: Record<string, string>;
}

/** True when `text` looks like a descriptor (used by the probe). */
export function looksLikeDescriptor(head: Uint8Array): boolean {
  const s = Buffer.from(head.subarray(0, 4096)).toString('latin1');
  return s.startsWith(DESCRIPTOR_SIGNATURE) || /(^|\n)\s*createType\s*=/.test(s);
}

/** ACCESS SECTORS TYPE ["file name" [OFFSET]] [# comment] */
const EXTENT_RE = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Za-z]+)(?:\s+"([^"]*)")?(?:\s+(\d+))?(?:\s+#.*)?$/;
const KEY_RE = /^([A-Za-z][A-Za-z0-9_.]*)\s*=\s*(.*)$/;
const CID_RE = /^[0-9a-fA-F]{1,8}$/;

function unquote(v: string): string {
  const t = v.trim();
  return t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1) : t;
}

/**
 * Decodes the descriptor in the character set its `encoding=` line names
 * (VMware writes "UTF-8"; older Windows hosts "windows-1252", "GBK" …).
 */
function decodeText(b: Uint8Array, err: Errors, base: number): string {
  const m = /^[ \t]*encoding[ \t]*=[ \t]*"?([A-Za-z0-9_.:-]+)"?/m.exec(Buffer.from(b).toString('latin1'));
  const label = m?.[1] ?? 'utf-8';
  try {
    return new TextDecoder(label).decode(b);
  } catch {
    throw err.unsupported('VMDK_DESCRIPTOR_ENCODING', `descriptor encoding "${label}"`, { offset: base });
  }
}

/**
 * Parses descriptor bytes (stops at the first NUL, as the embedded form is
 * NUL-padded). `base` is the descriptor's byte offset in its file, so errors
 * name the right place.
 */
export function parseDescriptor(bytes: Uint8Array, err: Errors, base = 0): Descriptor {
  if (bytes.length > MAX_DESCRIPTOR_BYTES) {
    throw err.limit('VMDK_DESCRIPTOR_TOO_LARGE', `descriptor of ${bytes.length} bytes`, {
      offset: base,
      cap: MAX_DESCRIPTOR_BYTES,
    });
  }
  const nul = bytes.indexOf(0);
  const text = decodeText(nul >= 0 ? bytes.subarray(0, nul) : bytes, err, base);
  // null-prototype maps: keys come from the file ("ddb.__proto__" must stay a plain key)
  const d: Descriptor = { parentCid: CID_NONE, extents: [], ddb: Object.create(null), entries: Object.create(null) };
  let pos = 0;
  let at = base;
  let lineNo = 0;
  let totalSectors = 0;
  while (pos < text.length) {
    if (++lineNo > MAX_DESCRIPTOR_LINES) {
      throw err.limit('VMDK_DESCRIPTOR_LINES', `descriptor has more than ${MAX_DESCRIPTOR_LINES} lines`, {
        offset: at,
      });
    }
    let end = text.indexOf('\n', pos);
    if (end < 0) end = text.length;
    const raw = text.slice(pos, end);
    const lineAt = at;
    at += Buffer.byteLength(raw) + 1;
    pos = end + 1;
    const line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;

    if (/^(RW|RDONLY|NOACCESS)\s/.test(line)) {
      const e = parseExtentLine(line, lineAt, err);
      totalSectors += e.sectors;
      if (totalSectors * SECTOR > MAX_DISK_SIZE) {
        throw err.limit('VMDK_DISK_TOO_LARGE', `extents add up to more than ${MAX_DISK_SIZE} bytes`, {
          offset: lineAt,
        });
      }
      if (d.extents.length >= MAX_EXTENTS) {
        throw err.limit('VMDK_TOO_MANY_EXTENTS', `more than ${MAX_EXTENTS} extents`, { offset: lineAt });
      }
      d.extents.push(e);
      continue;
    }
    const kv = KEY_RE.exec(line);
    if (!kv) continue; // VMware tools write free text after "#DDB" sections at times: ignore
    const key = kv[1] ?? '';
    const value = unquote(kv[2] ?? '');
    if (key.startsWith('ddb.')) d.ddb[key.slice(4)] = value;
    else d.entries[key] = value;
    if (key === 'version') {
      const v = Number(value);
      if (!Number.isSafeInteger(v) || v < 0) {
        throw err.corrupt('VMDK_DESCRIPTOR_VERSION', `bad descriptor version "${value}"`, { offset: lineAt });
      }
      d.version = v;
    } else if (key === 'CID' || key === 'parentCID') {
      if (!CID_RE.test(value)) {
        throw err.corrupt('VMDK_DESCRIPTOR_CID', `bad ${key} "${value}"`, { offset: lineAt });
      }
      const cid = Number.parseInt(value, 16);
      if (key === 'CID') d.cid = cid;
      else d.parentCid = cid;
    } else if (key === 'createType') d.createType = value;
    else if (key === 'parentFileNameHint') d.parentFileNameHint = value;
  }
  return d;
}

function parseExtentLine(line: string, at: number, err: Errors): ExtentLine {
  const m = EXTENT_RE.exec(line);
  if (!m)
    throw err.corrupt('VMDK_DESCRIPTOR_EXTENT_LINE', `invalid extent line: ${line.slice(0, 200)}`, { offset: at });
  const type = (m[3] ?? '').toUpperCase();
  if (!(EXTENT_TYPES as readonly string[]).includes(type)) {
    throw err.unsupported('VMDK_EXTENT_TYPE', `unsupported extent type ${type}`, { offset: at });
  }
  const sectors = Number(m[2]);
  if (!Number.isSafeInteger(sectors) || sectors <= 0 || sectors * SECTOR > MAX_DISK_SIZE) {
    throw err.limit('VMDK_EXTENT_SECTORS', `extent of ${m[2]} sectors`, { offset: at });
  }
  const fileName = m[4];
  const offsetText = m[5];
  if (type === 'ZERO') {
    if (fileName !== undefined || offsetText !== undefined) {
      throw err.corrupt('VMDK_DESCRIPTOR_EXTENT_LINE', `a ZERO extent names no file: ${line.slice(0, 200)}`, {
        offset: at,
      });
    }
  } else if (fileName === undefined || fileName === '') {
    throw err.corrupt('VMDK_DESCRIPTOR_EXTENT_LINE', `extent without a file name: ${line.slice(0, 200)}`, {
      offset: at,
    });
  }
  const flat = type === 'FLAT' || type === 'VMFS' || type === 'VMFSRDM' || type === 'VMFSRAW';
  if (offsetText !== undefined && !flat) {
    throw err.corrupt('VMDK_DESCRIPTOR_EXTENT_LINE', `only flat extents take an offset: ${line.slice(0, 200)}`, {
      offset: at,
    });
  }
  const offset = offsetText === undefined ? 0 : Number(offsetText);
  if (!Number.isSafeInteger(offset) || offset * SECTOR > Number.MAX_SAFE_INTEGER / 2) {
    throw err.limit('VMDK_EXTENT_OFFSET', `extent offset ${offsetText} sectors`, { offset: at });
  }
  return {
    access: m[1] as ExtentAccess,
    sectors,
    type: type as ExtentType,
    fileName: fileName ?? '',
    offset,
    at,
  };
}
