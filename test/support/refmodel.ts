/**
 * The simple reference model the property tests check the emulator against: a Map from 4 KiB page to
 * (paddr, prot), and an optional Map of cached translations standing for the TLB.
 */
import { IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_WRITE } from '../../src/pgtable/desc.js';

export interface RefPage {
  paddr: number;
  prot: number;
}

export class RefModel {
  readonly pages = new Map<number, RefPage>();

  /** permissions false: the format has no permission bits (OMAP, GART), every mapping reads back read+write. */
  constructor(readonly permissions = true) {}

  map(iova: number, paddr: number, size: number, prot: number): 'ok' | 'ALREADY_MAPPED' {
    for (let o = 0; o < size; o += 0x1000) if (this.pages.has((iova + o) >>> 12)) return 'ALREADY_MAPPED';
    // ARMv7 cannot express write-only: it reads back as read+write.
    const stored = this.permissions ? prot | 1 : 3;
    for (let o = 0; o < size; o += 0x1000) this.pages.set((iova + o) >>> 12, { paddr: paddr + o, prot: stored });
    return 'ok';
  }

  unmap(iova: number, size: number): number {
    let n = 0;
    for (let o = 0; o < size; o += 0x1000) if (this.pages.delete((iova + o) >>> 12)) n += 0x1000;
    return n;
  }

  translate(iova: number): number | null {
    const p = this.pages.get(iova >>> 12);
    return p ? p.paddr + (iova & 0xfff) : null;
  }
}

/** The permission outcome the hardware must give for an entry with this prot. */
export function refPermission(prot: number, access: number, priv: boolean): 'ok' | 'permission' {
  if (!priv && prot & IOMMU_PRIV) return 'permission';
  if (access === 1 && !(prot & IOMMU_WRITE)) return 'permission';
  if (access === 2 && prot & IOMMU_NOEXEC) return 'permission';
  return 'ok';
}
