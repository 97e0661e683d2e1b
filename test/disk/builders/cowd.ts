/**
 * Byte-by-byte builder of ESX "COWD" sparse extents (vmfsSparse snapshot
 * deltas). No tool here writes COWD (qemu only reads it), so tests build
 * files from the published layout — libyal libvmdk "VMWare Virtual Disk
 * Format (VMDK)" § "The COWD sparse extent data file", qemu block/vmdk.c
 * VMDK3Header — and check the builder itself against `qemu-img convert`.
 *
 * Layout: 2048-byte header (sectors 0-3), grain directory at sector 4, then
 * one 16 KiB grain table (4096 × u32) per directory entry that has grains,
 * then the grains in the order they are listed.
 */
import type { ImageFile } from './image.js';

export interface CowdGrain {
  /** Virtual grain number (virtual offset / grain bytes). */
  index: number;
  /** grainSectors × 512 bytes. */
  data: Uint8Array;
}

export interface CowdSpec {
  capacitySectors: number;
  grainSectors: number;
  grains: CowdGrain[];
  /** Override the grain directory entry count (default: just enough). */
  gdEntries?: number;
  parentFileName?: string;
}

const SECTOR = 512;
const GT_ENTRIES = 4096;
const GT_SECTORS = (GT_ENTRIES * 4) / SECTOR;

export interface CowdLayout {
  gdOffset: number;
  gdEntries: number;
  /** File byte offset of each grain table, by GD index. */
  tableAt: Map<number, number>;
  /** File byte offset of each grain, by virtual grain index. */
  grainAt: Map<number, number>;
}

export function buildCowd(spec: CowdSpec): { image: ImageFile; layout: CowdLayout } {
  const grainBytes = spec.grainSectors * SECTOR;
  const gdEntries = spec.gdEntries ?? Math.ceil(spec.capacitySectors / (GT_ENTRIES * spec.grainSectors));
  const gdSector = 4;
  const gdSectors = Math.max(1, Math.ceil((gdEntries * 4) / SECTOR));
  let next = gdSector + gdSectors;

  const gd = Buffer.alloc(gdSectors * SECTOR);
  const tables = new Map<number, Buffer>();
  const tableAt = new Map<number, number>();
  for (const g of spec.grains) {
    const t = Math.floor(g.index / GT_ENTRIES);
    if (tables.has(t)) continue;
    tables.set(t, Buffer.alloc(GT_ENTRIES * 4));
    gd.writeUInt32LE(next, t * 4);
    tableAt.set(t, next * SECTOR);
    next += GT_SECTORS;
  }
  const pieces: ImageFile['pieces'] = [];
  const grainAt = new Map<number, number>();
  for (const g of spec.grains) {
    if (g.data.length !== grainBytes) throw new Error(`a grain is ${grainBytes} bytes`);
    const table = tables.get(Math.floor(g.index / GT_ENTRIES));
    table?.writeUInt32LE(next, (g.index % GT_ENTRIES) * 4);
    pieces.push({ offset: next * SECTOR, bytes: g.data });
    grainAt.set(g.index, next * SECTOR);
    next += spec.grainSectors;
  }

  const h = Buffer.alloc(2048);
  h.write('COWD', 0, 'latin1');
  h.writeUInt32LE(1, 4); // version
  h.writeUInt32LE(3, 8); // flags, as ESX writes them
  h.writeUInt32LE(spec.capacitySectors, 12);
  h.writeUInt32LE(spec.grainSectors, 16);
  h.writeUInt32LE(gdSector, 20);
  h.writeUInt32LE(gdEntries, 24);
  h.writeUInt32LE(next, 28); // next free sector
  if (spec.parentFileName) h.write(spec.parentFileName, 32, 1024, 'latin1');
  h.writeUInt32LE(1, 1056); // parent generation
  h.writeUInt32LE(1, 1060); // generation
  h.write('vdbak-test', 1064, 60, 'latin1');
  pieces.unshift({ offset: 0, bytes: h }, { offset: gdSector * SECTOR, bytes: gd });
  for (const [t, table] of tables) pieces.push({ offset: tableAt.get(t) ?? 0, bytes: table });
  return {
    image: { size: next * SECTOR, pieces },
    layout: { gdOffset: gdSector * SECTOR, gdEntries, tableAt, grainAt },
  };
}
