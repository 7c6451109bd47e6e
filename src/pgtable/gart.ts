/**
 * The GART's "table": one 32-bit entry per 4 KiB page of the aperture (PA 30:12, VALID b31). On the hardware the
 * entries are registers, not RAM; a domain keeps its own copy and the GART uses it while the domain is active
 * (hw/gart). Writes go through the undo log so a refused batch changes nothing.
 */
import { fail } from '../errors.js';
import type { PhysMemory } from '../memory/phys.js';
import { IOMMU_READ, IOMMU_WRITE, SZ_4K } from './desc.js';
import type { PgTable, TableDump } from './format.js';
import { checkMapArgs, checkUnmapArgs, type FlushOps, type PageCounts, type PgtableConfig } from './v7s.js';

export const GART_ENTRY_VALID = 0x80000000;
export const GART_PAGE_MASK = 0x7ffff000;
/** Entries hold PA bits 30:12: physical addresses from 2 GiB up cannot be mapped. */
export const GART_PA_LIMIT = 0x80000000;

export class GartTable implements PgTable {
  readonly entries: Uint32Array;
  readonly geometry: { start: number; size: number };

  constructor(
    private readonly mem: PhysMemory,
    readonly aperture: { base: number; size: number },
    entries?: Uint32Array,
  ) {
    this.entries = entries ?? new Uint32Array(aperture.size / SZ_4K);
    this.geometry = { start: aperture.base, size: aperture.size };
  }

  get root(): number {
    return this.aperture.base;
  }

  private checkAperture(iova: number, size: number): void {
    if (iova < this.aperture.base || iova + size > this.aperture.base + this.aperture.size) {
      fail('gartOutsideAperture', { iova, size, aperture: { base: this.aperture.base, size: this.aperture.size } });
    }
  }

  private set(i: number, v: number): void {
    const old = this.entries[i]!;
    if (old === v) return;
    this.entries[i] = v;
    this.mem.undo?.addAction(() => {
      this.entries[i] = old;
    });
  }

  map(cfg: PgtableConfig, iova: number, paddr: number, size: number, prot: number, added: PageCounts): void {
    checkMapArgs(cfg, iova, paddr, size, prot);
    this.checkAperture(iova, size);
    if (paddr + size > GART_PA_LIMIT) {
      fail('gartPaLimit', { paddr, size });
    }
    const first = (iova - this.aperture.base) / SZ_4K;
    for (let k = 0; k < size / SZ_4K; k++) {
      if (this.entries[first + k]! & GART_ENTRY_VALID) {
        fail('alreadyMapped', { iova: iova + k * SZ_4K });
      }
    }
    for (let k = 0; k < size / SZ_4K; k++) this.set(first + k, (GART_ENTRY_VALID | (paddr + k * SZ_4K)) >>> 0);
    added[0] += size / SZ_4K;
  }

  unmap(cfg: PgtableConfig, iova: number, size: number, delta: PageCounts, flush: FlushOps): number {
    checkUnmapArgs(cfg, iova, size);
    this.checkAperture(iova, size);
    const first = (iova - this.aperture.base) / SZ_4K;
    let bytes = 0;
    for (let k = 0; k < size / SZ_4K; k++) {
      if (!(this.entries[first + k]! & GART_ENTRY_VALID)) continue;
      this.set(first + k, 0);
      delta[0]--;
      bytes += SZ_4K;
      flush.addPage(iova + k * SZ_4K, SZ_4K);
    }
    if (bytes === 0) fail('nothingMapped', { iova, size });
    return bytes;
  }

  forEachLeaf(from: number, to: number, fn: (iova: number, paddr: number, size: number, prot: number) => boolean | void): void {
    const base = this.aperture.base;
    const lo = Math.max(0, Math.floor((from - base) / SZ_4K));
    const hi = Math.min(this.entries.length, Math.ceil((to - base) / SZ_4K));
    for (let i = lo; i < hi; i++) {
      const e = this.entries[i]!;
      if (e & GART_ENTRY_VALID && fn(base + i * SZ_4K, e & GART_PAGE_MASK, SZ_4K, IOMMU_READ | IOMMU_WRITE) === false) return;
    }
  }

  lookup(iova: number): { paddr: number; pageSize: number; prot: number } | null {
    const i = Math.floor((iova - this.aperture.base) / SZ_4K);
    if (i < 0 || i >= this.entries.length) return null;
    const e = this.entries[i]!;
    return e & GART_ENTRY_VALID ? { paddr: ((e & GART_PAGE_MASK) | (iova & 0xfff)) >>> 0, pageSize: SZ_4K, prot: IOMMU_READ | IOMMU_WRITE } : null;
  }

  pageCounts(): PageCounts {
    let n = 0;
    for (const e of this.entries) if (e & GART_ENTRY_VALID) n++;
    return [n, 0, 0, 0];
  }

  free(): void {
    this.entries.fill(0);
  }

  dumpTables(): TableDump {
    const entries: Array<{ iova: number; pte: number }> = [];
    this.entries.forEach((e, i) => {
      if (e & GART_ENTRY_VALID) entries.push({ iova: this.aperture.base + i * SZ_4K, pte: e });
    });
    return { kind: 'entries', aperture: { ...this.aperture }, entries };
  }
}
