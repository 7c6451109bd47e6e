import { describe, expect, it } from 'vitest';
import { TEGRA20 } from '../../src/hw/profile.js';
import { Session } from '../../src/session/session.js';
import type { IommuEvent } from '../../src/events/bus.js';
import { IOMMU_READ, IOMMU_WRITE } from '../../src/pgtable/desc.js';
import { codeOf } from '../support/core.js';

const RW = IOMMU_READ | IOMMU_WRITE;
const gartSession = () => new Session({ id: 's-gart', name: 'gart', profile: TEGRA20 });
const run = (s: Session, cmd: Parameters<Session['run']>[1]) => s.run(null, cmd).result;
const mmio = (s: Session, ops: Array<{ op: 'read' | 'write'; offset: number; value?: number }>) =>
  (run(s, { op: 'mmio', smmu: 'gart', ops }) as Array<{ value: number }>).map((r) => r.value);
const r32 = (offset: number) => ({ op: 'read' as const, offset });
const w32 = (offset: number, value: number) => ({ op: 'write' as const, offset, value: value >>> 0 });
/** gart_read_pte: GART_ENTRY_ADDR = iova, then read GART_ENTRY_DATA. */
const readPte = (s: Session, iova: number) => mmio(s, [w32(0x28, iova), r32(0x2c)])[1];

