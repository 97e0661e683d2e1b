/**
 * Every disk range a rebuild will write, to find two sources that claim the
 * same bytes before anything is written. Kept in typed arrays (three numbers
 * per range) so that a volume with millions of file fragments costs tens of
 * megabytes, not millions of objects.
 */
const INITIAL = 4096;

export interface Overlap {
  /** Owner ids of the two ranges (version ids). */
  a: number;
  b: number;
  /** Where they meet, in disk bytes. */
  start: number;
  end: number;
}

export class Extents {
  private starts = new Float64Array(INITIAL);
  private ends = new Float64Array(INITIAL);
  private owners = new Float64Array(INITIAL);
  private n = 0;

  get count(): number {
    return this.n;
  }

  add(start: number, end: number, owner: number): void {
    if (end <= start) return;
    this.sortedOrder = undefined;
    if (this.n === this.starts.length) {
      const grow = (a: Float64Array) => {
        const b = new Float64Array(a.length * 2);
        b.set(a);
        return b;
      };
      this.starts = grow(this.starts);
      this.ends = grow(this.ends);
      this.owners = grow(this.owners);
    }
    this.starts[this.n] = start;
    this.ends[this.n] = end;
    this.owners[this.n] = owner;
    this.n++;
  }

  private sortedOrder: Uint32Array | undefined;

  private order(): Uint32Array {
    if (this.sortedOrder?.length === this.n) return this.sortedOrder;
    const order = new Uint32Array(this.n);
    for (let i = 0; i < this.n; i++) order[i] = i;
    const s = this.starts;
    order.sort((x, y) => s[x]! - s[y]!);
    this.sortedOrder = order;
    return order;
  }

  /** Every range in disk order. */
  forEachSorted(fn: (start: number, end: number, owner: number) => void): void {
    for (const i of this.order()) fn(this.starts[i]!, this.ends[i]!, this.owners[i]!);
  }

  /** The first overlap in disk order, if any. */
  firstOverlap(): Overlap | undefined {
    const order = this.order();
    const s = this.starts;
    let maxEnd = -1;
    let maxOwner = -1;
    for (const i of order) {
      const start = s[i]!;
      const end = this.ends[i]!;
      if (start < maxEnd) {
        return { a: maxOwner, b: this.owners[i]!, start, end: Math.min(end, maxEnd) };
      }
      if (end > maxEnd) {
        maxEnd = end;
        maxOwner = this.owners[i]!;
      }
    }
    return undefined;
  }
}

/** A range of disk bytes, [start, end). */
export interface DiskRange {
  start: number;
  end: number;
}

/**
 * Where the ranges of `content` (disjoint) meet `regions` (sorted, disjoint):
 * per owner of a content range, the shared ranges in disk order.
 */
export function intersections(content: Extents, regions: readonly DiskRange[]): Map<number, DiskRange[]> {
  const out = new Map<number, DiskRange[]>();
  let j = 0;
  content.forEachSorted((start, end, owner) => {
    while (j < regions.length && regions[j]!.end <= start) j++;
    for (let k = j; k < regions.length && regions[k]!.start < end; k++) {
      const r = regions[k]!;
      const shared = { start: Math.max(start, r.start), end: Math.min(end, r.end) };
      const list = out.get(owner);
      if (list) list.push(shared);
      else out.set(owner, [shared]);
    }
  });
  return out;
}
