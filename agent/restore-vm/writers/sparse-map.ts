/**
 * The in-memory allocation map of a sparse output format (VMDK grain tables,
 * qcow2 L2 tables): virtual units → where they were placed in the file.
 * Tables exist only where something was written, so memory follows the data
 * written, not the disk's size. 0 means "not allocated" (both formats keep
 * their header where 0 would point).
 */
export class SparseMap {
  private readonly tables = new Map<number, Uint32Array>();

  constructor(
    /** Bytes of one unit (a grain, a cluster). */
    readonly unitBytes: number,
    /** Units per table. */
    readonly perTable: number,
  ) {}

  get(unit: number): number {
    return this.tables.get(Math.floor(unit / this.perTable))?.[unit % this.perTable] ?? 0;
  }

  hasTable(table: number): boolean {
    return this.tables.has(table);
  }

  set(unit: number, value: number): void {
    const t = Math.floor(unit / this.perTable);
    let table = this.tables.get(t);
    if (!table) {
      table = new Uint32Array(this.perTable);
      this.tables.set(t, table);
    }
    table[unit % this.perTable] = value;
  }

  /** Tables that hold at least one allocation, by table index. */
  entries(): [number, Uint32Array][] {
    return [...this.tables.entries()].sort((a, b) => a[0] - b[0]);
  }
}

/**
 * Splits a write at virtual `offset` into units, asks `place` where each unit
 * starts in the file (allocating it on first use), and writes runs of units
 * that lie one after the other in the file as single writes.
 */
export async function writeUnits(
  offset: number,
  bytes: Uint8Array,
  unitBytes: number,
  place: (unit: number) => number,
  writeAt: (position: number, bytes: Uint8Array) => Promise<void>,
): Promise<void> {
  let pendingStart = 0;
  let pendingPos = -1;
  let pendingLen = 0;
  let done = 0;
  while (done < bytes.byteLength) {
    const at = offset + done;
    const unit = Math.floor(at / unitBytes);
    const inner = at - unit * unitBytes;
    const len = Math.min(unitBytes - inner, bytes.byteLength - done);
    const pos = place(unit) + inner;
    if (pendingPos >= 0 && pendingPos + pendingLen === pos) {
      pendingLen += len;
    } else {
      if (pendingPos >= 0) await writeAt(pendingPos, bytes.subarray(pendingStart, pendingStart + pendingLen));
      pendingStart = done;
      pendingPos = pos;
      pendingLen = len;
    }
    done += len;
  }
  if (pendingPos >= 0) await writeAt(pendingPos, bytes.subarray(pendingStart, pendingStart + pendingLen));
}

/** Reads virtual bytes back through a placement (`locate` gives -1 for a unit never written: zeros). */
export async function readUnits(
  offset: number,
  length: number,
  unitBytes: number,
  locate: (unit: number) => number,
  readAt: (position: number, into: Buffer) => Promise<void>,
): Promise<Buffer> {
  const out = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const at = offset + done;
    const unit = Math.floor(at / unitBytes);
    const inner = at - unit * unitBytes;
    const len = Math.min(unitBytes - inner, length - done);
    const pos = locate(unit);
    if (pos >= 0) await readAt(pos + inner, out.subarray(done, done + len));
    done += len;
  }
  return out;
}
