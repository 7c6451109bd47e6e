import type { Family, IommuInstance } from '../hw/family.js';
import type { DeviceRef } from '../hw/soc.js';
import type { PgTable } from '../pgtable/format.js';
import type { PageCounts, PgtableConfig } from '../pgtable/v7s.js';

export type FlushPolicy = 'strict' | 'deferred';
export type DomainType = 'unmanaged' | 'dma';

/** A fault handler as iommu_set_fault_handler takes it; 'retry' asks to retry a stalled transaction. */
export type FaultHandler = (info: { domain: string; device: string; iova: number; flags: number }) => 'retry' | 'terminate' | void;

export interface IovaRange {
  iova: number;
  size: number;
}

/** An iommu_domain: one page table plus the policies the API attaches to it. */
export class Domain {
  readonly attached = new Set<DeviceRef>();
  /** Ranges unmapped but not yet invalidated (deferred policy): the iotlb_gather waiting for iotlb_sync. */
  pending: IovaRange[] = [];
  readonly pages: PageCounts = [0, 0, 0, 0];
  faultHandler: FaultHandler | null = null;

  constructor(
    readonly id: string,
    readonly type: DomainType,
    readonly cfg: PgtableConfig,
    /** Mutable for DMA domains, whose device option picks strict or flush-queue invalidation. */
    public flushPolicy: FlushPolicy,
    readonly table: PgTable,
    readonly label: string | null,
    /** The IOMMU the table was made for: its family sets the format and the rules. */
    readonly smmu: IommuInstance,
  ) {}

  get family(): Family {
    return this.smmu.family;
  }

  /** Leaves per page size: counted by map/unmap, or read from a table that can change underneath (GART). */
  get pageCounts(): PageCounts {
    return this.table.pageCounts?.() ?? this.pages;
  }

  get mappedBytes(): number {
    const p = this.pageCounts;
    return p[0] * 0x1000 + p[1] * 0x10000 + p[2] * 0x100000 + p[3] * 0x1000000;
  }

  get leafCount(): number {
    const p = this.pageCounts;
    return p[0] + p[1] + p[2] + p[3];
  }
}

/** Adds a range to a sorted, merged list of ranges (overlapping or touching ranges coalesce). */
export function addRange(list: IovaRange[], iova: number, size: number): IovaRange[] {
  const out: IovaRange[] = [];
  let a = iova;
  let b = iova + size;
  let placed = false;
  for (const r of list) {
    const re = r.iova + r.size;
    if (re < a) out.push(r);
    else if (r.iova > b) {
      if (!placed) {
        out.push({ iova: a, size: b - a });
        placed = true;
      }
      out.push(r);
    } else {
      a = Math.min(a, r.iova);
      b = Math.max(b, re);
    }
  }
  if (!placed) out.push({ iova: a, size: b - a });
  return out;
}