describe('Tegra 20 GART (profile tegra20)', () => {
  it('reset values: GART_CONFIG 1, MC_INTMASK 0x1c0; the window refuses unknown offsets', () => {
    const s = gartSession();
    expect(mmio(s, [r32(0x00), r32(0x04), r32(0x24), r32(0x30), r32(0x34)])).toEqual([0, 0x1c0, 1, 0, 0]);
    expect(codeOf(() => mmio(s, [r32(0x08)]))).toBe('BAD_REQUEST');
    expect(codeOf(() => mmio(s, [r32(0x400)]))).toBe('BAD_REQUEST');
    expect(codeOf(() => mmio(s, [r32(0x26)]))).toBe('BAD_REQUEST');
  });

  it('a domain maps 4K entries inside the aperture; entries read back through GART_ENTRY_ADDR/DATA', () => {
    const s = gartSession();
    const d = s.iommu.domainAlloc();
    expect(d.family).toBe('gart');
    s.iommu.attach(d.id, 'gr2d');
    s.iommu.map(d.id, 0x58000000, 0x10000000, 0x2000, RW);
    expect(readPte(s, 0x58000000)).toBe(0x90000000);
    expect(readPte(s, 0x58001000)).toBe(0x90001000);
    expect(readPte(s, 0x58002000)).toBe(0);
    expect(d.table.dumpTables()).toEqual({ kind: 'entries', aperture: { base: 0x58000000, size: 0x2000000 }, entries: [{ iova: 0x58000000, pte: 0x90000000 }, { iova: 0x58001000, pte: 0x90001000 }] });
    expect(d.pageCounts).toEqual([2, 0, 0, 0]);
    expect(codeOf(() => s.iommu.map(d.id, 0x57fff000, 0x10000000, 0x2000, RW))).toBe('OUT_OF_RANGE');
    expect(codeOf(() => s.iommu.map(d.id, 0x59fff000, 0x10000000, 0x2000, RW))).toBe('OUT_OF_RANGE');
    expect(codeOf(() => s.iommu.map(d.id, 0x58010000, 0x7ffff000, 0x2000, RW))).toBe('OUT_OF_RANGE');
    expect(codeOf(() => s.iommu.map(d.id, 0x58001000, 0x10000000, 0x1000, RW))).toBe('ALREADY_MAPPED');
    expect(codeOf(() => s.iommu.domainAlloc({ pgsizes: [0x10000] }))).toBe('BAD_REQUEST');
  });

  it('no isolation: every client translates through the same entries; outside the aperture is untranslated', () => {
    const s = gartSession();
    const d = s.iommu.domainAlloc({ for: 'gr2d' });
    s.iommu.attach(d.id, 'gr2d');
    s.iommu.map(d.id, 0x58000000, 0x10000000, 0x1000, RW);
    expect(run(s, { op: 'access', device: 'gr2d', iova: 0x58000010, access: 'read' })).toEqual({ outcome: 'ok', paddr: 0x10000010, tlb: 'miss' });
    expect(run(s, { op: 'access', device: 'host1x', iova: 0x58000020, access: 'write' })).toEqual({ outcome: 'ok', paddr: 0x10000020, tlb: 'miss' });
    expect(run(s, { op: 'access', device: 'gr3d', iova: 0x10000000, access: 'read' })).toEqual({ outcome: 'ok', paddr: 0x10000000, tlb: 'bypass' });
  });

  it('a fault sets INVALID_GART_PAGE and latches GART_ERROR_REQ (client, direction) and GART_ERROR_ADDR', () => {
    const s = gartSession();
    const events: IommuEvent[] = [];
    s.bus.tap((e) => void events.push(e));
    const d = s.iommu.domainAlloc();
    s.iommu.attach(d.id, 'gr2d');
    const r = run(s, { op: 'access', device: 'gr2d', iova: 0x58100004, access: 'write' }) as { outcome: string; fault: Record<string, unknown> };
    expect(r).toEqual({
      outcome: 'fault',
      fault: {
        smmu: 'gart', context: 0, device: 'gr2d', domain: d.id, iova: '0x58100004', access: 'write', priv: false, flags: 1, kind: 'translation',
        family: 'gart', intstatus: '0x80', errorReq: '0x51', errorAddr: '0x58100004', client: { id: 0x28, name: 'g2dw' },
      },
    });
    expect(events.filter((e) => e.type === 'fault')).toHaveLength(1);
    const r2 = run(s, { op: 'access', device: 'gr3d', iova: 0x58200000, access: 'read' }) as { fault: Record<string, unknown> };
    expect(r2.fault).toMatchObject({ errorReq: '0x20', errorAddr: '0x58200000', client: { id: 0x10, name: 'fdcdrd' }, flags: 0 });
    expect(mmio(s, [r32(0x00), r32(0x30), r32(0x34)])).toEqual([0x80, 0x20, 0x58200000]);
    run(s, { op: 'clear-fault', smmu: 'gart', ctx: 'gr2d' });
    expect(mmio(s, [r32(0x00)])).toEqual([0]);
    // GART_CONFIG = 0 turns translation off: every aperture access faults.
    s.iommu.map(d.id, 0x58000000, 0x10000000, 0x1000, RW);
    mmio(s, [w32(0x24, 0)]);
    expect((run(s, { op: 'access', device: 'gr2d', iova: 0x58000000, access: 'read' }) as { outcome: string }).outcome).toBe('fault');
  });

  it('one active domain per GART; the last detach clears the entries; the other domain then loads its own', () => {
    const s = gartSession();
    const d1 = s.iommu.domainAlloc();
    const d2 = s.iommu.domainAlloc();
    s.iommu.map(d1.id, 0x58000000, 0x10000000, 0x1000, RW);
    s.iommu.map(d2.id, 0x58000000, 0x12000000, 0x1000, RW);
    expect(readPte(s, 0x58000000)).toBe(0);
    s.iommu.attach(d1.id, 'gr2d');
    s.iommu.attach(d1.id, 'gr3d');
    expect(readPte(s, 0x58000000)).toBe(0x90000000);
    expect(codeOf(() => s.iommu.attach(d2.id, 'host1x'))).toBe('DEVICE_BUSY');
    expect(codeOf(() => s.iommu.attach(d2.id, 'gr2d', true))).toBe('DEVICE_BUSY');
    s.iommu.detach(d1.id, 'gr2d');
    expect(readPte(s, 0x58000000)).toBe(0x90000000);
    s.iommu.detach(d1.id, 'gr3d');
    expect(readPte(s, 0x58000000)).toBe(0);
    expect(s.iommu.iovaToPhys(d1.id, 0x58000000).paddr).toBe(0x10000000);
    s.iommu.attach(d2.id, 'host1x');
    expect(readPte(s, 0x58000000)).toBe(0x92000000);
    // replace moves the only device to another domain, which becomes active.
    s.iommu.attach(d1.id, 'host1x', true);
    expect(readPte(s, 0x58000000)).toBe(0x90000000);
  });

  it('gart_set_pte over MMIO writes the active domain\'s entries: the IOMMU API sees them, devices translate through them', () => {
    const s = gartSession();
    const d = s.iommu.domainAlloc();
    s.iommu.attach(d.id, 'gr2d');
    // The driver's map: GART_ENTRY_ADDR = iova, GART_ENTRY_DATA = VALID | pa, then read GART_CONFIG as the barrier.
    expect(mmio(s, [w32(0x28, 0x58003000), w32(0x2c, (0x80000000 | 0x10005000) >>> 0), r32(0x24)])).toEqual([0x58003000, 0x90005000, 1]);
    expect(s.iommu.iovaToPhys(d.id, 0x58003abc)).toEqual({ iova: 0x58003abc, paddr: 0x10005abc, pageSize: 0x1000, prot: RW });
    expect(d.pageCounts).toEqual([1, 0, 0, 0]);
    expect(run(s, { op: 'access', device: 'gr2d', iova: 0x58003008, access: 'read' })).toEqual({ outcome: 'ok', paddr: 0x10005008, tlb: 'miss' });
    // The driver's unmap: the entry written 0.
    mmio(s, [w32(0x28, 0x58003000), w32(0x2c, 0)]);
    expect(codeOf(() => s.iommu.iovaToPhys(d.id, 0x58003000))).toBe('NOT_MAPPED');
    expect(s.iommu.mappings(d.id)).toEqual([]);
  });

  it('the DMA API allocates IOVAs from the aperture, top-down; the GART\'s devices share one default DMA domain', () => {
    const s = gartSession();
    const a = s.dma.map('gr2d', 0x10000000, 0x1000, 'to-device');
    const b = s.dma.map('gr3d', 0x10100000, 0x2000, 'bidirectional');
    expect(a.dmaAddr).toBe(0x59fff000);
    expect(b.dmaAddr).toBe(0x59ffc000); // two pages, size-aligned
    expect(s.iommu.domainOf('gr2d')).toBe(s.iommu.domainOf('gr3d'));
    expect(s.iommu.domainOf('gr2d')!.family).toBe('gart');
    expect(run(s, { op: 'access', device: 'gr3d', iova: 0x59fff010, access: 'read' })).toEqual({ outcome: 'ok', paddr: 0x10000010, tlb: 'miss' });
    s.dma.unmap('gr2d', a.dmaAddr, 0x1000, 'to-device');
    expect(readPte(s, 0x59fff000)).toBe(0);
    expect(readPte(s, 0x59ffc000)).toBe(0x90100000);
  });

  it('a snapshot restores the entries of every domain and the active one', () => {
    const s = gartSession();
    const d1 = s.iommu.domainAlloc();
    const d2 = s.iommu.domainAlloc();
    s.iommu.map(d1.id, 0x58000000, 0x10000000, 0x1000, RW);
    s.iommu.map(d2.id, 0x58001000, 0x11000000, 0x1000, RW);
    s.iommu.attach(d2.id, 'display');
    const t = gartSession();
    t.restoreSnapshot(JSON.parse(JSON.stringify(s.snapshot())));
    expect(readPte(t, 0x58001000)).toBe(0x91000000);
    expect(t.iommu.iovaToPhys(d1.id, 0x58000000).paddr).toBe(0x10000000);
    expect(codeOf(() => t.iommu.attach(d1.id, 'gr2d'))).toBe('DEVICE_BUSY');
  });
});
