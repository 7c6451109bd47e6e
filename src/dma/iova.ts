/**
 * The IOVA allocator of the DMA API, pinned to Linux's alloc_iova behaviour so scripted tests can expect exact
 * IOVAs: lengths under 32 pages round up to a power of two; every range is aligned to the power of two ≥ its
 * length (size_aligned); allocation is top-down, the highest free range that fits below the limit; IOVA page 0
 * is never used; freed ranges of the cached sizes go to a per-size cache and are reused first (the rcache).
 */
import { fail } from '../errors.js';

const PAGE_SHIFT = 12;
const PAGE = 2 ** PAGE_SHIFT;
/** IOVA_RANGE_CACHE_MAX_SIZE: ranges under 2^(6-1) = 32 pages are rounded and cached. */
const CACHE_MAX_PAGES = 32;
const CACHE_DEPTH = 128;

export interface IovaRange {
  /** First and last page frame numbers, inclusive (the kernel's pfn_lo / pfn_hi). */
  lo: number;
  hi: number;
}

/** 2 ** Math.ceil(Math.log2(n)), by a count of leading zeros for the page counts it is asked about. */
const pow2AtLeast = (n: number): number =>
  (n | 0) === n && n >= 2 && n <= 0x40000000 ? 1 << (32 - Math.clz32(n - 1)) : 2 ** Math.ceil(Math.log2(n));

/** Sizes the rcache keeps: powers of two up to CACHE_MAX_PAGES pages. */
const cached = (pages: number): boolean => pages <= CACHE_MAX_PAGES && (pages & (pages - 1)) === 0;

export class IovaAllocator {
  /**
   * Allocated ranges sorted by lo, as pairs (lo, hi) in one typed array (the kernel's rbtree role; a range costs
   * no object; pfns fit: the space is 32 bits of bytes, 20 of pages), kept as a gap buffer: the unused room sits
   * between range `gap - 1` and range `gap`, and an insert or a removal moves it there first, so one next to the
   * last costs no move. Top-down allocations insert below the one before, and a driver unmaps in the order it
   * mapped: with the room at one end, each of a thousand live ranges' inserts and removals moved them all.
   */
  private spans = new Int32Array(32);
  private count = 0;
  /** Index (in range order) of the first range stored after the unused room; ranges before it are stored first. */
  private gap = 0;
  /** rcache: per size in pages, a stack of the first pfns of freed ranges (parked: still in the tree). */
  private readonly cache = new Map<number, number[]>();
  /**
   * Per request size: a pfn at or above which no aligned free range of that size starts (the last top-down
   * search for it took the range starting there). Allocations only shrink free space, so a hint stays true until
   * a range leaves the tree or the bounds change; searches start below it instead of at the top (the kernel's
   * cached node plays this part). Results are exactly those of a search from the top.
   */
  private readonly hints = new Map<number, number>();
  private hintLimit = -1;
  private hintStart = -1;
  limitPfn: number;
  /** The lowest pfn handed out: 1 (IOVA page 0 is never used), or the start of an aperture (the GART's). */
  startPfn: number;
  /** Where the last allocation came from (its first pfn, -1 for none), so a refused mapping can give it back. */
  private lastLo = -1;
  private lastPages = 0;
  private lastFromCache = false;

  constructor(dmaLimit = 0xffffffff, start = 0) {
    this.limitPfn = Math.floor(dmaLimit / PAGE);
    this.startPfn = Math.max(1, Math.floor(start / PAGE));
  }

  /** Pages an allocation of `bytes` takes (the rounding alloc_iova_fast applies). */
  static pagesFor(bytes: number): number {
    const pages = Math.ceil(bytes / PAGE);
    return pages < CACHE_MAX_PAGES ? pow2AtLeast(pages) : pages;
  }

