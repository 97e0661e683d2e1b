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

  /** The first overlap in disk order, if any. */
  firstOverlap(): Overlap | undefined {
    const order = new Uint32Array(this.n);
    for (let i = 0; i < this.n; i++) order[i] = i;
    const s = this.starts;
    order.sort((x, y) => s[x]! - s[y]!);
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
