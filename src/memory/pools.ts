/**
 * Physical buffer pools over the profile's RAM regions (the seed's prioritized pools: on-chip SMI before DDR).
 * Each pool is a free list of [base, end) ranges kept in address order; allocation is first fit from the lowest
 * address with alignment, and freed ranges coalesce with their neighbours.
 */
import { fail } from '../errors.js';
import type { PhysMemory } from './phys.js';

export interface PoolSpec {
  name: string;
  base: number;
  size: number;
  priority: number;
}

export interface PhysBuffer {
  paddr: number;
  size: number;
  pool: string;
}

interface Range {
  base: number;
  end: number;
}

export class Pool {
  /** Free ranges, sorted by address, never adjacent (they coalesce). */
  free: Range[];
  size: number;
  used = 0;

  constructor(
    readonly name: string,
    readonly base: number,
    readonly end: number,
    readonly priority: number,
    readonly order: number,
    reserved: Range | null,
  ) {
    this.free = [{ base, end }];
    if (reserved && reserved.base < end && reserved.end > base) {
      // The page-table pool is carved out: never handed out as a buffer.
      this.free = [
        ...(reserved.base > base ? [{ base, end: reserved.base }] : []),
        ...(reserved.end < end ? [{ base: reserved.end, end }] : []),
      ];
    }
    this.size = this.free.reduce((n, r) => n + (r.end - r.base), 0);
  }

  /** Takes [base, end) out of the pool for good (a bounce pool), as the page-table pool is at construction. */
  carve(base: number, end: number): void {
    const lo = Math.max(base, this.base);
    const hi = Math.min(end, this.end);
    if (hi <= lo) return;
    this.free = this.free.flatMap((r) => (r.end <= lo || r.base >= hi ? [r] : [...(r.base < lo ? [{ base: r.base, end: lo }] : []), ...(r.end > hi ? [{ base: hi, end: r.end }] : [])]));
    this.size = this.free.reduce((n, r) => n + (r.end - r.base), 0) + this.used;
  }

  /** First fit from the lowest address; returns the base or -1. */
  alloc(size: number, align: number): number {
    for (let i = 0; i < this.free.length; i++) {
      const r = this.free[i]!;
      const a = Math.ceil(r.base / align) * align;
      if (a + size > r.end) continue;
      const parts: Range[] = [];
      if (a > r.base) parts.push({ base: r.base, end: a });
      if (a + size < r.end) parts.push({ base: a + size, end: r.end });
      this.free.splice(i, 1, ...parts);
      this.used += size;
      return a;
    }
    return -1;
  }

  release(base: number, size: number): void {
    const end = base + size;
    let i = 0;
    while (i < this.free.length && this.free[i]!.base < base) i++;
    const prev = this.free[i - 1];
    const next = this.free[i];
    if (prev && prev.end === base && next && next.base === end) {
      prev.end = next.end;
      this.free.splice(i, 1);
    } else if (prev && prev.end === base) prev.end = end;
    else if (next && next.base === end) next.base = base;
    else this.free.splice(i, 0, { base, end });
    this.used -= size;
  }
}

export class BufferPools {
  readonly pools: Pool[];
  readonly buffers = new Map<number, PhysBuffer>();

  constructor(
    private readonly mem: PhysMemory,
    memory: readonly PoolSpec[],
    pagetablePool: { base: number; size: number },
  ) {
    const reserved = { base: pagetablePool.base, end: pagetablePool.base + pagetablePool.size };
    this.pools = memory.map((m, i) => new Pool(m.name, m.base, m.base + m.size, m.priority, i, reserved));
  }

  /**
   * Allocates from the first pool with room, in priority order (larger first) then profile order, aligned to the
   * largest page size ≤ size (so the buffer maps with big pages) unless `align` says otherwise.
   */
  alloc(size: number, pools?: readonly string[], align?: number): PhysBuffer {
    if (!Number.isInteger(size) || size <= 0 || size > 2 ** 32) fail('bufferSize', { size });
    const rounded = Math.ceil(size / 0x1000) * 0x1000;
    if (align !== undefined && (align < 0x1000 || (align & (align - 1)) !== 0 || align > 2 ** 31)) {
      fail('bufferAlign', { align });
    }
    const a = align ?? [0x1000000, 0x100000, 0x10000, 0x1000].find((p) => p <= rounded)!;
    let candidates = [...this.pools].sort((x, y) => y.priority - x.priority || x.order - y.order);
    if (pools) {
      for (const p of pools) if (!this.pools.some((x) => x.name === p)) fail('noPool', { pool: p });
      candidates = candidates.filter((p) => pools.includes(p.name));
    }
    for (const p of candidates) {
      const paddr = p.alloc(rounded, a);
      if (paddr >= 0) {
        const b = { paddr, size: rounded, pool: p.name };
        this.buffers.set(paddr, b);
        // New buffers read as zeros, whatever the last owner left there.
        this.mem.zero(paddr, rounded);
        return b;
      }
    }
    fail('poolsFull', { size: rounded, align: a });
  }

  free(paddr: number): PhysBuffer {
    const b = this.buffers.get(paddr);
    if (!b) fail('noBuffer', { paddr });
    this.pools.find((p) => p.name === b.pool)!.release(b.paddr, b.size);
    this.buffers.delete(paddr);
    return b;
  }

  snapshot(): { pools: Array<{ free: Range[]; used: number }>; buffers: PhysBuffer[] } {
    return { pools: this.pools.map((p) => ({ free: p.free.map((r) => ({ ...r })), used: p.used })), buffers: [...this.buffers.values()] };
  }

  restore(s: { pools: Array<{ free: Range[]; used: number }>; buffers: PhysBuffer[] }): void {
    s.pools.forEach((p, i) => {
      this.pools[i]!.free = p.free.map((r) => ({ ...r }));
      this.pools[i]!.used = p.used;
    });
    this.buffers.clear();
    for (const b of s.buffers) this.buffers.set(b.paddr, { ...b });
  }

  usage(): Array<{ name: string; base: number; size: number; used: number; free: number; priority: number; largestFree: number }> {
    return this.pools.map((p) => ({
      name: p.name,
      base: p.base,
      size: p.size,
      used: p.used,
      free: p.size - p.used,
      priority: p.priority,
      largestFree: p.free.reduce((m, r) => Math.max(m, r.end - r.base), 0),
    }));
  }
}
