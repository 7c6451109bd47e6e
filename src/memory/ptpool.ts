import { fail } from '../errors.js';
import { CHUNK_SHIFT, type PhysMemory } from './phys.js';

export const L1_TABLE_SIZE = 16 * 1024;
export const L2_TABLE_SIZE = 1024;
const UNIT = 1024;
/** Entries of an L2 table (ARM_V7S_PTES_PER_LVL(2)): the most a live count can be. */
const L2_PTES = L2_TABLE_SIZE / 4;
/** A live count not known: the table was restored, or written by someone other than the page-table code. */
const LIVE_UNKNOWN = 0xffff;

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
  /**
   * Valid entries of the L2 table at each unit (io-pgtable frees a table when its last entry goes: counting them
   * spares an unmap the scan of 256 words). Tables are plain RAM that a client may write too, so a count is
   * trusted only while the chunk holding the table has not been written since the page-table code last did:
   * `seen` keeps, per pool chunk, the chunk's write version as that code left it.
   */
  private liveMap: Uint16Array | null = null;
  private seen: Uint32Array | null = null;

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
    this.liveMap?.fill(LIVE_UNKNOWN);
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

  private get live(): Uint16Array {
    return (this.liveMap ??= new Uint16Array(this.units).fill(LIVE_UNKNOWN));
  }

  private get seenMap(): Uint32Array {
    return (this.seen ??= new Uint32Array(Math.ceil(this.size / 2 ** CHUNK_SHIFT) + 1).fill(0xffffffff));
  }

  /**
   * Before the page-table code writes at addr (in the pool): if anyone else wrote the chunk since it last did,
   * the counts of the tables in that chunk are forgotten (recounted when next asked for).
   */
  claim(addr: number): void {
    if (!this.contains(addr)) return;
    const ci = addr >>> CHUNK_SHIFT;
    const k = ci - (this.base >>> CHUNK_SHIFT);
    const v = this.mem.version(ci);
    const seen = this.seenMap;
    if (seen[k] === v) return;
    seen[k] = v;
    // No count held yet (no L2 table so far): nothing to forget.
    if (this.liveMap === null) return;
    const from = Math.max(0, ((ci << CHUNK_SHIFT) >>> 0) - this.base) / UNIT;
    this.liveMap.fill(LIVE_UNKNOWN, from, Math.min(this.units, from + 2 ** CHUNK_SHIFT / UNIT));
  }

  /** After the page-table code wrote at addr, its counts updated: the chunk's writes so far are accounted for. */
  wrote(addr: number): void {
    if (!this.contains(addr)) return;
    const ci = addr >>> CHUNK_SHIFT;
    this.seenMap[ci - (this.base >>> CHUNK_SHIFT)] = this.mem.version(ci);
  }

  /** Valid entries of the pool's L2 table at l2 (claimed for writing), or -1 for a table outside the pool. */
  liveCount(l2: number): number {
    if (!this.contains(l2)) return -1;
    this.claim(l2);
    const u = (l2 - this.base) / UNIT;
    let n = this.live[u]!;
    if (n === LIVE_UNKNOWN) {
      n = 0;
      for (let i = 0; i < L2_PTES; i++) if (this.mem.read32(l2 + 4 * i) & 3) n++;
      this.live[u] = n;
    }
    return n;
  }

  /**
   * The L2 table at l2 counts as empty from now on though its words are left as they were (an unmap frees it
   * whole). A rollback forgets the count, so the words are counted again.
   */
  emptied(l2: number): void {
    const u = (l2 - this.base) / UNIT;
    this.setLive(l2, 0);
    this.mem.undo?.addAction(() => {
      this.live[u] = LIVE_UNKNOWN;
    });
  }

  /** The count held for the L2 table at l2 if it is trusted now (nothing recounted), else null: for checks. */
  trustedLive(l2: number): number | null {
    if (!this.contains(l2) || this.liveMap === null) return null;
    const ci = l2 >>> CHUNK_SHIFT;
    if (this.seenMap[ci - (this.base >>> CHUNK_SHIFT)] !== this.mem.version(ci)) return null;
    const n = this.live[(l2 - this.base) / UNIT]!;
    return n === LIVE_UNKNOWN ? null : n;
  }

  /** Records the L2 table's count after the page-table code's writes to it (a table outside the pool has none). */
  setLive(l2: number, n: number): void {
    if (!this.contains(l2)) return;
    this.live[(l2 - this.base) / UNIT] = n;
    this.wrote(l2);
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
    if (!this.mem.allZero(addr, units * UNIT)) {
      this.claim(addr);
      this.mem.zero(addr, units * UNIT);
      this.wrote(addr);
    }
    if (units === 1) this.live[i] = 0;
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
