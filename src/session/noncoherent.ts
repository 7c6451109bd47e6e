/**
 * A session's optional non-coherent parts (API.md v1.1): the CPU data cache and the bounce pool, checked and
 * wired into the hardware (device transfers reach RAM beneath the cache) and the DMA API (maintenance,
 * ownership, bounce copies). A session without them is v1's coherent session, untouched.
 */
import { fail } from '../errors.js';
import { DmaMaintenance } from '../dma/noncoherent.js';
import { BOUNCE_POOL_MAX, BouncePool, SLOT_SIZE } from '../dma/swiotlb.js';
import type { DmaApi } from '../dma/dma.js';
import type { EventSink } from '../events/types.js';
import type { Soc } from '../hw/soc.js';
import { cacheConfig, CpuCache, type CpuCacheConfig } from '../memory/cache.js';
import type { BufferPools } from '../memory/pools.js';

export interface CpuCacheOption {
  lineSize?: number;
  lines?: number;
  coherent?: string[];
}

export interface BounceOption {
  paddr: number;
  size: number;
}

export interface NonCoherent {
  cache: CpuCache | null;
  cacheConfig: CpuCacheConfig | null;
  bounce: BouncePool | null;
}

/** Checks the settings (BAD_REQUEST / UNALIGNED / OUT_OF_RANGE, nothing created on a refusal) and wires them. */
export function setupNonCoherent(soc: Soc, pools: BufferPools, dma: DmaApi, sink: EventSink, cpuCache?: CpuCacheOption, bounce?: BounceOption): NonCoherent {
  let cfg: CpuCacheConfig | null = null;
  if (cpuCache) {
    const c = cacheConfig(cpuCache, new Set(soc.devices.keys()));
    if (typeof c === 'string') {
      fail('badCpuCache', { field: c as 'lineSize' | 'lines' | 'coherent', coherent: cpuCache.coherent });
    }
    cfg = c;
  }
  if (bounce) checkBounce(soc, bounce);
  const cache = cfg ? new CpuCache(soc.mem, cfg, sink) : null;
  const pool = bounce ? new BouncePool(bounce.paddr, bounce.size) : null;
  if (pool) {
    // Reserved from the buffer pools in 4 KiB units: never handed out as a buffer.
    const lo = Math.floor(pool.paddr / 0x1000) * 0x1000;
    const hi = Math.ceil((pool.paddr + pool.size) / 0x1000) * 0x1000;
    for (const p of pools.pools) p.carve(lo, hi);
  }
  if (cache || pool) {
    const maint = new DmaMaintenance(dma.devices, cache, pool, soc.mem, sink);
    dma.maint = maint;
    if (cache) cache.dma = maint;
  }
  soc.env.cache = cache;
  return { cache, cacheConfig: cfg, bounce: pool };
}

function checkBounce(soc: Soc, b: BounceOption): void {
  if (b.paddr % SLOT_SIZE !== 0 || b.size % SLOT_SIZE !== 0) {
    fail('bounceUnaligned', { paddr: b.paddr, size: b.size, slot: SLOT_SIZE });
  }
  if (b.size === 0 || b.size > BOUNCE_POOL_MAX || b.paddr + b.size > 2 ** 32 || !soc.mem.isRamRange(b.paddr, b.size)) {
    fail('bounceNotRam', { paddr: b.paddr, size: b.size, max: BOUNCE_POOL_MAX });
  }
  const pt = soc.profile.pagetablePool;
  if (b.paddr < pt.base + pt.size && pt.base < b.paddr + b.size) {
    fail('bounceOverPagetables', { base: pt.base, size: pt.size });
  }
}
