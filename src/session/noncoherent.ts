/**
 * A session's optional non-coherent parts (API.md v1.1): the CPU data cache and the bounce pool, checked and
 * wired into the hardware (device transfers reach RAM beneath the cache) and the DMA API (maintenance,
 * ownership, bounce copies). A session without them is v1's coherent session, untouched.
 */
import { IommuError, hex } from '../errors.js';
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
      const why = { lineSize: 'lineSize must be 32 or 64', lines: 'lines must be an integer 1 .. 65536', coherent: 'coherent names a device this profile does not have' }[c];
      throw new IommuError('BAD_REQUEST', `cpuCache: ${why}`, { field: `cpuCache.${c}`, ...(c === 'coherent' ? { coherent: cpuCache.coherent } : {}) });
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
    throw new IommuError('UNALIGNED', `bounce: paddr and size must be multiples of ${SLOT_SIZE}`, { field: 'bounce', paddr: hex(b.paddr), size: b.size });
  }
  if (b.size === 0 || b.size > BOUNCE_POOL_MAX || b.paddr + b.size > 2 ** 32 || !soc.mem.isRamRange(b.paddr, b.size)) {
    throw new IommuError('OUT_OF_RANGE', `bounce: [${hex(b.paddr)}, +${b.size}) must be RAM, 1 .. ${BOUNCE_POOL_MAX} bytes`, { field: 'bounce', paddr: hex(b.paddr), size: b.size });
  }
  const pt = soc.profile.pagetablePool;
  if (b.paddr < pt.base + pt.size && pt.base < b.paddr + b.size) {
    throw new IommuError('BAD_REQUEST', 'bounce: the pool overlaps the page-table pool', { field: 'bounce', pagetablePool: { base: hex(pt.base), size: pt.size } });
  }
}
