/**
 * The OMAP IOMMU page-table format (omap-iopgtable.h): the same two levels and replicated large entries as ARMv7
 * short descriptors, but no permission bits at all. IOMMU-API mappings carry attribute 0 (little endian, 8-bit
 * elements, not mixed), so a descriptor is `(pa & mask) | type`. The walker decodes types exactly as the OMAP
 * macros do: an L1 word with both low bits set is neither a table nor a section, so it faults.
 */
import type { PhysMemory } from '../memory/phys.js';
import type { PageTablePool } from '../memory/ptpool.js';
import { IOMMU_READ, IOMMU_WRITE, SZ_16M, SZ_1M, SZ_4K, SZ_64K } from './desc.js';
import { iopteDeref, l1Base, pteIsTable, ptep, V7sTable, WALK_EXTERNAL, WALK_FAULT, WALK_OK, walkLeaf, WalkResult } from './v7s.js';

export const IOPGD_TABLE = 0x1;
export const IOPGD_SECTION = 0x2;
export const IOPGD_SUPER = (1 << 18) | 0x2;
export const IOPTE_SMALL = 0x2;
export const IOPTE_LARGE = 0x1;

/** OMAP descriptors have no permissions: what a mapping reads back as. */
export const OMAP_PROT = IOMMU_READ | IOMMU_WRITE;

/** One walk of an OMAP table at `ttb` (16 KiB aligned). Fills `out` as the v7s walk does (perm 0). */
export function omapWalk(mem: PhysMemory, ttb: number, iova: number, out: WalkResult): WalkResult {
  const l1a = ptep(l1Base(ttb), iova, 1);
  out.l1Addr = l1a;
  out.l2Addr = -1;
  out.perm = 0;
  if (!mem.isRam(l1a)) {
    out.status = WALK_EXTERNAL;
    return out;
  }
  const d = mem.read32(l1a);
  if ((d & 0x40003) === IOPGD_SUPER) return walkLeaf(out, iova, d, SZ_16M, 0);
  if ((d & 0x40003) === IOPGD_SECTION) return walkLeaf(out, iova, d, SZ_1M, 0);
  // Unlike v7s, both low bits set is no section: only a table entry goes on.
  if (!pteIsTable(d, 1)) {
    out.status = WALK_FAULT;
    return out;
  }
  const l2a = ptep(iopteDeref(d), iova, 2);
  out.l2Addr = l2a;
  if (!mem.isRam(l2a)) {
    out.status = WALK_EXTERNAL;
    return out;
  }
  const e = mem.read32(l2a);
  if ((e & 3) === IOPTE_LARGE) return walkLeaf(out, iova, e, SZ_64K, 0);
  if ((e & 2) === IOPTE_SMALL) return walkLeaf(out, iova, e, SZ_4K, 0);
  out.status = WALK_FAULT;
  return out;
}

/** An OMAP page table in RAM: the v7s table machinery (map, split, unmap, free) with OMAP descriptors. */
export class OmapTable extends V7sTable {
  private readonly ow = new WalkResult();

  constructor(mem: PhysMemory, pool: PageTablePool, l1?: number) {
    super(mem, pool, l1);
  }

  protected override leaf(size: number, paddr: number, _prot: number): number {
    switch (size) {
      case SZ_4K:
        return ((paddr & 0xfffff000) | IOPTE_SMALL) >>> 0;
      case SZ_64K:
        return ((paddr & 0xffff0000) | IOPTE_LARGE) >>> 0;
      case SZ_1M:
        return ((paddr & 0xfff00000) | IOPGD_SECTION) >>> 0;
      default:
        return ((paddr & 0xff000000) | IOPGD_SUPER) >>> 0;
    }
  }

  protected override protOf(): number {
    return OMAP_PROT;
  }

  override lookup(iova: number): { paddr: number; pageSize: number; prot: number } | null {
    const w = omapWalk(this.mem, this.l1, iova, this.ow);
    return w.status === WALK_OK ? { paddr: w.paddr, pageSize: w.size, prot: OMAP_PROT } : null;
  }
}
