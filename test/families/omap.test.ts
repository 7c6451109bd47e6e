import { describe, expect, it } from 'vitest';
import { OmapMmu } from '../../src/hw/omap/mmu.js';
import { OMAP4 } from '../../src/hw/profile.js';
import { Session } from '../../src/session/session.js';
import type { IommuEvent } from '../../src/events/bus.js';
import { IOMMU_READ, IOMMU_WRITE } from '../../src/pgtable/desc.js';
import { codeOf } from '../support/core.js';

const RW = IOMMU_READ | IOMMU_WRITE;
const omapSession = () => new Session({ id: 's-omap', name: 'omap', profile: OMAP4 });
const mmu = (s: Session, name: string) => s.soc.smmu(name) as OmapMmu;
const run = (s: Session, cmd: Parameters<Session['run']>[1]) => s.run(null, cmd).result;
const mmio = (s: Session, smmu: string, ops: Array<{ op: 'read' | 'write'; offset: number; value?: number }>) =>
  (run(s, { op: 'mmio', smmu, ops }) as Array<{ value: number }>).map((r) => r.value);

describe('OMAP IOMMU (profile omap4)', () => {
  it('domains for an omap device use the OMAP format: (pa & mask) | type, replicated 64K and 16M entries', () => {
    const s = omapSession();
    const d = s.iommu.domainAlloc({ for: 'dsp' });
    expect(d.family).toBe('omap');
    expect(d.table.root).toBe(0xbf000000);
    s.iommu.map(d.id, 0x10000000, 0x80000000, 0x100000, RW);
    s.iommu.map(d.id, 0x20000000, 0x80100000, 0x10000, RW);
    s.iommu.map(d.id, 0x20010000, 0x80200000, 0x1000, IOMMU_READ);
    s.iommu.map(d.id, 0x30000000, 0x81000000, 0x1000000, RW);
    const dump = d.table.dumpTables();
    if (dump.kind !== 'levels') throw new Error('levels');
    expect(dump.l1.filter((e) => e.index === 256)).toEqual([{ index: 256, desc: 0x80000002 }]);
    expect(dump.l1.find((e) => e.index === 512)).toEqual({ index: 512, desc: 0xbf004001 });
    expect(dump.l1.filter((e) => e.index >= 768).map((e) => e.desc)).toEqual(new Array(16).fill(0x81040002));
    expect(dump.l2).toEqual([{ base: 0xbf004000, entries: [...Array.from({ length: 16 }, (_, i) => ({ index: i, desc: 0x80100001 })), { index: 16, desc: 0x80200002 }] }]);
    // No permission bits: everything reads back as read+write.
    expect(s.iommu.iovaToPhys(d.id, 0x20010123)).toEqual({ iova: 0x20010123, paddr: 0x80200123, pageSize: 0x1000, prot: RW });
    // Splitting a replicated large entry keeps the OMAP format.
    s.iommu.unmap(d.id, 0x20001000, 0x1000);
    expect(s.iommu.iovaToPhys(d.id, 0x20002000).paddr).toBe(0x80102000);
    expect(codeOf(() => s.iommu.iovaToPhys(d.id, 0x20001000))).toBe('NOT_MAPPED');
  });

  it('attach programs TTB, IRQENABLE = 0x1e, CNTL = MMU_EN | TWL_EN, flushes the TLB; GP_REG = 1 on the IPU only; detach keeps TTB', () => {
    const s = omapSession();
    const d1 = s.iommu.domainAlloc({ for: 'ipu' });
    const d2 = s.iommu.domainAlloc({ for: 'dsp' });
    s.iommu.attach(d1.id, 'ipu');
    s.iommu.attach(d2.id, 'dsp');
    expect(mmio(s, 'mmu_ipu', [0x00, 0x1c, 0x44, 0x4c, 0x50, 0x88].map((offset) => ({ op: 'read' as const, offset })))).toEqual([0x21, 0x1e, 0x6, 0xbf000000, 0, 1]);
    expect(mmio(s, 'mmu_dsp', [0x4c, 0x88].map((offset) => ({ op: 'read' as const, offset })))).toEqual([0xbf004000, 0]);
    s.iommu.detach(d2.id, 'dsp');
    expect(mmio(s, 'mmu_dsp', [0x44, 0x4c, 0x1c].map((offset) => ({ op: 'read' as const, offset })))).toEqual([0, 0xbf004000, 0x1e]);
  });

  it('one device per domain; a device of another family is DOMAIN_TYPE; msm-only operations are BAD_REQUEST', () => {
    const s = omapSession();
    const d = s.iommu.domainAlloc({ for: 'dsp' });
    s.iommu.attach(d.id, 'dsp');
    expect(codeOf(() => s.iommu.attach(d.id, 'ipu'))).toBe('DEVICE_BUSY');
    expect(codeOf(() => run(s, { op: 'inject-fault', smmu: 'mmu_dsp', ctx: '0', kind: 'external' }))).toBe('BAD_REQUEST');
    expect(codeOf(() => run(s, { op: 'context-config', smmu: 'mmu_dsp', ctx: 'dsp', faultMode: 'stall' }))).toBe('BAD_REQUEST');
    expect(codeOf(() => run(s, { op: 'master-access', smmu: 'mmu_dsp', mid: 0, iova: 0, access: 'read' }))).toBe('BAD_REQUEST');
    expect(codeOf(() => s.iommu.domainAlloc({ for: 'nope' }))).toBe('NOT_FOUND');
  });

  it('the walker fills the TLB at VICTIM; hits; faults set IRQSTATUS and FAULT_AD without stall, flags 0, W1C clear', () => {
    const s = omapSession();
    const events: IommuEvent[] = [];
    s.bus.tap((e) => void events.push(e));
    const d = s.iommu.domainAlloc({ for: 'dsp' });
    s.iommu.attach(d.id, 'dsp');
    s.iommu.map(d.id, 0x10000000, 0x80000000, 0x1000, RW);
    expect(run(s, { op: 'access', device: 'dsp', iova: 0x10000010, access: 'write' })).toEqual({ outcome: 'ok', paddr: 0x80000010, tlb: 'miss' });
    expect(run(s, { op: 'access', device: 'dsp', iova: 0x10000020, access: 'read' })).toEqual({ outcome: 'ok', paddr: 0x80000020, tlb: 'hit' });
    // Entry 0 was loaded; VICTIM moved to 1, so READ_CAM/READ_RAM read entry 1 (empty) until LOCK selects 0.
    expect(mmio(s, 'mmu_dsp', [{ op: 'read', offset: 0x50 }, { op: 'read', offset: 0x68 }, { op: 'write', offset: 0x50, value: 0 }, { op: 'read', offset: 0x68 }, { op: 'read', offset: 0x6c }])).toEqual([0x10, 0, 0, 0x10000006, 0x80000000]);
    const r = run(s, { op: 'access', device: 'dsp', iova: 0x20000000, access: 'write' }) as { outcome: string; fault: Record<string, unknown> };
    expect(r.outcome).toBe('fault');
    expect(r.fault).toEqual({
      smmu: 'mmu_dsp', context: 0, device: 'dsp', domain: d.id, iova: '0x20000000', access: 'write', priv: false, flags: 0, kind: 'translation',
      family: 'omap', irqstatus: '0x2', irqstatusBits: ['TRANSLATIONFAULT'], faultAd: '0x20000000',
    });
    expect(events.filter((e) => e.type === 'fault')).toHaveLength(1);
    // A table walk that leaves RAM: TABLEWALKFAULT ORs in; FAULT_AD takes the latest address.
    run(s, { op: 'mmio', smmu: 'mmu_dsp', ops: [{ op: 'write', offset: 0x4c, value: 0x00004000 }] });
    const r2 = run(s, { op: 'access', device: 'dsp', iova: 0x30000000, access: 'read' }) as { fault: Record<string, unknown> };
    expect(r2.fault).toMatchObject({ kind: 'external', irqstatus: '0xa', irqstatusBits: ['TRANSLATIONFAULT', 'TABLEWALKFAULT'], faultAd: '0x30000000' });
    run(s, { op: 'clear-fault', smmu: 'mmu_dsp', ctx: 'dsp', value: 0x2 });
    expect(mmio(s, 'mmu_dsp', [{ op: 'read', offset: 0x18 }])).toEqual([0x8]);
    run(s, { op: 'clear-fault', smmu: 'mmu_dsp', ctx: 'dsp' });
    expect(mmio(s, 'mmu_dsp', [{ op: 'read', offset: 0x18 }])).toEqual([0]);
    // A fault whose IRQENABLE bit is clear raises no event (the TLB miss without the walker).
    run(s, { op: 'mmio', smmu: 'mmu_dsp', ops: [{ op: 'write', offset: 0x44, value: 0x2 }] });
    const n = events.filter((e) => e.type === 'fault').length;
    expect((run(s, { op: 'access', device: 'dsp', iova: 0x10400000, access: 'read' }) as { fault: { kind: string } }).fault.kind).toBe('tlb-miss');
    expect(events.filter((e) => e.type === 'fault')).toHaveLength(n);
  });

  it('a stale TLB entry keeps translating after an unmap without flush, and is reported', () => {
    const s = omapSession();
    const events: IommuEvent[] = [];
    s.bus.tap((e) => void events.push(e));
    const d = s.iommu.domainAlloc({ for: 'dsp', flushPolicy: 'deferred' });
    s.iommu.attach(d.id, 'dsp');
    s.iommu.map(d.id, 0x10000000, 0x80000000, 0x1000, RW);
    run(s, { op: 'access', device: 'dsp', iova: 0x10000000, access: 'read' });
    s.iommu.unmap(d.id, 0x10000000, 0x1000);
    expect(run(s, { op: 'access', device: 'dsp', iova: 0x10000004, access: 'read' })).toEqual({ outcome: 'ok', paddr: 0x80000004, tlb: 'hit', stale: true });
    expect(events.find((e) => e.type === 'stale-tlb-hit')).toMatchObject({ smmu: 'mmu_dsp', iova: '0x10000004', stale: { paddr: '0x80000004' }, current: null });
    s.iommu.sync(d.id);
    expect((run(s, { op: 'access', device: 'dsp', iova: 0x10000004, access: 'read' }) as { outcome: string }).outcome).toBe('fault');
  });

  it('32 entries round-robin from LOCK.BASE: locked entries are never replaced; GFLUSH keeps preserved entries', () => {
    const s = omapSession();
    const d = s.iommu.domainAlloc({ for: 'dsp' });
    s.iommu.attach(d.id, 'dsp');
    s.iommu.map(d.id, 0x10000000, 0x80000000, 0x100000, RW);
    // Preload entry 0 by hand, preserved: CAM = VA | P | V | 4K, RAM = PA; then lock it (BASE 1, VICTIM 1).
    run(s, { op: 'mmio', smmu: 'mmu_dsp', ops: [
      { op: 'write', offset: 0x50, value: 0 },
      { op: 'write', offset: 0x58, value: 0x40000000 | 0x8 | 0x4 | 0x2 },
      { op: 'write', offset: 0x5c, value: 0x80f00000 },
      { op: 'write', offset: 0x54, value: 1 },
      { op: 'write', offset: 0x50, value: (1 << 10) | (1 << 4) },
    ] });
    expect(run(s, { op: 'access', device: 'dsp', iova: 0x40000abc, access: 'read' })).toEqual({ outcome: 'ok', paddr: 0x80f00abc, tlb: 'hit' });
    // 40 different 4K pages... the table maps a 1M section: one entry covers them. Use distinct sections instead.
    for (let i = 1; i < 40; i++) s.iommu.map(d.id, 0x10000000 + i * 0x100000, 0x80000000 + i * 0x100000, 0x100000, RW);
    for (let i = 0; i < 40; i++) run(s, { op: 'access', device: 'dsp', iova: 0x10000000 + i * 0x100000, access: 'read' });
    const m = mmu(s, 'mmu_dsp');
    expect(m.tlbView()).toMatchObject({ entries: 32, capacity: 32, misses: 40, evictions: 9 });
    const details = m.details() as { lock: { base: number; victim: number }; tlb: Array<{ index: number; locked: boolean; preserved: boolean; va: string }> };
    expect(details.tlb[0]).toMatchObject({ index: 0, locked: true, preserved: true, va: '0x40000000' });
    expect(details.lock).toEqual({ base: 1, victim: 10 });
    // The IOMMU API's whole flush: LOCK = 0 then GFLUSH; the preserved entry survives.
    s.iommu.flush(d.id);
    expect(m.tlbView().entries).toBe(1);
    expect(run(s, { op: 'access', device: 'dsp', iova: 0x40000000, access: 'read' })).toMatchObject({ tlb: 'hit' });
    // A range flush drops covering entries, preserved or not.
    s.iommu.flush(d.id, 0x40000000, 0x1000);
    expect(m.tlbView().entries).toBe(0);
  });

  it('two TLB entries matching one address raise MULTIHITFAULT', () => {
    const s = omapSession();
    const d = s.iommu.domainAlloc({ for: 'dsp' });
    s.iommu.attach(d.id, 'dsp');
    const load = (i: number, cam: number, ram: number) => [
      { op: 'write' as const, offset: 0x50, value: i << 4 },
      { op: 'write' as const, offset: 0x58, value: cam },
      { op: 'write' as const, offset: 0x5c, value: ram },
      { op: 'write' as const, offset: 0x54, value: 1 },
    ];
    run(s, { op: 'mmio', smmu: 'mmu_dsp', ops: [...load(0, 0x50000000 | 0x4 | 0x2, 0x80000000), ...load(1, 0x50000000 | 0x4 | 0x0, 0x80100000)] });
    expect((run(s, { op: 'access', device: 'dsp', iova: 0x50000000, access: 'read' }) as { fault: Record<string, unknown> }).fault).toMatchObject({ kind: 'multi-hit', irqstatus: '0x10' });
  });
});
