/**
 * Property: unmap over large pages, against a reference of leaves (not descriptors). The reference applies
 * HARDWARE.md's split rule in its own words: the range goes in chunks by the map's page-size choice; a chunk that
 * cuts a 16M supersection makes it 16 sections, a 64K large page 16 small pages; a section cut by a smaller chunk
 * becomes pages of the chunk's size (64K for a 64K chunk, else 4K); then the chunk's leaves go. After every
 * operation the table's leaves (iova, paddr, size, prot) equal the reference's exactly, the page counts and the
 * pool agree with them, and no empty level-2 table is left. With partialUnmap "refuse", a cut is PARTIAL_UNMAP and
 * changes nothing.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IommuError } from '../../src/errors.js';
import { OMAP4, TINY, type Profile } from '../../src/hw/profile.js';
import type { Domain } from '../../src/iommu/domain.js';
import { PGSIZES } from '../../src/pgtable/desc.js';
import { pickPgsize, type V7sTable } from '../../src/pgtable/v7s.js';
import { tinySession } from '../support/core.js';

const WINDOW = 0x10000000; // iova base: 64 MiB above it
const SPAN = 0x04000000;
const RAM = 0x80000000;
const SZ_4K = 0x1000;
const SZ_64K = 0x10000;
const SZ_1M = 0x100000;
const SZ_16M = 0x1000000;

interface Leaf {
  paddr: number;
  size: number;
  prot: number;
}

/** Leaves by iova: the reference page table. */
class LeafModel {
  readonly leaves = new Map<number, Leaf>();

  constructor(private readonly protOf: (prot: number) => number) {}

  private overlapping(iova: number, size: number): number[] {
    return [...this.leaves.entries()].filter(([va, l]) => va < iova + size && va + l.size > iova).map(([va]) => va);
  }

  map(iova: number, paddr: number, size: number, prot: number): 'ok' | 'ALREADY_MAPPED' {
    if (this.overlapping(iova, size).length) return 'ALREADY_MAPPED';
    for (let done = 0; done < size; ) {
      const sz = pickPgsize(PGSIZES.reduce((a, b) => a | b, 0), (iova + done) | (paddr + done), size - done);
      this.leaves.set(iova + done, { paddr: paddr + done, size: sz, prot: this.protOf(prot) });
      done += sz;
    }
    return 'ok';
  }

  /** Replaces the leaf at va by leaves of `size`. */
  private split(va: number, size: number): void {
    const l = this.leaves.get(va)!;
    this.leaves.delete(va);
    for (let o = 0; o < l.size; o += size) this.leaves.set(va + o, { paddr: l.paddr + o, size, prot: l.prot });
  }

  /** Bytes unmapped, or the refusal (nothing changed then). */
  unmap(iova: number, size: number, refuse: boolean): number | 'PARTIAL_UNMAP' | 'NOT_MAPPED' {
    const saved = new Map(this.leaves);
    let bytes = 0;
    for (let done = 0; done < size; ) {
      const a = iova + done;
      const chunk = pickPgsize(PGSIZES.reduce((x, y) => x | y, 0), a, size - done);
      for (const va of this.overlapping(a, chunk)) {
        let l = this.leaves.get(va)!;
        if (l.size <= chunk) continue;
        if (refuse) {
          this.leaves.clear();
          for (const [k, v] of saved) this.leaves.set(k, v);
          return 'PARTIAL_UNMAP';
        }
        let at = va;
        if (l.size === SZ_16M) {
          this.split(va, SZ_1M);
          at = a - (a % SZ_1M);
          l = this.leaves.get(at)!;
        }
        if (l.size === SZ_1M && chunk < SZ_1M) {
          this.split(at, chunk === SZ_64K ? SZ_64K : SZ_4K);
          at = a - (a % (chunk === SZ_64K ? SZ_64K : SZ_4K));
          l = this.leaves.get(at)!;
        }
        if (l.size === SZ_64K && chunk === SZ_4K) this.split(at, SZ_4K);
      }
      for (const va of this.overlapping(a, chunk)) {
        bytes += this.leaves.get(va)!.size;
        this.leaves.delete(va);
      }
      done += chunk;
    }
    return bytes === 0 ? 'NOT_MAPPED' : bytes;
  }

