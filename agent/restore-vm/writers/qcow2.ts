/**
 * A qcow2 version 3 image with 64 KiB clusters and 16-bit refcounts.
 *
 * Layout: cluster 0 the header, then the L1 table, then data clusters and L2
 * tables in the order they are first needed, and at the end the refcount
 * blocks and the refcount table, sized once everything else is known so that
 * they count themselves too. Every used cluster has refcount 1, so every L1
 * and L2 entry carries QCOW_OFLAG_COPIED (`qemu-img check` checks both).
 * Clusters never written stay unallocated (L2 entry 0, or no L2 table).
 *
 * Spec: qemu docs/interop/qcow2.txt; the reader is parsers/disk/qcow2.
 */
import type { FileHandle } from 'node:fs/promises';
import { HEADER, QCOW2_MAGIC, V3_MIN_HEADER_LENGTH } from '../../../parsers/disk/qcow2/header.js';
import { readUnits, SparseMap, writeUnits } from './sparse-map.js';
import {
  checkWrite,
  type DiskWriter,
  OutputFiles,
  readAllAt,
  writeAllAt,
  writerErrors,
  type WriterOptions,
} from './types.js';

export const CLUSTER_BITS = 16;
const CLUSTER = 1 << CLUSTER_BITS;
const ENTRY_BYTES = 8;
const L2_ENTRIES = CLUSTER / ENTRY_BYTES;
/** refcount_order 4: 16-bit refcounts. */
const REFCOUNT_ORDER = 4;
const REFCOUNT_BYTES = (1 << REFCOUNT_ORDER) / 8;
const REFCOUNTS_PER_BLOCK = CLUSTER / REFCOUNT_BYTES;
const QCOW2_VERSION = 3;
/** Set on an L1/L2 entry whose cluster has refcount 1 (may be written in place). */
const OFLAG_COPIED = 1n << 63n;
/** Cluster indices are kept in 32 bits: 2^32 clusters of 64 KiB = 256 TiB, our MAX_DISK_SIZE. */
const MAX_CLUSTERS = 0xffffffff;

export class Qcow2Writer implements DiskWriter {
  readonly format = 'qcow2' as const;
  readonly files: readonly string[];
  private readonly out = new OutputFiles();
  private fh: FileHandle | undefined;
  private readonly l1Size: number;
  private readonly l1Clusters: number;
  /** Data clusters: virtual cluster → file cluster. */
  private readonly data = new SparseMap(CLUSTER, L2_ENTRIES);
  /** L2 tables: L1 index → file cluster. */
  private readonly l2 = new Map<number, number>();
  private nextCluster: number;

  private constructor(
    private readonly path: string,
    readonly size: number,
  ) {
    this.files = [path];
    this.l1Size = Math.max(1, Math.ceil(size / (CLUSTER * L2_ENTRIES)));
    this.l1Clusters = Math.ceil((this.l1Size * ENTRY_BYTES) / CLUSTER);
    this.nextCluster = 1 + this.l1Clusters;
  }

  static async create(path: string, size: number, opts: WriterOptions): Promise<Qcow2Writer> {
    const w = new Qcow2Writer(path, size);
    w.fh = await w.out.add(path, opts.overwrite);
    return w;
  }

  private allocate(): number {
    if (this.nextCluster >= MAX_CLUSTERS) {
      throw writerErrors(this.path).limit('QCOW2_TOO_MANY_CLUSTERS', 'the image outgrew 2^32 clusters');
    }
    return this.nextCluster++;
  }

  async write(offset: number, bytes: Uint8Array): Promise<void> {
    checkWrite(this.path, this.size, offset, bytes.byteLength);
    const fh = this.fh;
    if (!fh) throw writerErrors(this.path).unsupported('RESTORE_VM_CLOSED', 'write to a closed disk');
    await writeUnits(
      offset,
      bytes,
      CLUSTER,
      (cluster) => {
        let at = this.data.get(cluster);
        if (at === 0) {
          const l1 = Math.floor(cluster / L2_ENTRIES);
          if (!this.l2.has(l1)) this.l2.set(l1, this.allocate());
          at = this.allocate();
          this.data.set(cluster, at);
        }
        return at * CLUSTER;
      },
      (pos, b) => writeAllAt(fh, this.path, b, pos),
    );
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkWrite(this.path, this.size, offset, length);
    const fh = this.fh;
    if (!fh) throw writerErrors(this.path).unsupported('RESTORE_VM_CLOSED', 'read of a closed disk');
    return readUnits(
      offset,
      length,
      CLUSTER,
      (u) => {
        const at = this.data.get(u);
        return at === 0 ? -1 : at * CLUSTER;
      },
      (pos, into) => readAllAt(fh, this.path, into, pos),
    );
  }

