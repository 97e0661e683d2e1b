/**
 * Byte-by-byte builder of SEsparse extents (ESXi 6.5+ snapshot deltas). No
 * tool here writes SEsparse (qemu only reads it), so tests build files from
 * the layout qemu's block/vmdk.c reads (VMDKSESparseConstHeader,
 * VMDKSESparseVolatileHeader, get_cluster_offset), then check the builder
 * itself against `qemu-img convert` / `qemu-img map` before trusting it.
 *
 * Layout (sectors): const header 0, volatile header 1, journal header 2-3,
 * journal 4-7, grain directory 8…, grain tables, free bitmap, back map,
 * grains. Grains are 4 KiB, grain tables 4096 entries (16 MiB each).
 */
import type { ImageFile } from './image.js';

export type SeGrainKind = 'data' | 'zero' | 'unmapped';

export interface SeGrain {
  /** Virtual grain number (virtual offset / 4096). */
  index: number;
  kind: SeGrainKind;
  /** 4096 bytes for 'data'. */
  data?: Uint8Array;
  /** Cluster in the grain region for 'data'; default: next free one, in list order. */
  cluster?: number;
}

export interface SeSparseSpec {
  capacitySectors: number;
  grains: SeGrain[];
  /** Grain-table slot per used table, in the order tables first appear; default 0, 1, 2 … */
  tableSlots?: number[];
  /** Extra unused grain-table slots reserved after the used ones. */
  spareTables?: number;
}

const SECTOR = 512;
const GRAIN = 4096;
const GT_ENTRIES = 4096;
const GT_BYTES = GT_ENTRIES * 8;

export const SE = {
  constMagic: 0xcafebaben,
  volatileMagic: 0xcafecafen,
  version: 0x200000001n,
  unmapped: 0x1000000000000000n,
  zero: 0x2000000000000000n,
  gdAllocated: 0x1000000000000000n,
};

/** The grain table entry for an allocated grain at `cluster` (qemu: bits 48..59 = low 12 bits of the cluster). */
export function seAllocatedEntry(cluster: number): bigint {
  return 0x3000000000000000n | (BigInt(cluster % 4096) << 48n) | BigInt(Math.floor(cluster / 4096));
}

export interface SeLayout {
  gdOffset: number;
  gdSize: number;
  gtOffset: number;
  gtSize: number;
  grainsOffset: number;
  grainsSize: number;
  /** File byte offset of each used table, by GD index. */
  tableAt: Map<number, number>;
}

export function buildSeSparse(spec: SeSparseSpec): { image: ImageFile; layout: SeLayout } {
  const gdEntries = Math.ceil((spec.capacitySectors * SECTOR) / (GT_ENTRIES * GRAIN));
  const gdSize = Math.max(1, Math.ceil((gdEntries * 8) / SECTOR));
  const gdOffset = 8;
  const usedTables = [...new Set(spec.grains.map((g) => Math.floor(g.index / GT_ENTRIES)))];
  const slots = spec.tableSlots ?? usedTables.map((_, i) => i);
  const slotCount = Math.max(0, ...slots.map((s) => s + 1)) + (spec.spareTables ?? 1);
  const gtOffset = gdOffset + gdSize;
  const gtSize = slotCount * 64;
  const bitmapOffset = gtOffset + gtSize;
  const backmapOffset = bitmapOffset + 8;
  const grainsOffset = backmapOffset + 8;
  const grainsSize = Math.ceil(spec.capacitySectors / 8) * 8;

  const pieces: ImageFile['pieces'] = [];
  const c = Buffer.alloc(SECTOR);
  const fields = [
    SE.constMagic,
    SE.version,
    BigInt(spec.capacitySectors),
    8n,
    64n,
    0n,
    0n,
    0n,
    0n,
    0n,
    1n, // volatile header
    1n,
    2n, // journal header
    2n,
    4n, // journal
    4n,
    BigInt(gdOffset),
    BigInt(gdSize),
    BigInt(gtOffset),
    BigInt(gtSize),
    BigInt(bitmapOffset),
    8n,
    BigInt(backmapOffset),
    8n,
    BigInt(grainsOffset),
    BigInt(grainsSize),
  ];
  fields.forEach((v, i) => {
    c.writeBigUInt64LE(v, i * 8);
  });
  pieces.push({ offset: 0, bytes: c });
  const v = Buffer.alloc(SECTOR);
  v.writeBigUInt64LE(SE.volatileMagic, 0);
  v.writeBigUInt64LE(BigInt(slotCount - usedTables.length), 8); // free grain tables
  v.writeBigUInt64LE(1n, 16); // next transaction
  pieces.push({ offset: SECTOR, bytes: v });

  const gd = Buffer.alloc(gdSize * SECTOR);
  const tables = new Map<number, Buffer>();
  const tableAt = new Map<number, number>();
  usedTables.forEach((t, i) => {
    const slot = slots[i] ?? i;
    gd.writeBigUInt64LE(SE.gdAllocated | BigInt(slot), t * 8);
    tables.set(t, Buffer.alloc(GT_BYTES));
    tableAt.set(t, (gtOffset + slot * 64) * SECTOR);
  });
  pieces.push({ offset: gdOffset * SECTOR, bytes: gd });

  let nextCluster = 0;
  let end = grainsOffset * SECTOR;
  for (const g of spec.grains) {
    const table = tables.get(Math.floor(g.index / GT_ENTRIES));
    if (!table) throw new Error('unreachable: table of a listed grain');
    const at = (g.index % GT_ENTRIES) * 8;
    if (g.kind === 'zero') table.writeBigUInt64LE(SE.zero, at);
    else if (g.kind === 'unmapped') table.writeBigUInt64LE(SE.unmapped, at);
    else {
      const cluster = g.cluster ?? nextCluster;
      nextCluster = Math.max(nextCluster, cluster + 1);
      table.writeBigUInt64LE(seAllocatedEntry(cluster), at);
      const data = g.data ?? Buffer.alloc(GRAIN);
      if (data.length !== GRAIN) throw new Error('a data grain is 4096 bytes');
      const off = grainsOffset * SECTOR + cluster * GRAIN;
      pieces.push({ offset: off, bytes: data });
      end = Math.max(end, off + GRAIN);
    }
  }
  for (const [t, table] of tables) pieces.push({ offset: tableAt.get(t) ?? 0, bytes: table });
  return {
    image: { size: end, pieces },
    layout: { gdOffset, gdSize, gtOffset, gtSize, grainsOffset, grainsSize, tableAt },
  };
}
