/**
 * New identities for a restored VM: VMware's spaced UUIDs, VMDK content ids,
 * libvirt UUIDs and MAC addresses. Random from the system CSPRNG: two restores
 * of one backup must never collide with each other or with the original.
 */
import { randomBytes, randomUUID } from 'node:crypto';

/** VMware's prefix for the SMBIOS UUIDs it generates ("56 4d …"). */
const VMWARE_BIOS_PREFIX = [0x56, 0x4d] as const;
/** vCenter instance UUIDs start with 0x52. */
const VCENTER_PREFIX = [0x52] as const;
/** parentCID's "no parent", and the value VMware uses for a descriptor not yet opened: never a CID. */
const RESERVED_CIDS = new Set([0xffffffff, 0xfffffffe, 0]);
/** QEMU/KVM's locally administered OUI: libvirt picks new NIC addresses in it. */
export const KVM_MAC_PREFIX = '52:54:00';

function spaced(bytes: Uint8Array): string {
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0'));
  return `${hex.slice(0, 8).join(' ')}-${hex.slice(8).join(' ')}`;
}

function withPrefix(prefix: readonly number[]): Uint8Array {
  const b = randomBytes(16);
  prefix.forEach((v, i) => (b[i] = v));
  return b;
}

/** "56 4d 1a 2b 3c 4d 5e 6f-70 81 92 a3 b4 c5 d6 e7": VMware's uuid.bios / uuid.location form. */
export function newVmwareBiosUuid(): string {
  return spaced(withPrefix(VMWARE_BIOS_PREFIX));
}

/** vc.uuid: the same form, vCenter's prefix. */
export function newVcUuid(): string {
  return spaced(withPrefix(VCENTER_PREFIX));
}

/**
 * ddb.uuid keeps the case and spacing VMware wrote ("60 00 C2 9a …" with
 * upper or lower hex): the new value follows the old one's letter case.
 */
export function newDdbUuid(old: string): string {
  const hex = [...randomBytes(16)].map((b) => b.toString(16).padStart(2, '0'));
  const text = hex.join(' ');
  return /[A-F]/.test(old) ? text.toUpperCase() : text;
}

/** A content id for a VMDK descriptor (8 hex digits, as qemu and VMware write it), not `avoid`. */
export function newCid(avoid?: number): number {
  for (;;) {
    const v = randomBytes(4).readUInt32LE(0);
    if (!RESERVED_CIDS.has(v) && v !== avoid) return v;
  }
}

export function cidText(cid: number): string {
  return cid.toString(16).padStart(8, '0');
}

/** ddb.longContentID: 32 hex digits. */
export function newLongContentId(): string {
  return randomBytes(16).toString('hex');
}

/** An RFC 4122 v4 UUID, lower-case, as libvirt writes <uuid>. */
export function newLibvirtUuid(): string {
  return randomUUID();
}

/**
 * A unicast, locally administered address in QEMU's 52:54:00 prefix, not
 * one of `taken` (lower-case); the caller adds it to `taken`.
 */
export function newKvmMac(taken: Set<string>): string {
  for (;;) {
    const tail = [...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0')).join(':');
    const mac = `${KVM_MAC_PREFIX}:${tail}`;
    if (!taken.has(mac)) return mac;
  }
}