  /** Allocates `pages` pages; returns the IOVA (bytes). */
  alloc(pages: number): number {
    this.lastLo = -1;
    if (cached(pages)) {
      const stack = this.cache.get(pages);
      if (stack !== undefined && stack.length > 0) {
        const lo = stack.pop()!;
        this.lastLo = lo;
        this.lastPages = pages;
        this.lastFromCache = true;
        return lo * PAGE;
      }
    }
    const lo = this.allocInTree(pages);
    if (lo >= 0) return this.took(lo);
    // Out of space: give the rcache's parked ranges back to the tree and try once more (as the kernel does).
    for (const stack of this.cache.values()) {
      for (const lo of stack) this.remove(this.indexOf(lo));
      stack.length = 0;
    }
    const again = this.allocInTree(pages);
    if (again >= 0) return this.took(again);
    fail('iovaExhausted', { pages, limit: (this.limitPfn + 1) * 4096 - 1 });
  }

  /** Undoes the allocation just made (a refused mapping): the allocator is exactly as before it. */
  undoAlloc(iova: number): void {
    const lo = this.lastLo;
    this.lastLo = -1;
    if (lo < 0 || lo * PAGE !== iova) return;
    if (this.lastFromCache) this.cache.get(this.lastPages)!.push(lo);
    else this.remove(this.indexOf(lo));
  }

  private took(lo: number): number {
    this.lastLo = lo;
    this.lastFromCache = false;
    return lo * PAGE;
  }

  /** Where range i's lo is stored in spans (its hi follows): past the unused room from `gap` on. */
  private at(i: number): number {
    return i < this.gap ? 2 * i : 2 * (i + (this.spans.length >>> 1) - this.count);
  }

  /** Index of the range starting at pfn (ranges are sorted by lo), -1 when none does. */
  private indexOf(pfn: number): number {
    const i = this.firstAtOrAbove(pfn);
    return i < this.count && this.spans[this.at(i)] === pfn ? i : -1;
  }

