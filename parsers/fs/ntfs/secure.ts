/**
 * Owners from security descriptors: the $Secure:$SDS stream (NTFS 3.x, one
 * descriptor per security id, every 256 KiB block mirrored in the next one)
 * and the per-file $SECURITY_DESCRIPTOR attribute (older volumes, ntfs-3g).
 *
 * Spec: libyal libfsntfs "The security descriptor stream ($SDS)"; [MS-DTYP]
 * 2.4.6 SECURITY_DESCRIPTOR (self-relative) and 2.4.2 SID.
 */
import { assertLayout } from '../../bytes.js';

export const SDS_BLOCK = 256 * 1024;
export const SDS_ENTRY_HEADER_SIZE = 20;
export const SDS_ENTRY = { hash: [0, 4], securityId: [4, 4], offset: [8, 8], length: [16, 4] } as const;
export const SD_HEADER_SIZE = 20;
export const SD = {
  revision: [0, 1],
  control: [2, 2],
  owner: [4, 4],
  group: [8, 4],
  sacl: [12, 4],
  dacl: [16, 4],
} as const;
assertLayout('NtfsSdsEntry', SDS_ENTRY_HEADER_SIZE, SDS_ENTRY);
assertLayout('SecurityDescriptor', SD_HEADER_SIZE, SD);
const SID_MAX_SUBAUTHORITIES = 15;

/** The SID at `off` as S-1-…, or undefined when it does not fit or is malformed. */
export function sidToString(b: Buffer, off: number): string | undefined {
  if (off < 0 || off + 8 > b.length) return undefined;
  const revision = b.readUInt8(off);
  const count = b.readUInt8(off + 1);
  if (revision !== 1 || count > SID_MAX_SUBAUTHORITIES || off + 8 + 4 * count > b.length) return undefined;
  const authority = b.readUIntBE(off + 2, 6);
  let s = `S-1-${authority}`;
  for (let i = 0; i < count; i++) s += `-${b.readUInt32LE(off + 8 + 4 * i)}`;
  return s;
}

/** Owner SID of a self-relative security descriptor, or undefined. */
export function ownerOfDescriptor(sd: Buffer): string | undefined {
  if (sd.length < SD_HEADER_SIZE || sd.readUInt8(SD.revision[0]) !== 1) return undefined;
  const owner = sd.readUInt32LE(SD.owner[0]);
  return owner ? sidToString(sd, owner) : undefined;
}

/**
 * Scans $SDS content (one window of it, starting at stream offset `base`)
 * and adds every valid entry's owner to `owners`. Entries that do not say
 * their own offset (mirror copies, free space) are skipped to the next block.
 */
export function scanSds(chunk: Buffer, base: number, owners: Map<number, string>): void {
  let pos = 0;
  while (pos + SDS_ENTRY_HEADER_SIZE <= chunk.length) {
    const id = chunk.readUInt32LE(pos + SDS_ENTRY.securityId[0]);
    const selfOffset = Number(chunk.readBigUInt64LE(pos + SDS_ENTRY.offset[0]));
    const length = chunk.readUInt32LE(pos + SDS_ENTRY.length[0]);
    if (id === 0 || selfOffset !== base + pos || length < SDS_ENTRY_HEADER_SIZE || pos + length > chunk.length) {
      pos = (Math.floor((base + pos) / SDS_BLOCK) + 1) * SDS_BLOCK - base;
      continue;
    }
    if (!owners.has(id)) {
      const owner = ownerOfDescriptor(chunk.subarray(pos + SDS_ENTRY_HEADER_SIZE, pos + length));
      if (owner) owners.set(id, owner);
    }
    pos += (length + 15) & ~15;
  }
}
