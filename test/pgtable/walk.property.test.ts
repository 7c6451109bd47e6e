/**
 * The table walk (signed words, PhysMemory.tableWord) against the walk as HARDWARE.md states it, written with the
 * level helpers and read32/isRam: same status, addresses, leaf and permission for any descriptors, with tables and
 * leaves below and above 2 GiB, outside RAM and in a chunk only partly RAM.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PhysMemory, OUTSIDE_RAM } from '../../src/memory/phys.js';
import { L1_SECTION_BIT, L1_SUPERSECTION, L2_SMALL_BIT, L2_TYPE_LARGE, largePerm, sectionPerm, smallPerm, SZ_16M, SZ_1M, SZ_4K, SZ_64K } from '../../src/pgtable/desc.js';
import { iopteDeref, l1Base, ptep, pteIsTable, WALK_EXTERNAL, WALK_FAULT, WALK_OK, walk, WalkResult } from '../../src/pgtable/v7s.js';

/** RAM below and above 2 GiB, and a region that ends inside a 64 KiB chunk (a chunk partly RAM). */
const REGIONS = [
  { name: 'low', base: 0x10000000, size: 0x00100000 },
  { name: 'high', base: 0x80000000, size: 0x00200000 },
  { name: 'top', base: 0xfff00000, size: 0x00100000 },
  { name: 'partial', base: 0x20000000, size: 0x00008800 },
];

interface RefWalk {
  status: number;
  l1Addr: number;
  l2Addr: number;
  size?: number;
  vaBase?: number;
  paBase?: number;
  paddr?: number;
  perm?: number;
}

function refWalk(mem: PhysMemory, ttbr0: number, iova: number): RefWalk {
  const leaf = (l1Addr: number, l2Addr: number, pte: number, size: number, perm: number): RefWalk => {
    const vaBase = (iova & -size) >>> 0;
    const paBase = (pte & -size) >>> 0;
    return { status: WALK_OK, l1Addr, l2Addr, size, vaBase, paBase, paddr: (paBase | (iova & (size - 1))) >>> 0, perm };
  };
  const l1a = ptep(l1Base(ttbr0), iova, 1);
  if (!mem.isRam(l1a)) return { status: WALK_EXTERNAL, l1Addr: l1a, l2Addr: -1 };
  const d = mem.read32(l1a);
  if (d & L1_SECTION_BIT) return leaf(l1a, -1, d, d & L1_SUPERSECTION ? SZ_16M : SZ_1M, sectionPerm(d));
  if (!pteIsTable(d, 1)) return { status: WALK_FAULT, l1Addr: l1a, l2Addr: -1 };
  const l2a = ptep(iopteDeref(d), iova, 2);
  if (!mem.isRam(l2a)) return { status: WALK_EXTERNAL, l1Addr: l1a, l2Addr: l2a };
  const e = mem.read32(l2a);
  if (e & L2_SMALL_BIT) return leaf(l1a, l2a, e, SZ_4K, smallPerm(e));
  if (e & L2_TYPE_LARGE) return leaf(l1a, l2a, e, SZ_64K, largePerm(e));
  return { status: WALK_FAULT, l1Addr: l1a, l2Addr: l2a };
}

/** Addresses near the regions' edges and anywhere. */
const addr = fc.oneof(
  fc.constantFrom(...REGIONS).chain((r) => fc.integer({ min: -0x4000, max: r.size + 0x4000 }).map((o) => (r.base + o) >>> 0)),
  fc.integer({ min: 0, max: 0xffffffff }),
);
/** A descriptor of any kind, its address bits often pointing into RAM. */
const desc = fc.tuple(addr, fc.integer({ min: 0, max: 0xfff }), fc.boolean()).map(([a, low, keepLow]) => (keepLow ? (a & ~0xfff) | low : a) >>> 0);

describe('walk', () => {
  it('matches the walk written with ptep, read32 and isRam, for any tables anywhere', () => {
    // Each walk may first write its level-1 descriptor (any value), or a table descriptor to a level-2 table
    // (anywhere) and the level-2 descriptor there (any value): sections, supersections, tables, large and small
    // pages, faults and external aborts at either level.
    const aWalk = fc.record({ ttbr0: addr, iova: fc.integer({ min: 0, max: 0xffffffff }), l1: desc, l2Table: addr, l2: desc, mode: fc.integer({ min: 0, max: 2 }) });
    fc.assert(
      fc.property(fc.array(fc.tuple(addr, desc), { maxLength: 20 }), fc.array(aWalk, { minLength: 1, maxLength: 20 }), (writes, walks) => {
        const mem = new PhysMemory(REGIONS);
        for (const [a, v] of writes) if (mem.isRam(a & ~3)) mem.write32((a & ~3) >>> 0, v);
        const out = new WalkResult();
        for (const w of walks) {
          const l1a = ptep(l1Base(w.ttbr0), w.iova, 1);
          if (w.mode === 1 && mem.isRam(l1a)) mem.write32(l1a, w.l1);
          if (w.mode === 2 && mem.isRam(l1a)) {
            const table = ((w.l2Table & 0xfffffc00) | 1) >>> 0;
            mem.write32(l1a, table);
            const l2a = ptep(iopteDeref(table), w.iova, 2);
            if (mem.isRam(l2a)) mem.write32(l2a, w.l2);
          }
          const want = refWalk(mem, w.ttbr0, w.iova);
          const got = walk(mem, w.ttbr0, w.iova, out);
          expect(got.status).toBe(want.status);
          expect(got.l1Addr).toBe(want.l1Addr);
          expect(got.l2Addr).toBe(want.l2Addr);
          if (want.status === WALK_OK) expect({ size: got.size, vaBase: got.vaBase, paBase: got.paBase, paddr: got.paddr, perm: got.perm }).toEqual({ size: want.size, vaBase: want.vaBase, paBase: want.paBase, paddr: want.paddr, perm: want.perm });
        }
      }),
      { numRuns: 500 },
    );
  });

  it('tableWord is read32 as a signed word in RAM and OUTSIDE_RAM elsewhere', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(addr, fc.integer({ min: 0, max: 0xffffffff })), { maxLength: 20 }), fc.array(addr, { maxLength: 40 }), (writes, reads) => {
        const mem = new PhysMemory(REGIONS);
        for (const [a, v] of writes) if (mem.isRam(a & ~3)) mem.write32(a & ~3, v);
        for (const a0 of [...reads, ...writes.map(([a]) => a)]) {
          const a = a0 & ~3;
          const want = mem.isRam(a >>> 0) ? mem.read32(a >>> 0) | 0 : OUTSIDE_RAM;
          // The same address unsigned and signed.
          expect(mem.tableWord(a >>> 0)).toBe(want);
          expect(mem.tableWord(a | 0)).toBe(want);
        }
      }),
      { numRuns: 300 },
    );
  });
});
