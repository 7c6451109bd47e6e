/**
 * The IOVA allocator of the DMA API, pinned to Linux's alloc_iova behaviour so scripted tests can expect exact
 * IOVAs: lengths under 32 pages round up to a power of two; every range is aligned to the power of two ≥ its
 * length (size_aligned); allocation is top-down, the highest free range that fits below the limit; IOVA page 0
 * is never used; freed ranges of the cached sizes go to a per-size cache and are reused first (the rcache).
 */
import { fail } from '../errors.js';

const PAGE_SHIFT = 12;
/** IOVA_RANGE_CACHE_MAX_SIZE: ranges under 2^(6-1) = 32 pages are rounded and cached. */
const CACHE_MAX_PAGES = 32;
const CACHE_DEPTH = 128;

export interface IovaRange {
  /** First and last page frame numbers, inclusive (the kernel's pfn_lo / pfn_hi). */
  lo: number;
  hi: number;
}

export class IovaAllocator {
  /** Allocated ranges, sorted by lo. */
  private readonly ranges: IovaRange[] = [];
  /** rcache: per log2(pages) stacks of freed ranges. */
  private readonly cache = new Map<number, IovaRange[]>();
  /**
   * Per request size: a pfn at or above which no aligned free range of that size starts (the last top-down
   * search for it took the range starting there). Allocations only shrink free space, so a hint stays true until
   * a range leaves the tree or the bounds change; searches start below it instead of at the top (the kernel's
   * cached node plays this part). Results are exactly those of a search from the top.
   */
  private readonly hints = new Map<number, number>();
  private hintBounds = '';
  limitPfn: number;
  /** The lowest pfn handed out: 1 (IOVA page 0 is never used), or the start of an aperture (the GART's). */
  startPfn: number;

  constructor(dmaLimit = 0xffffffff, start = 0) {
    this.limitPfn = Math.floor(dmaLimit / 2 ** PAGE_SHIFT);
    this.startPfn = Math.max(1, Math.floor(start / 2 ** PAGE_SHIFT));
  }

  /** Pages an allocation of `bytes` takes (the rounding alloc_iova_fast applies). */
  static pagesFor(bytes: number): number {
    let pages = Math.ceil(bytes / 2 ** PAGE_SHIFT);
    if (pages < CACHE_MAX_PAGES) pages = 2 ** Math.ceil(Math.log2(pages));
    return pages;
  }

  /** Where the last allocation came from, so a refused mapping can give it back exactly (undoAlloc). */
  private last: { range: IovaRange; fromCache: boolean } | null = null;

  /** Allocates `pages` pages; returns the IOVA (bytes). */
  alloc(pages: number): number {
    this.last = null;
    if (pages <= CACHE_MAX_PAGES && (pages & (pages - 1)) === 0) {
      const cached = this.cache.get(pages)?.pop();
      if (cached) {
        this.last = { range: cached, fromCache: true };
        return cached.lo * 2 ** PAGE_SHIFT;
      }
    }
    const lo = this.allocInTree(pages);
    if (lo >= 0) return this.took(lo);
    // Out of space: give the rcache's parked ranges back to the tree and try once more (as the kernel does).
    for (const stack of this.cache.values()) for (const r of stack.splice(0)) this.remove(r.lo);
    const again = this.allocInTree(pages);
    if (again >= 0) return this.took(again);
    fail('iovaExhausted', { pages, limit: (this.limitPfn + 1) * 4096 - 1 });
  }

  /** Undoes the allocation just made (a refused mapping): the allocator is exactly as before it. */
  undoAlloc(iova: number): void {
    const last = this.last;
    this.last = null;
    if (!last || last.range.lo * 2 ** PAGE_SHIFT !== iova) return;
    if (last.fromCache) this.cache.get(last.range.hi - last.range.lo + 1)!.push(last.range);
    else this.remove(last.range.lo);
  }

  private took(lo: number): number {
    this.last = { range: this.ranges[this.indexOf(lo)]!, fromCache: false };
    return lo * 2 ** PAGE_SHIFT;
  }

