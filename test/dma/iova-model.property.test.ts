/**
 * The IOVA allocator against a naive model of the policy it pins (alloc_iova): a page bitmap searched from the top
 * for the highest aligned free run, per-size stacks of parked ranges (the rcache, depth 128, sizes ≤ 32 pages)
 * reused first and returned to the tree when the space runs out. Every result, the snapshot (tree and stacks in
 * order), live(), undoAlloc and a snapshot/restore round trip must agree with the model after every step.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IovaAllocator, type IovaRange } from '../../src/dma/iova.js';
import { codeOf } from '../support/core.js';

/** A small space, so runs reach exhaustion, the rcache's depth and the aperture's floor. */
const PAGES = 256;

class Model {
  /** Ranges in the tree (parked ones included) by first pfn → last pfn. */
  readonly tree = new Map<number, number>();
  readonly cache = new Map<number, number[]>();
  limitPfn: number;

  constructor(
    limitPfn: number,
    readonly startPfn: number,
    private readonly space = PAGES,
  ) {
    this.limitPfn = limitPfn;
  }

  private taken(): Uint8Array {
    const used = new Uint8Array(this.space * 2);
    for (const [lo, hi] of this.tree) used.fill(1, lo, hi + 1);
    return used;
  }

  private highestFit(pages: number): number {
    const used = this.taken();
    const align = 2 ** Math.ceil(Math.log2(pages));
    for (let lo = Math.floor((this.limitPfn + 1 - pages) / align) * align; lo >= this.startPfn; lo -= align) {
      if (used.subarray(lo, lo + pages).every((b) => b === 0)) return lo;
    }
    return -1;
  }

  /** The first pfn allocated and whether it came from the cache; null when the space is exhausted. */
  alloc(pages: number): { lo: number; fromCache: boolean } | null {
    const small = pages <= 32 && (pages & (pages - 1)) === 0;
    const stack = this.cache.get(pages);
    if (small && stack && stack.length) return { lo: stack.pop()!, fromCache: true };
    let lo = this.highestFit(pages);
    if (lo < 0) {
      for (const s of this.cache.values()) for (const p of s.splice(0)) this.tree.delete(p);
      lo = this.highestFit(pages);
    }
    if (lo < 0) return null;
    this.tree.set(lo, lo + pages - 1);
    return { lo, fromCache: false };
  }

  free(lo: number): void {
    const pages = this.tree.get(lo)! - lo + 1;
    if (pages <= 32 && (pages & (pages - 1)) === 0) {
      let stack = this.cache.get(pages);
      if (!stack) this.cache.set(pages, (stack = []));
      if (stack.length < 128) {
        stack.push(lo);
        return;
      }
    }
    this.tree.delete(lo);
  }

  snapshot(): { ranges: IovaRange[]; cache: Array<[number, number[]]>; limitPfn: number; startPfn?: number } {
    return {
      ranges: [...this.tree].sort((a, b) => a[0] - b[0]).map(([lo, hi]) => ({ lo, hi })),
      cache: [...this.cache].map(([p, s]) => [p, [...s]]),
      limitPfn: this.limitPfn,
      ...(this.startPfn !== 1 ? { startPfn: this.startPfn } : {}),
    };
  }

  live(): IovaRange[] {
    const parked = new Set([...this.cache.values()].flat());
    return this.snapshot().ranges.filter((r) => !parked.has(r.lo));
  }
}

const op = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('alloc' as const), pages: fc.constantFrom(1, 1, 1, 2, 4, 8, 8, 16, 32, 3, 40, 64) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('undo' as const), pages: fc.constantFrom(1, 2, 8, 64) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('limit' as const), limit: fc.integer({ min: 128, max: PAGES - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('burst' as const), pages: fc.constantFrom(1, 2), n: fc.integer({ min: 1, max: 200 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'free-all' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'restore' as const }) },
);

