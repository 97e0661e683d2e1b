/**
 * A small least-recently-used cache of buffers bounded by total bytes (and
 * always able to hold at least `minEntries`), for L2 tables and decompressed
 * clusters. A Map keeps insertion order, so the first key is the oldest.
 */
export class BufferLru<K> {
  private readonly map = new Map<K, Buffer>();
  private bytes = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly minEntries: number,
  ) {}

  get(key: K): Buffer | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: K, value: Buffer): void {
    const old = this.map.get(key);
    if (old !== undefined) {
      this.bytes -= old.length;
      this.map.delete(key);
    }
    this.map.set(key, value);
    this.bytes += value.length;
    while (this.bytes > this.maxBytes && this.map.size > this.minEntries) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      this.bytes -= this.map.get(oldest.value)?.length ?? 0;
      this.map.delete(oldest.value);
    }
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }
}
