/**
 * What the volume layer reports: the volumes inside a disk (DESIGN.md "VolumeMap").
 */
export type PartitionScheme = 'mbr' | 'gpt' | 'none';

export interface Volume {
  /** 1-based position as tools number them (sfdisk/mmls order): primaries 1–4, logicals from 5 for MBR; GPT entry index + 1. */
  index: number;
  /** Byte offset of the volume inside the disk. */
  offset: number;
  /** Length in bytes (in `VolumeMap.volumes`: clipped to the end of the device). */
  length: number;
  scheme: PartitionScheme;
  /** MBR type byte as '0x83', GPT type GUID (lower case), or 'none' for a whole-disk volume. */
  type: string;
  /** Human name of the type ('Linux filesystem', 'EFI System', 'HPFS/NTFS/exFAT' …), as sfdisk names it. */
  typeName: string;
  /** GPT partition name; empty for MBR. */
  name: string;
  /** GPT unique partition GUID. */
  uuid?: string;
  bootable?: boolean;
  /** For MBR logical partitions. */
  logical?: boolean;
  /** MBR extended partition (0x05, 0x0F, 0x85): the frame of the EBR chain, never a filesystem. */
  extended?: boolean;
  /** GPT attribute bits (64-bit) as '0x' + 16 hex digits. */
  attributes?: string;
  /** Set when the table declares more than the device holds: the declared length in bytes. */
  declaredLength?: number;
}

export interface VolumeMap {
  scheme: PartitionScheme;
  sectorSize: number;
  /** GPT disk GUID (lower case) or MBR disk signature as '0x' + 8 hex digits (as sfdisk prints it). */
  diskId?: string;
  /**
   * The volumes to read: every data partition that starts inside the device,
   * its length clipped to the device (declaredLength then says what the table
   * claims). Never an MBR extended partition. A whole-disk volume for 'none'.
   */
  volumes: Volume[];
  /**
   * The table as declared, in table order (what `sfdisk --json` lists):
   * extended partitions included, and partitions lying past the end of a
   * truncated device included, with their declared offsets and lengths.
   */
  partitions: Volume[];
  /** Non-fatal findings: damaged primary GPT (backup used), overlapping partitions … */
  warnings: string[];
}
