/**
 * A swiotlb-style bounce pool (API.md v1.1, "Bounce buffers"): a range of RAM cut into 2 KiB slots (IO_TLB_SIZE);
 * a bounced buffer takes consecutive slots, first fit from the pool's lowest address.
 */
import { fail } from '../errors.js';

export const SLOT_SIZE = 2048;
/** The largest pool (API.md). */
export const BOUNCE_POOL_MAX = 64 * 1024 * 1024;

export class BouncePool {
  /** 1 where a slot is taken. */
  private readonly taken: Uint8Array;
  /** Bytes copied through the pool, for /metrics. */
  bytesBounced = 0;

  constructor(
    readonly paddr: number,
    readonly size: number,
  ) {
    this.taken = new Uint8Array(size / SLOT_SIZE);
  }

  get slots(): number {
    return this.taken.length;
  }

  get used(): number {
    let n = 0;
    for (const t of this.taken) n += t;
    return n;
  }

  /** Takes consecutive slots for `bytes` whose last byte is ≤ limit; NO_SPACE (reason "bounce") when none fit. */
  alloc(bytes: number, limit: number): { paddr: number; slots: number } {
    const n = Math.ceil(bytes / SLOT_SIZE);
    const t = this.taken;
    for (let i = 0; i + n <= t.length; i++) {
      const start = this.paddr + i * SLOT_SIZE;
      if (start + bytes - 1 > limit) break;
      let j = 0;
      while (j < n && t[i + j] === 0) j++;
      if (j === n) {
        t.fill(1, i, i + n);
        return { paddr: start, slots: n };
      }
      i += j;
    }
    fail('bounceFull', { slots: n, dmaLimit: limit });
  }

  free(paddr: number, slots: number): void {
    const i = (paddr - this.paddr) / SLOT_SIZE;
    this.taken.fill(0, i, i + slots);
  }

  snapshot(): { taken: string; bytesBounced: number } {
    return { taken: Buffer.from(this.taken).toString('base64'), bytesBounced: this.bytesBounced };
  }

  restore(s: { taken: string; bytesBounced: number }): void {
    this.taken.set(Buffer.from(s.taken, 'base64'));
    this.bytesBounced = s.bytesBounced;
  }
}

