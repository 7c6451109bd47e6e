import { describe, expect, it } from 'vitest';
import { IOMMU_NOEXEC, IOMMU_READ, IOMMU_WRITE } from '../../src/pgtable/desc.js';
import { codeOf, tinySession, v7s } from '../support/core.js';

const RW = IOMMU_READ | IOMMU_WRITE;
const RAM = 0x80000000;
const POOL = 0x83e00000;

describe('io-pgtable self-test sequence (tiny profile)', () => {
  it('first domain has TTBR0 at the pool base; an L2 table follows the L1', () => {
    const s = tinySession();
    const d = s.iommu.domainAlloc();
    expect(v7s(d).l1).toBe(POOL);
    s.iommu.map(d.id, 0x1000, RAM + 0x1000, 0x1000, RW);
    const dump = v7s(d).dump();
    expect(dump.l1).toEqual([{ index: 0, desc: (POOL + 0x4000 + 1) }]);
    expect(dump.l2).toEqual([{ base: POOL + 0x4000, entries: [{ index: 1, desc: 0x80001c72 }] }]);
  });

  it.each([
    ['4K', 0x1000, [1, 0, 0, 0]],
    ['64K', 0x10000, [0, 1, 0, 0]],
    ['1M', 0x100000, [0, 0, 1, 0]],
    ['16M', 0x1000000, [0, 0, 0, 1]],
  ])('%s: map, iova_to_phys, map again fails, unmap, re-map', (_n, size, pages) => {
    const s = tinySession();
    const d = s.iommu.domainAlloc();
    const iova = 0x10000000;
    const r = s.iommu.map(d.id, iova, RAM, size as number, RW);
    expect(r.pages).toEqual(pages);
    expect(s.iommu.iovaToPhys(d.id, iova + (size as number) - 4)).toEqual({ iova: iova + (size as number) - 4, paddr: RAM + (size as number) - 4, pageSize: size, prot: RW });
    expect(codeOf(() => s.iommu.map(d.id, iova, RAM, 0x1000, RW))).toBe('ALREADY_MAPPED');
    expect(s.iommu.unmap(d.id, iova, size as number)).toBe(size);
    expect(codeOf(() => s.iommu.iovaToPhys(d.id, iova))).toBe('NOT_MAPPED');
    expect(s.iommu.map(d.id, iova, RAM, size as number, RW).pages).toEqual(pages);
  });

  it('chooses the largest page sizes that alignment of iova and paddr allows', () => {
    const s = tinySession();
    const d = s.iommu.domainAlloc();
    // 0x00ff0000..0x02100000: 64K up to 1M boundary, sections to 16M, one supersection, then a section.
    expect(s.iommu.map(d.id, 0x00ff0000, RAM + 0x00ff0000, 0x01110000, RW).pages).toEqual([0, 1, 1, 1]);
    // paddr only 4K aligned: every page 4K.
    expect(s.iommu.map(d.id, 0x04000000, RAM + 0x1000, 0x20000, RW).pages).toEqual([32, 0, 0, 0]);
  });

  it('refuses bad arguments in the kernel order: alignment, range, prot', () => {
    const s = tinySession();
    const d = s.iommu.domainAlloc();
    expect(codeOf(() => s.iommu.map(d.id, 0x1001, RAM, 0x1000, RW))).toBe('UNALIGNED');
    expect(codeOf(() => s.iommu.map(d.id, 0xfffff000, RAM, 0x2000, RW))).toBe('OUT_OF_RANGE');
    expect(codeOf(() => s.iommu.map(d.id, 0x1000, RAM, 0, RW))).toBe('OUT_OF_RANGE');
    expect(codeOf(() => s.iommu.map(d.id, 0x1000, RAM, 0x1000, IOMMU_NOEXEC))).toBe('BAD_REQUEST');
    expect(v7s(d).dump().l1).toEqual([]);
  });

  it('a map that hits an existing leaf half way rolls back completely', () => {
    const s = tinySession();
    const d = s.iommu.domainAlloc();
    s.iommu.map(d.id, 0x00205000, RAM, 0x1000, RW);
    const before = JSON.stringify(v7s(d).dump());
    expect(codeOf(() => s.iommu.map(d.id, 0x00000000, RAM, 0x00400000, RW))).toBe('ALREADY_MAPPED');
    expect(JSON.stringify(v7s(d).dump())).toBe(before);
    expect(d.pages).toEqual([1, 0, 0, 0]);
    expect(s.soc.ptPool.bytesUsed).toBe(0x4000 + 0x400);
  });

  it('64K partial unmap: the large page becomes 16 small pages, one removed', () => {
    const s = tinySession();
    const d = s.iommu.domainAlloc();
    s.iommu.map(d.id, 0x10000, RAM + 0x10000, 0x10000, RW);
    expect(s.iommu.unmap(d.id, 0x13000, 0x1000)).toBe(0x1000);
    const l2 = v7s(d).dump().l2[0]!;
    expect(l2.entries.length).toBe(15);
    expect(l2.entries[0]).toEqual({ index: 16, desc: 0x80010c72 });
    expect(l2.entries.find((e) => e.index === 19)).toBeUndefined();
    expect(l2.entries[3]).toEqual({ index: 20, desc: 0x80014c72 });
    expect(d.pages).toEqual([15, 0, 0, 0]);
  });

  it('1M section cut by 4K leaves 255 small pages; cut by 64K leaves 15 large pages', () => {
    const s = tinySession();
    const d = s.iommu.domainAlloc();
    s.iommu.map(d.id, 0x00100000, RAM + 0x00100000, 0x100000, RW);
    s.iommu.map(d.id, 0x00200000, RAM + 0x00200000, 0x100000, RW);
    expect(s.iommu.unmap(d.id, 0x00100000, 0x1000)).toBe(0x1000);
    expect(s.iommu.unmap(d.id, 0x00210000, 0x10000)).toBe(0x10000);
    const { l1, l2 } = v7s(d).dump();
    expect(l1.map((e) => e.index)).toEqual([1, 2]);
    expect(l2[0]!.entries.length).toBe(255);
    expect(l2[0]!.entries[0]).toEqual({ index: 1, desc: 0x80101c72 });
    expect(l2[1]!.entries.length).toBe(240);
    expect(l2[1]!.entries[0]).toEqual({ index: 0, desc: 0x80201c31 });
    expect(l2[1]!.entries[16]).toEqual({ index: 32, desc: 0x80221c31 });
    expect(d.pages).toEqual([255, 15, 0, 0]);
    expect(s.iommu.iovaToPhys(d.id, 0x00234567).paddr).toBe(0x80234567);
  });

  it('16M supersection cut by 4K: 16 sections, then the first an L2 table of 255 pages', () => {
    const s = tinySession();
    const d = s.iommu.domainAlloc();
    s.iommu.map(d.id, 0x01000000, RAM, 0x1000000, RW);
    expect(s.iommu.unmap(d.id, 0x01000000, 0x1000)).toBe(0x1000);
    const { l1, l2 } = v7s(d).dump();
    expect(l1.length).toBe(16);
    expect(l1[1]).toEqual({ index: 17, desc: 0x80131c02 });
    expect(l2[0]!.entries.length).toBe(255);
    expect(d.pages).toEqual([255, 0, 15, 0]);
    expect(d.mappedBytes).toBe(0x1000000 - 0x1000);
  });

  it('partialUnmap refuse: PARTIAL_UNMAP and nothing changes', () => {
    const s = tinySession();
    const d = s.iommu.domainAlloc({ partialUnmap: 'refuse' });
    s.iommu.map(d.id, 0x00100000, RAM, 0x100000, RW);
    const before = JSON.stringify(v7s(d).dump());
    expect(codeOf(() => s.iommu.unmap(d.id, 0x00100000, 0x1000))).toBe('PARTIAL_UNMAP');
    expect(JSON.stringify(v7s(d).dump())).toBe(before);
    expect(s.iommu.unmap(d.id, 0x00100000, 0x100000)).toBe(0x100000);
  });

  it('unmap skips holes; nothing mapped is NOT_MAPPED', () => {
    const s = tinySession();
    const d = s.iommu.domainAlloc();
    s.iommu.map(d.id, 0x1000, RAM, 0x1000, RW);
    s.iommu.map(d.id, 0x5000, RAM, 0x1000, RW);
    expect(s.iommu.unmap(d.id, 0, 0x10000)).toBe(0x2000);
    expect(codeOf(() => s.iommu.unmap(d.id, 0, 0x10000))).toBe('NOT_MAPPED');
  });

  it('full-range unmap frees every L2 table', () => {
    const s = tinySession();
    const d = s.iommu.domainAlloc();
    s.iommu.map(d.id, 0x0, RAM, 0x300000, RW);
    s.iommu.map(d.id, 0x10001000, RAM, 0x1000, RW);
    s.iommu.map(d.id, 0x20010000, RAM, 0x10000, RW);
    s.iommu.unmap(d.id, 0x00001000, 0x1000);
    expect(s.soc.ptPool.bytesUsed).toBe(0x4000 + 3 * 0x400);
    expect(s.iommu.unmap(d.id, 0, 2 ** 32)).toBe(0x300000 - 0x1000 + 0x1000 + 0x10000);
    expect(v7s(d).dump()).toEqual({ l1: [], l2: [] });
    expect(s.soc.ptPool.bytesUsed).toBe(0x4000);
    expect(d.pages).toEqual([0, 0, 0, 0]);
  });

  it('mappings merge adjacent pages with contiguous paddr and equal prot', () => {
    const s = tinySession();
    const d = s.iommu.domainAlloc();
    s.iommu.map(d.id, 0x000f0000, RAM + 0x000f0000, 0x00120000, RW);
    s.iommu.map(d.id, 0x00300000, RAM, 0x1000, IOMMU_READ);
    expect(s.iommu.mappings(d.id)).toEqual([
      { iova: 0x000f0000, paddr: RAM + 0x000f0000, size: 0x120000, pageSize: 0x100000, prot: RW },
      { iova: 0x00300000, paddr: RAM, size: 0x1000, pageSize: 0x1000, prot: IOMMU_READ },
    ]);
    expect(s.iommu.mappings(d.id, 0x00200000, 2 ** 32, 1)).toEqual([{ iova: 0x00200000, paddr: RAM + 0x00200000, size: 0x10000, pageSize: 0x10000, prot: RW }]);
  });

  it.each([
    ['16M', 0x1000000, 0x10000000],
    ['1M', 0x100000, 0x10100000],
    ['64K', 0x10000, 0x10010000],
    ['4K', 0x1000, 0x10001000],
  ])('mappings from an address inside a %s block returns the block (regression: a supersection was skipped)', (_n, size, iova) => {
    const s = tinySession();
    const d = s.iommu.domainAlloc();
    s.iommu.map(d.id, iova as number, RAM, size as number, RW);
    const inside = (iova as number) + (size as number) - 0x1000;
    expect(s.iommu.iovaToPhys(d.id, inside).pageSize).toBe(size);
    for (const from of [inside, (iova as number) + 0x800, iova as number]) {
      expect(s.iommu.mappings(d.id, from)).toEqual([{ iova, paddr: RAM, size, pageSize: size, prot: RW }]);
    }
    expect(s.iommu.mappings(d.id, (iova as number) + (size as number))).toEqual([]);
  });

  it('NO_SPACE when the page-table pool is exhausted, atomically', () => {
    const s = tinySession();
    const d = s.iommu.domainAlloc({ pgsizes: [0x1000] });
    // 2 MiB pool - 16 KiB L1 = 2032 L2 tables; each 1 MiB of 4K pages takes one.
    expect(codeOf(() => s.iommu.map(d.id, 0, RAM, 2033 * 0x100000, RW))).toBe('NO_SPACE');
    expect(s.soc.ptPool.bytesUsed).toBe(0x4000);
    expect(v7s(d).dump().l1).toEqual([]);
  });
});

