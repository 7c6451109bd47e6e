import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Session } from '../../src/session/session.js';
import { TINY } from '../../src/hw/profile.js';
import { IommuError } from '../../src/errors.js';

const RW = 3;

/**
 * The session's page limit counts the leaves of every domain as they are now: maps and unmaps in any domain,
 * domains freed with their pages, and a restored session's domains (the counter the check reads is kept, not
 * summed each time).
 */
describe('maxMappedPages across domains', () => {
  it('a map is refused exactly when the leaves of all live domains would pass the limit', () => {
    const LIMIT = 24;
    type Op = { c: 'map'; d: number; page: number; n: number } | { c: 'unmap'; d: number; page: number; n: number } | { c: 'free'; d: number } | { c: 'restore' };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ c: fc.constant('map' as const), d: fc.nat(2), page: fc.nat(31), n: fc.integer({ min: 1, max: 10 }) }) },
      { weight: 3, arbitrary: fc.record({ c: fc.constant('unmap' as const), d: fc.nat(2), page: fc.nat(31), n: fc.integer({ min: 1, max: 10 }) }) },
      { weight: 1, arbitrary: fc.record({ c: fc.constant('free' as const), d: fc.nat(2) }) },
      { weight: 1, arbitrary: fc.constant({ c: 'restore' as const }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        let s = new Session({ id: 's', name: 's', profile: TINY, limits: { maxMappedPages: LIMIT } });
        // Per domain slot: its id and its mapped pages (a model of the table: page numbers).
        const doms: Array<{ id: string; pages: Set<number> }> = [0, 1, 2].map(() => ({ id: s.iommu.domainAlloc({ pgsizes: [0x1000] }).id, pages: new Set() }));
        const total = () => doms.reduce((n, d) => n + d.pages.size, 0);
        for (const o of ops) {
          const d = doms[(o as { d?: number }).d ?? 0]!;
          if (o.c === 'map') {
            const want = [...Array(o.n).keys()].map((k) => o.page + k);
            let err: string | null = null;
            try {
              s.iommu.map(d.id, o.page * 0x1000, 0x80000000, o.n * 0x1000, RW);
            } catch (e) {
              err = (e as IommuError).code;
            }
            expect(err).toBe(want.some((p) => d.pages.has(p)) ? 'ALREADY_MAPPED' : total() + o.n > LIMIT ? 'LIMIT' : null);
            if (err === null) for (const p of want) d.pages.add(p);
          } else if (o.c === 'unmap') {
            const gone = [...Array(o.n).keys()].map((k) => o.page + k).filter((p) => d.pages.has(p));
            let refused = false;
            try {
              s.iommu.unmap(d.id, o.page * 0x1000, o.n * 0x1000);
            } catch {
              refused = true;
            }
            expect(refused).toBe(gone.length === 0);
            for (const p of gone) d.pages.delete(p);
          } else if (o.c === 'free') {
            s.iommu.domainFree(d.id);
            d.id = s.iommu.domainAlloc({ pgsizes: [0x1000] }).id;
            d.pages.clear();
          } else {
            const snap = JSON.parse(JSON.stringify(s.snapshot()));
            s = new Session({ id: 's', name: 's', profile: TINY, limits: { maxMappedPages: LIMIT } });
            s.restoreSnapshot(snap);
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});
