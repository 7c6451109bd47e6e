/**
 * The Linux drivers' own register sequences, replayed over the MMIO window (written from the sources' register
 * names and values, not their code): omap-iommu.c's omap2_iommu_enable and flush_iotlb_page over a table the
 * client builds in RAM, and tegra-gart.c's gart_set_pte / gart_read_pte. Translations are checked after each.
 */
import { describe, expect, it } from 'vitest';
import { OMAP4, TEGRA20 } from '../../src/hw/profile.js';
import { Session } from '../../src/session/session.js';

const run = (s: Session, cmd: Parameters<Session['run']>[1]) => s.run(null, cmd).result;

/** readl/writel on one IOMMU's window. */
function regs(s: Session, smmu: string) {
  return {
    read: (offset: number) => (run(s, { op: 'mmio', smmu, ops: [{ op: 'read', offset }] }) as Array<{ value: number }>)[0]!.value,
    write: (offset: number, value: number) => void run(s, { op: 'mmio', smmu, ops: [{ op: 'write', offset, value: value >>> 0 }] }),
  };
}
const le32 = (...words: number[]) => {
  const b = Buffer.alloc(4 * words.length);
  words.forEach((w, i) => b.writeUInt32LE(w >>> 0, 4 * i));
  return b.toString('base64');
};

// omap-iommu.h register offsets and fields.
const MMU_REVISION = 0x00, MMU_IRQSTATUS = 0x18, MMU_IRQENABLE = 0x1c, MMU_CNTL = 0x44, MMU_FAULT_AD = 0x48, MMU_TTB = 0x4c;
const MMU_LOCK = 0x50, MMU_CAM = 0x58, MMU_RAM = 0x5c, MMU_FLUSH_ENTRY = 0x64, MMU_READ_CAM = 0x68, MMU_READ_RAM = 0x6c;
const MMU_CNTL_MASK = 0x6, MMU_CNTL_MMU_EN = 0x2, MMU_CNTL_TWL_EN = 0x4, MMU_IRQ_TWL_MASK = 0x1e, MMU_CAM_V = 0x4;
const LOCK_BASE = (v: number) => (v >>> 10) & 0x1f;

describe('omap-iommu.c sequences over MMIO', () => {
  function enabled() {
    const s = new Session({ id: 's-omapdrv', name: 'drv', profile: OMAP4 });
    const r = regs(s, 'mmu_dsp');
    // A table the client writes itself: L1 at 0xbf000000, entry 0x100 → an L2 at 0xbf004000 with small pages at
    // 0x10000000 → 0x80000000 and 0x10001000 → 0x80001000, and a section 0x20000000 → 0x81000000.
    run(s, { op: 'memory-write', paddr: 0xbf000000 + 0x100 * 4, data: le32(0xbf004001) });
    run(s, { op: 'memory-write', paddr: 0xbf000000 + 0x200 * 4, data: le32(0x81000002) });
    run(s, { op: 'memory-write', paddr: 0xbf004000, data: le32(0x80000002, 0x80001002) });
    // omap2_iommu_enable: read MMU_REVISION, write the TTB, then __iommu_set_twl(obj, true).
    const rev = r.read(MMU_REVISION);
    expect([(rev >> 4) & 0xf, rev & 0xf]).toEqual([2, 1]);
    r.write(MMU_TTB, 0xbf000000);
    let l = r.read(MMU_CNTL);
    r.write(MMU_IRQENABLE, MMU_IRQ_TWL_MASK);
    l &= ~MMU_CNTL_MASK;
    l |= MMU_CNTL_MMU_EN | MMU_CNTL_TWL_EN;
    r.write(MMU_CNTL, l);
    return { s, r };
  }

  it('omap2_iommu_enable: the MMU walks the client-built table; misses fill the TLB, then hit', () => {
    const { s, r } = enabled();
    expect(r.read(MMU_CNTL)).toBe(0x6);
    expect(run(s, { op: 'access', device: 'dsp', iova: 0x10001234, access: 'read' })).toEqual({ outcome: 'ok', paddr: 0x80001234, tlb: 'miss' });
    expect(run(s, { op: 'access', device: 'dsp', iova: 0x200abcde, access: 'write' })).toEqual({ outcome: 'ok', paddr: 0x810abcde, tlb: 'miss' });
    expect(run(s, { op: 'access', device: 'dsp', iova: 0x10001000, access: 'read' })).toMatchObject({ tlb: 'hit' });
    // The fault ISR: read IRQSTATUS and FAULT_AD, write the status back to clear it.
    expect((run(s, { op: 'access', device: 'dsp', iova: 0x10002000, access: 'read' }) as { outcome: string }).outcome).toBe('fault');
    const stat = r.read(MMU_IRQSTATUS) & 0x1f;
    expect([stat, r.read(MMU_FAULT_AD)]).toEqual([0x2, 0x10002000]);
    r.write(MMU_IRQSTATUS, stat);
    expect(r.read(MMU_IRQSTATUS)).toBe(0);
  });

  it('flush_iotlb_page: walk the entries by LOCK.VICTIM, READ_CAM/READ_RAM, reload the match and FLUSH_ENTRY', () => {
    const { s, r } = enabled();
    run(s, { op: 'access', device: 'dsp', iova: 0x10000000, access: 'read' });
    run(s, { op: 'access', device: 'dsp', iova: 0x10001000, access: 'read' });
    run(s, { op: 'access', device: 'dsp', iova: 0x20000000, access: 'read' });
    // The table changes under the TLB: 0x10001000 now points elsewhere; the stale entry still answers.
    run(s, { op: 'memory-write', paddr: 0xbf004004, data: le32(0x82000002) });
    expect(run(s, { op: 'access', device: 'dsp', iova: 0x10001008, access: 'read' })).toMatchObject({ paddr: 0x80001008, tlb: 'hit', stale: true });
    const da = 0x10001008;
    let flushed = -1;
    for (let i = 0; i < 32; i++) {
      const base = LOCK_BASE(r.read(MMU_LOCK));
      r.write(MMU_LOCK, (base << 10) | (i << 4)); // iotlb_lock_set with vict = i
      const cam = r.read(MMU_READ_CAM);
      const ram = r.read(MMU_READ_RAM);
      if (!(cam & MMU_CAM_V)) continue;
      const bytes = [0x100000, 0x10000, 0x1000, 0x1000000][cam & 3]!;
      const start = cam & ~(bytes - 1) & 0xfffff000;
      if (start <= da && da < start + bytes) {
        r.write(MMU_CAM, cam | MMU_CAM_V); // iotlb_load_cr
        r.write(MMU_RAM, ram);
        r.write(MMU_FLUSH_ENTRY, 1);
        flushed = i;
        break;
      }
    }
    expect(flushed).toBe(1);
    expect(run(s, { op: 'access', device: 'dsp', iova: 0x10001008, access: 'read' })).toEqual({ outcome: 'ok', paddr: 0x82000008, tlb: 'miss' });
    // The other entries stayed.
    expect(run(s, { op: 'access', device: 'dsp', iova: 0x10000000, access: 'read' })).toMatchObject({ tlb: 'hit' });
    expect(run(s, { op: 'access', device: 'dsp', iova: 0x20000000, access: 'read' })).toMatchObject({ tlb: 'hit' });
  });
});

