/** The interface every page-table format offers the IOMMU layer (io-pgtable's ops): v7s, omap, gart. */
import type { FlushOps, PageCounts, PgtableConfig } from './v7s.js';

/** A page table in one family's format, as a domain holds it (io-pgtable's role). */
export interface PgTable {
  /** What the hardware is pointed at: the L1 address (TTBR0 / TTB), or the aperture base for the GART. */
  readonly root: number;
  map(cfg: PgtableConfig, iova: number, paddr: number, size: number, prot: number, added: PageCounts): void;
  unmap(cfg: PgtableConfig, iova: number, size: number, delta: PageCounts, flush: FlushOps): number;
  forEachLeaf(from: number, to: number, fn: (iova: number, paddr: number, size: number, prot: number) => boolean | void): void;
  /** iova_to_phys by software walk, null when unmapped. */
  lookup(iova: number): { paddr: number; pageSize: number; prot: number } | null;
  free(): void;
  /** The IOVA range the format can map (the GART's aperture; the whole 32-bit space otherwise). */
  readonly geometry: { start: number; size: number };
  /** The raw table for the pagetable view. */
  dumpTables(): TableDump;
  /** Leaf counts when the table can change underneath the IOMMU layer (GART entries are registers). */
  pageCounts?(): PageCounts;
}

export type TableDump =
  | { kind: 'levels'; root: number; l1: Array<{ index: number; desc: number }>; l2: Array<{ base: number; entries: Array<{ index: number; desc: number }> }> }
  | { kind: 'entries'; aperture: { base: number; size: number }; entries: Array<{ iova: number; pte: number }> };

/** The whole 32-bit IOVA space: the geometry of formats with a full two-level table. */
export const FULL_GEOMETRY: Readonly<{ start: number; size: number }> = Object.freeze({ start: 0, size: 2 ** 32 });
