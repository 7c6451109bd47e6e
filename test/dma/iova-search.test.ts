/**
 * The IOVA allocator's search starts below the last range it took for a size (issue 16: 1,024 live mappings made
 * every allocation scan them all); its results must stay exactly those of a search from the top of the space.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IovaAllocator, type IovaRange } from '../../src/dma/iova.js';

/** The highest start of `pages` free pages aligned to their power of two, in [start, limit]; -1 when none. */
function highestFit(ranges: IovaRange[], pages: number, start: number, limit: number): number {
  const align = 2 ** Math.ceil(Math.log2(pages));
  for (let lo = Math.floor((limit + 1 - pages) / align) * align; lo >= start; lo -= align) {
    if (!ranges.some((r) => r.lo <= lo + pages - 1 && lo <= r.hi)) return lo;
  }
  return -1;
}

const op = fc.oneof(
  fc.record({ kind: fc.constant('alloc' as const), pages: fc.constantFrom(1, 2, 4, 8, 16, 32, 3, 40, 64) }),
  fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('limit' as const), limit: fc.integer({ min: 256, max: 1023 }) }),
);

describe('IOVA allocator search', () => {
  it('every allocation from the tree is the highest aligned fit (cache first, then the tree, then the tree with the cache returned)', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const a = new IovaAllocator(1024 * 4096 - 1);
        const live: number[] = [];
        for (const o of ops) {
          if (o.kind === 'limit') {
            a.limitPfn = o.limit;
            continue;
          }
          if (o.kind === 'free') {
            if (live.length === 0) continue;
            const [iova] = live.splice(o.pick % live.length, 1);
            a.free(iova!);
            continue;
          }
          const s = a.snapshot();
          const pages = IovaAllocator.pagesFor(o.pages * 4096);
          const stack = s.cache.find(([p]) => p === pages)?.[1] ?? [];
          let want: number;
          if (stack.length) want = stack[stack.length - 1]!;
          else {
            want = highestFit(s.ranges, pages, 1, s.limitPfn);
            if (want < 0) {
              const parked = new Set(s.cache.flatMap(([, los]) => los));
              want = highestFit(s.ranges.filter((r) => !parked.has(r.lo)), pages, 1, s.limitPfn);
            }
          }
          if (want < 0) {
            expect(() => a.alloc(pages)).toThrow(/IOVA space exhausted/);
            continue;
          }
          const got = a.alloc(pages) / 4096;
          expect(got).toBe(want);
          live.push(got * 4096);
        }
      }),
      { numRuns: 300 },
    );
  });
});