describe('alignment checks (masked for 32-bit whole numbers)', () => {
  it('checkMapArgs and checkUnmapArgs refuse UNALIGNED exactly when x % minimum page size is not 0; pickPgsize picks as with %', async () => {
    const fc = (await import('fast-check')).default;
    const { checkMapArgs, checkUnmapArgs, pickPgsize } = await import('../../src/pgtable/v7s.js');
    const SIZES = [0x1000, 0x10000, 0x100000, 0x1000000];
    const addr = fc.oneof(
      fc.integer({ min: 0, max: 0xffffffff }).map((x) => x & ~0xfff),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: -(2 ** 34), max: 2 ** 34 }),
      fc.double({ min: -(2 ** 33), max: 2 ** 33, noNaN: true }),
      fc.constantFrom(-0, 2 ** 32, 2 ** 32 + 0x1000, 0x80000000, 0xfffff000, 4096.5),
    );
    const unaligned = (f: () => void) => {
      try {
        f();
        return false;
      } catch (e) {
        return (e as { code?: string }).code === 'UNALIGNED';
      }
    };
    fc.assert(
      fc.property(fc.subarray(SIZES, { minLength: 1 }), addr, addr, (sizes, x, y) => {
        const cfg = { pgsizeBitmap: sizes.reduce((a, b) => a | b, 0), partialUnmap: 'split' as const };
        const min = sizes[0]!;
        const off = (v: number) => v % min !== 0;
        expect(unaligned(() => checkMapArgs(cfg, x, y, min, IOMMU_READ))).toBe(off(x) || off(y));
        expect(unaligned(() => checkUnmapArgs(cfg, x, y))).toBe(off(x) || off(y));
        // iommu_pgsize's choice, on the signed iova | paddr the map passes and on plain values.
        const pick = (merge: number, left: number) => [...SIZES].reverse().find((sz) => (cfg.pgsizeBitmap & sz) !== 0 && sz <= left && merge % sz === 0) ?? 0;
        for (const merge of [x | y, x, y]) expect(pickPgsize(cfg.pgsizeBitmap, merge, 0x2000000)).toBe(pick(merge, 0x2000000));
      }),
      { numRuns: 2000, seed: 16 },
    );
  });
});
