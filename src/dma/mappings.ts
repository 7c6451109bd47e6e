/**
 * A device's live DMA mappings by DMA address, in the order they were made: the part of Map the DMA API uses
 * (get, has, set, delete, size, values in insertion order). A driver's buffers fill and drain the table over and
 * over; V8's Map rebuilds its hash table as it does (it halves it at a quarter full and doubles it again when
 * full: a new table each time, ~5 % of a map+unmap with 1,024 buffers in flight). This one keeps its arrays: a
 * removed entry leaves a hole, and the holes are squeezed out in place when the entries reach the end.
 */
export class MappingTable<V> {
  /** Entries in insertion order, the first `n` used; a removed one keeps its key and holds undefined. */
  private keys: number[] = [];
  private vals: Array<V | undefined> = [];
  private n = 0;
  private live = 0;
  /** Open addressing over the entries: entry index + 1, 0 for a free slot, -1 for a removed entry's. */
  private index = new Int32Array(MIN_SLOTS);
  private mask = MIN_SLOTS - 1;
  /** Listings in progress: entries keep their places while one runs (nothing is squeezed). */
  private iterating = 0;

  get size(): number {
    return this.live;
  }

  get(key: number): V | undefined {
    const e = this.find(key);
    return e < 0 ? undefined : this.vals[e];
  }

  has(key: number): boolean {
    return this.find(key) >= 0;
  }

  /** Adds or replaces (a replaced entry keeps its place in the order, as Map's does). `value` is not undefined. */
  set(key: number, value: V): this {
    const e = this.find(key);
    if (e >= 0) {
      this.vals[e] = value;
      return this;
    }
    // Load (removed entries included) stays at most a half: the index has twice the slots of the entries' room.
    if (2 * (this.n + 1) > this.index.length) {
      if (this.iterating === 0) this.rebuild(4 * (this.live + 1), true);
      else this.rebuild(4 * (this.n + 1), false);
    }
    const at = this.n++;
    this.keys[at] = key;
    this.vals[at] = value;
    this.live++;
    const index = this.index;
    for (let i = hash(key) & this.mask; ; i = (i + 1) & this.mask) {
      if (index[i]! <= 0) {
        index[i] = at + 1;
        return this;
      }
    }
  }

  delete(key: number): boolean {
    const index = this.index;
    for (let i = hash(key) & this.mask; ; i = (i + 1) & this.mask) {
      const s = index[i]!;
      if (s === 0) return false;
      if (s > 0 && this.keys[s - 1] === key) {
        index[i] = -1;
        this.vals[s - 1] = undefined;
        this.live--;
        if (this.iterating !== 0) return true;
        // Emptied after a burst, a table once large lets its room go; mostly holes, it squeezes them out (a
        // listing walks the entries, holes included).
        if (this.live === 0 && this.index.length > KEEP_SLOTS) this.clear();
        else if (4 * this.live < this.n && this.n > MIN_SLOTS) this.rebuild(this.index.length, true);
        return true;
      }
    }
  }

  private clear(): void {
    this.n = 0;
    this.live = 0;
    if (this.index.length > KEEP_SLOTS) {
      this.keys = [];
      this.vals = [];
      this.index = new Int32Array(MIN_SLOTS);
      this.mask = MIN_SLOTS - 1;
    } else {
      this.index.fill(0);
      this.vals.fill(undefined);
    }
  }

  /**
   * Entries of the listing order: valueAt(0 .. slots - 1), undefined for a removed one, are the values of values(),
   * walked without a generator (the DMA API's overlap scan runs on every map). Valid while the table is not changed.
   */
  get slots(): number {
    return this.n;
  }

  valueAt(e: number): V | undefined {
    return this.vals[e];
  }

  /** The values in insertion order; entries added while iterating are visited, removed ones are not. */
  *values(): IterableIterator<V> {
    this.iterating++;
    try {
      for (let e = 0; e < this.n; e++) {
        const v = this.vals[e];
        if (v !== undefined) yield v;
      }
    } finally {
      this.iterating--;
    }
  }

  /** Entry index of key, or -1. */
  private find(key: number): number {
    const index = this.index;
    for (let i = hash(key) & this.mask; ; i = (i + 1) & this.mask) {
      const s = index[i]!;
      if (s === 0) return -1;
      if (s > 0 && this.keys[s - 1] === key) return s - 1;
    }
  }

  /**
   * Indexes the entries again in at least `want` slots (a power of two), first squeezing the holes out of them, in
   * order (`squeeze`; not while a listing runs).
   */
  private rebuild(want: number, squeeze: boolean): void {
    let slots = MIN_SLOTS;
    while (slots < want) slots *= 2;
    const { keys, vals } = this;
    let to = this.n;
    if (squeeze) {
      to = 0;
      for (let e = 0; e < this.n; e++) {
        const v = vals[e];
        if (v === undefined) continue;
        keys[to] = keys[e]!;
        vals[to++] = v;
      }
      // Entries past the live ones let their values go; the arrays keep their room.
      for (let e = to; e < this.n; e++) vals[e] = undefined;
      this.n = to;
    }
    if (slots === this.index.length) this.index.fill(0);
    else this.index = new Int32Array(slots);
    this.mask = slots - 1;
    const index = this.index;
    for (let e = 0; e < to; e++) {
      if (vals[e] === undefined) continue;
      let i = hash(keys[e]!) & this.mask;
      while (index[i] !== 0) i = (i + 1) & this.mask;
      index[i] = e + 1;
    }
  }
}

const MIN_SLOTS = 16;
/** A table emptied past this many slots starts small again. */
const KEEP_SLOTS = 4096;

/** DMA addresses are page-aligned more often than not: the page number is mixed in, and the high bits down. */
function hash(key: number): number {
  // ToInt32: the key modulo 2^32 as a signed 32-bit integer, whatever number it is.
  const k = key | 0;
  const h = Math.imul(k ^ (k >>> 12), 0x9e3779b1);
  return h ^ (h >>> 16);
}
