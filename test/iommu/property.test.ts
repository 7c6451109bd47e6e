import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IommuError } from '../../src/errors.js';
import { OUTCOME_OK } from '../../src/hw/smmu.js';
import { IOMMU_READ, IOMMU_WRITE } from '../../src/pgtable/desc.js';
import { WALK_OK, WalkResult, walk } from '../../src/pgtable/v7s.js';
import { RefModel, refPermission } from '../support/refmodel.js';
import { msmDevice, tinySession, v7s } from '../support/core.js';

const RAM = 0x80000000;
const RAM_SIZE = 0x03e00000; // below the page-table pool
const WINDOW = 0x04000000; // 64 MiB of IOVA space: room for supersections

const protArb = fc.constantFrom(1, 2, 3, 3 | 8, 3 | 32, 1 | 8, 3 | 4, 3 | 16);
const sizeArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 24 }).map((k) => k * 0x1000) },
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 4 }).map((k) => k * 0x10000) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 3 }).map((k) => k * 0x100000) },
  { weight: 1, arbitrary: fc.constant(0x1000000) },
);
const alignArb = fc.constantFrom(0x1000, 0x10000, 0x100000, 0x1000000);

type Cmd =
  | { c: 'map'; iova: number; paddr: number; size: number; prot: number }
  | { c: 'unmap'; iova: number; size: number }
  | { c: 'tx'; iova: number; access: number; priv: boolean }
  | { c: 'flush' }
  | { c: 'sync' };

function cmdArb(window: number, sizes: fc.Arbitrary<number>, aligns: fc.Arbitrary<number>): fc.Arbitrary<Cmd> {
  const at = (align: number, size: number, limit: number) => fc.integer({ min: 0, max: Math.max(0, Math.floor((limit - size) / align)) }).map((i) => i * align);
  return fc.oneof(
    { weight: 4, arbitrary: fc.tuple(sizes, aligns, protArb).chain(([size, align, prot]) =>
      fc.tuple(at(align, size, window), at(align, size, RAM_SIZE)).map(([iova, p]) => ({ c: 'map' as const, iova, paddr: RAM + p, size, prot }))) },
    { weight: 2, arbitrary: fc.tuple(sizes, aligns).chain(([size, align]) => at(align, size, window).map((iova) => ({ c: 'unmap' as const, iova, size }))) },
    { weight: 6, arbitrary: fc.record({ c: fc.constant('tx' as const), iova: fc.integer({ min: 0, max: window / 4 - 1 }).map((w) => w * 4), access: fc.integer({ min: 0, max: 2 }), priv: fc.boolean() }) },
    { weight: 1, arbitrary: fc.constant({ c: 'flush' as const }) },
    { weight: 1, arbitrary: fc.constant({ c: 'sync' as const }) },
  );
}

function codeOrOk(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
}

