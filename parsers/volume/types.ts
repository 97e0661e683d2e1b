/**
 * What the volume layer reports: the volumes inside a disk (DESIGN.md "VolumeMap").
 */
export type PartitionScheme = 'mbr' | 'gpt' | 'none';

export interface Volume {
  /** 1-based position as tools number them (sfdisk/mmls order): primaries 1–4, logicals from 5 for MBR; GPT entry index + 1. */
  index: number;
  /** Byte offset of the volume inside the disk. */
  offset: number;
  /** Length in bytes. */
  length: number;
  scheme: PartitionScheme;
  /** MBR type byte as '0x83', GPT type GUID (lower case), or 'none' for a whole-disk volume. */
  type: string;
  /** Human name of the type ('Linux filesystem', 'EFI System', 'NTFS/exFAT/HPFS' …). */
  typeName: string;
  /** GPT partition name; empty for MBR. */
  name: string;
  /** GPT unique partition GUID. */
  uuid?: string;
  bootable?: boolean;
  /** For MBR logical partitions. */
  logical?: boolean;
}

export interface VolumeMap {
  scheme: PartitionScheme;
  sectorSize: number;
  /** GPT disk GUID or MBR disk signature as hex. */
  diskId?: string;
  volumes: Volume[];
  /** Non-fatal findings: damaged primary GPT (backup used), overlapping partitions … */
  warnings: string[];
}