describe('IOVA allocator against a bitmap model', () => {
  it('same IOVAs, same tree and rcache, same live ranges, after every alloc, free, undo, limit change and restore', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 30, maxLength: 300, size: 'max' }), fc.constantFrom(0, 0x20000), (ops, start) => {
        let a = new IovaAllocator(PAGES * 4096 - 1, start);
        const m = new Model(PAGES - 1, Math.max(1, start / 4096));
        const live: number[] = [];
        for (const o of ops) {
          switch (o.kind) {
            case 'limit':
              a.limitPfn = o.limit;
              m.limitPfn = o.limit;
              break;
            case 'restore': {
              const b = new IovaAllocator();
              b.restore(JSON.parse(JSON.stringify(a.snapshot())));
              a = b;
              break;
            }
            case 'burst':
              // Many allocations of one size at once (then freed together, they overflow its stack).
              for (let k = 0; k < o.n; k++) {
                const want = m.alloc(o.pages);
                if (!want) {
                  expect(codeOf(() => a.alloc(o.pages))).toBe('NO_SPACE');
                  break;
                }
                expect(a.alloc(o.pages) / 4096).toBe(want.lo);
                live.push(want.lo);
              }
              break;
            case 'free-all':
              for (const lo of live.splice(0)) {
                a.free(lo * 4096);
                m.free(lo);
              }
              break;
            case 'free': {
              if (live.length === 0) break;
              const [lo] = live.splice(o.pick % live.length, 1);
              a.free(lo! * 4096);
              m.free(lo!);
              break;
            }
            case 'alloc':
            case 'undo': {
              const pages = IovaAllocator.pagesFor(o.pages * 4096);
              const want = m.alloc(pages);
              if (!want) {
                expect(codeOf(() => a.alloc(pages))).toBe('NO_SPACE');
                break;
              }
              expect(a.alloc(pages) / 4096).toBe(want.lo);
              if (o.kind === 'alloc') live.push(want.lo);
              else {
                // A refused mapping gives its IOVA back: to the stack it came from, or out of the tree.
                a.undoAlloc(want.lo * 4096);
                if (want.fromCache) m.cache.get(pages)!.push(want.lo);
                else m.tree.delete(want.lo);
              }
              break;
            }
          }
          expect(a.snapshot()).toEqual(m.snapshot());
          expect(a.live()).toEqual(m.live());
        }
      }),
      { numRuns: 60 },
    );
  });

  it('hundreds of live ranges filled and drained in order, in reverse and at random, with a burst back in between', () => {
    // The tree is a gap buffer: runs like a driver's (map many, unmap them in the order mapped) move its room far
    // and often, past the loop-copy size and through growth.
    const SPACE = 8192;
    const pattern = fc.record({
      n: fc.integer({ min: 1, max: 600 }),
      pages: fc.constantFrom(1, 2, 8, 8, 64, 40),
      order: fc.constantFrom('fifo', 'lifo', 'random'),
      keep: fc.integer({ min: 0, max: 50 }),
      seed: fc.nat(),
    });
    fc.assert(
      fc.property(fc.array(pattern, { minLength: 1, maxLength: 6 }), (runs) => {
        const a = new IovaAllocator(SPACE * 4096 - 1);
        const m = new Model(SPACE - 1, 1, SPACE);
        const live: number[] = [];
        for (const r of runs) {
          const pages = IovaAllocator.pagesFor(r.pages * 4096);
          for (let k = 0; k < r.n; k++) {
            const want = m.alloc(pages);
            if (!want) {
              expect(codeOf(() => a.alloc(pages))).toBe('NO_SPACE');
              break;
            }
            expect(a.alloc(pages) / 4096).toBe(want.lo);
            live.push(want.lo);
          }
          let seed = r.seed;
          while (live.length > r.keep) {
            const i = r.order === 'fifo' ? 0 : r.order === 'lifo' ? live.length - 1 : (seed = (seed * 1103515245 + 12345) >>> 0) % live.length;
            const [lo] = live.splice(i, 1);
            a.free(lo! * 4096);
            m.free(lo!);
          }
          expect(a.snapshot()).toEqual(m.snapshot());
          expect(a.live()).toEqual(m.live());
          const b = new IovaAllocator();
          b.restore(JSON.parse(JSON.stringify(a.snapshot())));
          expect(b.snapshot()).toEqual(a.snapshot());
        }
      }),
      { numRuns: 40 },
    );
  });

  it('an unknown IOVA is refused and changes nothing', () => {
    const a = new IovaAllocator();
    a.alloc(8);
    const before = a.snapshot();
    expect(codeOf(() => a.free(0x1000))).toBe('NOT_FOUND');
    expect(a.snapshot()).toEqual(before);
  });
});