describe('property: emulator vs reference model', () => {
  it('strict domain, all page sizes: iova_to_phys, raw walk and transactions agree; never a stale hit (10,000+ ops)', () => {
    let ops = 0;
    fc.assert(
      fc.property(fc.array(cmdArb(WINDOW, sizeArb, alignArb), { minLength: 400, maxLength: 400 }), (cmds) => {
        const s = tinySession({ tlbEntries: 64 });
        const dev = msmDevice(s, 'dev0');
        const d = s.iommu.domainAlloc();
        s.iommu.attach(d.id, 'dev0');
        const ref = new RefModel();
        const w = new WalkResult();
        let stale = 0;
        s.bus.subscribe((e) => { if (e.type === 'stale-tlb-hit') stale++; });
        for (const cmd of cmds) {
          ops++;
          if (cmd.c === 'map') {
            expect(codeOrOk(() => s.iommu.map(d.id, cmd.iova, cmd.paddr, cmd.size, cmd.prot))).toBe(ref.map(cmd.iova, cmd.paddr, cmd.size, cmd.prot));
          } else if (cmd.c === 'unmap') {
            const want = ref.unmap(cmd.iova, cmd.size);
            let got: number | string;
            try { got = s.iommu.unmap(d.id, cmd.iova, cmd.size); } catch (e) { got = (e as IommuError).code; }
            expect(got).toBe(want === 0 ? 'NOT_MAPPED' : want);
          } else if (cmd.c === 'tx') {
            const want = ref.translate(cmd.iova);
            const walked = walk(s.soc.mem, v7s(d).l1, cmd.iova, w);
            expect(walked.status === WALK_OK ? walked.paddr : null).toBe(want);
            let itp: number | null = null;
            try { itp = s.iommu.iovaToPhys(d.id, cmd.iova).paddr; } catch { itp = null; }
            expect(itp).toBe(want);
            dev.bank.FSR = 0;
            const r = dev.smmu.translate(dev.bank, cmd.iova, cmd.access, cmd.priv, 0);
            if (want === null) expect(r.fault?.kind).toBe('translation');
            else {
              const perm = refPermission(ref.pages.get(cmd.iova >>> 12)!.prot, cmd.access, cmd.priv);
              expect(r.outcome === OUTCOME_OK ? 'ok' : r.fault?.kind).toBe(perm);
              expect(r.paddr).toBe(want);
            }
          } else if (cmd.c === 'flush') s.iommu.flush(d.id);
          else s.iommu.sync(d.id);
        }
        expect(stale).toBe(0);
        // Every leaf the table holds is one the reference holds, and vice versa.
        let refBytes = 0;
        for (const _ of ref.pages.keys()) refBytes += 0x1000;
        expect(d.mappedBytes).toBe(refBytes);
      }),
      { numRuns: 26, seed: 0x1001 },
    );
    expect(ops).toBeGreaterThanOrEqual(10_000);
  });

  it('deferred domain, 4K pages: stale hits reported exactly when a cached translation changed without a sync', () => {
    let ops = 0;
    const sizes = fc.integer({ min: 1, max: 4 }).map((k) => k * 0x1000);
    fc.assert(
      fc.property(fc.array(cmdArb(0x40000, sizes, fc.constant(0x1000)), { minLength: 500, maxLength: 500 }), (cmds) => {
        const s = tinySession({ tlbEntries: 1024 });
        const dev = msmDevice(s, 'dev0');
        const d = s.iommu.domainAlloc({ pgsizes: [0x1000], flushPolicy: 'deferred' });
        s.iommu.attach(d.id, 'dev0');
        const ref = new RefModel();
        const cached = new Map<number, { paddr: number; prot: number }>();
        const pending = new Set<number>();
        let stale = 0;
        s.bus.subscribe((e) => { if (e.type === 'stale-tlb-hit') stale++; });
        for (const cmd of cmds) {
          ops++;
          if (cmd.c === 'map') ref.map(cmd.iova, cmd.paddr, cmd.size, cmd.prot) === 'ok' && s.iommu.map(d.id, cmd.iova, cmd.paddr, cmd.size, cmd.prot);
          else if (cmd.c === 'unmap') {
            if (ref.unmap(cmd.iova, cmd.size)) {
              s.iommu.unmap(d.id, cmd.iova, cmd.size);
              for (let o = 0; o < cmd.size; o += 0x1000) pending.add((cmd.iova + o) >>> 12);
            }
          } else if (cmd.c === 'sync') {
            s.iommu.sync(d.id);
            for (const p of pending) cached.delete(p);
            pending.clear();
          } else if (cmd.c === 'flush') {
            s.iommu.flush(d.id);
            cached.clear();
            pending.clear();
          } else {
            const page = cmd.iova >>> 12;
            const before = stale;
            dev.bank.FSR = 0;
            const r = dev.smmu.translate(dev.bank, cmd.iova, cmd.access, cmd.priv, 0);
            const cur = ref.pages.get(page);
            const c = cached.get(page);
            if (c) {
              const isStale = !cur || cur.paddr !== c.paddr || cur.prot !== c.prot;
              expect(stale - before).toBe(isStale ? 1 : 0);
              expect(r.paddr).toBe(c.paddr + (cmd.iova & 0xfff));
            } else {
              expect(stale).toBe(before);
              if (cur) cached.set(page, { ...cur });
              else expect(r.fault?.kind).toBe('translation');
            }
          }
        }
      }),
      { numRuns: 20, seed: 7 },
    );
    expect(ops).toBeGreaterThanOrEqual(10_000);
  });
});

void IOMMU_READ;
void IOMMU_WRITE;