// tegra-gart.c / tegra20 MC offsets.
const MC_INTSTATUS = 0x00, GART_CONFIG = 0x24, GART_ENTRY_ADDR = 0x28, GART_ENTRY_DATA = 0x2c, MC_GART_ERROR_REQ = 0x30, MC_GART_ERROR_ADDR = 0x34;
const GART_ENTRY_PHYS_ADDR_VALID = 0x80000000;

describe('tegra-gart.c sequences over MMIO', () => {
  it('do_gart_setup, gart_set_pte + FLUSH_GART_REGS, gart_read_pte, iova_to_phys; the MC error registers on a fault', () => {
    const s = new Session({ id: 's-gartdrv', name: 'drv', profile: TEGRA20 });
    const r = regs(s, 'gart');
    const setPte = (iova: number, pte: number) => {
      r.write(GART_ENTRY_ADDR, iova);
      r.write(GART_ENTRY_DATA, pte);
    };
    const readPte = (iova: number) => {
      r.write(GART_ENTRY_ADDR, iova);
      return r.read(GART_ENTRY_DATA);
    };
    // do_gart_setup(gart, NULL) over the first 64 entries (the whole aperture works the same), then enable.
    for (let iova = 0x58000000; iova < 0x58040000; iova += 0x1000) setPte(iova, 0);
    r.write(GART_CONFIG, 1);
    expect(r.read(GART_CONFIG)).toBe(1); // FLUSH_GART_REGS: the read-back is the barrier
    // gart_iommu_map of two pages, each followed by the read-back.
    setPte(0x58010000, GART_ENTRY_PHYS_ADDR_VALID | 0x10000000);
    r.read(GART_CONFIG);
    setPte(0x58011000, GART_ENTRY_PHYS_ADDR_VALID | 0x10200000);
    r.read(GART_CONFIG);
    expect([readPte(0x58010000), readPte(0x58011000), readPte(0x58012000)]).toEqual([0x90000000, 0x90200000, 0]);
    // gart_iommu_iova_to_phys: pte & GART_PAGE_MASK (bits 30:12).
    expect(readPte(0x58011000) & 0x7ffff000).toBe(0x10200000);
    expect(run(s, { op: 'access', device: 'gr2d', iova: 0x58011abc, access: 'read' })).toEqual({ outcome: 'ok', paddr: 0x10200abc, tlb: 'miss' });
    expect(run(s, { op: 'access', device: 'display', iova: 0x58010004, access: 'read' })).toEqual({ outcome: 'ok', paddr: 0x10000004, tlb: 'miss' });
    // gart_iommu_unmap: the entry written 0; the next access is an invalid GART page.
    setPte(0x58011000, 0);
    expect((run(s, { op: 'access', device: 'host1x', iova: 0x58011000, access: 'write' }) as { outcome: string }).outcome).toBe('fault');
    // tegra20's MC interrupt handler: INTSTATUS, then GART_ERROR_REQ (client, write bit) and GART_ERROR_ADDR.
    const status = r.read(MC_INTSTATUS);
    const req = r.read(MC_GART_ERROR_REQ);
    expect([status & 0x80, (req >>> 1) & 0x3f, req & 1, r.read(MC_GART_ERROR_ADDR)]).toEqual([0x80, 0x2b, 1, 0x58011000]);
    r.write(MC_INTSTATUS, status);
    expect(r.read(MC_INTSTATUS)).toBe(0);
    // tegra_gart_suspend: GART_CONFIG = 0 traps every aperture access.
    r.write(GART_CONFIG, 0);
    expect((run(s, { op: 'access', device: 'gr2d', iova: 0x58010000, access: 'read' }) as { outcome: string }).outcome).toBe('fault');
  });
});