  /** Index of the range starting at pfn (ranges are sorted by lo), -1 when none does. */
  private indexOf(pfn: number): number {
    const i = this.firstAtOrAbove(pfn);
    return i < this.ranges.length && this.ranges[i]!.lo === pfn ? i : -1;
  }

  /** Index of the first range whose lo is ≥ pfn (ranges.length when none). */
  private firstAtOrAbove(pfn: number): number {
    let a = 0;
    let b = this.ranges.length;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (this.ranges[m]!.lo < pfn) a = m + 1;
      else b = m;
    }
    return a;
  }

  /** Frees a range by its IOVA; small ranges are parked in the rcache (still reserved) for fast reuse. */
  free(iova: number): void {
    const pfn = Math.floor(iova / 2 ** PAGE_SHIFT);
    const r = this.ranges[this.indexOf(pfn)];
    if (!r) fail('noIovaRange', { iova });
    const pages = r.hi - r.lo + 1;
    if (pages <= CACHE_MAX_PAGES && (pages & (pages - 1)) === 0) {
      let stack = this.cache.get(pages);
      if (!stack) this.cache.set(pages, (stack = []));
      if (stack.length < CACHE_DEPTH) {
        stack.push(r);
        return;
      }
    }
    this.remove(pfn);
  }

  snapshot(): { ranges: IovaRange[]; cache: Array<[number, number[]]>; limitPfn: number; startPfn?: number } {
    return {
      ranges: this.ranges.map((r) => ({ ...r })),
      // Parked ranges are kept by their first pfn: on restore they are the same objects as in the tree.
      cache: [...this.cache].map(([pages, stack]) => [pages, stack.map((r) => r.lo)]),
      limitPfn: this.limitPfn,
      ...(this.startPfn !== 1 ? { startPfn: this.startPfn } : {}),
    };
  }

  restore(s: { ranges: IovaRange[]; cache: Array<[number, number[]]>; limitPfn: number; startPfn?: number }): void {
    this.startPfn = s.startPfn ?? 1;
    this.hints.clear();
    this.ranges.splice(0, this.ranges.length, ...s.ranges.map((r) => ({ ...r })));
    this.cache.clear();
    for (const [pages, los] of s.cache) this.cache.set(pages, los.map((lo) => this.ranges.find((r) => r.lo === lo)!));
    this.limitPfn = s.limitPfn;
  }

  /** Live allocations (for inspection and tests), ranges parked in the rcache excluded. */
  live(): IovaRange[] {
    const parked = new Set<IovaRange>();
    for (const stack of this.cache.values()) for (const r of stack) parked.add(r);
    return this.ranges.filter((r) => !parked.has(r)).map((r) => ({ ...r }));
  }

  /** Top-down: the highest aligned gap below the limit that fits; returns the first pfn or -1. */
  private allocInTree(pages: number): number {
    const align = 2 ** Math.ceil(Math.log2(pages));
    const bounds = `${this.limitPfn}:${this.startPfn}`;
    if (bounds !== this.hintBounds) {
      // limitPfn and startPfn are set from outside (dma-limit, an aperture): hints of other bounds do not hold.
      this.hints.clear();
      this.hintBounds = bounds;
    }
    let high = Math.min(this.limitPfn + 1, this.hints.get(pages) ?? Infinity); // exclusive
    // Ranges starting at or above `high` cannot bound a gap below it: start at the last one starting below.
    for (let i = this.firstAtOrAbove(high) - 1; i >= -1; i--) {
      const belowHi = i >= 0 ? this.ranges[i]!.hi : this.startPfn - 1; // pfn 0 is never used
      if (belowHi >= high) {
        high = Math.min(high, this.ranges[i]!.lo);
        continue;
      }
      const lo = Math.floor((high - pages) / align) * align;
      if (lo > belowHi && lo >= this.startPfn) {
        this.ranges.splice(i + 1, 0, { lo, hi: lo + pages - 1 });
        this.hints.set(pages, lo);
        return lo;
      }
      if (i >= 0) high = this.ranges[i]!.lo;
    }
    return -1;
  }

  private remove(pfn: number): void {
    const i = this.indexOf(pfn);
    if (i >= 0) {
      this.ranges.splice(i, 1);
      // A gap may have opened above any hint.
      this.hints.clear();
    }
  }
}