  sorted(): Array<{ iova: number } & Leaf> {
    return [...this.leaves.entries()].sort(([a], [b]) => a - b).map(([iova, l]) => ({ iova, ...l }));
  }
}


const at = (align: number, size: number, limit: number) => fc.integer({ min: 0, max: Math.floor((limit - size) / align) }).map((i) => i * align);
const blockArb = fc.constantFrom(SZ_16M, SZ_16M, SZ_1M, SZ_1M, 2 * SZ_1M, SZ_64K, 3 * SZ_64K, SZ_4K);
const opArb = fc.oneof(
  { weight: 1, arbitrary: fc.tuple(blockArb, fc.constantFrom(1, 2, 3, 3 | 8, 3 | 32, 3 | 4, 3 | 16)).chain(([size, prot]) => {
    const align = size >= SZ_16M ? SZ_16M : size >= SZ_1M ? SZ_1M : size >= SZ_64K ? SZ_64K : SZ_4K;
    return fc.tuple(at(align, size, SPAN), at(align, size, 0x03000000)).map(([iova, p]) => ({ c: 'map' as const, iova: WINDOW + iova, paddr: RAM + p, size, prot }));
  }) },
  // Pieces that cut blocks: 4K and 64K multiples anywhere, sections, and ranges across block edges.
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(SZ_4K, SZ_64K, SZ_1M), fc.integer({ min: 1, max: 40 })).chain(([align, k]) =>
    at(align, align * k, SPAN).map((iova) => ({ c: 'unmap' as const, iova: WINDOW + iova, size: align * k }))) },
);

function leavesOf(d: Domain): Array<{ iova: number } & Leaf> {
  const out: Array<{ iova: number } & Leaf> = [];
  d.table.forEachLeaf(0, 2 ** 32, (iova, paddr, size, prot) => {
    out.push({ iova, paddr, size, prot });
  });
  return out;
}

function outcome(fn: () => number | unknown): number | string {
  try {
    const r = fn();
    return typeof r === 'number' ? r : 'ok';
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
}

const FAMILIES: Array<{ name: string; profile: Profile; device?: string; protOf: (p: number) => number }> = [
  { name: 'msm (v7s)', profile: TINY, protOf: (p) => p | 1 },
  { name: 'omap', profile: OMAP4, device: 'dsp', protOf: () => 3 },
];

describe.each(FAMILIES)('property: unmap splitting large pages, $name, against a leaf reference', ({ profile, device, protOf }) => {
  it.each(['split', 'refuse'] as const)('partialUnmap %s', (partialUnmap) => {
    let cuts = 0;
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 40, maxLength: 40 }), (ops) => {
        const s = tinySession({ profile });
        const d = s.iommu.domainAlloc({ ...(device ? { for: device } : {}), partialUnmap });
        const ref = new LeafModel(protOf);
        const poolBase = s.soc.ptPool.bytesUsed; // the L1
        for (const op of ops) {
          if (op.c === 'map') {
            expect(outcome(() => s.iommu.map(d.id, op.iova, op.paddr, op.size, op.prot))).toBe(ref.map(op.iova, op.paddr, op.size, op.prot));
          } else {
            const want = ref.unmap(op.iova, op.size, partialUnmap === 'refuse');
            if (want === 'PARTIAL_UNMAP') cuts++;
            expect(outcome(() => s.iommu.unmap(d.id, op.iova, op.size))).toBe(want);
          }
          const leaves = leavesOf(d);
          expect(leaves).toEqual(ref.sorted());
          const pages = [0, 0, 0, 0];
          for (const l of leaves) pages[PGSIZES.indexOf(l.size as (typeof PGSIZES)[number])]!++;
          expect(d.pageCounts).toEqual(pages);
          expect(d.mappedBytes).toBe(leaves.reduce((n, l) => n + l.size, 0));
          const { l2 } = (d.table as V7sTable).dump();
          expect(l2.filter((t) => t.entries.length === 0)).toEqual([]);
          expect(s.soc.ptPool.bytesUsed).toBe(poolBase + l2.length * 0x400);
        }
      }),
      { numRuns: 25, seed: 0x7501 },
    );
    if (partialUnmap === 'refuse') expect(cuts).toBeGreaterThan(0);
  });
});
