/**
 * The v7s level helpers (the kernel's ARM_V7S_LVL_SHIFT / ARM_V7S_LVL_IDX / ARM_V7S_PTES_PER_LVL and the per-level
 * table/leaf predicates) against HARDWARE.md's facts; the page-size runs map/unmap hand the levels against the
 * page-by-page choice; and the pool's per-table live counts against the tables themselves, after random
 * map/unmap sequences with writes by someone else (a client poking descriptors) and snapshot restores between.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IommuError } from '../../src/errors.js';
import { OMAP4, TINY, type Profile } from '../../src/hw/profile.js';
import {
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
  PGSIZES,
  encodeLeaf,
  encodeTable,
  permToProt,
} from '../../src/pgtable/desc.js';
import { IOPGD_SECTION, IOPGD_SUPER, IOPGD_TABLE, IOPTE_LARGE, IOPTE_SMALL } from '../../src/pgtable/omap.js';
import {
  blockSize,
  CONT_PTES,
  iommuPgsize,
  iopteDeref,
  leafPerm,
  leafSize,
  LEVELS,
  lvlBits,
  lvlIdx,
  lvlShift,
  pickPgsize,
  pteIsCont,
  pteIsTable,
  pteIsValid,
  ptep,
  ptesPerLvl,
  tableSize,
  type Level,
  type V7sTable,
} from '../../src/pgtable/v7s.js';
import { tinySession } from '../support/core.js';

const u32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });

describe('level helpers agree with the hardware (HARDWARE.md, ARMv7 short descriptors)', () => {
  // Level 1: 4096 entries of 1 MiB, a 16 KiB table, index iova[31:20]; level 2: 256 entries of 4 KiB, 1 KiB, iova[19:12].
  const FACTS = { 1: { shift: 20, bits: 12, ptes: 4096, block: 0x100000, table: 0x4000 }, 2: { shift: 12, bits: 8, ptes: 256, block: 0x1000, table: 0x400 } } as const;

  it.each(LEVELS)('level %i: shift, bits, entries, block and table size', (lvl) => {
    const f = FACTS[lvl];
    expect([lvlShift(lvl), lvlBits(lvl), ptesPerLvl(lvl), blockSize(lvl), tableSize(lvl)]).toEqual([f.shift, f.bits, f.ptes, f.block, f.table]);
  });

  it('the levels tile the 32-bit space: an entry of level 1 is a whole table of level 2; CONT_PTES makes 16M and 64K', () => {
    expect(ptesPerLvl(1) * blockSize(1)).toBe(2 ** 32);
    expect(ptesPerLvl(2) * blockSize(2)).toBe(blockSize(1));
    expect(LEVELS.flatMap((l) => [blockSize(l), CONT_PTES * blockSize(l)]).sort((a, b) => a - b)).toEqual([...PGSIZES]);
  });

  it('index and entry address of any iova at every level', () => {
    fc.assert(
      fc.property(u32, fc.integer({ min: 0, max: 2 ** 18 - 1 }), (iova, t) => {
        const table = t * 0x4000;
        expect(lvlIdx(iova, 1)).toBe(Math.floor(iova / 0x100000));
        expect(lvlIdx(iova, 2)).toBe(Math.floor(iova / 0x1000) % 256);
        for (const lvl of LEVELS) {
          expect(lvlIdx(iova, lvl)).toBeLessThan(ptesPerLvl(lvl));
          expect(ptep(table, iova, lvl)).toBe(table + 4 * lvlIdx(iova, lvl));
        }
        // Level 1's index and level 2's are the iova's page number, split.
        expect(lvlIdx(iova, 1) * ptesPerLvl(2) + lvlIdx(iova, 2)).toBe(Math.floor(iova / 0x1000));
      }),
    );
  });

  const prot = fc.integer({ min: 0, max: 63 }).map((p) => p | IOMMU_READ);
  const protKept = (p: number) => p & (IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_PRIV | IOMMU_MMIO | (p & IOMMU_MMIO ? 0 : IOMMU_CACHE));

  it('v7s descriptors: a leaf of each page size is valid, not a table, contiguous for 64K and 16M, of its size and prot', () => {
    fc.assert(
      fc.property(fc.constantFrom(...PGSIZES), u32, prot, (size, pa, p) => {
        const paddr = (pa & -size) >>> 0;
        const lvl: Level = size >= blockSize(1) ? 1 : 2;
        const pte = encodeLeaf(size, paddr, p);
        expect(pteIsValid(pte)).toBe(true);
        expect(pteIsTable(pte, lvl)).toBe(false);
        expect(pteIsCont(pte, lvl)).toBe(size === CONT_PTES * blockSize(lvl));
        expect(leafSize(pte, lvl)).toBe(size);
        expect((pte & -size) >>> 0).toBe(paddr);
        expect(permToProt(leafPerm(pte, lvl))).toBe(protKept(p));
      }),
    );
  });

  it('table entries: only at level 1, and they point where they were made to', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 22 - 1 }), (k) => {
        const base = k * 0x400;
        const pte = encodeTable(base);
        expect(pteIsValid(pte) && pteIsTable(pte, 1)).toBe(true);
        expect(pteIsTable(pte, 2)).toBe(false);
        expect(iopteDeref(pte)).toBe(base);
        expect(pteIsValid(0)).toBe(false);
      }),
    );
  });

  it('OMAP descriptors have the same shape: the same predicates read them', () => {
    const pa = 0x9f000000;
    expect([pteIsTable(pa | IOPGD_TABLE, 1), pteIsTable(pa | IOPGD_SECTION, 1), pteIsCont(pa | IOPGD_SECTION, 1), pteIsCont(pa | IOPGD_SUPER, 1)]).toEqual([true, false, false, true]);
    expect([pteIsCont(pa | IOPTE_SMALL, 2), pteIsCont(pa | IOPTE_LARGE, 2), leafSize(pa | IOPTE_LARGE, 2), leafSize(pa | IOPGD_SUPER, 1)]).toEqual([false, true, 0x10000, 0x1000000]);
  });
});

describe('property: a page-size run (iommuPgsize with its count) is the page-by-page choice repeated', () => {
  it('same pages, same order', () => {
    const bitmap = fc.subarray([...PGSIZES], { minLength: 1 }).map((s) => s.reduce((a, b) => a | b, 0));
    fc.assert(
      fc.property(bitmap, fc.integer({ min: 0, max: 2 ** 20 - 1 }), fc.integer({ min: 0, max: 2 ** 20 - 1 }), fc.integer({ min: 1, max: 0x3000 }), (bm, i, p, n) => {
        const min = PGSIZES.find((s) => bm & s)!;
        const iova = i * 0x1000 - ((i * 0x1000) % min);
        const paddr = p * 0x1000 - ((p * 0x1000) % min);
        const size = Math.min(n * min, 2 ** 32 - Math.max(iova, paddr));
        const greedy: number[] = [];
        for (let d = 0; d + min <= size; ) {
          const sz = pickPgsize(bm, (iova + d) | (paddr + d), size - d);
          greedy.push(sz);
          d += sz;
        }
        const runs: number[] = [];
        const run = { pgsize: 0, count: 0 };
        for (let d = 0; d + min <= size; ) {
          iommuPgsize(bm, iova + d, paddr + d, size - d, run);
          expect(run.count).toBeGreaterThan(0);
          for (let k = 0; k < run.count; k++) runs.push(run.pgsize);
          d += run.pgsize * run.count;
        }
        expect(runs).toEqual(greedy);
      }),
      { numRuns: 500 },
    );
  });
});

// ---- live counts ---------------------------------------------------------------------------------------------------

const WINDOW = 0x10000000;
const SPAN = 0x04000000;
const RAM = 0x80000000;

const at = (align: number, size: number, limit: number) => fc.integer({ min: 0, max: Math.floor((limit - size) / align) }).map((i) => i * align);
const opArb = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom(0x1000, 0x3000, 0x10000, 0x30000, 0x100000, 0x1000000, 0x80000).chain((size) => {
      const align = size >= 0x1000000 ? 0x1000000 : size >= 0x100000 ? 0x100000 : size >= 0x10000 ? 0x10000 : 0x1000;
      return fc.tuple(at(align, size, SPAN), at(align, size, 0x01000000)).map(([iova, p]) => ({ c: 'map' as const, iova: WINDOW + iova, paddr: RAM + p, size }));
    }),
  },
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom(0x1000, 0x10000, 0x100000), fc.integer({ min: 1, max: 40 })).chain(([align, k]) => at(align, align * k, SPAN).map((iova) => ({ c: 'unmap' as const, iova: WINDOW + iova, size: align * k }))) },
  // Someone else writes a level-2 entry (a client's memory write): valid or cleared, in a table that exists.
  { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 0x80000002, 0x80001c72)).map(([t, j, v]) => ({ c: 'poke' as const, t, j, v })) },
  // A snapshot restore: the pool forgets every count.
  { weight: 1, arbitrary: fc.constant({ c: 'restore' as const }) },
);

const FAMILIES: Array<{ name: string; profile: Profile; device?: string }> = [
  { name: 'msm (v7s)', profile: TINY },
  { name: 'omap', profile: OMAP4, device: 'dsp' },
];

describe.each(FAMILIES)('property: per-table live counts, $name', ({ profile, device }) => {
  it.each(['split', 'refuse'] as const)('partialUnmap %s: every count the pool trusts is the table’s, and no empty L2 remains', (partialUnmap) => {
    let trusted = 0;
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 30, maxLength: 30 }), (ops) => {
        const s = tinySession({ profile });
        const d = s.iommu.domainAlloc({ ...(device ? { for: device } : {}), partialUnmap });
        const table = d.table as V7sTable;
        const pool = s.soc.ptPool;
        let cleared = false; // someone else cleared an entry: a table may be empty until an unmap goes through it
        for (const op of ops) {
          try {
            if (op.c === 'map') s.iommu.map(d.id, op.iova, op.paddr, op.size, IOMMU_READ | IOMMU_WRITE);
            else if (op.c === 'unmap') s.iommu.unmap(d.id, op.iova, op.size);
            else if (op.c === 'restore') pool.restore(pool.snapshot());
            else {
              const { l2 } = table.dump();
              if (l2.length) s.soc.mem.write32(l2[op.t % l2.length]!.base + 4 * op.j, op.v);
              cleared ||= op.v === 0;
            }
          } catch (e) {
            if (!(e instanceof IommuError)) throw e;
          }
          for (const t of table.dump().l2) {
            const held = pool.trustedLive(t.base);
            if (held !== null) {
              trusted++;
              expect(held).toBe(t.entries.length);
            }
            expect(pool.liveCount(t.base)).toBe(t.entries.length);
          }
          if (op.c === 'unmap' && !cleared) expect(table.dump().l2.filter((t) => t.entries.length === 0)).toEqual([]);
        }
      }),
      { numRuns: 30, seed: 0x11e5 },
    );
    expect(trusted).toBeGreaterThan(100);
  });
});

describe('refusals after the cheap paths change nothing (words written over zero, tables freed whole)', () => {
  const RW = IOMMU_READ | IOMMU_WRITE;
  const poolBytes = (s: ReturnType<typeof tinySession>) => Buffer.from(s.soc.mem.readBytes(s.soc.ptPool.base, 0x10000)).toString('hex');

  it('an unmap that frees a whole table, then is refused, leaves the table, its words and its count', () => {
    const s = tinySession();
    // Three L1 tables first: with d2's they fill the pool's first 64 KiB chunk, so its level-2 table lies in
    // another chunk than the level-1 words the rollback restores (the count must come back by itself).
    for (let i = 0; i < 3; i++) s.iommu.domainAlloc();
    const d2 = s.iommu.domainAlloc({ partialUnmap: 'refuse' });
    s.iommu.map(d2.id, 0x100000, RAM, 0x100000, RW); // a section
    s.iommu.map(d2.id, 0x200000, RAM, 0x1000, RW); // and a table beside it
    s.iommu.map(d2.id, 0x300000, RAM, 0x100000, RW); // a section the unmap below cuts
    const before = { dump: JSON.stringify((d2.table as V7sTable).dump()), bytes: poolBytes(s), used: s.soc.ptPool.bytesUsed, pages: [...d2.pages] };
    // 1M chunks: the section, then the whole table at 0x200000, then a 4K chunk that cuts the section at 0x300000.
    expect(() => s.iommu.unmap(d2.id, 0x100000, 0x201000)).toThrow(IommuError);
    expect({ dump: JSON.stringify((d2.table as V7sTable).dump()), bytes: poolBytes(s), used: s.soc.ptPool.bytesUsed, pages: [...d2.pages] }).toEqual(before);
    const l2 = (d2.table as V7sTable).dump().l2[0]!.base;
    expect(s.soc.ptPool.liveCount(l2)).toBe(1);
    expect(s.iommu.unmap(d2.id, 0x100000, 0x200000)).toBe(0x101000);
    expect((d2.table as V7sTable).dump().l2).toEqual([]);
    // The freed table is handed out again all zero.
    const d3 = s.iommu.domainAlloc({ pgsizes: [0x1000] });
    s.iommu.map(d3.id, 0x500000, RAM, 0x1000, RW);
    const t = (d3.table as V7sTable).dump().l2[0]!;
    expect(t.entries).toEqual([{ index: 0, desc: t.entries[0]!.desc }]);
    expect(s.soc.ptPool.liveCount(t.base)).toBe(1);
  });

  it('a map refused half way leaves the pool’s words as they were (new tables zero again)', () => {
    const s = tinySession();
    const d = s.iommu.domainAlloc({ pgsizes: [0x1000] });
    s.iommu.map(d.id, 0x00380000, RAM, 0x1000, RW);
    const before = { dump: JSON.stringify((d.table as V7sTable).dump()), bytes: poolBytes(s), used: s.soc.ptPool.bytesUsed };
    // Fills the tables for 0x100000..0x380000 (three of them new) before it reaches the page in use.
    expect(() => s.iommu.map(d.id, 0x00100000, RAM, 0x00300000, RW)).toThrow(IommuError);
    expect({ dump: JSON.stringify((d.table as V7sTable).dump()), bytes: poolBytes(s), used: s.soc.ptPool.bytesUsed }).toEqual(before);
    expect(s.iommu.map(d.id, 0x00100000, RAM, 0x00280000, RW).pages).toEqual([640, 0, 0, 0]);
  });
});
