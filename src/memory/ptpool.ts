import { fail } from '../errors.js';
import type { PhysMemory } from './phys.js';

export const L1_TABLE_SIZE = 16 * 1024;
export const L2_TABLE_SIZE = 1024;
const UNIT = 1024;

/**
 * The reserved page-table pool (HARDWARE.md: first fit from the lowest address, L1 16 KiB aligned, L2 1 KiB
 * aligned), so table addresses are reproducible. Tables are zeroed on allocation, as the kernel's are.
 */
export class PageTablePool {
  readonly base: number;
  readonly size: number;
  /** One byte per 1 KiB unit; allocated with the first table (an idle session has none). */
  private usedMap: Uint8Array | null = null;
  private readonly units: number;
  /** No unit below this index is free: first-fit scans start here. */
  private lowestFree = 0;
  private usedUnits = 0;

  constructor(
    private readonly mem: PhysMemory,
    base: number,
    size: number,
  ) {
    this.base = base;
    this.size = size;
    this.units = Math.floor(size / UNIT);
  }

  private get used(): Uint8Array {
    return (this.usedMap ??= new Uint8Array(this.units));
  }

  get bytesUsed(): number {
    return this.usedUnits * UNIT;
  }

  /** Bytes of the pool consumed: from its base to the end of the highest table, holes (fragmentation) included. */
  get bytesSpanned(): number {
    return (this.used.lastIndexOf(1) + 1) * UNIT;
  }

  snapshot(): { used: string } {
    return { used: Buffer.from(this.used).toString('base64') };
  }

  restore(s: { used: string }): void {
    this.used.set(Buffer.from(s.used, 'base64'));
    this.usedUnits = this.used.reduce((n, v) => n + v, 0);
    this.lowestFree = this.used.indexOf(0) < 0 ? this.used.length : this.used.indexOf(0);
  }

  allocL1(): number {
    return this.alloc(L1_TABLE_SIZE / UNIT, 'L1');
  }

  allocL2(): number {
    return this.alloc(1, 'L2');
  }

  free(addr: number, size: number): void {
    const first = (addr - this.base) / UNIT;
    const n = size / UNIT;
    this.setRange(first, n, 0);
    this.mem.undo?.addAction(() => this.setRange(first, n, 1));
  }

  contains(addr: number): boolean {
    return addr >= this.base && addr < this.base + this.size;
  }

  private alloc(units: number, what: string): number {
    const used = this.used;
    // L1 tables need 16 KiB alignment relative to physical address 0, not to the pool base.
    const alignUnits = units;
    let i = this.lowestFree;
    for (;;) {
      const addr = this.base + i * UNIT;
      const misalign = (addr / UNIT) % alignUnits;
      if (misalign) i += alignUnits - misalign;
      if (i + units > used.length) {
        fail('pagetablePoolFull', { what, pool: { base: this.base, size: this.size, used: this.bytesUsed } });
      }
      let j = 0;
      while (j < units && used[i + j] === 0) j++;
      if (j === units) break;
      i += j + 1;
    }
    this.setRange(i, units, 1);
    this.mem.undo?.addAction(() => this.setRange(i, units, 0));
    const addr = this.base + i * UNIT;
    // Tables we free are already empty (all zero); only memory a client wrote needs clearing.
    if (!this.mem.allZero(addr, units * UNIT)) this.mem.zero(addr, units * UNIT);
    return addr;
  }

  private setRange(first: number, n: number, v: 0 | 1): void {
    this.used.fill(v, first, first + n);
    this.usedUnits += v ? n : -n;
    if (v === 0) {
      if (first < this.lowestFree) this.lowestFree = first;
    } else if (first === this.lowestFree) {
      let k = first + n;
      while (k < this.used.length && this.used[k]) k++;
      this.lowestFree = k;
    }
  }
}