  /** Index of the first range whose lo is ≥ pfn (count when none). */
  private firstAtOrAbove(pfn: number): number {
    const spans = this.spans;
    // Below the room, then above it.
    const gap = this.gap;
    if (gap > 0 && spans[2 * (gap - 1)]! >= pfn) {
      let a = 0;
      let b = gap - 1;
      while (a < b) {
        const m = (a + b) >>> 1;
        if (spans[2 * m]! < pfn) a = m + 1;
        else b = m;
      }
      return a;
    }
    const shift = (spans.length >>> 1) - this.count;
    let a = gap;
    let b = this.count;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (spans[2 * (m + shift)]! < pfn) a = m + 1;
      else b = m;
    }
    return a;
  }

  /** Frees a range by its IOVA; small ranges are parked in the rcache (still reserved) for fast reuse. */
  free(iova: number): void {
    const pfn = Math.floor(iova / PAGE);
    const i = this.indexOf(pfn);
    if (i < 0) fail('noIovaRange', { iova });
    const pages = this.spans[this.at(i) + 1]! - pfn + 1;
    if (cached(pages)) {
      let stack = this.cache.get(pages);
      if (!stack) this.cache.set(pages, (stack = []));
      if (stack.length < CACHE_DEPTH) {
        stack.push(pfn);
        return;
      }
    }
    this.remove(i);
  }

  snapshot(): { ranges: IovaRange[]; cache: Array<[number, number[]]>; limitPfn: number; startPfn?: number } {
    return {
      ranges: this.ranges(),
      // Parked ranges are kept by their first pfn: they are in the tree too.
      cache: [...this.cache].map(([pages, stack]) => [pages, stack.slice()]),
      limitPfn: this.limitPfn,
      ...(this.startPfn !== 1 ? { startPfn: this.startPfn } : {}),
    };
  }

  restore(s: { ranges: IovaRange[]; cache: Array<[number, number[]]>; limitPfn: number; startPfn?: number }): void {
    this.startPfn = s.startPfn ?? 1;
    this.hints.clear();
    this.count = 0;
    this.gap = 0;
    this.reserve(s.ranges.length);
    for (const r of s.ranges) {
      this.spans[2 * this.count] = r.lo;
      this.spans[2 * this.count + 1] = r.hi;
      this.count++;
    }
    this.gap = this.count;
    this.cache.clear();
    for (const [pages, los] of s.cache) this.cache.set(pages, los.slice());
    this.limitPfn = s.limitPfn;
  }

  /** Live allocations (for inspection and tests), ranges parked in the rcache excluded. */
  live(): IovaRange[] {
    const parked = new Set<number>();
    for (const stack of this.cache.values()) for (const lo of stack) parked.add(lo);
    return this.ranges().filter((r) => !parked.has(r.lo));
  }

  /** Every range in the tree, parked ones included, in order. */
  private ranges(): IovaRange[] {
    const out: IovaRange[] = [];
    for (let i = 0; i < this.count; i++) out.push({ lo: this.spans[this.at(i)]!, hi: this.spans[this.at(i) + 1]! });
    return out;
  }

  /** Top-down: the highest aligned gap below the limit that fits; returns the first pfn or -1. */
  private allocInTree(pages: number): number {
    const align = pow2AtLeast(pages);
    if (this.limitPfn !== this.hintLimit || this.startPfn !== this.hintStart) {
      // limitPfn and startPfn are set from outside (dma-limit, an aperture): hints of other bounds do not hold.
      this.hints.clear();
      this.hintLimit = this.limitPfn;
      this.hintStart = this.startPfn;
    }
    const spans = this.spans;
    let high = Math.min(this.limitPfn + 1, this.hints.get(pages) ?? Infinity); // exclusive
    // Ranges starting at or above `high` cannot bound a gap below it: start at the last one starting below.
    for (let i = this.firstAtOrAbove(high) - 1; i >= -1; i--) {
      const x = i >= 0 ? this.at(i) : -1;
      const belowHi = i >= 0 ? spans[x + 1]! : this.startPfn - 1; // pfn 0 is never used
      if (belowHi >= high) {
        high = Math.min(high, spans[x]!);
        continue;
      }
      const lo = Math.floor((high - pages) / align) * align;
      if (lo > belowHi && lo >= this.startPfn) {
        this.insert(i + 1, lo, lo + pages - 1);
        this.hints.set(pages, lo);
        return lo;
      }
      if (i >= 0) high = spans[x]!;
    }
    return -1;
  }

  /** Room for n more ranges (the unused room stays at `gap`). */
  private reserve(n: number): void {
    const cap = this.spans.length >>> 1;
    if (this.count + n <= cap) return;
    const grown = new Int32Array(Math.max(2 * this.spans.length, 2 * (this.count + n)));
    const above = this.count - this.gap;
    grown.set(this.spans.subarray(0, 2 * this.gap));
    grown.set(this.spans.subarray(2 * (cap - above)), grown.length - 2 * above);
    this.spans = grown;
  }

  /** Moves the unused room to just before range `to`. */
  private moveGap(to: number): void {
    const gap = this.gap;
    if (to === gap) return;
    const spans = this.spans;
    const room = 2 * ((spans.length >>> 1) - this.count);
    // Pairs between the two places cross the room: a loop for a few, the native move for more.
    if (to < gap) {
      if (gap - to <= 8) for (let k = 2 * gap - 1; k >= 2 * to; k--) spans[k + room] = spans[k]!;
      else spans.copyWithin(2 * to + room, 2 * to, 2 * gap);
    } else if (to - gap <= 8) for (let k = 2 * gap; k < 2 * to; k++) spans[k] = spans[k + room]!;
    else spans.copyWithin(2 * gap, 2 * gap + room, 2 * to + room);
    this.gap = to;
  }

  private insert(i: number, lo: number, hi: number): void {
    this.reserve(1);
    this.moveGap(i);
    const spans = this.spans;
    spans[2 * i] = lo;
    spans[2 * i + 1] = hi;
    this.gap++;
    this.count++;
  }

  /** Removes the range at index i (none when i < 0): it becomes part of the unused room. */
  private remove(i: number): void {
    if (i < 0) return;
    if (i === this.gap - 1) this.gap--;
    else this.moveGap(i);
    this.count--;
    // A gap may have opened above any hint (cleared only when set: Map.clear() allocates a new table).
    if (this.hints.size !== 0) this.hints.clear();
  }
}