  private header(refcountTable: number, refcountTableClusters: number): Buffer {
    const b = Buffer.alloc(CLUSTER);
    const f = HEADER;
    b.writeUInt32BE(QCOW2_MAGIC, f.magic[0]);
    b.writeUInt32BE(QCOW2_VERSION, f.version[0]);
    b.writeUInt32BE(CLUSTER_BITS, f.clusterBits[0]);
    b.writeBigUInt64BE(BigInt(this.size), f.size[0]);
    b.writeUInt32BE(this.l1Size, f.l1Size[0]);
    b.writeBigUInt64BE(BigInt(CLUSTER), f.l1TableOffset[0]);
    b.writeBigUInt64BE(BigInt(refcountTable) * BigInt(CLUSTER), f.refcountTableOffset[0]);
    b.writeUInt32BE(refcountTableClusters, f.refcountTableClusters[0]);
    b.writeUInt32BE(REFCOUNT_ORDER, f.refcountOrder[0]);
    b.writeUInt32BE(V3_MIN_HEADER_LENGTH, f.headerLength[0]);
    // the header extension area that follows is all zeros: an end-of-extensions marker
    return b;
  }

  /** How many refcount blocks and table clusters cover `used` clusters plus themselves. */
  private static refcountLayout(used: number): { blocks: number; tableClusters: number } {
    let blocks = 0;
    let tableClusters = 0;
    for (;;) {
      const total = used + blocks + tableClusters;
      const b = Math.ceil(total / REFCOUNTS_PER_BLOCK);
      const t = Math.max(1, Math.ceil((b * ENTRY_BYTES) / CLUSTER));
      if (b === blocks && t === tableClusters) return { blocks, tableClusters };
      blocks = b;
      tableClusters = t;
    }
  }

  async finish(): Promise<void> {
    const fh = this.fh;
    if (!fh) throw writerErrors(this.path).unsupported('RESTORE_VM_CLOSED', 'finish twice');
    const write = (b: Uint8Array, cluster: number) => writeAllAt(fh, this.path, b, cluster * CLUSTER);
    for (const [l1, table] of this.data.entries()) {
      const b = Buffer.alloc(CLUSTER);
      table.forEach((c, i) => {
        if (c !== 0) b.writeBigUInt64BE((BigInt(c) * BigInt(CLUSTER)) | OFLAG_COPIED, i * ENTRY_BYTES);
      });
      await write(b, this.l2.get(l1)!);
    }
    const l1 = Buffer.alloc(this.l1Clusters * CLUSTER);
    for (const [i, c] of this.l2) l1.writeBigUInt64BE((BigInt(c) * BigInt(CLUSTER)) | OFLAG_COPIED, i * ENTRY_BYTES);
    await write(l1, 1);

    const used = this.nextCluster;
    const { blocks, tableClusters } = Qcow2Writer.refcountLayout(used);
    const firstBlock = used;
    const tableAt = used + blocks;
    const total = tableAt + tableClusters;
    const table = Buffer.alloc(tableClusters * CLUSTER);
    for (let i = 0; i < blocks; i++) {
      const block = Buffer.alloc(CLUSTER);
      const from = i * REFCOUNTS_PER_BLOCK;
      const n = Math.min(REFCOUNTS_PER_BLOCK, total - from);
      for (let k = 0; k < n; k++) block.writeUInt16BE(1, k * REFCOUNT_BYTES);
      await write(block, firstBlock + i);
      table.writeBigUInt64BE(BigInt(firstBlock + i) * BigInt(CLUSTER), i * ENTRY_BYTES);
    }
    await write(table, tableAt);
    await fh.truncate(total * CLUSTER);
    // the header last: a file cut short before this point is not a qcow2 image at all
    await write(this.header(tableAt, tableClusters), 0);
    this.fh = undefined;
    await this.out.syncAndClose();
  }

  abort(): Promise<void> {
    this.fh = undefined;
    return this.out.removeAll(this.files);
  }
}
