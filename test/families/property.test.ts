/**
 * The property test of test/iommu/property.test.ts for the other families: random map / unmap / transactions /
 * flushes against the reference model, comparing the table (the family's own walker), iova_to_phys, the data path
 * and the mapped byte count. OMAP and the GART have no permission bits: the model stores read+write.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IommuError } from '../../src/errors.js';
import { OUTCOME_OK } from '../../src/hw/family.js';
import { OMAP4, TEGRA20 } from '../../src/hw/profile.js';
import { omapWalk } from '../../src/pgtable/omap.js';
import { WALK_OK, WalkResult } from '../../src/pgtable/v7s.js';
import { Session } from '../../src/session/session.js';
import type { Domain } from '../../src/iommu/domain.js';
import type { Profile } from '../../src/hw/profile.js';
import { RefModel } from '../support/refmodel.js';
import { GartTable, GART_ENTRY_VALID } from '../../src/pgtable/gart.js';

type Cmd =
  | { c: 'map'; iova: number; paddr: number; size: number; prot: number }
  | { c: 'unmap'; iova: number; size: number }
  | { c: 'tx'; iova: number; access: number }
  | { c: 'flush' };

interface FamilyCase {
  family: string;
  profile: Profile;
  device: string;
  window: { base: number; size: number };
  ram: { base: number; size: number };
  sizes: fc.Arbitrary<number>;
  aligns: fc.Arbitrary<number>;
  /** The hardware's own view of the table: the walker, or the GART's entries. */
  walk(s: Session, d: Domain, iova: number): number | null;
}

const w = new WalkResult();
const CASES: FamilyCase[] = [
  {
    family: 'omap',
    profile: OMAP4,
    device: 'dsp',
    window: { base: 0x10000000, size: 0x04000000 },
    ram: { base: 0x80000000, size: 0x10000000 },
    sizes: fc.oneof(
      { weight: 8, arbitrary: fc.integer({ min: 1, max: 24 }).map((k) => k * 0x1000) },
      { weight: 4, arbitrary: fc.integer({ min: 1, max: 4 }).map((k) => k * 0x10000) },
      { weight: 2, arbitrary: fc.integer({ min: 1, max: 3 }).map((k) => k * 0x100000) },
      { weight: 1, arbitrary: fc.constant(0x1000000) },
    ),
    aligns: fc.constantFrom(0x1000, 0x10000, 0x100000, 0x1000000),
    walk: (s, d, iova) => {
      const r = omapWalk(s.soc.mem, d.table.root, iova, w);
      return r.status === WALK_OK ? r.paddr : null;
    },
  },
  {
    family: 'gart',
    profile: TEGRA20,
    device: 'gr2d',
    window: { base: 0x58000000, size: 0x00100000 },
    ram: { base: 0x00000000, size: 0x1f000000 },
    sizes: fc.integer({ min: 1, max: 16 }).map((k) => k * 0x1000),
    aligns: fc.constant(0x1000),
    walk: (_s, d, iova) => {
      const t = d.table as GartTable;
      const e = t.entries[(iova - t.aperture.base) >>> 12]!;
      return e & GART_ENTRY_VALID ? ((e & 0x7ffff000) | (iova & 0xfff)) >>> 0 : null;
    },
  },
];

function code(fn: () => unknown): string | number {
  try {
    const r = fn();
    return typeof r === 'number' ? r : 'ok';
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
}

for (const fam of CASES) {
  describe(`property (${fam.family}): emulator vs reference model`, () => {
    it('strict domain: the hardware table, iova_to_phys and transactions agree with the model; never a stale hit', () => {
      const at = (align: number, size: number, limit: number) => fc.integer({ min: 0, max: Math.max(0, Math.floor((limit - size) / align)) }).map((i) => i * align);
      const cmd: fc.Arbitrary<Cmd> = fc.oneof(
        { weight: 4, arbitrary: fc.tuple(fam.sizes, fam.aligns, fc.constantFrom(1, 2, 3, 3 | 8)).chain(([size, align, prot]) =>
          fc.tuple(at(align, size, fam.window.size), at(align, size, fam.ram.size)).map(([i, p]) => ({ c: 'map' as const, iova: fam.window.base + i, paddr: fam.ram.base + p, size, prot }))) },
        { weight: 2, arbitrary: fc.tuple(fam.sizes, fam.aligns).chain(([size, align]) => at(align, size, fam.window.size).map((i) => ({ c: 'unmap' as const, iova: fam.window.base + i, size }))) },
        { weight: 6, arbitrary: fc.record({ c: fc.constant('tx' as const), iova: fc.integer({ min: 0, max: fam.window.size / 4 - 1 }).map((x) => fam.window.base + x * 4), access: fc.integer({ min: 0, max: 2 }) }) },
        { weight: 1, arbitrary: fc.constant({ c: 'flush' as const }) },
      );
      let ops = 0;
      fc.assert(
        fc.property(fc.array(cmd, { minLength: 300, maxLength: 300 }), (cmds) => {
          const s = new Session({ id: 's-prop', name: 'prop', profile: fam.profile });
          const dev = s.soc.device(fam.device);
          const d = s.iommu.domainAlloc({ for: fam.device });
          s.iommu.attach(d.id, fam.device);
          const ref = new RefModel(false);
          let stale = 0;
          s.bus.subscribe((e) => { if (e.type === 'stale-tlb-hit') stale++; });
          for (const c of cmds) {
            ops++;
            if (c.c === 'map') expect(code(() => s.iommu.map(d.id, c.iova, c.paddr, c.size, c.prot))).toBe(ref.map(c.iova, c.paddr, c.size, c.prot));
            else if (c.c === 'unmap') {
              const want = ref.unmap(c.iova, c.size);
              expect(code(() => s.iommu.unmap(d.id, c.iova, c.size))).toBe(want === 0 ? 'NOT_MAPPED' : want);
            } else if (c.c === 'tx') {
              const want = ref.translate(c.iova);
              expect(fam.walk(s, d, c.iova)).toBe(want);
              let itp: number | null = null;
              try { itp = s.iommu.iovaToPhys(d.id, c.iova).paddr; } catch { itp = null; }
              expect(itp).toBe(want);
              const r = dev.smmu.translate(dev.bank, c.iova, c.access, false, dev.smmu.defaultMid(dev.bank, c.access));
              if (want === null) expect(r.fault?.kind).toBe('translation');
              else {
                expect(r.outcome).toBe(OUTCOME_OK);
                expect(r.paddr).toBe(want);
              }
            } else s.iommu.flush(d.id);
          }
          expect(stale).toBe(0);
          expect(d.mappedBytes).toBe(ref.pages.size * 0x1000);
        }),
        { numRuns: 20, seed: 0x2002 },
      );
      expect(ops).toBeGreaterThanOrEqual(6000);
    });
  });
}
